"""Zone transfers (AXFR, and IXFR answered as AXFR), by policy.

``TransferPolicy`` decides who may transfer (``admit``) and signs the replies
(``sign``); ``transfer_policy(server)`` is the one policy object of a server
configuration, shared by both transports:

- REFUSED unless the client address is in ``server.transfer_allow``;
- when ``server.transfer_tsig`` is set, the query must carry a valid TSIG
  (HMAC-SHA256) with that key: unsigned -> REFUSED, a bad key, signature or
  time -> NOTAUTH; every reply to a verified query is signed (RFC 8945,
  multi-message chaining).

Over TCP, ``XfrResponder.frames(data, client)`` returns None for anything that
is not an AXFR/IXFR query (the caller answers it as usual) and otherwise the
list of reply messages to send on the connection:

- the policy's REFUSED/NOTAUTH;
- REFUSED for a name other than the zone apex or a class other than IN;
- FORMERR for an IXFR query whose authority section is not one SOA record of
  the question's name and class (``wire.parse_query`` decides, as over UDP);
- an IXFR whose SOA serial is not older than the zone's (RFC 1982 serial
  arithmetic) gets the current SOA alone (RFC 1995 section 2: up to date);
- otherwise the zone as served to a client of unknown locality (the static
  view, ``Snapshot.static_view``): SOA first, every other record, SOA last,
  in messages of at most ``MESSAGE_SIZE`` bytes. IXFR gets the same full
  transfer (RFC 1995 section 4 allows it: we keep no history).

Over UDP (``udp_ixfr``, called by the handler's full path): AXFR is refused
(RFC 5936 section 4.2: AXFR over UDP is not defined); an IXFR from a client
the policy admits gets the current SOA alone (RFC 1995 section 2: a reply
that does not fit in UDP is the current SOA, so the client retries over TCP;
our reply is the whole zone), and from any other client REFUSED.

Both count in ``fedns_dns_xfr_total`` (``metrics.TransferCounts``) by
``proto`` ("tcp", "udp") and ``result``, the same results for both: "ok"
(the transfer, or over UDP the current SOA), "refused" (client not allowed,
or a name or class that is not the zone's), "unsigned", "notauth",
"formerr" (a bad IXFR authority section; over UDP counted by the handler,
which parses first) and "servfail".

Record bytes are built once per Snapshot and reused for every transfer.
Uses dnspython (TSIG and rdata encoding); transfers are rare and allow-listed.
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
import logging
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TSIG
import dns.tsig

from config.model import Server
from dnsserver import wire
from dnsserver.errors import DropPacket, MalformedQuery
from dnsserver.metrics import TransferCounts
from dnsserver.resolver import Resolver
from healthwatch.snapshot import Record, Snapshot

log = logging.getLogger("dnsserver.xfr")

T_SOA = 6
T_TSIG = 250
T_IXFR = 251
T_AXFR = 252
REFUSED = 5
NOTAUTH = 9
SERVFAIL = 2
FORMERR = 1
MESSAGE_SIZE = 16384  # record bytes per message (TSIG adds its own on top)
FUDGE = 300

SnapshotSource = Callable[[], "Snapshot | None"]
Frames = Callable[[bytes, str], "list[bytes] | None"]


def xfr_qtype(data: bytes) -> int:
    """AXFR/IXFR code of a plain query (QR=0, opcode QUERY, one question), else 0."""
    if len(data) < 17 or data[2] & 0xF8 or data[4:6] != b"\x00\x01":
        return 0
    i = 12
    n = len(data)
    while i < n and data[i]:
        if data[i] & 0xC0:
            return 0
        i += 1 + data[i]
    if i + 3 > n:
        return 0
    qtype = (data[i + 1] << 8) | data[i + 2]
    return qtype if qtype in (T_AXFR, T_IXFR) else 0


def make_key(name: str, secret: str) -> dns.tsig.Key:
    """An HMAC-SHA256 TSIG key; ``secret`` is base64. Raises ValueError."""
    try:
        raw = base64.b64decode(secret, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("TSIG secret is not valid base64") from exc
    if not raw:
        raise ValueError("TSIG secret is empty")
    try:
        key_name = dns.name.from_text(name)
    except dns.exception.DNSException as exc:
        raise ValueError(f"bad TSIG key name {name!r}: {exc}") from exc
    return dns.tsig.Key(key_name, raw, dns.tsig.HMAC_SHA256)


def _rr_wire(rec: Record) -> bytes | None:
    """One record, uncompressed wire format; None if it cannot be encoded."""
    try:
        rtype = dns.rdatatype.from_text(rec.rtype)
        rdata = dns.rdata.from_text(dns.rdataclass.IN, rtype, rec.value)
        owner = dns.name.from_text(rec.name).to_wire()
        body = rdata.to_wire()
    except Exception:  # dnspython raises many types on bad rdata
        return None
    assert owner is not None and body is not None
    return owner + struct.pack("!HHIH", rtype, 1, rec.ttl, len(body)) + body


class ZoneImage:
    """The static view of one Snapshot as message bodies: (record count, bytes)."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.serial = snapshot.serial
        self.zone = snapshot.zone
        self.soa_serial = snapshot.serial  # the served SOA's SERIAL field
        soa: bytes | None = None
        rest: list[bytes] = []
        seen: set[Record] = set()
        skipped = 0
        for rec in snapshot.static_view():
            if rec in seen:
                continue
            seen.add(rec)
            wire = _rr_wire(rec)
            if wire is None:
                skipped += 1
                continue
            if rec.rtype == "SOA" and rec.name == snapshot.zone:
                if soa is None:
                    soa = wire
                    self.soa_serial = soa_serial(rec, snapshot.serial)
            else:
                rest.append(wire)
        self.soa = soa
        self.skipped = skipped
        self.bodies: list[tuple[int, bytes]] = []
        if soa is None:
            return
        count, size = 0, 0
        parts: list[bytes] = []
        for wire in (soa, *rest, soa):
            if parts and size + len(wire) > MESSAGE_SIZE:
                self.bodies.append((count, b"".join(parts)))
                count, size = 0, 0
                parts = []
            parts.append(wire)
            count += 1
            size += len(wire)
        self.bodies.append((count, b"".join(parts)))

    @property
    def records(self) -> int:
        return sum(count for count, _ in self.bodies)


