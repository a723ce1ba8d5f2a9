"""DNS wire format without dnslib: the query parser and the reply assembler.

Two parsers live here:

- ``fast_opt`` recognises only the common OPT record (version 0, at most one
  well-formed ECS) and returns ``None`` for anything else, so the caller
  falls back to the full path; the handler caches its result per distinct
  record, and reads the header and question itself.
- ``parse_query`` validates every query (RFC 1035, RFC 6891, RFC 7871) and
  raises ``DropPacket``/``MalformedQuery``; the full path uses it. A query
  carries no answer or authority records, except that an IXFR query may carry
  one: the client's SOA for the zone (RFC 1995 section 3), whose serial
  becomes ``Query.serial``.

The assembler (``assemble``, ``opt_record``, ``ecs_option``, ``short_reply``)
builds replies from a header, the client's question bytes and section bytes,
so both paths put the same bytes on the wire.

Cookies (RFC 7873): ``parse_query`` keeps the first COOKIE option of a
version-0 OPT record (``Edns.cookie``) and marks one of a length RFC 7873
section 5.2.2 answers with FORMERR (``Edns.cookie_malformed``);
``option_spans`` finds it for the fast path. What the reply carries is
decided by the handler (``dnsserver.cookies``) and handed to the assembler
as ``Edns.reply_options``, appended after ECS in the reply's OPT record.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass

from dnsserver.errors import DropPacket, MalformedQuery

# header flag bits (16-bit flags word)
QR = 0x8000
AA = 0x0400
TC = 0x0200
RD = 0x0100
RA = 0x0080
AD = 0x0020
CD = 0x0010

# opcodes
OP_QUERY = 0
OP_NOTIFY = 4

# rcodes (BADVERS is extended: 16 = ext-rcode 1 in OPT, header rcode 0)
NOERROR = 0
FORMERR = 1
SERVFAIL = 2
NXDOMAIN = 3
NOTIMP = 4
REFUSED = 5
BADVERS = 16
BADCOOKIE = 23  # ext-rcode 1 in OPT, header rcode 7 (RFC 7873 section 8)

# types and classes used by the protocol layer
T_A = 1
T_NS = 2
T_CNAME = 5
T_SOA = 6
T_TXT = 16
T_AAAA = 28
T_OPT = 41
T_DS = 43
T_HTTPS = 65
T_TKEY = 249
T_TSIG = 250
T_IXFR = 251
T_AXFR = 252
T_MAILB = 253
T_MAILA = 254
T_ANY = 255
C_IN = 1
C_CH = 3

OPT_ECS = 8
OPT_COOKIE = 10

MAX_NAME = 255
MAX_UDP = 65535


def meta_qtype(qtype: int) -> bool:
    """Is ``qtype`` a meta-TYPE (RFC 6895 section 3.1: OPT, and 128-255 but for
    the query types AXFR, IXFR, MAILA, MAILB and ANY): TKEY, TSIG and the
    unassigned 128-248? Such a question gets FORMERR, as BIND answers it (the
    RFCs name no rcode); fedns does not process TKEY."""
    return qtype == T_OPT or 128 <= qtype <= T_TSIG


@dataclass(frozen=True, slots=True)
class Ecs:
    """An EDNS Client Subnet option as received (RFC 7871)."""

    family: int  # 1 IPv4, 2 IPv6
    source: int  # SOURCE PREFIX-LENGTH
    raw: bytes  # option data as sent: FAMILY, SOURCE, SCOPE, ADDRESS
    address: bytes  # the address padded to 4 or 16 bytes


@dataclass(frozen=True, slots=True)
class Edns:
    udp_size: int  # as sent (may be < 512)
    version: int
    do: bool
    ecs: Ecs | None
    cookie: bytes | None = None  # the first COOKIE option's data as sent (version 0)
    cookie_malformed: bool = False  # a COOKIE option of a length RFC 7873 5.2.2 refuses
    # options the reply's OPT record carries after ECS (set by the handler: COOKIE)
    reply_options: bytes = b""


@dataclass(frozen=True, slots=True)
class Query:
    """A fully parsed query; names are uncompressed wire bytes."""

    qid: int
    flags: int
    opcode: int
    question: bytes | None  # name as sent + type + class; None if QDCOUNT != 1
    qname: bytes  # lower-cased wire name ("" when no question)
    labels: tuple[bytes, ...]  # lower-cased labels
    qtype: int
    qclass: int
    edns: Edns | None
    serial: int | None = None  # IXFR: the serial of the client's SOA (authority section)


# -- the fast path -----------------------------------------------------------


def fast_opt(raw: bytes) -> tuple[int, bool, bytes | None] | None:
    """Parse the one additional record of a common query, ``raw`` being
    everything after the question: a version-0 OPT at the root with at most
    one well-formed ECS option (other options ignored).

    Returns ``(udp_limit, do, ecs)`` where ``udp_limit`` is the client's
    payload size (at least 512) and ``ecs`` the ECS option body (FAMILY,
    SOURCE, SCOPE, ADDRESS as sent; see ``ecs_valid``) or None; None when the
    record is anything else (the full path then decides).
    """
    n = len(raw)
    if n < 11 or raw[0] or raw[1] or raw[2] != T_OPT:
        return None
    if raw[6]:  # EDNS version > 0: BADVERS, full path
        return None
    if 11 + ((raw[9] << 8) | raw[10]) != n:
        return None
    size = (raw[3] << 8) | raw[4]
    ecs: bytes | None = None
    j = 11
    while j < n:
        if j + 4 > n:
            return None
        code = (raw[j] << 8) | raw[j + 1]
        olen = (raw[j + 2] << 8) | raw[j + 3]
        j += 4
        if j + olen > n:
            return None
        if code == OPT_ECS:
            if ecs is not None:
                return None
            ecs = raw[j:j + olen]
            if not ecs_valid(ecs):
                return None
        j += olen
    return size if size > 512 else 512, bool(raw[7] & 0x80), ecs


def option_spans(raw: bytes, code: int) -> list[tuple[int, int]]:
    """Where the data of each option ``code`` lies in the OPT record ``raw``
    (as ``fast_opt`` takes it): (start, end) offsets into ``raw``, in order;
    a truncated option ends the walk."""
    spans: list[tuple[int, int]] = []
    n = len(raw)
    j = 11
    while j + 4 <= n:
        end = j + 4 + ((raw[j + 2] << 8) | raw[j + 3])
        if end > n:
            break
        if ((raw[j] << 8) | raw[j + 1]) == code:
            spans.append((j + 4, end))
        j = end
    return spans


def cookie_well_formed(data: bytes) -> bool:
    """Is ``data`` a COOKIE option's data of an allowed length: a client
    cookie (8 bytes) alone or with a server cookie of 8 to 32 bytes (RFC 7873
    section 4)? Any other gets FORMERR (section 5.2.2)."""
    n = len(data)
    return n == 8 or 16 <= n <= 40


def plain_name(name: bytes) -> bool:
    """Is ``name`` (wire format, ending in the root label) ordinary labels only,
    with nothing after the root label?"""
    i = 0
    last = len(name) - 1
    while i < last:
        length = name[i]
        if length > 63:
            return False
        i += length + 1
    return i == last


def ecs_valid(raw: bytes) -> bool:
    """``parse_ecs`` without the allocation: True iff it would accept ``raw``."""
    n = len(raw)
    if n < 4 or raw[0]:
        return False
    family = raw[1]
    source = raw[2]
    if family == 1:
        if source > 32:
            return False
    elif family != 2 or source > 128:
        return False
    if n - 4 != (source + 7) >> 3:
        return False
    return not (source & 7 and raw[-1] & (0xFF >> (source & 7)))


_PAD = (b"", bytes(4), bytes(16))


def ecs_address(raw: bytes) -> bytes:
    """The address of a valid ECS option body, padded to 4 or 16 bytes."""
    addr = raw[4:]
    return addr + _PAD[raw[1]][len(addr):]


def parse_ecs(raw: bytes) -> Ecs:
    """Validate an ECS option body; ``ValueError`` names what is wrong."""
    if len(raw) < 4:
        raise ValueError("ecs option shorter than 4 bytes")
    family = (raw[0] << 8) | raw[1]
    source = raw[2]
    if family == 1:
        width = 4
    elif family == 2:
        width = 16
    else:
        raise ValueError(f"ecs family {family} unknown")
    if source > width * 8:
        raise ValueError("ecs source prefix longer than the address")
    addr = raw[4:]
    if len(addr) != (source + 7) // 8:
        raise ValueError("ecs address length does not match source prefix")
    if source % 8 and addr[-1] & (0xFF >> (source % 8)):
        raise ValueError("ecs address has bits beyond the source prefix")
    padded = addr + bytes(width - len(addr))
    return Ecs(family, source, bytes(raw), padded)


V4_MAPPED = bytes(10) + b"\xff\xff"  # ::ffff:0:0/96, IPv4-mapped IPv6 (RFC 4291 2.5.5.2)


def packed_address(ip: str) -> bytes:
    """Socket address text -> 4 or 16 bytes (IPv4-mapped IPv6 becomes IPv4; a
    ``%zone`` suffix is dropped). Raises OSError for text that is no address."""
    if ":" in ip:
        raw = socket.inet_pton(socket.AF_INET6, ip.partition("%")[0])
        if raw[:12] == V4_MAPPED:
            return raw[12:]
        return raw
    return socket.inet_pton(socket.AF_INET, ip)


def in_networks(client: bytes,
                networks: Iterable[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    """Is the packed address ``client`` (4 or 16 bytes) in one of ``networks``?
    The access lists (NOTIFY, zone transfers) decide with it."""
    if len(client) not in (4, 16):
        return False
    ip = ipaddress.ip_address(client)
    return any(ip.version == net.version and ip in net for net in networks)


def is_private(address: bytes) -> bool:
    """RFC 1918/6598/4193, loopback, link-local and unspecified addresses; an
    IPv4-mapped IPv6 address is private when its IPv4 address is."""
    if len(address) == 16 and address[:12] == V4_MAPPED:
        address = address[12:]
    a = address[0]
    if len(address) == 4:
        b = address[1]
        return (a in (0, 10, 127) or (a == 172 and 16 <= b <= 31) or (a == 192 and b == 168)
                or (a == 169 and b == 254) or (a == 100 and 64 <= b <= 127))
    if a & 0xFE == 0xFC or (a == 0xFE and address[1] & 0xC0 == 0x80):
        return True
    return address[:15] == bytes(15) and address[15] in (0, 1)


# -- the full parser ---------------------------------------------------------


def read_name(data: bytes, off: int, *, what: str = "name") -> tuple[list[bytes], int]:
    """Read a (possibly compressed) name at ``off``: ``(labels, end_offset)``.

    Compression pointers must point strictly backwards from the segment they
    are in, which rules out loops; names longer than 255 bytes, reserved label
    types and truncated names raise ``ValueError``.
    """
    labels: list[bytes] = []
    total = 1
    end = -1
    floor = off
    pos = off
    n = len(data)
    while True:
        if pos >= n:
            raise ValueError(f"{what} runs past the end of the packet")
        length = data[pos]
        if length == 0:
            pos += 1
            break
        kind = length & 0xC0
        if kind == 0xC0:
            if pos + 1 >= n:
                raise ValueError(f"{what} has a truncated compression pointer")
            ptr = ((length & 0x3F) << 8) | data[pos + 1]
            if end < 0:
                end = pos + 2
            if ptr >= floor:
                raise ValueError(f"{what} has a forward or looping compression pointer")
            floor = ptr
            pos = ptr
            continue
        if kind:
            raise ValueError(f"{what} has a label longer than 63 bytes")
        if pos + 1 + length > n:
            raise ValueError(f"{what} runs past the end of the packet")
        labels.append(data[pos + 1:pos + 1 + length])
        total += length + 1
        if total > MAX_NAME:
            raise ValueError(f"{what} is longer than 255 bytes")
        pos += 1 + length
    return labels, end if end >= 0 else pos


def name_wire(labels: list[bytes] | tuple[bytes, ...]) -> bytes:
    return b"".join(bytes((len(lab),)) + lab for lab in labels) + b"\x00"


def parse_query(data: bytes) -> Query:
    """Parse and validate a query; raises ``DropPacket`` or ``MalformedQuery``."""
    n = len(data)
    if n < 12:
        raise DropPacket(reason="short_header")
    qid = (data[0] << 8) | data[1]
    flags = (data[2] << 8) | data[3]
    if flags & QR:
        raise DropPacket(reason="qr_set")
    opcode = (flags >> 11) & 0xF
    qdcount = (data[4] << 8) | data[5]
    ancount = (data[6] << 8) | data[7]
    nscount = (data[8] << 8) | data[9]
    arcount = (data[10] << 8) | data[11]

    def bad(reason: str, question: bytes | None = None) -> MalformedQuery:
        return MalformedQuery(reason=reason, qid=qid, flags=flags, question=question)

    if qdcount != 1:
        if opcode not in (OP_QUERY, OP_NOTIFY):
            records = ancount + nscount + arcount
            edns = _other_edns(data, 12, records) if qdcount == 0 else None
            return Query(qid, flags, opcode, None, b"", (), 0, 0, edns)
        raise bad(f"qdcount is {qdcount}")
    try:
        labels, pos = read_name(data, 12, what="question name")
    except ValueError as exc:
        raise bad(str(exc)) from None
    if pos + 4 > n:
        raise bad("question runs past the end of the packet")
    qtype = (data[pos] << 8) | data[pos + 1]
    qclass = (data[pos + 2] << 8) | data[pos + 3]
    lower = tuple(lab.lower() for lab in labels)
    question = name_wire(labels) + data[pos:pos + 4]
    pos += 4
    if opcode not in (OP_QUERY, OP_NOTIFY):
        edns = _other_edns(data, pos, ancount + nscount + arcount)
        return Query(qid, flags, opcode, question, name_wire(lower), lower, qtype, qclass, edns)
    serial: int | None = None
    if opcode == OP_QUERY and qtype == T_IXFR and not ancount and nscount == 1:
        try:
            serial, pos = _client_soa(data, pos, lower, qclass)
        except ValueError as exc:
            raise bad(str(exc), question) from None
        nscount = 0
    if opcode == OP_QUERY and (ancount or nscount):
        raise bad("query carries answer or authority records", question)
    try:
        edns, pos = _records(data, pos, ancount + nscount, arcount)
    except ValueError as exc:
        raise bad(str(exc), question) from None
    if pos != n:
        raise bad("trailing bytes after the last record", question)
    return Query(qid, flags, opcode, question, name_wire(lower), lower, qtype, qclass, edns,
                 serial)


def _client_soa(data: bytes, pos: int, qlabels: tuple[bytes, ...], qclass: int
                ) -> tuple[int, int]:
    """The IXFR client's SOA record at ``pos`` (RFC 1995 section 3: owner the
    question name, class the question's): (its serial, the offset after it);
    ``ValueError`` names what is wrong."""
    n = len(data)
    owner, pos = read_name(data, pos, what="IXFR authority owner")
    if pos + 10 > n:
        raise ValueError("IXFR authority record header runs past the end of the packet")
    rtype = (data[pos] << 8) | data[pos + 1]
    rclass = (data[pos + 2] << 8) | data[pos + 3]
    rdlen = (data[pos + 8] << 8) | data[pos + 9]
    pos += 10
    end = pos + rdlen
    if end > n:
        raise ValueError("IXFR authority record data runs past the end of the packet")
    if rtype != T_SOA or rclass != qclass:
        raise ValueError("IXFR authority record is not an SOA of the question's class")
    if tuple(lab.lower() for lab in owner) != qlabels:
        raise ValueError("IXFR authority SOA is not for the question name")
    try:
        _, at = read_name(data[:end], pos, what="IXFR SOA MNAME")
        _, at = read_name(data[:end], at, what="IXFR SOA RNAME")
    except ValueError as exc:
        raise ValueError(f"IXFR authority SOA rdata is malformed: {exc}") from None
    if at + 20 != end:
        raise ValueError("IXFR authority SOA rdata has the wrong length")
    return int.from_bytes(data[at:at + 4], "big"), end


def _records(data: bytes, pos: int, before: int, arcount: int) -> tuple[Edns | None, int]:
    """Read the ``before`` answer and authority records and the ``arcount``
    additional records from ``pos``: (the OPT record's EDNS or None, the
    offset after the last record); ``ValueError`` names what is wrong."""
    n = len(data)
    edns: Edns | None = None
    for index in range(before + arcount):
        owner, pos = read_name(data, pos, what="record owner")
        if pos + 10 > n:
            raise ValueError("record header runs past the end of the packet")
        rtype = (data[pos] << 8) | data[pos + 1]
        rclass = (data[pos + 2] << 8) | data[pos + 3]
        ttl = int.from_bytes(data[pos + 4:pos + 8], "big")
        rdlen = (data[pos + 8] << 8) | data[pos + 9]
        pos += 10
        if pos + rdlen > n:
            raise ValueError("record data runs past the end of the packet")
        if rtype == T_OPT:
            if index < before:
                raise ValueError("OPT record outside the additional section")
            if edns is not None:
                raise ValueError("more than one OPT record")
            if owner:
                raise ValueError("OPT record not at the root")
            edns = _parse_opt(rclass, ttl, data[pos:pos + rdlen])
        pos += rdlen
    return edns, pos


def _other_edns(data: bytes, pos: int, records: int) -> Edns | None:
    """The OPT record of a message with an opcode we do not implement, read
    as ``records`` resource records from ``pos`` (after the question), so
    that its NOTIMP carries an OPT record as RFC 6891 section 6.1.1 requires.
    The counts are the opcode's (UPDATE's: zone, prerequisites, updates,
    additional), so an OPT record is taken from any of them. None when there
    is none or the rest is not records ending the message: those sections
    may mean something else, so no FORMERR here."""
    try:
        edns, end = _records(data, pos, 0, records)
    except ValueError:
        return None
    return edns if end == len(data) else None


def _parse_opt(rclass: int, ttl: int, rdata: bytes) -> Edns:
    version = (ttl >> 16) & 0xFF
    do = bool(ttl & 0x8000)
    ecs: Ecs | None = None
    cookie: bytes | None = None
    malformed = False
    j = 0
    while j < len(rdata):
        if j + 4 > len(rdata):
            raise ValueError("truncated EDNS option header")
        code = (rdata[j] << 8) | rdata[j + 1]
        olen = (rdata[j + 2] << 8) | rdata[j + 3]
        j += 4
        if j + olen > len(rdata):
            raise ValueError("EDNS option runs past the OPT record")
        if code == OPT_ECS and version == 0:
            if ecs is not None:
                raise ValueError("more than one ECS option")
            ecs = parse_ecs(rdata[j:j + olen])
        elif code == OPT_COOKIE and version == 0:
            data = rdata[j:j + olen]
            if not cookie_well_formed(data):
                malformed = True
            elif cookie is None:  # as BIND: the first one counts
                cookie = data
        j += olen
    return Edns(rclass, version, do, ecs, cookie, malformed)


# -- the assembler -----------------------------------------------------------


def udp_limit(edns: Edns | None, server_max: int) -> int:
    """The largest UDP reply a client accepts (RFC 6891 section 6.2.5)."""
    if edns is None:
        return 512
    return min(max(512, edns.udp_size), max(512, server_max))


def opt_record(udp_size: int, *, do: bool, ext_rcode: int = 0, options: bytes = b"") -> bytes:
    """An OPT pseudo-record, version 0; only the DO flag is ever set."""
    return (b"\x00\x00\x29" + udp_size.to_bytes(2, "big") + bytes((ext_rcode, 0))
            + (b"\x80\x00" if do else b"\x00\x00") + len(options).to_bytes(2, "big") + options)


def ecs_option(ecs: Ecs, scope: int) -> bytes:
    """The ECS option of a reply: the query's FAMILY, SOURCE, ADDRESS and our SCOPE."""
    raw = ecs.raw
    return (b"\x00\x08" + len(raw).to_bytes(2, "big") + raw[:3] + bytes((scope,)) + raw[4:])


