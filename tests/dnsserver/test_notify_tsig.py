"""The TSIG of NOTIFY acknowledgements (``dnsserver.notify``, RFC 8945
section 5.3/5.4): with ``server.transfer_tsig`` the NOTIFY is signed, and
only an acknowledgement signed with the same key over the NOTIFY's MAC,
within the fudge, ends the exchange. The secondaries are the recording UDP
listeners of ``test_notify`` on 127.0.0.1, each rendering its reply as the
test says (unsigned, another key, a stale time, a TSIG error...); every
round is bounded by ``TRIES``."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable

import dns.message
import dns.name
import dns.rcode
import dns.rrset
import dns.tsig
import dns.tsigkeyring
import pytest

from config.model import TsigKey
from dnsserver.metrics import NOTIFY_RESULTS
from dnsserver.notify import Notifier, Timing
from tests.dnsserver import test_notify
from tests.dnsserver.test_notify import (
    KEY_NAME,
    SECRET,
    Secondary,
    always,
    counts,
    finished,
    notifier,
    secondary,
    snap,
)

closing = test_notify.closing  # the fixture
Render = Callable[[dns.message.Message, dns.message.Message], bytes]
KEYRING = dns.tsigkeyring.from_text({KEY_NAME: ("hmac-sha256", SECRET)})
KEY = KEYRING[dns.name.from_text(KEY_NAME)]
OTHER_SECRET = base64.b64encode(b"another-secret-for-tests-only-99").decode()
TRIES = Timing(first=0.05, factor=1.0, tries=4)  # a round: 4 sends, about 0.2 s
# where a test counts the sends up to an answer: a late answer cannot meet a resend
PATIENT = Timing(first=0.5, factor=1.0, tries=4)


def signed_notifier(closing: list[Secondary | Notifier], sec: Secondary,
                    timing: Timing = TRIES) -> Notifier:
    return notifier(closing, sec, timing=timing, transfer_tsig=TsigKey(KEY_NAME, SECRET))


async def signing_secondary(closing: list[Secondary | Notifier], render: Render,
                            answer: int = dns.rcode.NOERROR) -> Secondary:
    """A secondary with the key (it verifies each NOTIFY) that answers every
    one with ``answer``, rendered by ``render``."""
    sec = await secondary(closing, always(answer), KEYRING)
    sec.render = render
    return sec


# -- how the fake secondary renders its acknowledgement ------------------------


def correctly_signed(_query: dns.message.Message, reply: dns.message.Message) -> bytes:
    assert reply.had_tsig  # dnspython signs the reply with the NOTIFY's key and MAC
    return reply.to_wire()


def unsigned(_query: dns.message.Message, reply: dns.message.Message) -> bytes:
    reply.tsig = None
    return reply.to_wire()


def signed_by(name: str, secret: str) -> Render:
    """Signed (over the NOTIFY's MAC) with the key ``name``/``secret``."""
    key = dns.tsig.Key(name, base64.b64decode(secret), dns.tsig.HMAC_SHA256)

    def render(_query: dns.message.Message, reply: dns.message.Message) -> bytes:
        reply.use_tsig(key)
        return reply.to_wire()
    return render


def not_chained(_query: dns.message.Message, reply: dns.message.Message) -> bytes:
    """Signed with the right key but not over the NOTIFY's MAC (a replay)."""
    reply.request_mac = b""
    return reply.to_wire()


def signed_at(seconds_ago: int) -> Render:
    """Correctly signed, but stamped ``seconds_ago`` in the past."""
    def render(query: dns.message.Message, reply: dns.message.Message) -> bytes:
        tsig = reply.tsig
        assert tsig is not None
        reply.tsig = None
        body = reply.to_wire()
        stamped, _ = dns.tsig.sign(body, KEY, tsig[0], int(time.time()) - seconds_ago,
                                   query.mac)
        reply.tsig = dns.rrset.from_rdata(tsig.name, 0, stamped)
        reply.want_tsig_sign = False  # as stamped
        return reply.to_wire()
    return render


def tsig_error(error: int) -> Render:
    """NOTAUTH with a TSIG whose error is ``error`` and that has no MAC
    (RFC 8945 section 5.3.2: how a secondary answers a NOTIFY it cannot verify)."""
    def render(_query: dns.message.Message, reply: dns.message.Message) -> bytes:
        tsig = reply.tsig
        assert tsig is not None
        reply.set_rcode(dns.rcode.NOTAUTH)
        bare = tsig[0].replace(error=error, mac=b"", time_signed=int(time.time()))
        reply.tsig = dns.rrset.from_rdata(tsig.name, 0, bare)
        reply.want_tsig_sign = False  # unsigned, as RFC 8945 has it
        return reply.to_wire()
    return render


def cut_short(_query: dns.message.Message, reply: dns.message.Message) -> bytes:
    """The signed reply without its last byte: its question still matches."""
    return reply.to_wire()[:-1]


def rejections(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records
            if r.name == "dnsserver.notify" and r.getMessage().startswith("notify_reply_rejected")
            and r.levelno == logging.WARNING]


# -- the tests ---------------------------------------------------------------------


async def test_a_correctly_signed_acknowledgement_ends_the_round(
        closing: list[Secondary | Notifier]) -> None:
    sec = await signing_secondary(closing, correctly_signed)
    n = signed_notifier(closing, sec, PATIENT)
    n.publish(snap(7))
    await finished(n)
    assert len(sec.got) == 1 and sec.got[0].had_tsig
    assert counts(n) == {(f"127.0.0.1:{sec.port}", "acknowledged"): 1}


@pytest.mark.parametrize(("render", "result", "reason"), [
    (unsigned, "bad_tsig", "reason=unsigned"),
    (signed_by("other-key.", OTHER_SECRET), "bad_tsig", "reason=unknown_key key=other-key."),
    (signed_by(KEY_NAME, OTHER_SECRET), "bad_tsig", "reason=bad_signature"),
    (not_chained, "bad_tsig", "reason=bad_signature"),
    (signed_at(3600), "bad_tsig", "reason=bad_time"),
    (cut_short, "bad_tsig", "reason=malformed"),
    (tsig_error(dns.rcode.BADSIG), "tsig_error", "reason=tsig_error error=BADSIG"),
    (tsig_error(dns.rcode.BADKEY), "tsig_error", "reason=tsig_error error=BADKEY"),
], ids=["unsigned", "other_key", "other_secret", "not_chained", "stale_time", "cut_short",
        "badsig", "badkey"])
async def test_an_unverified_acknowledgement_does_not_stop_the_resends(
        closing: list[Secondary | Notifier], caplog: pytest.LogCaptureFixture,
        render: Render, result: str, reason: str) -> None:
    """Every NOTIFY is answered at once, but no answer verifies: all
    ``TRIES`` sends go out, the round ends with ``result`` (a documented
    label value), and the rejection is logged once as a warning that
    names the target and the reason but never the secret."""
    sec = await signing_secondary(closing, render)
    n = signed_notifier(closing, sec)
    target = f"127.0.0.1:{sec.port}"
    with caplog.at_level(logging.DEBUG, logger="dnsserver.notify"):
        n.publish(snap(7))
        await finished(n)
    assert len(sec.got) == TRIES.tries
    assert len({m.id for m in sec.got}) == 1  # resends of the one NOTIFY
    assert counts(n) == {(target, result): 1}
    assert result in NOTIFY_RESULTS
    [warning] = rejections(caplog)
    assert f"target={target} serial=7" in warning.getMessage()
    assert reason in warning.getMessage()
    secret_bytes = base64.b64decode(SECRET)
    for rec in caplog.records:
        text = rec.getMessage()
        assert SECRET not in text and repr(secret_bytes) not in text


async def test_badtime_error_reports_the_secondarys_clock(
        closing: list[Secondary | Notifier], caplog: pytest.LogCaptureFixture) -> None:
    """RFC 8945 section 5.2.3: a BADTIME answer carries the secondary's time
    (signed, with the key); it is a TSIG error all the same, and the log
    line gives that time so that an operator can see the clock skew."""
    def badtime(query: dns.message.Message, reply: dns.message.Message) -> bytes:
        theirs = int(time.time()) + 1000
        reply.use_tsig(KEY, tsig_error=dns.rcode.BADTIME,
                       other_data=theirs.to_bytes(6, "big"))
        reply.set_rcode(dns.rcode.NOTAUTH)
        return reply.to_wire()

    sec = await signing_secondary(closing, badtime)
    n = signed_notifier(closing, sec)
    with caplog.at_level(logging.INFO, logger="dnsserver.notify"):
        n.publish(snap(7))
        await finished(n)
    assert len(sec.got) == TRIES.tries
    assert counts(n) == {(f"127.0.0.1:{sec.port}", "tsig_error"): 1}
    [warning] = rejections(caplog)
    assert "error=BADTIME" in warning.getMessage()
    assert "their_time=" in warning.getMessage()


async def test_a_forged_refusal_before_the_signed_acknowledgement_is_ignored(
        closing: list[Secondary | Notifier], caplog: pytest.LogCaptureFixture) -> None:
    """A spoofer who knows the ID and the target's address answers first,
    unsigned, with REFUSED; the secondary's signed NOERROR that follows
    is the one taken."""
    sec = await signing_secondary(closing, correctly_signed)
    assert sec.transport is not None

    def forge(data: bytes, addr: tuple[str, int]) -> None:
        query = dns.message.from_wire(data, keyring=KEYRING)
        forged = dns.message.make_response(query)
        forged.tsig = None
        forged.set_rcode(dns.rcode.REFUSED)
        sec.transport.sendto(forged.to_wire(), addr)  # type: ignore[union-attr]

    sec.before = forge
    n = signed_notifier(closing, sec, PATIENT)
    with caplog.at_level(logging.INFO, logger="dnsserver.notify"):
        n.publish(snap(7))
        await finished(n)
    assert len(sec.got) == 1
    assert counts(n) == {(f"127.0.0.1:{sec.port}", "acknowledged"): 1}
    [warning] = rejections(caplog)
    assert "reason=unsigned rcode=5" in warning.getMessage()


async def test_resends_go_on_until_a_verified_acknowledgement(
        closing: list[Secondary | Notifier], caplog: pytest.LogCaptureFixture) -> None:
    """Unsigned answers to the first two sends, a signed one to the third:
    acknowledged after three sends, the rejection warned once."""
    sec = await signing_secondary(closing, correctly_signed)
    sec.render = lambda query, reply: (unsigned if len(sec.got) <= 2 else correctly_signed)(
        query, reply)
    n = signed_notifier(closing, sec, PATIENT)
    with caplog.at_level(logging.INFO, logger="dnsserver.notify"):
        n.publish(snap(7))
        await finished(n)
    assert len(sec.got) == 3
    assert counts(n) == {(f"127.0.0.1:{sec.port}", "acknowledged"): 1}
    assert len(rejections(caplog)) == 1


async def test_rejections_warn_once_per_round(
        closing: list[Secondary | Notifier], caplog: pytest.LogCaptureFixture) -> None:
    sec = await signing_secondary(closing, unsigned)
    n = signed_notifier(closing, sec)
    with caplog.at_level(logging.DEBUG, logger="dnsserver.notify"):
        n.publish(snap(7))
        await finished(n)
        n.publish(snap(8))
        await finished(n)
    assert len(sec.got) == 2 * TRIES.tries
    assert [w.getMessage().split()[2] for w in rejections(caplog)] == ["serial=7", "serial=8"]
    assert counts(n) == {(f"127.0.0.1:{sec.port}", "bad_tsig"): 2}


async def test_an_unsigned_notify_takes_any_acknowledgement(
        closing: list[Secondary | Notifier]) -> None:
    """Without a key there is nothing to verify against: a reply's TSIG is
    not checked and the reply ends the round as before."""
    sec = await secondary(closing, always(dns.rcode.NOERROR))
    sec.render = signed_by("other-key.", OTHER_SECRET)
    n = notifier(closing, sec, timing=PATIENT)
    n.publish(snap(7))
    await finished(n)
    assert len(sec.got) == 1 and not sec.got[0].had_tsig
    assert counts(n) == {(f"127.0.0.1:{sec.port}", "acknowledged"): 1}