@dataclass(frozen=True, slots=True)
class Admission:
    """What the policy decided for one query: ``result`` ("ok", "refused",
    "unsigned", "notauth"), the rcode of a refusal (NOERROR when admitted),
    the MAC of a verified signed query (None: unsigned) and the parsed query."""

    result: str
    rcode: int
    mac: bytes | None = None
    message: dns.message.Message | None = None


class TransferPolicy:
    """Who may transfer the zone, and the TSIG key its replies are signed with."""

    def __init__(self, allow: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...],
                 key: dns.tsig.Key | None = None) -> None:
        self.allow = allow
        self.key = key
        self.keyring = {key.name: key} if key is not None else None

    def allowed(self, client: str) -> bool:
        """Is the client address in the allow list?"""
        if not self.allow:
            return False
        try:
            packed = wire.packed_address(client)
        except (OSError, ValueError):
            return False
        return wire.in_networks(packed, self.allow)

    def admit(self, data: bytes, client: str) -> Admission:
        """The decision for the transfer query ``data`` from ``client``: its
        address, then (with a key) its TSIG."""
        if not self.allowed(client):
            return Admission("refused", REFUSED)
        try:
            msg = dns.message.from_wire(data, keyring=self.keyring, ignore_trailing=False)
        except (dns.message.UnknownTSIGKey, dns.tsig.PeerError, dns.tsig.BadSignature,
                dns.tsig.BadTime, dns.tsig.BadAlgorithm) as exc:
            log.warning("xfr_notauth client=%s error=%s", client, type(exc).__name__)
            return Admission("notauth", NOTAUTH)
        except dns.exception.DNSException:
            return Admission("refused", REFUSED)
        if self.key is not None and not msg.had_tsig:
            return Admission("unsigned", REFUSED)
        return Admission("ok", 0, msg.mac if msg.had_tsig else None, msg)

    def sign(self, wire: bytes, request_mac: bytes | None, ctx: object
             ) -> tuple[bytes, object]:
        """``wire`` with a TSIG record appended (if the query was signed)."""
        key = self.key
        if key is None or request_mac is None:
            return wire, None
        signed, ctx, _ = self._signed(key, wire, request_mac, ctx)
        return signed, ctx

    def sign_request(self, wire: bytes) -> tuple[bytes, bytes]:
        """``wire``, a request of ours (NOTIFY), signed with the key, and its
        MAC, which a reply's TSIG must cover (RFC 8945 section 5.3)."""
        assert self.key is not None, "sign_request() without a key"
        signed, _, mac = self._signed(self.key, wire, b"", None)
        return signed, mac

    @staticmethod
    def _signed(key: dns.tsig.Key, wire: bytes, request_mac: bytes, ctx: object
                ) -> tuple[bytes, object, bytes]:
        """(``wire`` with its TSIG record appended, the context for the next
        message of a transfer, the record's MAC)."""
        template = dns.rdtypes.ANY.TSIG.TSIG(
            dns.rdataclass.ANY, dns.rdatatype.TSIG, key.algorithm, 0, FUDGE, b"",
            (wire[0] << 8) | wire[1], 0, b"")  # type: ignore[no-untyped-call]
        tsig, ctx = dns.tsig.sign(wire, key, template, int(time.time()), request_mac,
                                  ctx, True)  # type: ignore[no-untyped-call]
        rdata = tsig.to_wire()
        owner = key.name.to_wire()
        assert rdata is not None and owner is not None
        arcount = ((wire[10] << 8) | wire[11]) + 1
        signed = (wire[:10] + arcount.to_bytes(2, "big") + wire[12:] + owner
                  + struct.pack("!HHIH", T_TSIG, dns.rdataclass.ANY, 0, len(rdata)) + rdata)
        return signed, ctx, bytes(tsig.mac)


