"""Hostile input, one table: every row goes through real sockets to a DnsServer
on 127.0.0.1 (port 0) and has its expected response.

Packet rows are sent over UDP and over TCP. Over TCP each packet is followed
on the same connection by a valid sentinel query, so "dropped" means: no reply
for it, and the connection still serves the next query. Stream rows attack the
TCP framing itself (length prefix, zero length, slowloris, pipelining). After
every row the server must still answer and must not have caught an unexpected
exception (``metrics.errors`` counts those).

Two servers run: ``plain`` (no CH answers, NOTIFY from nobody) and
``configured`` (version.bind / id.server, NOTIFY allowed from 127.0.0.5).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import dns.edns
import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rdataclass
import pytest
import pytest_asyncio

from dnsserver.server import DnsServer
from tests.dnsserver import zonefixture as zf

Z = zf.ZONE
IDLE = 0.5
NOTIFIER = "127.0.0.5"


def header(qid: int = 0x1234, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0,
           ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


QNAME = b"\x03www\x07example\x03com\x00"
QUESTION = QNAME + b"\x00\x01\x00\x01"
OPT = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
A_RECORD = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04\xc0\x00\x02\x01"


def query(name: str, rtype: str, *, qid: int = 0x1234, rdclass: str = "IN",
          opcode: dns.opcode.Opcode = dns.opcode.QUERY, **kw: object) -> bytes:
    q = dns.message.make_query(name, rtype, rdclass=rdclass, id=qid, **kw)  # type: ignore[arg-type]
    q.set_opcode(opcode)
    return q.to_wire()


@dataclass(frozen=True)
class Expect:
    """What the reply must look like; ``rcode=None`` means no reply at all."""

    rcode: str | None
    answers: int | None = None  # records in the answer section
    tc: bool = False
    question: bool = True  # the question is echoed
    max_size: int | None = None
    check: Callable[[dns.message.Message], bool] | None = None


@dataclass(frozen=True)
class Row:
    id: str
    packet: bytes | None = None  # a packet row (UDP and TCP) ...
    stream: Callable[[Target], Awaitable[None]] | None = None  # ... or a TCP stream row
    expect: Expect = field(default_factory=lambda: Expect(None))
    server: str = "plain"
    source: str = "127.0.0.1"
    udp_only: bool = False  # the expectation is about UDP sizes


@dataclass
class Target:
    servers: dict[str, DnsServer]
    port: int


# -- stream rows -------------------------------------------------------------------


async def _closed_without_reply(reader: asyncio.StreamReader, within: float) -> None:
    assert await asyncio.wait_for(reader.read(), within) == b""


async def length_larger_than_data(t: Target) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", t.port)
    writer.write(struct.pack("!H", 512) + query(f"www.{Z}", "A"))  # 33 bytes, not 512
    writer.write_eof()  # the client gives up: we close, nothing is answered
    await _closed_without_reply(reader, 3)
    writer.close()


async def length_larger_than_data_idle(t: Target) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", t.port)
    writer.write(struct.pack("!H", 65535) + query(f"www.{Z}", "A"))
    await _closed_without_reply(reader, IDLE + 3)  # waits for the rest: idle timeout
    writer.close()


async def zero_length(t: Target) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", t.port)
    writer.write(b"\x00\x00")
    await _closed_without_reply(reader, 3)
    writer.close()


async def zero_length_after_query(t: Target) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", t.port)
    wire = query(f"www.{Z}", "A", qid=77)
    writer.write(struct.pack("!H", len(wire)) + wire + b"\x00\x00")
    size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 3))[0]
    reply = dns.message.from_wire(await reader.readexactly(size))
    assert reply.id == 77 and reply.rcode() == dns.rcode.NOERROR
    await _closed_without_reply(reader, 3)  # the zero-length frame closes it
    writer.close()


async def slowloris(t: Target) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", t.port)
    writer.write(b"\x00")  # half a length prefix, then nothing
    loop = asyncio.get_running_loop()
    started = loop.time()
    await _closed_without_reply(reader, IDLE + 3)
    assert loop.time() - started >= IDLE * 0.8  # closed by the idle timer, not at once
    writer.close()


async def pipelined_1000(t: Target) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", t.port)
    names = [f"www.{Z}", zf.GLOBAL, f"nope.{Z}", f"alias.{Z}", Z]
    sent: dict[int, dns.message.Message] = {}
    blob = bytearray()
    for i in range(1000):
        q = dns.message.make_query(names[i % len(names)], "A", id=i)
        sent[i] = q
        wire = q.to_wire()
        blob += struct.pack("!H", len(wire)) + wire
    writer.write(bytes(blob))
    await writer.drain()
    seen = set()
    for _ in range(1000):
        size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 10))[0]
        reply = dns.message.from_wire(await reader.readexactly(size))
        assert sent[reply.id].is_response(reply)
        seen.add(reply.id)
    assert seen == set(range(1000))
    writer.close()


def _ch(text: str) -> Callable[[dns.message.Message], bool]:
    return lambda m: m.answer[0][0].strings == (text.encode(),) \
        and m.answer[0].rdclass == dns.rdataclass.CH


def _opt(payload: int) -> Callable[[dns.message.Message], bool]:
    return lambda m: m.edns == 0 and m.payload == payload


LONG_NAME = (b"\x3f" + b"a" * 63) * 4 + b"\x00"  # 257 bytes
TABLE = [
    Row("truncated-header", b"\x12\x34\x01\x00\x00"),
    Row("header-only-qr0", header()[:11]),
    Row("qdcount-0", header(qd=0), expect=Expect("FORMERR", question=False)),
    Row("qdcount-2", header(qd=2) + QUESTION + QUESTION, expect=Expect("FORMERR", question=False)),
    Row("qdcount-65535", header(qd=65535) + QUESTION, expect=Expect("FORMERR", question=False)),
    Row("answer-record-in-query", header(an=1) + QUESTION + A_RECORD, expect=Expect("FORMERR")),
    Row("authority-record-in-query", header(ns=1) + QUESTION + A_RECORD,
        expect=Expect("FORMERR")),
    Row("qr-set", header(flags=0x8100) + QUESTION),
    Row("qr-set-reply-shaped", header(flags=0x8400, an=1) + QUESTION + A_RECORD),
    Row("pointer-loop", header() + b"\xc0\x0c\x00\x01\x00\x01",
        expect=Expect("FORMERR", question=False)),
    Row("pointer-loop-two-hops", header() + b"\x01a\xc0\x0e\x00\x01\x00\x01",
        expect=Expect("FORMERR", question=False)),
    Row("forward-pointer", header() + b"\x03www\xc0\x14\x00\x01\x00\x01\x03com\x00",
        expect=Expect("FORMERR", question=False)),
    Row("pointer-past-end", header() + b"\x03www\xc3\xff\x00\x01\x00\x01",
        expect=Expect("FORMERR", question=False)),
    Row("label-64", header() + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01",
        expect=Expect("FORMERR", question=False)),
    Row("label-type-01", header() + b"\x41" + b"a" * 1 + b"\x00\x00\x01\x00\x01",
        expect=Expect("FORMERR", question=False)),
    Row("name-257", header() + LONG_NAME + b"\x00\x01\x00\x01",
        expect=Expect("FORMERR", question=False)),
    Row("name-255-ok", header() + (b"\x3f" + b"a" * 63) * 3 + b"\x3d" + b"b" * 61 + b"\x00"
        + b"\x00\x01\x00\x01", expect=Expect("REFUSED")),  # legal length, outside the zone
    Row("opcode-iquery", query(Z, "SOA", opcode=dns.opcode.IQUERY), expect=Expect("NOTIMP")),
    Row("opcode-status", query(Z, "SOA", opcode=dns.opcode.STATUS), expect=Expect("NOTIMP")),
    Row("opcode-update", header(flags=0x2800) + QUESTION, expect=Expect("NOTIMP")),
    Row("opcode-15", header(flags=0x7800, qd=0), expect=Expect("NOTIMP", question=False)),
    Row("notify-not-configured", query(Z, "SOA", opcode=dns.opcode.NOTIFY),
        expect=Expect("REFUSED")),
    Row("notify-other-client", query(Z, "SOA", opcode=dns.opcode.NOTIFY),
        server="configured", expect=Expect("REFUSED")),
    Row("notify-allowed-client", query(Z, "SOA", opcode=dns.opcode.NOTIFY),
        server="configured", source=NOTIFIER,
        expect=Expect("NOERROR", check=lambda m: bool(m.flags & dns.flags.AA))),
    Row("class-ch-version-not-configured", query("version.bind.", "TXT", rdclass="CH"),
        expect=Expect("REFUSED")),
    Row("class-ch-version-bind", query("version.bind.", "TXT", rdclass="CH"),
        server="configured", expect=Expect("NOERROR", answers=1, check=_ch("fedns-adv"))),
    Row("class-ch-id-server", query("id.server.", "TXT", rdclass="CH"),
        server="configured", expect=Expect("NOERROR", answers=1, check=_ch("ns-adv"))),
    Row("class-ch-other-name", query("authors.bind.", "TXT", rdclass="CH"),
        server="configured", expect=Expect("REFUSED")),
    Row("class-any", query(f"www.{Z}", "A", rdclass="ANY"), expect=Expect("REFUSED")),
    Row("class-any-configured", query("version.bind.", "TXT", rdclass="ANY"),
        server="configured", expect=Expect("REFUSED")),
    Row("two-opt", header(ar=2) + QUESTION + OPT + OPT, expect=Expect("FORMERR")),
    Row("opt-not-at-root", header(ar=1) + QUESTION + b"\x01a\x00\x00\x29\x04\xd0" + bytes(6),
        expect=Expect("FORMERR")),
    Row("opt-in-answer-section", header(an=1, ar=0) + QUESTION + OPT, expect=Expect("FORMERR")),
    Row("edns-version-1", header(ar=1) + QUESTION + b"\x00\x00\x29\x04\xd0\x00\x01\x00\x00\x00\x00",
        expect=Expect("BADVERS", answers=0)),
    # payload < 512 is treated as 512: a 120-byte answer is not truncated ...
    Row("edns-payload-100-fits-512", query(Z, "NS", use_edns=0, payload=100), udp_only=True,
        expect=Expect("NOERROR", answers=2, check=_opt(1232))),
    # ... and a 684-byte one is (TC=1, within 512)
    Row("edns-payload-100-big", query(f"big.{Z}", "A", use_edns=0, payload=100), udp_only=True,
        expect=Expect("NOERROR", answers=0, tc=True, max_size=512)),
    Row("edns-payload-0", query(f"www.{Z}", "A", use_edns=0, payload=0),
        expect=Expect("NOERROR", answers=1, check=_opt(1232))),
    # payload 65535 is capped by the server's edns_udp_size (1232): big fits whole
    Row("edns-payload-65535", query(f"big.{Z}", "A", use_edns=0, payload=65535),
        expect=Expect("NOERROR", answers=zf.BIG_COUNT, max_size=1232, check=_opt(1232))),
    Row("no-edns-big", query(f"big.{Z}", "A"), udp_only=True,
        expect=Expect("NOERROR", answers=0, tc=True, max_size=512)),
    Row("trailing-garbage", header() + QUESTION + b"\xff" * 40, expect=Expect("FORMERR")),
    Row("tcp-length-larger-than-data-eof", stream=length_larger_than_data),
    Row("tcp-length-larger-than-data-idle", stream=length_larger_than_data_idle),
    Row("tcp-zero-length", stream=zero_length),
    Row("tcp-zero-length-after-query", stream=zero_length_after_query),
    Row("tcp-slowloris", stream=slowloris),
    Row("tcp-1000-pipelined", stream=pipelined_1000),
]


# -- transports --------------------------------------------------------------------


async def send_udp(port: int, data: bytes, source: str, expect_reply: bool) -> bytes | None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        sock.bind((source, 0))
        sock.connect(("127.0.0.1", port))
        await loop.sock_sendall(sock, data)
        try:
            return await asyncio.wait_for(loop.sock_recv(sock, 65535),
                                          2 if expect_reply else 0.3)
        except TimeoutError:
            return None
    finally:
        sock.close()


SENTINEL_ID = 0xBEEF


async def send_tcp(port: int, data: bytes, source: str) -> bytes | None:
    """``data`` then a sentinel query on one connection: the reply to ``data`` or None."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    try:
        sentinel = query(f"www.{Z}", "A", qid=SENTINEL_ID)
        writer.write(struct.pack("!H", len(data)) + data
                     + struct.pack("!H", len(sentinel)) + sentinel)
        replies = []
        for _ in range(2):
            size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 3))[0]
            reply = await reader.readexactly(size)
            replies.append(reply)
            if reply[:2] == SENTINEL_ID.to_bytes(2, "big") and data[:2] != reply[:2]:
                break
        assert dns.message.from_wire(replies[-1]).id == SENTINEL_ID, "sentinel not answered"
        return replies[0] if len(replies) == 2 else None
    finally:
        writer.close()


