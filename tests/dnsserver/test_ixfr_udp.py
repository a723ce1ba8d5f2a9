"""IXFR over UDP (RFC 1995 sections 2-4), the IXFR query's authority section,
and meta-types in the question (RFC 6895 section 3.1), over real sockets on
127.0.0.1 (dig, kdig, dnspython) and on both query paths.

- An IXFR query carries the client's SOA in its authority section; the parser
  takes it (and only for IXFR) and reads its serial.
- Over UDP a client the transfer policy admits gets the current SOA alone
  (AA=1) whatever its serial: up to date, or its cue to retry over TCP (our
  IXFR answer is the whole zone). Other clients get REFUSED, and AXFR over UDP
  stays REFUSED (RFC 5936 section 4.2). TSIG applies as over TCP.
- Over TCP an IXFR whose serial is not older than the zone's gets the current
  SOA alone (RFC 1995 section 2); an older one the full transfer.
- TSIG, TKEY, OPT and the unassigned 128-248 in the question: FORMERR (as
  BIND; the RFCs name no rcode), no OPT in the reply, on both paths.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import random
import struct
from collections.abc import AsyncIterator

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.tsigkeyring
import dns.xfr
import dns.zone
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from config.model import TsigKey
from dnsserver import wire
from dnsserver.errors import MalformedQuery
from dnsserver.handler import QueryHandler
from dnsserver.server import DnsServer
from tests.dnsserver import zonefixture as zf
from tests.dnsserver.test_xfr import (
    ALLOWED,
    KEY_NAME,
    OTHER,
    SECRET,
    Running,
    expected,
    raw_tcp,
    start,
    tool,
    zone_lines,
)

Z = zf.ZONE
SERIAL = 7  # the fixture zone's SOA serial
ALLOW = (ipaddress.ip_network("127.0.3.0/24"),)
KEYRING = dns.tsigkeyring.from_text({KEY_NAME: ("hmac-sha256", SECRET)})


@pytest.fixture
async def allowed() -> AsyncIterator[Running]:
    r = await start(transfer_allow=ALLOW)
    try:
        yield r
    finally:
        await r.server.stop()


@pytest.fixture
async def signed() -> AsyncIterator[Running]:
    r = await start(transfer_allow=ALLOW, transfer_tsig=TsigKey(KEY_NAME, SECRET))
    try:
        yield r
    finally:
        await r.server.stop()


def ixfr_query(serial: int | None, *, name: str = Z, owner: str | None = None,
               rdtype: str = "SOA", edns: bool = False) -> dns.message.Message:
    """An IXFR query for ``name`` with the client's SOA (``serial``) in authority."""
    q = dns.message.make_query(name, "IXFR", use_edns=0 if edns else None)
    q.flags = dns.flags.Flag(0)
    if serial is not None:
        value = f". . {serial} 0 0 0 0" if rdtype == "SOA" else "192.0.2.1"
        q.authority.append(dns.rrset.from_text(owner or name, 0, "IN", rdtype, value))
    return q


async def dig(r: Running, source: str, *args: str) -> str:
    return await tool("dig", "@127.0.0.1", "-p", str(r.port), "-b", source, "+tries=1",
                      "+time=3", *args)


async def kdig(r: Running, source: str, *args: str) -> str:
    return await tool("kdig", "@127.0.0.1", "-p", str(r.port), "-b", source, "+retry=0",
                      "+time=3", *args)


def answer_lines(text: str) -> list[str]:
    return [line for line in zone_lines(text) if "\tSOA\t" in line or "\tIN\t" in line]


def xfr_ok(r: Running) -> float:
    for line in generate_latest(r.registry).decode().splitlines():
        if line.startswith('fedns_dns_xfr_total{proto="tcp",result="ok"}'):
            return float(line.split()[-1])
    raise AssertionError("no fedns_dns_xfr_total")


# -- UDP with dig and kdig --------------------------------------------------------------


async def test_dig_udp_ixfr_older_serial_gets_the_current_soa_only(allowed: Running) -> None:
    out = await dig(allowed, ALLOWED, "+comments", "+notcp", f"ixfr={SERIAL - 4}", Z)
    assert "status: NOERROR" in out and "(UDP)" in out, out
    assert "flags: qr aa;" in out and "ANSWER: 1, AUTHORITY: 0" in out, out
    soa = answer_lines(out)
    assert len(soa) == 1 and f"hostmaster.{Z} {SERIAL} 3600" in soa[0], out
    out = await kdig(allowed, ALLOWED, "+notcp", f"IXFR={SERIAL - 4}", Z)
    assert "(1 messages, 1 records)" in out and "(UDP)" in out, out
    assert f"hostmaster.{Z} {SERIAL} 3600" in out, out