@functools.lru_cache(maxsize=8)
def transfer_policy(server: Server) -> TransferPolicy:
    """The transfer policy ``server`` configures (refusing everyone by default):
    one object per configuration, whichever transport asks. Raises ValueError
    for a bad TSIG secret."""
    tsig = server.transfer_tsig
    key = make_key(tsig.name, tsig.secret) if tsig is not None else None
    return TransferPolicy(server.transfer_allow, key)


def serial_current(client: int, ours: int) -> bool:
    """Is the client's serial the same as ours or newer (RFC 1982 serial
    arithmetic; a difference of exactly 2**31 is undefined: not current)?"""
    return (client - ours) % (1 << 32) < (1 << 31)


def udp_ixfr(policy: TransferPolicy, q: wire.Query, data: bytes, client: str,
             resolver: Resolver, limit: int, counts: TransferCounts) -> bytes | None:
    """The reply to the IXFR query ``q`` (``data`` as received) over UDP, or
    None when the policy refuses it (the caller answers REFUSED as for any
    other client): the current SOA alone, signed when the query was. The
    outcome is counted in ``counts`` (proto "udp")."""
    admission = policy.admit(data, client)
    if admission.result in ("refused", "unsigned"):
        counts.count("udp", admission.result)
        log.debug("xfr_udp_refused client=%s reason=%s", client, admission.result)
        return None
    if admission.result != "ok":
        counts.count("udp", admission.result)
        return resolver.error(q, admission.rcode)
    if q.qclass != wire.C_IN or q.qname != resolver.zone:
        result, out = "refused", resolver.error(q, REFUSED)
    else:
        soa = resolver.current_soa(q, limit)
        if soa is None:
            result, out = "servfail", resolver.error(q, SERVFAIL)
        else:
            result, out = "ok", soa
    counts.count("udp", result)
    log.debug("xfr_udp_soa client=%s client_serial=%s rcode=%d", client, q.serial,
              out[3] & 0x0F)
    return policy.sign(out, admission.mac, None)[0]


