"""Outbound NOTIFY (RFC 1996, ``dnsserver.notify``) over real UDP sockets on
127.0.0.1: secondaries here are UDP listeners that record every NOTIFY and
answer as each test says (at once, after dropping some, never, with an
error rcode, or with spoofed replies first). Retry timings are tiny
(``Timing``) so that every test is bounded and fast."""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import cast

import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.tsigkeyring
import pytest

from config.model import Server, TsigKey
from dnsserver.metrics import NotifyCounts
from dnsserver.notify import Notifier, Timing
from dnsserver.resolver import Resolver
from healthwatch.snapshot import Snapshot
from tests.dnsserver import zonefixture as zf

KEY_NAME = "notify-key."
SECRET = "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0wMTIzNDU="
QUICK = Timing(first=0.05, factor=2.0, tries=3)
LIMIT = 10.0  # seconds any single wait in these tests may take


class Secondary(asyncio.DatagramProtocol):
    """A UDP listener on 127.0.0.1 that records NOTIFYs and answers them.

    ``answer(index, message)`` says what to do with the ``index``-th NOTIFY
    (0-based): an rcode to answer with, or None to stay silent. ``before``
    (optional) sends extra datagrams first (spoofed replies); ``render``
    turns (NOTIFY, reply) into the bytes sent (by default the reply as
    dnspython makes it: signed with the NOTIFY's key when it had one)."""

    def __init__(self, answer: Callable[[int, dns.message.Message], int | None],
                 keyring: dict[dns.name.Name, dns.tsig.Key] | None = None) -> None:
        self.answer = answer
        self.keyring = keyring
        self.got: list[dns.message.Message] = []
        self.raw: list[bytes] = []
        self.times: list[float] = []  # loop time of each arrival
        self.before: Callable[[bytes, tuple[str, int]], None] | None = None
        self.render: Callable[[dns.message.Message, dns.message.Message], bytes] = (
            lambda _query, reply: reply.to_wire())
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self._arrived = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        msg = dns.message.from_wire(data, keyring=self.keyring)  # verifies a TSIG
        index = len(self.got)
        self.got.append(msg)
        self.raw.append(data)
        self.times.append(asyncio.get_running_loop().time())
        self._arrived.set()
        if self.before is not None:
            self.before(data, addr)
        rcode = self.answer(index, msg)
        if rcode is not None and self.transport is not None:
            reply = dns.message.make_response(msg)
            reply.set_rcode(rcode)
            self.transport.sendto(self.render(msg, reply), addr)

    @property
    def target(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def serials(self) -> list[int]:
        return [soa_serial(m) for m in self.got]

    async def wait(self, count: int, serial: int | None = None) -> None:
        """Until ``count`` NOTIFYs (of ``serial``, if given) arrived."""
        def enough() -> bool:
            got = self.got if serial is None else [m for m in self.got
                                                    if soa_serial(m) == serial]
            return len(got) >= count
        async with asyncio.timeout(LIMIT):
            while not enough():
                self._arrived.clear()
                await self._arrived.wait()


def soa_serial(msg: dns.message.Message) -> int:
    rrset = msg.answer[0]
    assert rrset.rdtype == dns.rdatatype.SOA
    return int(rrset[0].serial)


def always(rcode: int | None) -> Callable[[int, dns.message.Message], int | None]:
    return lambda _i, _m: rcode


def after_drops(drops: int) -> Callable[[int, dns.message.Message], int | None]:
    return lambda i, _m: dns.rcode.NOERROR if i >= drops else None


async def listen(secondary: Secondary) -> Secondary:
    await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: secondary, local_addr=("127.0.0.1", 0))
    return secondary


@pytest.fixture
async def closing() -> AsyncIterator[list[Secondary | Notifier]]:
    """Secondaries and notifiers to close/stop when the test ends."""
    things: list[Secondary | Notifier] = []
    yield things
    for thing in things:
        if isinstance(thing, Notifier):
            await thing.stop()
        elif thing.transport is not None:
            thing.transport.close()


