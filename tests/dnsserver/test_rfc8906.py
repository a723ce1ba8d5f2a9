"""Protocol conformance found missing by the RFC 8906 / 6891 / 7871 audit,
checked over real sockets on 127.0.0.1 with dig and raw packets, and on
both query paths (fast and full) where the shape could reach either.

- RFC 6891 6.1.1: a query with an OPT record gets one back, also when its
  opcode is not implemented (NOTIMP); 6.1.3: EDNS version > 0 is BADVERS
  whatever the opcode.
- RFC 7871 with IPv4-mapped IPv6 subnets (``::ffff:a.b.c.d``): located as the
  IPv4 subnet, so a private IPv4 subnet sent mapped is treated as the IPv4
  private subnet (the source address decides unless a configured network
  matches); the reply's scope is in the query's family (96 + IPv4 bits).
"""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import pytest
from prometheus_client import CollectorRegistry

from dnsserver.handler import QueryHandler
from dnsserver.server import DnsServer
from tests.dnsserver import zonefixture as zf
from tests.dnsserver.test_server import Running, dig, raw_udp, udp

Z = zf.ZONE


@pytest.fixture
async def running() -> AsyncIterator[Running]:
    registry = CollectorRegistry()
    server = DnsServer(zf.config(), zf.locator(), registry=registry)
    assert server.update(zf.snapshot())
    await server.start()
    try:
        yield Running(server, server.addresses[0][1], registry)
    finally:
        await server.stop()


@pytest.fixture(scope="module")
def paths() -> tuple[QueryHandler, QueryHandler]:
    fast = DnsServer(zf.config(), zf.locator(), registry=CollectorRegistry())
    full = DnsServer(zf.config(), zf.locator(), registry=CollectorRegistry(), fast_path=False)
    assert fast.update(zf.snapshot()) and full.update(zf.snapshot())
    return fast.handler, full.handler


def _header(qid: int = 0x1234, flags: int = 0x0100, qd: int = 1, an: int = 0, ns: int = 0,
            ar: int = 0) -> bytes:
    return struct.pack("!HHHHHH", qid, flags, qd, an, ns, ar)


QUESTION = b"\x03www\x07example\x03com\x00\x00\x01\x00\x01"


def _opt(version: int = 0, do: bool = False, options: bytes = b"") -> bytes:
    return (b"\x00\x00\x29\x04\xd0\x00" + bytes((version,)) + (b"\x80\x00" if do else b"\x00\x00")
            + struct.pack("!H", len(options)) + options)


def _opt_of(reply: bytes) -> dns.message.Message:
    """The reply as a QUERY (dnspython reads an UPDATE's sections its own way)."""
    return dns.message.from_wire(reply[:2] + bytes((reply[2] & 0x87,)) + reply[3:])


# -- RFC 6891 6.1.1 / 6.1.3 with opcodes other than QUERY --------------------------------


async def test_dig_unknown_opcode_with_edns_gets_notimp_with_opt(running: Running) -> None:
    text = await dig(running, "+edns=0", "+noadflag", "+norec", "+opcode=15", Z, "SOA")
    assert "status: NOTIMP" in text and "opcode: RESERVED15" in text, text
    assert "; EDNS: version: 0" in text, text
    assert "EDNS query returned status NOTIMP" not in text, text  # dig's complaint


OTHER_OPCODES = [
    # (label, packet, rcode, EDNS version of the reply or -1 for no OPT)
    ("opcode15-question-opt", _header(flags=0x7800, ar=1) + QUESTION + _opt(), "NOTIMP", 0),
    ("opcode15-no-question-opt", _header(flags=0x7800, qd=0, ar=1) + _opt(), "NOTIMP", 0),
    ("update-opt-do", _header(flags=0x2800, ar=1) + QUESTION + _opt(do=True), "NOTIMP", 0),
    ("status-opt-ecs", _header(flags=0x1000, ar=1) + QUESTION
     + _opt(options=b"\x00\x08\x00\x07\x00\x01\x18\x00\xcb\x00\x71"), "NOTIMP", 0),
    ("opcode15-edns1", _header(flags=0x7800, ar=1) + QUESTION + _opt(version=1), "BADVERS", 0),
    ("notify-edns1", _header(flags=0x2000, ar=1) + QUESTION + _opt(version=1), "BADVERS", 0),
    ("opcode15-no-opt", _header(flags=0x7800) + QUESTION, "NOTIMP", -1),
    # the sections do not parse as records: NOTIMP, no OPT, no FORMERR
    ("opcode15-garbage", _header(flags=0x7800, ar=1) + QUESTION + b"\xff\xff", "NOTIMP", -1),
    ("opcode15-opt-trailing", _header(flags=0x7800, ar=1) + QUESTION + _opt() + b"x",
     "NOTIMP", -1),
]


