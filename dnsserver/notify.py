"""Outbound NOTIFY (RFC 1996) to the secondaries of ``server.also_notify``.

A secondary that transfers the zone (AXFR/IXFR, ``dnsserver.xfr``) otherwise
learns of a change only at its SOA refresh (the planner's is an hour). On
every new serial the server serves, ``Notifier.publish`` starts a *round*:
one NOTIFY per target, all at once, each from its own ephemeral UDP socket
connected to the target:

- the message: opcode NOTIFY, AA set, a random ID per target, the question
  ``<zone apex> SOA IN`` and the new SOA in the answer section (RFC 1996
  section 3.7: a hint that lets a secondary that is already current skip
  its SOA query); with ``server.transfer_tsig`` it is TSIG-signed with that
  key (secondaries that transfer with a key expect signed NOTIFYs), by the
  signing code transfers use (``xfr.TransferPolicy.sign``);
- a reply matches when it comes from the target's address and port and has
  QR=1, opcode NOTIFY, the message's ID and the same question; anything
  else (a spoofed or malformed datagram) is ignored;
- a signed NOTIFY takes only a reply signed with the same key over the
  NOTIFY's MAC, within the fudge (RFC 8945 section 5.3; ``tsig_rejection``).
  Any other matching reply (unsigned, another key, a bad MAC or time, a
  TSIG error such as BADKEY/BADSIG from the secondary) is rejected: logged
  at warning once per round and target (the reason, never the secret), and
  the exchange goes on as if it had not come (RFC 8945 section 5.4), so a
  forged acknowledgement cannot stop the retransmissions early. A round
  that then gets no verified reply ends "bad_tsig" (the last rejected reply
  did not verify) or "tsig_error" (it was the secondary's TSIG error)
  instead of "timeout". An unsigned NOTIFY takes a matching reply as it is
  (``_Exchange``);
- any reply taken ends the target's exchange: NOERROR "acknowledged",
  REFUSED "refused", NOTIMP "notimp", another "other_rcode" (the three
  logged at warning when a target starts answering so, not again for every
  serial);
- no reply: sent again after ``Timing.first`` seconds, then after twice as
  long each time, ``Timing.tries`` sends in all, then "timeout" (logged);
- a socket that cannot be opened (no route to the target): "send_failed".

Defaults (``Timing()``): 5 sends, 1 s after the first, then 2, 4, 8 s, and
giving up 16 s after the last: 31 s in all. RFC 1996 section 3.6 suggests 60 s
between tries for the Internet of 1996; secondaries of fedns sit on a LAN or
in the same cloud region (round trips of milliseconds, and a NOTIFY is
answered before the transfer starts), so 1 s is already hundreds of round
trips and catches a lost datagram about a minute earlier, and the doubling
keeps a dead target at 5 datagrams per serial. Counted per target and result
in ``fedns_dns_notify_total`` (``metrics.NotifyCounts``).

A newer serial supersedes the round in flight: its exchanges are cancelled
(an exchange is always cancelled while it waits, so no older serial is sent
after a newer one's round started), and a serial that is not newer than the
last one published (RFC 1982 serial arithmetic: the same Snapshot served
again after a reload, for one) starts no round. The target list is read from
the server configuration at each round, so a reload applies to the next
serial. Nothing here blocks the event loop or raises into the caller.

Only the parent process notifies: ``DnsServer(notify=True)`` (``App``), never
a ``server.workers`` worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.rrset
import dns.tsig

from config.model import Server
from dnsserver import wire
from dnsserver.metrics import NotifyCounts
from dnsserver.resolver import Resolver
from dnsserver.xfr import soa_serial, transfer_policy
from healthwatch.snapshot import Record

log = logging.getLogger("dnsserver.notify")

Target = tuple[str, int]
OPCODE_NOTIFY = 4
RESULTS = {wire.NOERROR: "acknowledged", wire.REFUSED: "refused", wire.NOTIMP: "notimp"}


@dataclass(frozen=True, slots=True)
class Timing:
    """Retransmission: ``tries`` sends, ``first`` seconds apart at first, each
    wait ``factor`` times the one before; after the last send, one more wait."""

    first: float = 1.0
    factor: float = 2.0
    tries: int = 5

    def waits(self) -> list[float]:
        return [self.first * self.factor ** i for i in range(max(1, self.tries))]


@dataclass(frozen=True, slots=True)
class Notice:
    """What a round announces: the zone apex, its SOA serial and SOA record."""

    zone: str
    serial: int
    soa: Record | None


def notice_of(resolver: Resolver) -> Notice:
    """The zone, SOA serial (the apex SOA's SERIAL field, else the Snapshot's
    serial, as transfers have it) and apex SOA record that ``resolver`` serves."""
    snapshot = resolver.snapshot
    soa = resolver.soa
    serial = snapshot.serial & 0xFFFFFFFF if soa is None else soa_serial(soa, snapshot.serial)
    return Notice(snapshot.zone, serial, soa)


def newer(serial: int, than: int) -> bool:
    """``serial`` is newer than ``than`` (RFC 1982; 2**31 apart: undefined, not newer)."""
    return 0 < (serial - than) % (1 << 32) < (1 << 31)


def notify_message(notice: Notice, qid: int) -> bytes:
    """The NOTIFY for ``notice`` with ID ``qid``, unsigned; the SOA left out
    when it cannot be encoded. Raises ValueError for a zone name that cannot."""
    try:
        name = dns.name.from_text(notice.zone)
        msg = dns.message.Message(id=qid)
        msg.flags = dns.flags.AA
        msg.set_opcode(dns.opcode.NOTIFY)  # after the flags: the opcode lives in them
        msg.find_rrset(msg.question, name, dns.rdataclass.IN, dns.rdatatype.SOA, create=True)
    except dns.exception.DNSException as exc:
        raise ValueError(f"cannot encode NOTIFY for {notice.zone}: {exc}") from exc
    if notice.soa is not None:
        try:
            msg.answer.append(dns.rrset.from_text(name, notice.soa.ttl, "IN", "SOA",
                                                  notice.soa.value))
        except (dns.exception.DNSException, ValueError):
            log.warning("notify_soa_unusable zone=%s value=%r", notice.zone, notice.soa.value)
    return msg.to_wire()


def question_of(zone: str) -> tuple[tuple[bytes, ...], int, int]:
    """(lower-case labels, qtype, qclass) a reply's question must have."""
    labels = tuple(lab.lower() for lab in dns.name.from_text(zone).labels if lab)
    return labels, wire.T_SOA, wire.C_IN