async def test_dig_udp_ixfr_current_or_newer_serial_gets_the_soa_only(allowed: Running) -> None:
    for serial in (SERIAL, SERIAL + 5):
        out = await dig(allowed, ALLOWED, "+comments", "+notcp", f"ixfr={serial}", Z)
        assert "status: NOERROR" in out and "ANSWER: 1, AUTHORITY: 0" in out, out
        soa = answer_lines(out)
        assert len(soa) == 1 and f" {SERIAL} 3600 600 86400 60" in soa[0], out
        out = await kdig(allowed, ALLOWED, "+notcp", f"IXFR={serial}", Z)
        assert "(1 messages, 1 records)" in out and "(UDP)" in out, out


async def test_udp_ixfr_from_a_client_not_allowed_is_refused(allowed: Running) -> None:
    out = await dig(allowed, OTHER, "+comments", "+notcp", f"ixfr={SERIAL - 4}", Z)
    assert "status: REFUSED" in out and "ANSWER: 0" in out and "\tSOA\t" not in out, out
    out = await kdig(allowed, OTHER, "+notcp", f"IXFR={SERIAL - 4}", Z)
    assert "REFUSED" in out, out
    r = await start()  # nobody is allowed by default
    try:
        out = await dig(r, ALLOWED, "+comments", "+notcp", f"ixfr={SERIAL - 4}", Z)
        assert "status: REFUSED" in out and "\tSOA\t" not in out, out
    finally:
        await r.server.stop()


async def test_udp_axfr_is_refused_even_for_an_allowed_client(allowed: Running) -> None:
    out = await kdig(allowed, ALLOWED, "+notcp", "AXFR", Z)  # dig always sends AXFR by TCP
    assert "REFUSED" in out and "(UDP)" in out, out
    reply = await dns.asyncquery.udp(dns.message.make_query(Z, "AXFR"), "127.0.0.1",
                                     port=allowed.port, source=ALLOWED, timeout=2)
    assert reply.rcode() == dns.rcode.REFUSED and not reply.answer


async def test_udp_ixfr_for_another_name_or_class_is_refused(allowed: Running) -> None:
    for q in (ixfr_query(3, name=f"www.{Z}"), ixfr_query(3, name="example.net.")):
        reply = await dns.asyncquery.udp(q, "127.0.0.1", port=allowed.port, source=ALLOWED,
                                         timeout=2)
        assert reply.rcode() == dns.rcode.REFUSED and not reply.answer, q


async def test_udp_ixfr_with_a_bad_authority_section_is_formerr(allowed: Running) -> None:
    for q in (ixfr_query(3, owner=f"www.{Z}"), ixfr_query(3, rdtype="A")):
        reply = await dns.asyncquery.udp(q, "127.0.0.1", port=allowed.port, source=ALLOWED,
                                         timeout=2)
        assert reply.rcode() == dns.rcode.FORMERR and not reply.answer, q


async def test_udp_ixfr_reply_carries_opt_when_the_query_has_one(allowed: Running) -> None:
    for edns in (False, True):
        reply = await dns.asyncquery.udp(ixfr_query(3, edns=edns), "127.0.0.1",
                                         port=allowed.port, source=ALLOWED, timeout=2)
        assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
        assert [rrset.rdtype for rrset in reply.answer] == [dns.rdatatype.SOA]
        assert reply.answer[0][0].serial == SERIAL
        assert (reply.edns == 0) is edns


# -- dnspython's IXFR client: UDP first, TCP when the serial is older ---------------------


def _zone_at(serial: int) -> dns.zone.Zone:
    zone = dns.zone.Zone(Z, relativize=False)
    with zone.writer() as txn:
        txn.add(Z, 300, dns.rdata.from_text(
            "IN", "SOA", f"ns1.{Z} hostmaster.{Z} {serial} 3600 600 86400 60"))
    return zone


def _inbound(r: Running, zone: dns.zone.Zone) -> None:
    query, _ = dns.xfr.make_query(zone)
    dns.query.inbound_xfr("127.0.0.1", zone, query, port=r.port, timeout=5, lifetime=10,
                          source=ALLOWED, udp_mode=dns.query.UDPMode.TRY_FIRST)


