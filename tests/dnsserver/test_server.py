"""The server over real sockets on 127.0.0.1 (port 0): dnspython and dig as clients."""

from __future__ import annotations

import asyncio
import re
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass

import dns.asyncquery
import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from dnsserver.server import DnsServer
from dnsserver.udp import UDP_MODES
from tests.dnsserver import zonefixture as zf

Z = zf.ZONE


@dataclass
class Running:
    server: DnsServer
    port: int
    registry: CollectorRegistry


@pytest.fixture(params=list(UDP_MODES))  # every UDP receive path
async def running(request: pytest.FixtureRequest) -> AsyncIterator[Running]:
    registry = CollectorRegistry()
    server = DnsServer(zf.config(tcp_idle_timeout=0.5, tcp_max_per_client=4,
                                 version="fedns-test", identity="ns-test"),
                       zf.locator(), registry=registry, udp_mode=request.param)
    assert server.update(zf.snapshot())
    await server.start()
    try:
        yield Running(server, server.addresses[0][1], registry)
    finally:
        await server.stop()


async def udp(r: Running, q: dns.message.Message, source: str | None = None) -> dns.message.Message:
    return await dns.asyncquery.udp(q, "127.0.0.1", port=r.port, source=source, timeout=2)


async def raw_udp(r: Running, data: bytes, wait: float = 0.3) -> bytes | None:
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    try:
        sock.connect(("127.0.0.1", r.port))
        await loop.sock_sendall(sock, data)
        try:
            return await asyncio.wait_for(loop.sock_recv(sock, 65535), wait)
        except TimeoutError:
            return None
    finally:
        sock.close()


async def dig(r: Running, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "dig", "@127.0.0.1", "-p", str(r.port), "+tries=1", "+time=2", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(), 10)
    return out.decode()


# -- locality, chains, truncation, pipelining ---------------------------------------


async def test_source_address_selects_locality(running: Running) -> None:
    for source, want in [("127.0.0.2", [zf.US_IP]), ("127.0.0.3", [zf.EU_IP]),
                         ("127.0.0.1", sorted([zf.US_IP, zf.EU_IP]))]:
        reply = await udp(running, dns.message.make_query(zf.GLOBAL, "A"), source=source)
        assert sorted(rd.address for rrset in reply.answer for rd in rrset) == want, source


async def test_az_region_fallback_chain_is_chased(running: Running) -> None:
    reply = await udp(running, dns.message.make_query(zf.EU_AZ, "A"))
    assert [str(rrset.name) for rrset in reply.answer] == [zf.EU_AZ, zf.EU_REGION]
    assert reply.answer[1][0].address == zf.EU_IP
    reply = await udp(running, dns.message.make_query(zf.ASIA_REGION, "A"), source="127.0.0.3")
    assert [str(rrset.name) for rrset in reply.answer] == [zf.ASIA_REGION, zf.GLOBAL]
    assert [rd.address for rd in reply.answer[1]] == [zf.EU_IP]


async def test_truncated_over_udp_then_whole_over_tcp(running: Running) -> None:
    q = dns.message.make_query(f"bIg.{Z}", "A", use_edns=0, payload=512)
    reply = await udp(running, q)
    assert reply.flags & dns.flags.TC and not reply.answer
    assert str(reply.question[0].name) == f"bIg.{Z}" and reply.edns == 0
    whole = await dns.asyncquery.tcp(q, "127.0.0.1", port=running.port, timeout=2)
    assert not whole.flags & dns.flags.TC
    assert len(whole.answer[0]) == zf.BIG_COUNT
    text = await dig(running, "+noedns", f"big.{Z}", "A")  # dig retries over TCP by itself
    assert "Truncated, retrying in TCP mode" in text and text.count("198.51.100.") == zf.BIG_COUNT
    metrics = generate_latest(running.registry).decode()
    assert 'fedns_dns_truncated_total{proto="udp"}' in metrics