async def secondary(closing: list[Secondary | Notifier],
                    answer: Callable[[int, dns.message.Message], int | None],
                    keyring: dict[dns.name.Name, dns.tsig.Key] | None = None) -> Secondary:
    sec = await listen(Secondary(answer, keyring))
    closing.append(sec)
    return sec


def notifier(closing: list[Secondary | Notifier], *targets: Secondary,
             timing: Timing = QUICK, **server: object) -> Notifier:
    cfg = replace(Server(), also_notify=tuple(t.target for t in targets),
                  **server)  # type: ignore[arg-type]
    n = Notifier(lambda: cfg, NotifyCounts(), timing=timing)
    n.start()
    closing.append(n)
    return n


async def finished(n: Notifier) -> None:
    """The round in flight has ended."""
    task = n.round
    assert task is not None
    async with asyncio.timeout(LIMIT):
        await task


def counts(n: Notifier) -> dict[tuple[str, str], int]:
    return dict(n.counts.counts)


def snap(serial: int) -> Resolver:
    return served(zf.snapshot(serial=serial))


def served(snapshot: Snapshot) -> Resolver:
    """What the server hands the notifier when ``snapshot`` serves."""
    return Resolver(snapshot, Server())


# -- the message and its reply ------------------------------------------------


async def test_notify_is_opcode_4_aa_apex_soa_sent_to_every_target_at_once(
        closing: list[Secondary | Notifier]) -> None:
    silent = await secondary(closing, always(None))
    quick = await secondary(closing, always(dns.rcode.NOERROR))
    slow = Timing(first=0.5, factor=1.0, tries=4)  # the silent one: 2 s in all
    n = notifier(closing, silent, quick, timing=slow)
    n.publish(snap(42))
    await finished(n)
    assert len(silent.got) == 4 and len(quick.got) == 1
    # concurrently: the quick one was notified before the silent one's first retry
    assert quick.times[0] < silent.times[1]
    assert counts(n) == {(f"127.0.0.1:{quick.port}", "acknowledged"): 1,
                         (f"127.0.0.1:{silent.port}", "timeout"): 1}
    for sec in (silent, quick):
        msg = sec.got[0]
        assert msg.opcode() == dns.opcode.NOTIFY
        assert msg.flags & dns.flags.AA and not msg.flags & dns.flags.QR
        assert len(msg.question) == 1
        q = msg.question[0]
        assert (q.name, q.rdtype, q.rdclass) == (dns.name.from_text(zf.ZONE),
                                                  dns.rdatatype.SOA, dns.rdataclass.IN)
        assert soa_serial(msg) == 42 and msg.answer[0].name == q.name
        assert not msg.had_tsig


async def test_retransmits_until_answered_with_the_same_id(
        closing: list[Secondary | Notifier]) -> None:
    sec = await secondary(closing, after_drops(2))
    n = notifier(closing, sec, timing=Timing(first=0.05, factor=2.0, tries=5))
    n.publish(snap(7))
    await finished(n)
    assert len(sec.got) == 3  # two dropped, the third answered, no more sent
    assert len({m.id for m in sec.got}) == 1 and len(set(sec.raw)) == 1
    assert counts(n) == {(f"127.0.0.1:{sec.port}", "acknowledged"): 1}