async def test_dnspython_ixfr_client_retries_over_tcp_only_when_behind(
        allowed: Running) -> None:
    current = _zone_at(SERIAL)
    await asyncio.to_thread(_inbound, allowed, current)  # the UDP SOA says: up to date
    assert xfr_ok(allowed) == 0.0
    assert len(list(current.iterate_rdatas())) == 1
    behind = _zone_at(SERIAL - 4)
    await asyncio.to_thread(_inbound, allowed, behind)  # UDP SOA is newer: TCP transfer
    assert xfr_ok(allowed) == 1.0
    got = {dns.rrset.from_rdata(name, ttl, rd).to_text()
           for name, ttl, rd in behind.iterate_rdatas()}
    assert got == expected(allowed.snap)


# -- TCP: an up-to-date client gets the SOA alone ----------------------------------------


async def test_tcp_ixfr_current_serial_gets_the_soa_alone(allowed: Running) -> None:
    for serial in (SERIAL, SERIAL + 1):
        out = await kdig(allowed, ALLOWED, "+tcp", "+nostats", "+noheader", "+noquestion",
                         f"IXFR={serial}", Z)
        lines = zone_lines(out)
        assert len(lines) == 1 and f" {SERIAL} 3600 600 86400 60" in lines[0], out
        out = await dig(allowed, ALLOWED, f"ixfr={serial}", Z)
        assert "XFR size: 1 records" in out and "(TCP)" in out, out


async def test_tcp_ixfr_older_serial_still_gets_the_full_transfer(allowed: Running) -> None:
    out = await kdig(allowed, ALLOWED, "+tcp", "+nostats", "+noheader", "+noquestion",
                     f"IXFR={SERIAL - 1}", Z)
    lines = zone_lines(out)
    assert "SOA" in lines[0] and lines[0] == lines[-1], out[-500:]
    assert len(lines) == len(expected(allowed.snap)) + 1
    out = await dig(allowed, ALLOWED, f"ixfr={SERIAL - 1}", Z)
    assert f"XFR size: {len(expected(allowed.snap)) + 1} records" in out, out[-300:]


async def test_tcp_ixfr_with_a_bad_authority_section_is_formerr(allowed: Running) -> None:
    for q in (ixfr_query(3, owner=f"www.{Z}"), ixfr_query(3, rdtype="A")):
        replies = await raw_tcp(allowed, q.to_wire(), ALLOWED)
        assert len(replies) == 1 and replies[0][3] & 0x0F == dns.rcode.FORMERR, q
    assert 'fedns_dns_xfr_total{proto="tcp",result="formerr"} 2.0' in generate_latest(
        allowed.registry).decode()


def test_serial_arithmetic_rfc1982() -> None:
    from dnsserver.xfr import serial_current  # new API: only this test fails where it is absent

    assert serial_current(7, 7) and serial_current(8, 7)
    assert not serial_current(6, 7)
    assert serial_current(3, 0xFFFFFFF0)  # wrapped: 3 is after 0xfffffff0
    assert not serial_current(0xFFFFFFF0, 3)
    assert not serial_current(7 + (1 << 31), 7)  # undefined: not current (full transfer)


# -- TSIG over UDP -------------------------------------------------------------------------


async def test_udp_ixfr_tsig_signed_reply_and_refusals(signed: Running) -> None:
    q = ixfr_query(3)
    q.use_tsig(KEYRING, keyname=KEY_NAME, algorithm="hmac-sha256")
    reply = await dns.asyncquery.udp(q, "127.0.0.1", port=signed.port, source=ALLOWED,
                                     timeout=2)  # dnspython verifies the reply's MAC
    assert reply.had_tsig and reply.rcode() == dns.rcode.NOERROR
    assert reply.answer[0][0].serial == SERIAL
    reply = await dns.asyncquery.udp(ixfr_query(3), "127.0.0.1", port=signed.port,
                                     source=ALLOWED, timeout=2)
    assert reply.rcode() == dns.rcode.REFUSED and not reply.answer  # unsigned
    wrong = dns.tsigkeyring.from_text({KEY_NAME: ("hmac-sha256", base64.b64encode(
        b"another secret, not the key").decode())})
    bad = ixfr_query(3)
    bad.use_tsig(wrong, keyname=KEY_NAME, algorithm="hmac-sha256")
    raw = await _raw_udp(signed, bad.to_wire(), ALLOWED)
    assert raw[3] & 0x0F == dns.rcode.NOTAUTH and raw[6:8] == b"\x00\x00"
    out = await kdig(signed, ALLOWED, "+notcp", "-y", f"hmac-sha256:{KEY_NAME}:{SECRET}",
                     f"IXFR={SERIAL - 4}", Z)
    assert "(1 messages, 1 records)" in out and "(UDP)" in out and "TSIG" in out, out
    assert "failed" not in out.lower(), out