def reply_flags(qflags: int, *, rcode: int, aa: bool, tc: bool = False) -> int:
    """QR, the query's opcode, RD and CD copied; AA/TC as given; RA, AD, Z clear."""
    flags = QR | (qflags & (0x7800 | RD | CD)) | (rcode & 0xF)
    if aa:
        flags |= AA
    if tc:
        flags |= TC
    return flags


def short_reply(qid: int, flags: int, question: bytes | None, opt: bytes | None) -> bytes:
    """A reply with no records except the optional OPT (errors, truncation)."""
    header = (qid.to_bytes(2, "big") + flags.to_bytes(2, "big")
              + (b"\x00\x01" if question else b"\x00\x00") + b"\x00\x00\x00\x00"
              + (b"\x00\x01" if opt else b"\x00\x00"))
    return header + (question or b"") + (opt or b"")


def negative_reply(qid: int, flags: int, question: bytes, authority: bytes,
                   opt: bytes | None) -> bytes:
    """NXDOMAIN/NODATA: header, question, the SOA blob (or nothing), OPT."""
    return (qid.to_bytes(2, "big") + flags.to_bytes(2, "big") + b"\x00\x01\x00\x00"
            + (b"\x00\x01" if authority else b"\x00\x00")
            + (b"\x00\x01" if opt else b"\x00\x00") + question + authority + (opt or b""))