def verify(row: Row, data: bytes | None, proto: str) -> None:
    exp = row.expect
    if exp.rcode is None:
        assert data is None, f"{proto}: expected no reply, got {data!r}"
        return
    assert data is not None, f"{proto}: no reply"
    assert row.packet is not None and data[:2] == row.packet[:2], f"{proto}: ID"
    # dnspython reads an UPDATE's question as a zone section (SOA only): header only
    msg = dns.message.from_wire(data) if (data[2] >> 3) & 0xF != 5 else None
    rcode = dns.rcode.to_text(msg.rcode() if msg else data[3] & 0xF)
    assert rcode == exp.rcode, f"{proto}: rcode {rcode}"
    assert bool(data[2] & 0x02) == (exp.tc and proto == "udp"), f"{proto}: TC"
    qd = (data[4] << 8) | data[5]
    assert qd == (1 if exp.question else 0), f"{proto}: QDCOUNT {qd}"
    if exp.max_size is not None and proto == "udp":
        assert len(data) <= exp.max_size, f"{proto}: {len(data)} bytes"
    if msg is not None:
        if exp.answers is not None and not (exp.tc and proto == "tcp"):
            got = sum(len(rrset) for rrset in msg.answer)
            assert got == exp.answers, f"{proto}: {got} answers"
        if exp.check is not None:
            assert exp.check(msg), f"{proto}: check failed on {msg}"