async def test_pipelined_tcp_queries_all_answered(running: Running) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    queries = {}
    names = [f"www.{Z}", zf.GLOBAL, f"nope.{Z}", f"alias.{Z}", f"big.{Z}"]
    blob = b""
    for i in range(150):
        q = dns.message.make_query(names[i % len(names)], "A", id=i)
        queries[i] = q
        wire = q.to_wire()
        blob += struct.pack("!H", len(wire)) + wire
    writer.write(blob)
    await writer.drain()
    seen = set()
    for _ in range(150):
        size = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), 5))[0]
        reply = dns.message.from_wire(await reader.readexactly(size))
        assert queries[reply.id].is_response(reply)
        seen.add(reply.id)
    assert seen == set(range(150))
    writer.close()
    await writer.wait_closed()


async def test_tcp_idle_timeout_and_per_client_limit(running: Running) -> None:
    conns = [await asyncio.open_connection("127.0.0.1", running.port) for _ in range(5)]
    # the fifth connection from 127.0.0.1 is over the per-client limit of 4: closed at once
    assert await asyncio.wait_for(conns[4][0].read(), 2) == b""
    # the others are closed after the 0.5 s idle timeout (slowloris: half a length prefix)
    conns[0][1].write(b"\x00")
    for reader, _ in conns[:4]:
        assert await asyncio.wait_for(reader.read(), 3) == b""
    for _, writer in conns:
        writer.close()
    # a client under the limit is served again
    reply = await dns.asyncquery.tcp(dns.message.make_query(f"www.{Z}", "A"), "127.0.0.1",
                                     port=running.port, timeout=2)
    assert reply.rcode() == dns.rcode.NOERROR
    metrics = generate_latest(running.registry).decode()
    assert 'fedns_dns_dropped_total{reason="tcp_limit"} 1.0' in metrics


async def test_chaos_notify_and_metrics(running: Running) -> None:
    for name, text in [("version.bind.", "fedns-test"), ("id.server.", "ns-test"),
                       ("hostname.bind.", "ns-test")]:
        reply = await udp(running, dns.message.make_query(name, "TXT", rdclass="CH"))
        assert reply.rcode() == dns.rcode.NOERROR
        assert reply.answer[0][0].strings == (text.encode(),)
    reply = await udp(running, dns.message.make_query("authors.bind.", "TXT", rdclass="CH"))
    assert reply.rcode() == dns.rcode.REFUSED
    reply = await udp(running, dns.message.make_query(f"www.{Z}", "A", rdclass="ANY"))
    assert reply.rcode() == dns.rcode.REFUSED
    notify = dns.message.make_query(Z, "SOA")
    notify.set_opcode(dns.opcode.NOTIFY)
    reply = await udp(running, notify)
    assert reply.rcode() == dns.rcode.REFUSED and reply.opcode() == dns.opcode.NOTIFY
    for _ in range(16):
        await udp(running, dns.message.make_query(f"www.{Z}", "A"))
    metrics = generate_latest(running.registry).decode()
    assert re.search(r'fedns_dns_requests_total\{locality_kind="none",proto="udp",'
                     r'qtype="TXT",rcode="NOERROR"\} 3.0', metrics)
    assert "fedns_dns_request_duration_seconds_bucket" in metrics


async def test_request_counters_are_exact_with_udp_and_tcp_at_once(running: Running) -> None:
    """UDP (its own thread in thread mode) and TCP (the loop) count in parallel."""
    def total(proto: str) -> float:
        return sum(v for m in running.registry.collect() if m.name == "fedns_dns_requests"
                   for smp in m.samples if smp.labels.get("proto") == proto
                   and smp.name.endswith("_total") for v in [smp.value])

    before = total("udp"), total("tcp")
    q = dns.message.make_query(f"www.{Z}", "A")

    async def udp_burst() -> None:
        for _ in range(300):
            await udp(running, q)

    async def tcp_burst() -> None:
        for _ in range(300):
            await dns.asyncquery.tcp(q, "127.0.0.1", port=running.port, timeout=2)

    await asyncio.gather(udp_burst(), udp_burst(), tcp_burst())
    assert (total("udp") - before[0], total("tcp") - before[1]) == (600, 300)


# -- RFC 8906 section 8 ------------------------------------------------------------