class XfrResponder:
    """Answers AXFR/IXFR queries on TCP; see the module doc."""

    def __init__(self, server: Server, snapshot: SnapshotSource, *,
                 policy: TransferPolicy | None = None,
                 counts: TransferCounts | None = None) -> None:
        self.policy = policy if policy is not None else transfer_policy(server)
        self.snapshot = snapshot
        # shared with the handler, which counts IXFR over UDP (a fresh one: tests)
        self.counts = counts if counts is not None else TransferCounts()
        self._image: ZoneImage | None = None
        self._image_of: Snapshot | None = None

    # -- the query ---------------------------------------------------------------

    def frames(self, data: bytes, client: str) -> list[bytes] | None:
        """Reply messages for an AXFR/IXFR query; None for any other query."""
        if not xfr_qtype(data):
            return None
        try:
            return self._transfer(data, client)
        except Exception:
            log.exception("xfr_failed client=%s", client)
            self._count("servfail")
            return [_error(data, SERVFAIL)]

    def _transfer(self, data: bytes, client: str) -> list[bytes]:
        admission = self.policy.admit(data, client)
        if admission.result != "ok":
            return self._refuse(data, client, admission.result, admission.rcode)
        msg = admission.message
        request_mac = admission.mac
        question = _question(data)
        q = msg.question[0] if msg is not None and msg.question else None
        snapshot = self.snapshot()
        if (q is None or q.rdclass != dns.rdataclass.IN or snapshot is None
                or q.name != dns.name.from_text(snapshot.zone)):
            rcode = SERVFAIL if snapshot is None and q is not None else REFUSED
            self._count("servfail" if rcode == SERVFAIL else "refused")
            return [self.policy.sign(_error(data, rcode), request_mac, None)[0]]
        ixfr = xfr_qtype(data) == T_IXFR
        client_serial: int | None = None
        if ixfr:
            try:
                client_serial = wire.parse_query(data).serial
            except (MalformedQuery, DropPacket) as exc:
                log.info("xfr_refused client=%s reason=formerr error=%s", client, exc.reason)
                self._count("formerr")
                return [self.policy.sign(_error(data, FORMERR), request_mac, None)[0]]
        image = self._image_for(snapshot)
        soa = image.soa
        if soa is None:
            self._count("servfail")
            return [self.policy.sign(_error(data, SERVFAIL), request_mac, None)[0]]
        bodies = image.bodies
        if client_serial is not None and serial_current(client_serial, image.soa_serial):
            bodies = [(1, soa)]  # up to date: the current SOA alone (RFC 1995 section 2)
        qid = data[:2]
        flags = bytes((0x84, 0x00))  # QR, AA, opcode QUERY, NOERROR (RD not copied)
        out: list[bytes] = []
        ctx: object = None
        for index, (count, body) in enumerate(bodies):
            qd = b"\x00\x01" if index == 0 else b"\x00\x00"
            head = qid + flags + qd + struct.pack("!HHH", count, 0, 0)
            message = head + (question if index == 0 else b"") + body
            message, ctx = self.policy.sign(message, request_mac, ctx)
            out.append(message)
        self._count("ok")
        log.info("xfr_sent client=%s type=%s serial=%d client_serial=%s records=%d "
                 "messages=%d signed=%s", client, "IXFR" if ixfr else "AXFR", image.serial,
                 client_serial, sum(count for count, _ in bodies), len(out),
                 request_mac is not None)
        return out

    # -- helpers -------------------------------------------------------------------

    def _refuse(self, data: bytes, client: str, result: str, rcode: int) -> list[bytes]:
        self._count(result)
        log.info("xfr_refused client=%s reason=%s", client, result)
        return [_error(data, rcode)]

    def _count(self, result: str) -> None:
        self.counts.count("tcp", result)

    def _image_for(self, snapshot: Snapshot) -> ZoneImage:
        if self._image is None or self._image_of is not snapshot:
            self._image = ZoneImage(snapshot)
            self._image_of = snapshot
            if self._image.skipped:
                log.warning("xfr_records_skipped serial=%d count=%d", snapshot.serial,
                            self._image.skipped)
        return self._image


def soa_serial(rec: Record, default: int) -> int:
    """The SERIAL field of an SOA record (``default`` if it does not parse)."""
    fields = rec.value.split()
    try:
        return int(fields[2]) & 0xFFFFFFFF if len(fields) == 7 else default
    except ValueError:
        return default


def _question(data: bytes) -> bytes:
    """The question bytes of a query ``xfr_qtype`` accepted."""
    i = 12
    while data[i]:
        i += 1 + data[i]
    return data[12:i + 5]


def _error(data: bytes, rcode: int) -> bytes:
    """A reply with ``rcode`` and the query's question, no records."""
    flags = bytes((0x80 | (data[2] & 0x79), rcode))  # QR, opcode, RD kept
    return data[:2] + flags + b"\x00\x01\x00\x00\x00\x00\x00\x00" + _question(data)


def make_xfr(server: Server, snapshot: SnapshotSource, counts: TransferCounts) -> XfrResponder:
    """The responder ``server`` configures, with its ``transfer_policy``,
    counting into ``counts`` (``DnsMetrics.transfers``)."""
    return XfrResponder(server, snapshot, policy=transfer_policy(server), counts=counts)