async def _raw_udp(r: Running, data: bytes, source: str) -> bytes:
    loop = asyncio.get_running_loop()
    transport_done: asyncio.Future[bytes] = loop.create_future()

    class Proto(asyncio.DatagramProtocol):
        def datagram_received(self, reply: bytes, addr: object) -> None:
            if not transport_done.done():
                transport_done.set_result(reply)

    transport, _ = await loop.create_datagram_endpoint(
        Proto, local_addr=(source, 0), remote_addr=("127.0.0.1", r.port))
    try:
        transport.sendto(data)
        return await asyncio.wait_for(transport_done, 2)
    finally:
        transport.close()


# -- the parser ----------------------------------------------------------------------------


def test_parser_takes_the_ixfr_authority_soa_and_its_serial() -> None:
    for serial in (0, 3, 0xFFFFFFFF):
        q = wire.parse_query(ixfr_query(serial).to_wire())
        assert q.qtype == wire.T_IXFR and q.serial == serial
    assert wire.parse_query(ixfr_query(None).to_wire()).serial is None
    upper = ixfr_query(5, name=Z.upper(), owner=Z)  # owner matched without case
    assert wire.parse_query(upper.to_wire()).serial == 5
    with_opt = ixfr_query(9, edns=True)
    parsed = wire.parse_query(with_opt.to_wire())
    assert parsed.serial == 9 and parsed.edns is not None


def _bad_ixfr(label: str) -> bytes:
    """An IXFR query (or a query) whose answer/authority section the parser refuses."""
    if label == "owner":  # the SOA of another name
        return ixfr_query(3, owner=f"www.{Z}").to_wire()
    if label == "type":  # not an SOA
        return ixfr_query(3, rdtype="A").to_wire()
    if label == "short-rdata":  # RDLENGTH and rdata one byte short of an SOA's
        good = ixfr_query(3).to_wire()
        at = good.rfind(b"\x00\x06\x00\x01") + 8
        rdlen = struct.unpack("!H", good[at:at + 2])[0]
        return good[:at] + struct.pack("!H", rdlen - 1) + good[at + 2:-1]
    q = ixfr_query(3) if label != "soa-in-a-query" else dns.message.make_query(Z, "SOA")
    soa = dns.rrset.from_text(Z, 0, "IN", "SOA", ". . 4 0 0 0 0")
    if label == "answer-section":
        q.answer.append(soa)
    else:  # "two" SOA records, or an SOA in the authority of a query other than IXFR
        q.authority.append(soa)
    return q.to_wire()


@pytest.mark.parametrize("label", ["owner", "type", "short-rdata", "two", "soa-in-a-query",
                                   "answer-section"])
def test_parser_rejects_a_bad_ixfr_authority_section(label: str) -> None:
    with pytest.raises(MalformedQuery):
        wire.parse_query(_bad_ixfr(label))


# -- the fast path sends IXFR and meta types to the full path ------------------------------


@pytest.fixture(scope="module")
def paths() -> tuple[QueryHandler, QueryHandler]:
    """Both paths, 127.0.0.2 allowed to transfer (the other test clients are not)."""
    allow = (ipaddress.ip_network("127.0.0.2/32"),)
    fast = DnsServer(zf.config(transfer_allow=allow), zf.locator(), registry=CollectorRegistry())
    full = DnsServer(zf.config(transfer_allow=allow), zf.locator(), registry=CollectorRegistry(),
                     fast_path=False)
    assert fast.update(zf.snapshot()) and full.update(zf.snapshot())
    return fast.handler, full.handler


def test_context_sends_an_ixfr_header_to_the_full_path(
        paths: tuple[QueryHandler, QueryHandler]) -> None:
    fast, _ = paths
    state = fast.state
    assert state is not None
    for edns in (False, True):
        data = ixfr_query(3, edns=edns).to_wire()
        qend = data.find(b"\x00", 12) + 5
        key = data[2:12] + data[qend:]
        assert fast._context(key, state) is False
        assert state.contexts[key] is False
        slow = fast.slow_queries
        reply = fast.handle(data, "127.0.0.2", False)
        assert fast.slow_queries == slow + 1
        assert reply is not None and reply[3] & 0x0F == dns.rcode.NOERROR and reply[7] == 1