def _dig_fields(text: str) -> dict[str, str]:
    fields: dict[str, str] = {}
    m = re.search(r"opcode: (\S+), status: (\S+),", text)
    if m:
        fields["opcode"], fields["status"] = m.group(1), m.group(2)
    m = re.search(r";; flags:([^;]*);", text)
    fields["flags"] = m.group(1).strip() if m else ""
    m = re.search(r"QUERY: (\d+), ANSWER: (\d+), AUTHORITY: (\d+)", text)
    if m:
        fields["qd"], fields["an"], fields["ns"] = m.groups()
    m = re.search(r"; EDNS: version: (\d+), flags:([^;]*); (MBZ: \S+ , )?udp: (\d+)", text)
    fields["edns"] = m.group(1) if m else "none"
    fields["eflags"] = m.group(2).strip() if m else ""
    fields["mbz"] = "yes" if m and m.group(3) else "no"
    fields["opt100"] = "yes" if re.search(r"OPT=100|; OPT=100", text) else "no"
    return fields


RFC8906 = [
    # (id, dig args, expected fields)
    ("plain", ["+norec", "+noedns", "soa"], {"status": "NOERROR", "an": "1", "edns": "none"}),
    ("plain-noerror", ["+norec", "+noedns", "soa"], {"flags": "qr aa"}),
    ("unknown-type", ["+norec", "+noedns", "type1000"],
     {"status": "NOERROR", "an": "0", "ns": "1"}),
    ("cd-flag", ["+norec", "+noedns", "+cdflag", "soa"],
     {"status": "NOERROR", "flags": "qr aa cd"}),
    ("ad-flag", ["+norec", "+noedns", "+adflag", "soa"], {"status": "NOERROR", "flags": "qr aa"}),
    ("z-flag", ["+norec", "+noedns", "+zflag", "soa"], {"status": "NOERROR", "flags": "qr aa"}),
    ("unknown-opcode", ["+noedns", "+noadflag", "+norec", "+header-only", "+opcode=15"],
     {"status": "NOTIMP", "opcode": "RESERVED15", "flags": "qr", "qd": "0"}),
    ("tcp", ["+norec", "+noedns", "+tcp", "soa"], {"status": "NOERROR", "an": "1"}),
    ("edns0", ["+nocookie", "+edns=0", "+noadflag", "+norec", "soa"],
     {"status": "NOERROR", "edns": "0", "an": "1"}),
    ("edns1", ["+nocookie", "+edns=1", "+noednsneg", "+noadflag", "+norec", "soa"],
     {"status": "BADVERS", "edns": "0", "an": "0"}),
    ("unknown-option", ["+nocookie", "+edns=0", "+noadflag", "+norec", "+ednsopt=100", "soa"],
     {"status": "NOERROR", "edns": "0", "opt100": "no", "an": "1"}),
    ("unknown-eflag", ["+nocookie", "+edns=0", "+noadflag", "+norec", "+ednsflags=0x40", "soa"],
     {"status": "NOERROR", "edns": "0", "mbz": "no", "eflags": ""}),
    ("edns1-option", ["+nocookie", "+edns=1", "+noednsneg", "+noadflag", "+norec",
                      "+ednsopt=100", "soa"],
     {"status": "BADVERS", "edns": "0", "opt100": "no", "an": "0"}),
    ("do-bit", ["+nocookie", "+edns=0", "+noadflag", "+norec", "+dnssec", "soa"],
     {"status": "NOERROR", "edns": "0", "eflags": "do"}),
    ("edns-tcp", ["+nocookie", "+edns=0", "+noadflag", "+norec", "+tcp", "soa"],
     {"status": "NOERROR", "edns": "0"}),
    ("cookie", ["+cookie", "+edns=0", "+norec", "soa"], {"status": "NOERROR", "an": "1"}),
]


@pytest.mark.parametrize("case", RFC8906, ids=lambda c: c[0])
async def test_rfc8906_section8(case: tuple[str, list[str], dict[str, str]],
                                running: Running) -> None:
    _, args, expected = case
    if "+header-only" in args:
        text = await dig(running, *args)
    else:  # the last argument is the query type; the zone apex is the name
        text = await dig(running, *args[:-1], Z, args[-1])
    fields = _dig_fields(text)
    for key, value in expected.items():
        assert fields.get(key) == value, (key, text)


