"""Response-rate limiting: token buckets, slip, accounts, bounded table; a real
UDP flood from one /24 is limited while another /24 and TCP are served."""

from __future__ import annotations

import asyncio
import socket
import time

import dns.asyncquery
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
from prometheus_client import CollectorRegistry, generate_latest

from config.model import Server
from dnsserver import rrl
from dnsserver.rrl import ResponseRateLimiter, client_prefix, make_rrl, response_class
from dnsserver.server import DnsServer
from tests.dnsserver import zonefixture as zf

Z = zf.ZONE


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def reply(name: str = f"www.{Z}", rtype: str = "A", rcode: int = dns.rcode.NOERROR,
          answers: int = 1, qid: int = 1) -> bytes:
    q = dns.message.make_query(name, rtype, use_edns=0)
    q.id = qid
    r = dns.message.make_response(q)
    r.set_rcode(rcode)
    for i in range(answers):
        r.answer.append(dns.rrset.from_text(name, 30, "IN", "A", f"192.0.2.{i + 1}"))
    return r.to_wire()


def limiter(rate: int = 5, slip: int = 0, **kw: object) -> tuple[ResponseRateLimiter, FakeClock]:
    clock = FakeClock()
    return ResponseRateLimiter(rate=rate, slip=slip, clock=clock, **kw), clock  # type: ignore[arg-type]


# -- unit -------------------------------------------------------------------------


def test_bucket_allows_rate_then_limits_and_refills() -> None:
    lim, clock = limiter(rate=5, window=2.0)
    out = [lim.check(reply(), "192.0.2.1") for _ in range(8)]
    assert sum(o is not None for o in out) == 5 and out[5:] == [None] * 3
    clock.now += 0.2  # one token back, but the account is in debt
    assert lim.check(reply(), "192.0.2.1") is None
    clock.now += 2.0 + 0.2 + 0.2  # debt is bounded by rate * window: repaid
    assert lim.check(reply(), "192.0.2.1") is not None
    assert (lim.passed, lim.dropped, lim.slipped) == (6, 4, 0)


def test_steady_flood_stays_limited_until_it_stops() -> None:
    lim, clock = limiter(rate=10, window=1.0)
    passed = 0
    for _ in range(200):  # 2 s at 100/s: 10x the rate
        clock.now += 0.01
        passed += lim.check(reply(), "192.0.2.1") is not None
    assert 10 <= passed <= 12
    clock.now += 1.0 + 0.1 + 0.1  # quiet for one window: served again
    assert lim.check(reply(), "192.0.2.1") is not None


def test_slip_sends_every_nth_limited_reply_truncated() -> None:
    lim, _ = limiter(rate=1, slip=2)
    full = reply(answers=3, qid=77)
    assert lim.check(full, "10.0.0.1") == full
    limited = [lim.check(full, "10.0.0.1") for _ in range(6)]
    assert [o is None for o in limited] == [True, False] * 3
    slipped = dns.message.from_wire(limited[1])  # type: ignore[arg-type]
    assert slipped.id == 77 and slipped.flags & dns.flags.TC and slipped.flags & dns.flags.QR
    assert slipped.question[0].name.to_text() == f"www.{Z}" and not slipped.answer
    assert not slipped.additional and slipped.edns < 0
    assert (lim.dropped, lim.slipped) == (3, 3)


def test_slip_one_slips_all() -> None:
    lim, _ = limiter(rate=1, slip=1)
    lim.check(reply(), "10.0.0.1")
    assert all(lim.check(reply(), "10.0.0.1") is not None for _ in range(5))


def test_accounts_by_prefix_and_response_class() -> None:
    lim, _ = limiter(rate=2)
    for _ in range(2):
        lim.check(reply(), "10.1.2.3")
    assert lim.check(reply(), "10.1.2.200") is None  # same /24
    assert lim.check(reply(), "10.1.3.3") is not None  # another /24
    assert lim.check(reply(rtype="AAAA"), "10.1.2.3") is not None  # another qtype
    assert lim.check(reply(f"mail.{Z}"), "10.1.2.3") is not None  # another name
    assert lim.check(reply("WwW.ExAmPlE.CoM."), "10.1.2.3") is None  # 0x20 folded
    # NXDOMAIN: one account per prefix whatever the name
    nx = [lim.check(reply(f"n{i}.{Z}", rcode=dns.rcode.NXDOMAIN, answers=0), "10.9.9.9")
          for i in range(3)]
    assert [o is None for o in nx] == [False, False, True]
    # errors: one account per prefix, whatever the rcode
    errs = [lim.check(reply("x.example.net.", rcode=rc, answers=0), "10.8.8.8")
            for rc in (dns.rcode.REFUSED, dns.rcode.FORMERR, dns.rcode.SERVFAIL)]
    assert [o is None for o in errs] == [False, False, True]


def test_response_class_of_shapes() -> None:
    assert response_class(b"\x00" * 5)[0] == rrl.ERROR
    assert response_class(reply(answers=0))[0] == rrl.NODATA
    assert response_class(reply(rcode=dns.rcode.NXDOMAIN, answers=0))[0] == rrl.NXDOMAIN
    cls, end = response_class(reply())
    assert cls == b"\x03www\x07example\x03com\x00\x00\x01" and end == 12 + len(cls) + 2
    truncated = bytearray(reply(answers=0))
    truncated[2] |= 0x02  # TC answer without records: keyed as an answer, not NODATA
    assert response_class(bytes(truncated))[0] == cls
    no_question = bytes(12)
    assert response_class(no_question) == (rrl.ERROR, 12)
    assert rrl.slip_reply(no_question, 12)[2] & 0x02