def assemble(qid: int, flags: int, question: bytes, body: bytes, opt: bytes | None) -> bytes:
    """Patch ``body`` (a packed message whose question has ``question``'s length)
    with the ID, flags, the client's question bytes and an appended OPT."""
    qend = 12 + len(question)
    if opt:
        arcount = ((body[10] << 8) | body[11]) + 1
        return (qid.to_bytes(2, "big") + flags.to_bytes(2, "big") + body[4:10]
                + arcount.to_bytes(2, "big") + question + body[qend:] + opt)
    return qid.to_bytes(2, "big") + flags.to_bytes(2, "big") + body[4:12] + question + body[qend:]


# -- the message packer --------------------------------------------------------

Name = tuple[bytes, ...]  # labels as they go on the wire (case kept)
RData = tuple["bytes | Name", ...]  # raw pieces and names to compress, in order
PackedRR = tuple[Name, bytes, RData]  # owner, TYPE+CLASS+TTL (8 bytes), rdata


def pack_message(qlabels: Name, qtype: int, qclass: int,
                 sections: tuple[tuple[PackedRR, ...], ...],
                 offsets: dict[Name, int] | None = None) -> bytes:
    """A message with ID 0 and flags 0: the question and the answer, authority
    and additional ``sections``. Names are compressed as dnslib does (each
    name's first suffix already written becomes a pointer to its first
    occurrence; suffixes compare case-sensitively), so the bytes equal
    dnslib's ``DNSRecord.pack`` for the same records. ``offsets``, if given,
    receives where each name suffix was first written."""
    buf = bytearray(4)
    buf += (b"\x00\x01" + len(sections[0]).to_bytes(2, "big") + len(sections[1]).to_bytes(2, "big")
            + len(sections[2]).to_bytes(2, "big"))
    seen: dict[Name, int] = {} if offsets is None else offsets

    def name(labels: Name) -> None:
        for i in range(len(labels)):
            suffix = labels[i:]
            at = seen.get(suffix)
            if at is not None:
                buf.extend((0xC0 | (at >> 8), at & 0xFF))
                return
            off = len(buf)
            if off < 0x4000:
                seen[suffix] = off
            lab = labels[i]
            buf.append(len(lab))
            buf.extend(lab)
        buf.append(0)

    name(qlabels)
    buf.extend(((qtype >> 8) & 0xFF, qtype & 0xFF, (qclass >> 8) & 0xFF, qclass & 0xFF))
    for section in sections:
        for owner, fixed, rdata in section:
            name(owner)
            buf += fixed
            at = len(buf)
            buf += b"\x00\x00"
            for piece in rdata:
                if type(piece) is bytes:
                    buf += piece
                else:
                    name(piece)  # type: ignore[arg-type]
            size = len(buf) - at - 2
            buf[at] = size >> 8
            buf[at + 1] = size & 0xFF
    return bytes(buf)