async def test_payload_512_gets_small_answer_or_tc(running: Running) -> None:
    for name in (Z, f"big.{Z}"):
        q = dns.message.make_query(name, "ANY" if name == Z else "A", use_edns=0, payload=512,
                                   want_dnssec=True)
        data = await raw_udp(running, q.to_wire(), wait=2)
        assert data is not None and len(data) <= 512
        reply = dns.message.from_wire(data)
        assert reply.answer or reply.flags & dns.flags.TC


async def test_coredns_health_probe_gets_refused(running: Running) -> None:
    q = dns.message.make_query(".", "NS")
    assert q.flags & dns.flags.RD
    reply = await udp(running, q)
    assert reply.rcode() == dns.rcode.REFUSED
    assert str(reply.question[0].name) == "."


# -- malformed packets ------------------------------------------------------------


def _header(qid: int = 0x1234, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0,
            ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


QNAME = b"\x03www\x07example\x03com\x00"
QUESTION = QNAME + b"\x00\x01\x00\x01"
OPT = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"


def _ecs(family: int, source: int, addr: bytes) -> bytes:
    body = struct.pack("!HBB", family, source, 0) + addr
    opt = struct.pack("!HH", 8, len(body)) + body
    return b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00" + struct.pack("!H", len(opt)) + opt


MALFORMED = [
    # (id, packet, expected rcode or None for "dropped")
    ("short-header", b"\x12\x34\x01\x00\x00", None),
    ("empty", b"", None),
    ("qr-set", _header(flags=0x8100) + QUESTION, None),
    ("qr-set-garbage", _header(flags=0x8000, qd=0), None),
    ("qdcount-0", _header(qd=0), "FORMERR"),
    ("qdcount-2", _header(qd=2) + QUESTION + QUESTION, "FORMERR"),
    ("qdcount-65535", _header(qd=65535) + QUESTION, "FORMERR"),
    ("pointer-loop", _header() + b"\xc0\x0c\x00\x01\x00\x01", "FORMERR"),
    ("forward-pointer", _header() + b"\x03www\xc0\x14\x00\x01\x00\x01\x03com\x00", "FORMERR"),
    ("label-64", _header() + b"\x40" + b"a" * 64 + b"\x00\x00\x01\x00\x01", "FORMERR"),
    ("name-256", _header() + b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f" + b"c" * 63
     + b"\x3f" + b"d" * 63 + b"\x00\x00\x01\x00\x01", "FORMERR"),
    ("truncated-question", _header() + QNAME + b"\x00", "FORMERR"),
    ("two-opt", _header(ar=2) + QUESTION + OPT + OPT, "FORMERR"),
    ("opt-not-root", _header(ar=1) + QUESTION + b"\x01a\x00\x00\x29\x04\xd0" + bytes(6),
     "FORMERR"),
    ("answer-in-query", _header(an=1) + QUESTION + QNAME + b"\x00\x01\x00\x01" + bytes(4)
     + b"\x00\x04\x01\x02\x03\x04", "FORMERR"),
    ("trailing-junk", _header() + QUESTION + b"junk", "FORMERR"),
    ("opt-rdlen-overrun", _header(ar=1) + QUESTION + OPT[:-2] + b"\x00\x10", "FORMERR"),
    ("ecs-bad-family", _header(ar=1) + QUESTION + _ecs(3, 24, b"\x01\x02\x03"), "FORMERR"),
    ("ecs-prefix-too-long", _header(ar=1) + QUESTION + _ecs(1, 33, b"\x01\x02\x03\x04\x05"),
     "FORMERR"),
    ("ecs-bits-beyond-prefix", _header(ar=1) + QUESTION + _ecs(1, 20, b"\xc6\x33\x6f"),
     "FORMERR"),
    ("ecs-wrong-length", _header(ar=1) + QUESTION + _ecs(1, 24, b"\xc6\x33"), "FORMERR"),
    ("ecs-ok", _header(ar=1) + QUESTION + _ecs(1, 24, b"\xc6\x33\x64"), "NOERROR"),
    ("opcode-iquery", _header(flags=0x0800) + QUESTION, "NOTIMP"),
    ("opcode-status", _header(flags=0x1000) + QUESTION, "NOTIMP"),
    ("opcode-update", _header(flags=0x2800) + QUESTION, "NOTIMP"),
    ("qtype-opt", _header() + QNAME + b"\x00\x29\x00\x01", "FORMERR"),
    ("payload-0", _header(ar=1) + QUESTION + b"\x00\x00\x29\x00\x00" + bytes(6), "NOERROR"),
    ("payload-65535", _header(ar=1) + QUESTION + b"\x00\x00\x29\xff\xff" + bytes(6), "NOERROR"),
]


@pytest.mark.parametrize("case", MALFORMED, ids=lambda c: c[0])
async def test_malformed_packets(case: tuple[str, bytes, str | None], running: Running) -> None:
    _, packet, expected = case
    data = await raw_udp(running, packet, wait=0.3 if expected is None else 2)
    if expected is None:
        assert data is None
    else:
        assert data is not None
        assert dns.rcode.to_text(data[3] & 0x0F) == expected
        assert data[:2] == b"\x12\x34"
        assert data[4:6] in (b"\x00\x00", b"\x00\x01")
        if packet[2] & 0x78 == 0:  # opcode QUERY: a well-formed reply
            dns.message.from_wire(data)
        if expected == "NOTIMP":  # every flag but QR cleared, opcode kept (RFC 8906)
            assert data[2] & 0x87 == 0x80 and data[3] & 0xF0 == 0
            assert data[2] & 0x78 == packet[2] & 0x78
    assert running.server.metrics.errors == 0
    # the server still answers afterwards
    ok = await udp(running, dns.message.make_query(f"www.{Z}", "A"))
    assert ok.rcode() == dns.rcode.NOERROR


async def test_unexpected_exception_becomes_servfail(running: Running) -> None:
    class Boom:
        def locate(self, address: bytes, source_prefix: int | None) -> tuple[str, int]:
            raise RuntimeError("locator broke")

        def locate_network(self, address: bytes, source_prefix: int) -> tuple[str, int] | None:
            raise RuntimeError("locator broke")

    running.server.handler.locator = Boom()
    q = dns.message.make_query(zf.GLOBAL.upper(), "A")
    reply = await udp(running, q)
    assert reply.rcode() == dns.rcode.SERVFAIL
    assert str(reply.question[0].name) == zf.GLOBAL.upper()
    assert running.server.metrics.errors == 1
    reply = await udp(running, dns.message.make_query(f"www.{Z}", "A"))  # static: unaffected
    assert reply.rcode() == dns.rcode.NOERROR


async def test_tcp_zero_length_frame_and_slow_drip(running: Running) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    writer.write(b"\x00\x00")  # zero-length frame: the connection is closed
    assert await asyncio.wait_for(reader.read(), 2) == b""
    writer.close()
    # a frame dripped one byte at a time never completes: closed after the idle timeout
    q = dns.message.make_query(f"www.{Z}", "A").to_wire()
    frame = struct.pack("!H", len(q)) + q
    reader, writer = await asyncio.open_connection("127.0.0.1", running.port)
    loop = asyncio.get_running_loop()
    started = loop.time()
    closed = False
    for byte in frame[:-1]:
        try:
            writer.write(bytes((byte,)))
            if await asyncio.wait_for(reader.read(1), 0.1) == b"":
                closed = True
                break
        except TimeoutError:
            continue
        except ConnectionError:
            closed = True
            break
    assert closed and loop.time() - started < 2.0
    writer.close()


async def test_notify_allowed_and_tcp_total_limit() -> None:
    import ipaddress

    server = DnsServer(zf.config(notify_allow=(ipaddress.ip_network("127.0.0.0/8"),),
                                 tcp_max_connections=2), zf.locator(), registry=None)
    assert server.update(zf.snapshot())
    await server.start()
    try:
        port = server.addresses[0][1]
        notify = dns.message.make_query(Z, "SOA")
        notify.set_opcode(dns.opcode.NOTIFY)
        reply = await dns.asyncquery.udp(notify, "127.0.0.1", port=port, timeout=2)
        assert reply.rcode() == dns.rcode.NOERROR and reply.opcode() == dns.opcode.NOTIFY
        conns = [await asyncio.open_connection("127.0.0.1", port) for _ in range(3)]
        assert await asyncio.wait_for(conns[2][0].read(), 2) == b""  # over the total of 2
        for _, writer in conns:
            writer.close()
    finally:
        await server.stop()