def _transfer_query(rng: random.Random) -> bytes:
    name = rng.choice([Z, Z.upper(), f"www.{Z}", "example.net."])
    serial = rng.choice([None, 0, 3, SERIAL, SERIAL + 1, 0xFFFFFFFF])
    owner = name if rng.random() < 0.9 else f"other.{Z}"
    q = ixfr_query(serial, name=name, owner=owner, edns=rng.random() < 0.5)
    if rng.random() < 0.2:
        q = dns.message.make_query(name, "AXFR", use_edns=0 if rng.random() < 0.5 else None)
    if q.edns == 0 and rng.random() < 0.3:
        q.use_edns(0, payload=rng.choice([512, 1232, 4096]),
                   options=[dns.edns.ECSOption("198.51.100.0", 24)])
    if rng.random() < 0.1:
        q.rdclass = dns.rdataclass.CH  # type: ignore[attr-defined]
        q.question[0].rdclass = dns.rdataclass.CH
    if rng.random() < 0.5:
        q.flags |= dns.flags.RD
    return q.to_wire()


def test_transfer_queries_are_byte_identical_on_both_paths(
        paths: tuple[QueryHandler, QueryHandler]) -> None:
    fast, full = paths
    rng = random.Random(1995)
    rcodes: dict[int, int] = {}
    for _ in range(600):
        data = _transfer_query(rng)
        client = rng.choice(["127.0.0.2", "127.0.0.3", "::1"])
        tcp = rng.random() < 0.2
        a = fast.handle(data, client, tcp)
        b = full.handle(data, client, tcp)
        assert a == b, (dns.message.from_wire(data), client, tcp)
        assert a is not None
        rcodes[a[3] & 0x0F] = rcodes.get(a[3] & 0x0F, 0) + 1
    # every outcome was reached: SOA (allowed, UDP), REFUSED, FORMERR (bad owner)
    assert {dns.rcode.NOERROR, dns.rcode.REFUSED, dns.rcode.FORMERR} <= set(rcodes), rcodes
    assert fast.metrics.errors == 0 and full.metrics.errors == 0


# -- meta-types in the question ------------------------------------------------------------

META = [41, 128, 200, 248, 249, 250]


@pytest.mark.parametrize("qtype", META)
@pytest.mark.parametrize("name", [Z, f"www.{Z}", f"nope.{Z}", "example.net.", f"x.w.{Z}"])
def test_meta_qtypes_are_formerr_on_both_paths(paths: tuple[QueryHandler, QueryHandler],
                                               qtype: int, name: str) -> None:
    fast, full = paths
    for edns in (False, True):
        q = dns.message.make_query(name, qtype, use_edns=0 if edns else None)
        data = q.to_wire()
        for tcp in (False, True):
            a = fast.handle(data, "127.0.0.3", tcp)
            b = full.handle(data, "127.0.0.3", tcp)
            assert a == b and a is not None
            reply = dns.message.from_wire(a)
            assert reply.rcode() == dns.rcode.FORMERR, (name, qtype, edns)
            assert not reply.answer and not reply.authority and reply.edns == -1
            assert reply.question[0].rdtype == qtype


async def test_meta_qtypes_with_dig_and_kdig(allowed: Running) -> None:
    for rtype in ("TSIG", "TKEY", "TYPE200"):
        out = await dig(allowed, "127.0.0.1", "+notcp", f"www.{Z}", rtype)
        assert "status: FORMERR" in out, out
        out = await kdig(allowed, "127.0.0.1", "+notcp", f"www.{Z}", rtype)
        assert "status: FORMERR" in out, out
    # the query types keep their answers: ANY minimal, MAILA/MAILB NOTIMP
    # (test_mail_qtypes)
    out = await dig(allowed, "127.0.0.1", "+notcp", f"www.{Z}", "ANY")
    assert "status: NOERROR" in out, out
    out = await dig(allowed, "127.0.0.1", "+notcp", f"www.{Z}", "MAILB")
    assert "status: NOTIMP" in out, out


def test_meta_qtype_classification() -> None:
    meta = [t for t in range(65536) if wire.meta_qtype(t)]
    assert meta == [41, *range(128, 251)]
    assert not any(wire.meta_qtype(t) for t in (wire.T_IXFR, wire.T_AXFR, wire.T_MAILA,
                                                wire.T_MAILB, wire.T_ANY))