def test_client_prefixes() -> None:
    assert client_prefix("192.0.2.1") == client_prefix("192.0.2.254")
    assert client_prefix("192.0.2.1") != client_prefix("192.0.3.1")
    assert client_prefix("::ffff:192.0.2.1") == client_prefix("::ffff:192.0.2.9")
    assert client_prefix("2001:db8:0:100::1") == client_prefix("2001:db8:0:1ff::2")  # /56
    assert client_prefix("2001:db8:0:100::1") != client_prefix("2001:db8:0:200::1")
    assert client_prefix("192.0.2.1", 16) == client_prefix("192.0.9.1", 16)
    assert client_prefix("192.0.2.1", 16) != client_prefix("192.1.2.1", 16)
    assert client_prefix("2001:db8::1", 24, 44) == client_prefix("2001:db8:0:f::1", 24, 44)
    assert client_prefix("not-an-ip:") == "not-an-ip:"


def test_table_is_bounded_and_evicts_least_recent() -> None:
    lim, _ = limiter(rate=1, table_size=100)
    answer = reply()
    for _ in range(2):
        lim.check(answer, "10.0.0.1")  # account in debt
    for i in range(50_000):  # a spoofed flood from random prefixes
        lim.check(answer, f"{(i >> 16) % 256}.{(i >> 8) % 256}.{i % 256}.1")
    assert len(lim.table) == 100 and lim.evicted == 50_000 + 1 - 100
    assert lim.check(answer, "10.0.0.1") is not None  # evicted: starts afresh


def test_wrap_limits_udp_only() -> None:
    lim, _ = limiter(rate=1)
    handle = lim.wrap(lambda data, client, tcp: reply())
    assert handle(b"", "10.0.0.1", False) is not None
    assert handle(b"", "10.0.0.1", False) is None
    assert all(handle(b"", "10.0.0.1", True) is not None for _ in range(5))
    assert lim.wrap(lambda data, client, tcp: None)(b"", "10.0.0.1", False) is None


def test_make_rrl_from_config_and_metrics() -> None:
    assert make_rrl(Server(), None) is None
    registry = CollectorRegistry()
    lim = make_rrl(Server(rrl_responses_per_second=3, rrl_slip=1, rrl_window=4.0), registry)
    assert lim is not None and lim.rate == 3 and lim.slip == 1 and lim.floor == -12
    for _ in range(5):
        lim.check(reply(), "10.0.0.1")
    text = generate_latest(registry).decode()
    assert 'fedns_dns_rrl_total{action="slipped"} 2.0' in text
    assert 'fedns_dns_rrl_total{action="dropped"} 0.0' in text


# -- real sockets -----------------------------------------------------------------

RATE = 20
FLOOD = 400


async def _flood(port: int, source: str, count: int) -> tuple[int, int, float]:
    """Send ``count`` queries from ``source`` as fast as possible: (full answers,
    TC=1 replies, seconds from the first query to the last reply)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind((source, 0))
    full = tc = 0
    started = last = time.monotonic()
    try:
        for i in range(count):
            q = dns.message.make_query(f"www.{Z}", "A")
            q.id = i
            sock.sendto(q.to_wire(), ("127.0.0.1", port))
            if i % 50 == 49:
                await asyncio.sleep(0)
        while True:
            try:
                data = await asyncio.wait_for(loop.sock_recv(sock, 65535), 0.3)
            except TimeoutError:
                break
            last = time.monotonic()
            msg = dns.message.from_wire(data)
            if msg.flags & dns.flags.TC:
                tc += 1
            elif msg.answer:
                full += 1
    finally:
        sock.close()
    return full, tc, last - started


async def test_flood_from_one_prefix_is_limited_while_others_are_served() -> None:
    registry = CollectorRegistry()
    server = DnsServer(zf.config(rrl_responses_per_second=RATE, rrl_slip=2, rrl_window=5.0),
                       zf.locator(), registry=registry)
    assert server.update(zf.snapshot())
    await server.start()
    port = server.addresses[0][1]
    try:
        flood = asyncio.create_task(_flood(port, "127.0.1.1", FLOOD))
        other_full = 0
        for _ in range(RATE // 2):  # another /24, well within the rate, during the flood
            q = dns.message.make_query(f"www.{Z}", "A")
            r = await dns.asyncquery.udp(q, "127.0.0.1", port=port, source="127.0.2.1",
                                         timeout=2)
            other_full += bool(r.answer) and not r.flags & dns.flags.TC
        full, tc, seconds = await flood
        assert other_full == RATE // 2
        # the flooding prefix: its bucket plus refill while sending, no more
        assert RATE <= full <= RATE + RATE * seconds + 2, (full, seconds)
        limited = FLOOD - full
        assert abs(tc - limited / 2) <= 1, (tc, limited)
        # same prefix, other host: limited too; over TCP: always answered
        assert (await _flood(port, "127.0.1.2", 2))[:2] == (0, 1)
        q = dns.message.make_query(f"www.{Z}", "A")
        for _ in range(3):
            r = await dns.asyncquery.tcp(q, "127.0.0.1", port=port, source="127.0.1.2",
                                         timeout=2)
            assert r.answer and r.rcode() == dns.rcode.NOERROR
        text = generate_latest(registry).decode()
        assert f'fedns_dns_rrl_total{{action="slipped"}} {float(tc + 1)}' in text
    finally:
        await server.stop()