async def test_gives_up_after_the_bounded_tries_and_logs_it(
        closing: list[Secondary | Notifier], caplog: pytest.LogCaptureFixture) -> None:
    sec = await secondary(closing, always(None))
    n = notifier(closing, sec, timing=Timing(first=0.02, factor=2.0, tries=4))
    with caplog.at_level(logging.INFO, logger="dnsserver.notify"):
        n.publish(snap(7))
        await finished(n)
        assert len(sec.got) == 4
        assert counts(n) == {(f"127.0.0.1:{sec.port}", "timeout"): 1}
        gave_up = [r for r in caplog.records if r.getMessage().startswith("notify_timeout")]
        assert [r.levelno for r in gave_up] == [logging.WARNING]
        assert f"target=127.0.0.1:{sec.port} serial=7 tries=4" in gave_up[0].getMessage()
        n.publish(snap(8))  # still silent: logged again, but not as a warning
        await finished(n)
    gave_up = [r for r in caplog.records if r.getMessage().startswith("notify_timeout")]
    assert [r.levelno for r in gave_up] == [logging.WARNING, logging.INFO]
    assert len(sec.got) == 8


async def test_any_rcode_ends_the_exchange_and_error_rcodes_warn_once(
        closing: list[Secondary | Notifier], caplog: pytest.LogCaptureFixture) -> None:
    refused = await secondary(closing, always(dns.rcode.REFUSED))
    notimp = await secondary(closing, always(dns.rcode.NOTIMP))
    servfail = await secondary(closing, always(dns.rcode.SERVFAIL))
    n = notifier(closing, refused, notimp, servfail)
    with caplog.at_level(logging.INFO, logger="dnsserver.notify"):
        n.publish(snap(7))
        await finished(n)
        n.publish(snap(8))
        await finished(n)
    assert [len(s.got) for s in (refused, notimp, servfail)] == [2, 2, 2]  # no retransmission
    assert counts(n) == {(f"127.0.0.1:{refused.port}", "refused"): 2,
                         (f"127.0.0.1:{notimp.port}", "notimp"): 2,
                         (f"127.0.0.1:{servfail.port}", "other_rcode"): 2}
    warnings = sorted(r.getMessage().split()[0] for r in caplog.records
                      if r.levelno == logging.WARNING and r.name == "dnsserver.notify")
    assert warnings == ["notify_notimp", "notify_other_rcode", "notify_refused"]


async def test_a_newer_serial_supersedes_the_round_in_flight(
        closing: list[Secondary | Notifier]) -> None:
    sec = await secondary(closing, always(None))
    n = notifier(closing, sec, timing=Timing(first=0.03, factor=1.0, tries=60))
    n.publish(snap(10))
    await sec.wait(2, serial=10)  # a retransmission of 10 has gone out
    old_round = n.round
    n.publish(snap(11))
    await sec.wait(4, serial=11)  # 11 retransmitted: time for a stray 10 to show
    assert old_round is not None and old_round.cancelled()
    serials = sec.serials()
    first_11 = serials.index(11)
    assert set(serials[:first_11]) == {10} and set(serials[first_11:]) == {11}
    # an older serial, or the same one again (a rebuild after a reload), starts nothing
    current = n.round
    n.publish(snap(9))
    n.publish(snap(11))
    assert n.round is current and n.last is not None and n.last.serial == 11
    # serial arithmetic (RFC 1982): newer by less than 2**31, wrapping past 2**32 - 1
    for serial in (2**31, 2**32 - 1, 5):
        n.publish(snap(serial))
        await sec.wait(1, serial=serial)
    n.publish(snap(5 + 2**31))  # 2**31 ahead: undefined, so not newer
    assert n.last.serial == 5