@pytest.mark.parametrize(("label", "packet", "rcode", "version"), OTHER_OPCODES,
                         ids=[case[0] for case in OTHER_OPCODES])
async def test_other_opcodes_answer_edns_with_opt(label: str, packet: bytes, rcode: str,
                                                  version: int, running: Running,
                                                  paths: tuple[QueryHandler, QueryHandler]
                                                  ) -> None:
    data = await raw_udp(running, packet, wait=2)
    assert data is not None, label
    fast, full = (h.handle(packet, "127.0.0.1", False) for h in paths)
    assert fast == full == data, label
    reply = _opt_of(data)
    assert dns.rcode.to_text(reply.rcode()) == rcode, label
    assert reply.edns == version, label
    assert data[2] & 0x78 == packet[2] & 0x78, label  # opcode kept
    if rcode == "NOTIMP":
        assert data[2] & 0x87 == 0x80 and data[3] & 0xF0 == 0, label  # only QR (RFC 8906)
    if version == 0:
        assert bool(reply.ednsflags & dns.flags.DO) == label.endswith("-do"), label
    assert running.server.metrics.errors == 0


# -- RFC 7871 with IPv4-mapped IPv6 subnets --------------------------------------------


@pytest.mark.parametrize(("subnet", "source", "want", "scope"), [
    # private IPv4 carried mapped, in no configured network: the source decides
    (("::ffff:10.1.2.3", 128), "127.0.0.2", [zf.US_IP], 0),
    (("::ffff:10.1.2.0", 120), "127.0.0.3", [zf.EU_IP], 0),
    # a configured (private) network, mapped: 127.0.0.2/32 is us-east1-b
    (("::ffff:127.0.0.2", 128), "127.0.0.1", [zf.US_IP], 128),
    # public subnets, mapped: located as IPv4 (scope 96 + the IPv4 prefix)
    (("::ffff:203.0.113.0", 120), "127.0.0.3", [zf.US_IP], 120),
    (("::ffff:198.51.100.0", 120), "127.0.0.1", [zf.EU_IP], 120),
    # the whole mapped range says nothing about the client: the untailored answer
    (("::ffff:0.0.0.0", 96), "127.0.0.2", sorted([zf.US_IP, zf.EU_IP]), 96),
])
async def test_ecs_ipv4_mapped_subnet_is_located_as_ipv4(
        subnet: tuple[str, int], source: str, want: list[str], scope: int,
        running: Running, paths: tuple[QueryHandler, QueryHandler]) -> None:
    option = dns.edns.ECSOption(subnet[0], subnet[1])
    query = dns.message.make_query(zf.GLOBAL, "A", use_edns=0, options=[option])
    reply = await udp(running, query, source=source)
    assert sorted(rd.address for rrset in reply.answer for rd in rrset) == want
    (echo,) = [o for o in reply.options if isinstance(o, dns.edns.ECSOption)]
    assert (echo.family, echo.address, echo.srclen, echo.scopelen) == (
        2, option.address, subnet[1], scope)
    wire = query.to_wire()
    for _ in range(2):  # the fast path's cached context answers the same
        assert paths[0].handle(wire, source, False) == paths[1].handle(wire, source, False)


async def test_dig_subnet_mapped_private_ipv4(running: Running) -> None:
    """With dig: ``+subnet=::ffff:10.1.2.3`` from a client in us-east1-b gets
    the us-east1 shard, as ``+subnet=10.1.2.3`` does (a private subnet in no
    configured network: the source address decides)."""
    for subnet in ("10.1.2.3/32", "::ffff:10.1.2.3/128"):
        text = await dig(running, "-b", "127.0.0.2", f"+subnet={subnet}", "+short", zf.GLOBAL)
        assert text.split() == [zf.US_IP], (subnet, text)