# -- the test ----------------------------------------------------------------------


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def target() -> AsyncIterator[Target]:
    plain = DnsServer(zf.config(tcp_idle_timeout=IDLE), zf.locator(), registry=None)
    configured = DnsServer(
        zf.config(tcp_idle_timeout=IDLE, version="fedns-adv", identity="ns-adv",
                  notify_allow=(ipaddress.ip_network(f"{NOTIFIER}/32"),)),
        zf.locator(), registry=None)
    servers = {"plain": plain, "configured": configured}
    for srv in servers.values():
        assert srv.update(zf.snapshot())
        await srv.start()
    try:
        yield Target(servers, plain.addresses[0][1])
    finally:
        for srv in servers.values():
            await srv.stop()


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("row", TABLE, ids=lambda r: r.id)
async def test_adversarial(row: Row, target: Target) -> None:
    server = target.servers[row.server]
    port = server.addresses[0][1]
    if row.stream is not None:
        await row.stream(Target(target.servers, port))
    else:
        assert row.packet is not None
        verify(row, await send_udp(port, row.packet, row.source, row.expect.rcode is not None),
               "udp")
        if not row.udp_only:
            verify(row, await send_tcp(port, row.packet, row.source), "tcp")
    assert server.metrics.errors == 0, "an exception reached the query handler"
    # the server is unharmed: UDP and TCP still answer
    for tcp in (False, True):
        wire = query(zf.GLOBAL, "A", qid=4242)
        reply = await (send_tcp_plain(port, wire) if tcp else send_udp(port, wire, "127.0.0.1",
                                                                         True))
        assert reply is not None and dns.message.from_wire(reply).rcode() == dns.rcode.NOERROR


async def send_tcp_plain(port: int, wire: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(struct.pack("!H", len(wire)) + wire)
        size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 3))[0]
        return await reader.readexactly(size)
    finally:
        writer.close()