def reply_rcode(data: bytes, qid: int, question: tuple[tuple[bytes, ...], int, int]
                ) -> int | None:
    """The rcode of ``data`` if it is the reply to our NOTIFY ``qid`` (QR=1,
    opcode NOTIFY, one question equal to ours), else None."""
    if len(data) < 12 or int.from_bytes(data[:2], "big") != qid:
        return None
    flags = int.from_bytes(data[2:4], "big")
    if not flags & wire.QR or (flags >> 11) & 0xF != OPCODE_NOTIFY or data[4:6] != b"\x00\x01":
        return None
    try:
        labels, end = wire.read_name(data, 12, what="question")
    except ValueError:  # malformed: ignored
        return None
    if end + 4 > len(data):
        return None
    qtype = int.from_bytes(data[end:end + 2], "big")
    qclass = int.from_bytes(data[end + 2:end + 4], "big")
    if (tuple(lab.lower() for lab in labels), qtype, qclass) != question:
        return None
    return flags & 0xF


# the TSIG errors a secondary can answer with (RFC 8945 section 5.3.2);
# dns.rcode.to_text would call 16 BADVERS
TSIG_ERRORS = {dns.rcode.BADSIG: "BADSIG", dns.rcode.BADKEY: "BADKEY",
               dns.rcode.BADTIME: "BADTIME", dns.rcode.BADTRUNC: "BADTRUNC"}


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a matching reply to a signed NOTIFY was not taken: ``result``, what
    the exchange ends with if no verified reply follows ("bad_tsig",
    "tsig_error"), and ``reason``, key=value text for the log."""

    result: str
    reason: str


Verify = Callable[[bytes], Rejection | None]


def tsig_rejection(data: bytes, key: dns.tsig.Key, request_mac: bytes) -> Rejection | None:
    """None when ``data``, a reply matching our NOTIFY signed with ``key``
    (MAC ``request_mac``), is signed with ``key`` over that MAC within its
    fudge (RFC 8945 section 5.3, verified by dnspython); else why not.

    A TSIG error from the secondary (BADKEY, BADSIG, BADTIME, BADTRUNC) is
    rejected too, as its own result, rather than ending the exchange: RFC
    8945 section 5.4 says a reply whose TSIG is unsigned (as section 5.3.2
    makes BADKEY and BADSIG answers) or does not verify should not be
    accepted, the client logging it and waiting for a signed reply until
    it times out. Ending on it would let anyone who can forge the target's
    address stop the retransmissions with a forged BADSIG, the hole this
    check closes; going on costs at most the ``Timing.tries`` datagrams a
    silent target costs, and the result ("tsig_error") still tells the
    operator that the keys or clocks disagree."""
    try:
        plain = dns.message.from_wire(data, keyring=False)  # parsed, TSIG not checked
    except Exception as exc:  # dnspython raises many types on hostile bytes
        return Rejection("bad_tsig", f"reason=malformed error={type(exc).__name__}")
    tsig = plain.tsig
    if tsig is None:
        return Rejection("bad_tsig", "reason=unsigned")
    if tsig[0].error:
        return Rejection("tsig_error", "reason=tsig_error " + _tsig_error(tsig[0]))
    try:
        dns.message.from_wire(data, keyring={key.name: key}, request_mac=request_mac)
    except dns.message.UnknownTSIGKey:
        return Rejection("bad_tsig", f"reason=unknown_key key={tsig.name}")
    except (dns.tsig.BadSignature, dns.tsig.BadKey):
        return Rejection("bad_tsig", "reason=bad_signature")
    except dns.tsig.BadTime:
        return Rejection("bad_tsig", f"reason=bad_time signed={tsig[0].time_signed}")
    except dns.tsig.BadAlgorithm:
        return Rejection("bad_tsig", f"reason=bad_algorithm algorithm={tsig[0].algorithm}")
    except Exception as exc:  # as above: never into the event loop
        return Rejection("bad_tsig", f"reason=malformed error={type(exc).__name__}")
    return None


def _tsig_error(rdata: dns.rdtypes.ANY.TSIG.TSIG) -> str:
    """``error=NAME``, and for BADTIME the secondary's clock (RFC 8945 section
    5.4.3 asks for it to be logged: the skew is what to fix)."""
    text = f"error={TSIG_ERRORS.get(rdata.error, rdata.error)}"
    if rdata.error == dns.rcode.BADTIME and len(rdata.other) == 6:
        text += f" their_time={int.from_bytes(rdata.other, 'big')} our_time={int(time.time())}"
    return text


def show(target: Target) -> str:
    host, port = target
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Exchange(asyncio.DatagramProtocol):
    """One target's socket: ``answer`` gets the first matching reply's rcode
    that ``verify`` (the TSIG check of a signed NOTIFY) does not reject.

    Without ``verify`` (an unsigned NOTIFY) a reply's TSIG, if any, is not
    checked: there is no key to check it with, and refusing such a reply
    would protect nothing (a forger would leave the TSIG off and be taken),
    while a secondary that signs its answers anyway would look silent. RFC
    8945 expects an unsigned answer to an unsigned request; we accept both.
    """

    def __init__(self, target: Target, qid: int,
                 question: tuple[tuple[bytes, ...], int, int],
                 verify: Verify | None, serial: int) -> None:
        self.target = target
        self.ip = ipaddress.ip_address(target[0])
        self.qid = qid
        self.question = question
        self.verify = verify
        self.serial = serial
        self.answer: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self.ignored = 0
        self.rejected: Rejection | None = None  # the last rejected reply's

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        if self.answer.done():
            return
        rcode = reply_rcode(data, self.qid, self.question) if self._from_target(addr) else None
        if rcode is None:
            self.ignored += 1
            log.debug("notify_reply_ignored target=%s from=%s bytes=%d", show(self.target),
                      addr[:2], len(data))
            return
        rejection = self.verify(data) if self.verify is not None else None
        if rejection is not None:
            self._reject(rejection, rcode)
            return
        self.answer.set_result(rcode)

    def _reject(self, rejection: Rejection, rcode: int) -> None:
        """Remember ``rejection``; a warning for the round's first, debug after
        (a secondary answering every retransmission so warns once a serial)."""
        level = logging.WARNING if self.rejected is None else logging.DEBUG
        self.rejected = rejection
        log.log(level, "notify_reply_rejected target=%s serial=%d %s rcode=%d",
                show(self.target), self.serial, rejection.reason, rcode)

    def error_received(self, exc: Exception) -> None:  # e.g. ICMP port unreachable
        log.debug("notify_socket_error target=%s error=%r", show(self.target), exc)

    def _from_target(self, addr: tuple[str | object, ...]) -> bool:
        try:
            ip = ipaddress.ip_address(str(addr[0]).partition("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return ip == self.ip and addr[1] == self.target[1]


class Notifier:
    """Sends NOTIFY rounds to ``server().also_notify``; see the module doc.

    ``publish`` (on the event loop, or before it runs) never raises; a round
    starts once ``start`` was called (a serial published before waits for it).
    """

    def __init__(self, server: Callable[[], Server], counts: NotifyCounts, *,
                 timing: Timing | None = None) -> None:
        self.server = server
        self.counts = counts
        self.timing = timing if timing is not None else Timing()
        self.round: asyncio.Task[None] | None = None  # the round in flight
        self.last: Notice | None = None  # the newest serial published
        self._pending = False  # published before ``start``
        self._started = False
        self._state: dict[Target, str] = {}  # each target's last result (log on change)

    def publish(self, resolver: Resolver) -> None:
        """A Snapshot now serves (through ``resolver``): notify the targets if
        its serial is new."""
        try:
            notice = notice_of(resolver)
            if self.last is not None and not newer(notice.serial, self.last.serial):
                log.debug("notify_skipped serial=%d last=%d", notice.serial, self.last.serial)
                return
            self._cancel_round(notice.serial)
            self.last = notice
            self._pending = True
            if self._started:
                self._begin()
        except Exception:
            log.exception("notify_failed serial=%s",
                          getattr(getattr(resolver, "snapshot", None), "serial", None))

    def start(self) -> None:
        """The server listens: send the round of the serial published before, if any."""
        self._started = True
        try:
            if self._pending:
                self._begin()
        except Exception:
            log.exception("notify_failed at=start")

    async def stop(self) -> None:
        self._started = False
        task = self.round
        self._cancel_round(None)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # -- the round -------------------------------------------------------------

    def _cancel_round(self, by: int | None) -> None:
        """Cancel the round in flight (superseded by serial ``by``, or stopping)."""
        task, self.round = self.round, None
        if task is not None and not task.done():
            task.cancel()
            if by is not None and self.last is not None:
                log.info("notify_superseded serial=%d by=%d", self.last.serial, by)

    def _begin(self) -> None:
        self._pending = False
        notice = self.last
        server = self.server()
        targets = server.also_notify
        if notice is None or not targets:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop runs (a synchronous caller): the next start sends
            self._pending = True
            return
        self.round = loop.create_task(self._round(notice, targets, server),
                                      name=f"fedns-notify-{notice.serial}")

    async def _round(self, notice: Notice, targets: tuple[Target, ...], server: Server) -> None:
        started = time.monotonic()
        try:
            policy = transfer_policy(server)
            base = notify_message(notice, 0)
        except ValueError as exc:
            log.error("notify_failed serial=%d error=%s", notice.serial, exc)
            return
        question = question_of(notice.zone)
        log.info("notify_round serial=%d targets=%d signed=%s", notice.serial, len(targets),
                 policy.key is not None)

        def message(qid: int) -> tuple[bytes, Verify | None]:
            """The NOTIFY with ID ``qid``, and the check of its replies' TSIG
            when it is signed."""
            data = qid.to_bytes(2, "big") + base[2:]
            key = policy.key
            if key is None:
                return data, None
            signed, mac = policy.sign_request(data)
            return signed, functools.partial(tsig_rejection, key=key, request_mac=mac)

        results = await asyncio.gather(
            *(self._exchange(t, message, question, notice.serial) for t in targets),
            return_exceptions=True)
        summary: dict[str, int] = {}
        for target, result in zip(targets, results, strict=True):
            if isinstance(result, BaseException):
                log.error("notify_failed target=%s serial=%d error=%r", show(target),
                          notice.serial, result)
                continue
            summary[result] = summary.get(result, 0) + 1
        log.info("notify_done serial=%d seconds=%.3f %s", notice.serial,
                 time.monotonic() - started,
                 " ".join(f"{k}={v}" for k, v in sorted(summary.items())))

    async def _exchange(self, target: Target,
                        message: Callable[[int], tuple[bytes, Verify | None]],
                        question: tuple[tuple[bytes, ...], int, int], serial: int) -> str:
        """One target: send, wait, send again...; the result (also counted)."""
        loop = asyncio.get_running_loop()
        qid = secrets.randbelow(1 << 16)
        data, verify = message(qid)
        try:
            transport, proto = await loop.create_datagram_endpoint(
                lambda: _Exchange(target, qid, question, verify, serial), remote_addr=target)
        except OSError as exc:
            return self._done(target, serial, "send_failed", 0, repr(exc))
        try:
            tries = 0
            for wait in self.timing.waits():
                transport.sendto(data)
                tries += 1
                done, _ = await asyncio.wait((proto.answer,), timeout=wait)
                if done:
                    rcode = proto.answer.result()
                    return self._done(target, serial, RESULTS.get(rcode, "other_rcode"), tries,
                                      f"rcode={rcode}")
                log.debug("notify_retry target=%s serial=%d tries=%d", show(target), serial,
                          tries)
            if proto.rejected is not None:  # answered, never verifiably
                return self._done(target, serial, proto.rejected.result, tries,
                                  proto.rejected.reason)
            return self._done(target, serial, "timeout", tries, "")
        finally:
            transport.close()

    def _done(self, target: Target, serial: int, result: str, tries: int, detail: str) -> str:
        self.counts.count(show(target), result)
        before = self._state.get(target)
        self._state[target] = result
        where = f"target={show(target)} serial={serial} tries={tries}"
        if result == "acknowledged":
            if before not in (None, "acknowledged"):
                log.info("notify_acknowledged %s (after %s)", where, before)
            else:
                log.debug("notify_acknowledged %s", where)
        elif result == before:
            log.info("notify_%s %s %s", result, where, detail)
        else:  # logged at warning once, when the target starts answering so
            log.warning("notify_%s %s %s", result, where, detail)
        return result