async def test_spoofed_and_malformed_replies_are_ignored(
        closing: list[Secondary | Notifier]) -> None:
    """Before answering the second NOTIFY, the secondary sends replies that
    must not count: a wrong ID, a wrong question, the wrong opcode, QR=0,
    garbage, and a perfect REFUSED reply from another port (all REFUSED, so
    that taking any of them would end the exchange as "refused")."""
    sec = await secondary(closing, after_drops(1))
    other = await secondary(closing, always(None))  # another port on the same address
    assert sec.transport is not None and other.transport is not None

    def spoof(data: bytes, addr: tuple[str, int]) -> None:
        if len(sec.got) != 1:
            return
        query = dns.message.from_wire(data)
        good = dns.message.make_response(query)
        good.set_rcode(dns.rcode.REFUSED)
        wire = good.to_wire()
        wrong_id = dns.message.make_response(query)
        wrong_id.id = (query.id + 1) % 65536
        wrong_id.set_rcode(dns.rcode.REFUSED)
        wrong_q = dns.message.make_response(query)
        wrong_q.question = [dns.rrset.RRset(dns.name.from_text("other.example."),
                                            dns.rdataclass.IN, dns.rdatatype.SOA)]
        wrong_q.set_rcode(dns.rcode.REFUSED)
        wrong_op = bytearray(wire)
        wrong_op[2] = (wrong_op[2] & 0x87) | (0 << 3)  # opcode QUERY
        no_qr = bytearray(wire)
        no_qr[2] &= 0x7F
        for bad in (wrong_id.to_wire(), wrong_q.to_wire(), bytes(wrong_op), bytes(no_qr),
                    b"\x00\x01\x02", wire[:14], wire[:2] + b"\x80"):
            sec.transport.sendto(bad, addr)  # type: ignore[union-attr]
        other.transport.sendto(wire, addr)  # type: ignore[union-attr]

    sec.before = spoof
    n = notifier(closing, sec, timing=Timing(first=0.2, factor=1.0, tries=4))
    n.publish(snap(7))
    await finished(n)
    assert len(sec.got) == 2  # the spoofs did not end the exchange; the real answer did
    assert counts(n) == {(f"127.0.0.1:{sec.port}", "acknowledged"): 1}


async def test_signed_with_the_transfer_key_when_one_is_set(
        closing: list[Secondary | Notifier]) -> None:
    keyring = dns.tsigkeyring.from_text({KEY_NAME: ("hmac-sha256", SECRET)})
    sec = await secondary(closing, always(dns.rcode.NOERROR), keyring)
    n = notifier(closing, sec, transfer_tsig=TsigKey(KEY_NAME, SECRET))
    n.publish(snap(7))
    await finished(n)
    msg = sec.got[0]  # parsed with the keyring: the MAC and time were verified
    assert msg.had_tsig and msg.keyname == dns.name.from_text(KEY_NAME)
    assert msg.opcode() == dns.opcode.NOTIFY and soa_serial(msg) == 7
    assert counts(n) == {(f"127.0.0.1:{sec.port}", "acknowledged"): 1}
    wrong = dns.tsigkeyring.from_text({KEY_NAME: ("hmac-sha256", "d3Jvbmc=")})
    with pytest.raises(dns.tsig.BadSignature):
        dns.message.from_wire(sec.raw[0], keyring=wrong)


async def test_an_unusable_soa_still_notifies_without_the_hint(
        closing: list[Secondary | Notifier]) -> None:
    sec = await secondary(closing, always(dns.rcode.NOERROR))
    n = notifier(closing, sec)
    base = zf.snapshot(serial=7)
    records = tuple(zf.rec(zf.ZONE, "SOA", "not an soa 7 x y z", 300)
                    if r.rtype == "SOA" else r for r in base.records)
    n.publish(served(replace(base, records=records)))
    await finished(n)
    assert len(sec.got) == 1 and not sec.got[0].answer
    assert sec.got[0].question[0].rdtype == dns.rdatatype.SOA


def test_published_before_start_waits_for_start_and_never_raises() -> None:
    """No event loop runs: ``publish`` neither raises nor sends; it remembers."""
    cfg = replace(Server(), also_notify=(("127.0.0.1", 9),))
    n = Notifier(lambda: cfg, NotifyCounts(), timing=QUICK)
    n.publish(snap(7))
    n.start()  # still no loop: nothing sent, nothing raised
    assert n.round is None and n.last is not None and n.last.serial == 7
    n.publish(struct)  # type: ignore[arg-type]  # not a Resolver: logged, not raised
    assert n.last.serial == 7
