"""DNS Cookies (RFC 7873) with RFC 9018 server cookies.

Units: SipHash-2-4 against the reference vectors, the server cookie against
RFC 9018 Appendix A, validation windows and the reuse of issued cookies with
an injected clock, the parser, the config keys. Over real sockets on
127.0.0.1: a client cookie gets a server cookie, which validates when sent
back, expires, is refreshed; malformed cookies get FORMERR; BADCOOKIE only
when asked for and never over TCP; RRL exempts a proven source; worker
processes share the parent's secret. Rollover (RFC 9018 section 5): a
previous secret validates (counted "rollover") and its cookie is replaced,
a secret retired by a reload validates for ``LIFETIME`` more, over a socket,
in the worker processes and through ``App.reload``. And a focused
differential test: the fast path and the full path give the same bytes for
cookie queries, also while a previous secret validates.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import random
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import dns.asyncquery
import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from config.errors import ConfigError
from config.loader import load, load_text
from config.model import Server
from dnsserver import cookies, wire
from dnsserver.app import App
from dnsserver.cookies import ServerCookies, server_cookie, siphash24
from dnsserver.handler import QueryHandler
from dnsserver.metrics import COOKIE_RESULTS
from dnsserver.server import DnsServer
from tests.dnsserver import test_app, test_workers
from tests.dnsserver import zonefixture as zf
from tests.dnsserver.test_rrl import FakeClock
from tests.dnsserver.test_server import Running, raw_udp, udp

Z = zf.ZONE
WWW = f"www.{Z}"
SECRET = bytes.fromhex("e5e973e5a6b2a43f48e7dc849e37bfcf")  # RFC 9018 Appendix A
START = 1_700_000_000.0
COOKIE = dns.edns.OptionType.COOKIE
HEAD = b"\x00\x0a\x00\x18"  # a reply's COOKIE option: code 10, 24 bytes


def clock_at(now: float = START) -> FakeClock:
    clock = FakeClock()
    clock.now = now
    return clock


# -- SipHash-2-4 ------------------------------------------------------------------

REF_KEY = bytes(range(16))


@pytest.mark.parametrize(("length", "want"), [
    (0, 0x726FDB47DD0E0E31),  # the reference implementation's vectors (key 00..0f,
    (15, 0xA129CA6149BE45E5),  # message 00..len-1), and the paper's example
    (63, 0x958A324CEB064572),
])
def test_siphash_reference_vectors(length: int, want: int) -> None:
    assert siphash24(REF_KEY, bytes(range(length))) == want


def test_siphash_depends_on_every_key_and_message_byte() -> None:
    base = siphash24(REF_KEY, bytes(range(20)))
    for i in range(16):
        key = bytearray(REF_KEY)
        key[i] ^= 1
        assert siphash24(bytes(key), bytes(range(20))) != base
    for i in range(20):
        msg = bytearray(range(20))
        msg[i] ^= 0x80
        assert siphash24(REF_KEY, bytes(msg)) != base
    assert siphash24(REF_KEY, bytes(range(21))) != base


# -- RFC 9018 Appendix A ------------------------------------------------------------

V6 = "2001:db8:220:1:59de:d0f4:8769:82b8"
OLD_SECRET = bytes.fromhex("dd3bdf9344b678b185a6f5cb60fca715")
NEW_SECRET = bytes.fromhex("445536bcd2513298075a5d379663c962")


@pytest.mark.parametrize(("secret", "client", "ip", "at", "want"), [
    (SECRET, "2464c4abcf10c957", "198.51.100.100", 1559731985,
     "010000005cf79f111f8130c3eee29480"),  # A.1
    (SECRET, "2464c4abcf10c957", "198.51.100.100", 1559734385,
     "010000005cf7a871d4a564a1442aca77"),  # A.2
    (SECRET, "fc93fc62807ddb86", "203.0.113.203", 1559734700,
     "010000005cf7a9acf73a7810aca2381e"),  # A.3
    (NEW_SECRET, "22681ab97d52c298", V6, 1559741961,
     "010000005cf7c609a6bb79d16625507a"),  # A.4
], ids=["A.1", "A.2", "A.3", "A.4"])
def test_rfc9018_server_cookies(secret: bytes, client: str, ip: str, at: int, want: str) -> None:
    got = server_cookie(secret, bytes.fromhex(client), wire.packed_address(ip), at)
    assert got.hex() == want


def test_rfc9018_a1_a2_through_the_keeper() -> None:
    """A.1: a client cookie alone gets a new server cookie; A.2: 40 minutes
    later that cookie is valid but worn, and the reply has a new one."""
    clock = clock_at(1559731985)
    keeper = ServerCookies(SECRET, clock=clock)
    option, result = keeper.reply(bytes.fromhex("2464c4abcf10c957"), "198.51.100.100")
    assert result == cookies.NEW
    assert option == HEAD + bytes.fromhex("2464c4abcf10c957010000005cf79f111f8130c3eee29480")
    clock.now = 1559734385
    option, result = keeper.reply(option[4:], "198.51.100.100")
    assert result == cookies.VALID
    assert option == HEAD + bytes.fromhex("2464c4abcf10c957010000005cf7a871d4a564a1442aca77")


def test_rfc9018_a3_reserved_bytes_are_hashed_as_received() -> None:
    sent = bytes.fromhex("fc93fc62807ddb8601abcdef5cf78f71a314227b6679ebf5")
    made = 0x5CF78F71
    clock = clock_at(made + 600)
    keeper = ServerCookies(SECRET, clock=clock)
    assert keeper.reply(sent, "203.0.113.203") == (HEAD + sent, cookies.VALID)  # fresh: kept
    assert keeper.reply(sent, "203.0.113.204")[1] == cookies.INVALID  # another address
    clock.now = 1559734700  # the example: 1 h 52 min after it was made, expired
    option, result = ServerCookies(SECRET, clock=clock).reply(sent, "203.0.113.203")
    assert result == cookies.INVALID
    assert option == HEAD + bytes.fromhex("fc93fc62807ddb86010000005cf7a9acf73a7810aca2381e")


def test_rfc9018_a4_cookie_of_an_older_secret_gets_a_new_one() -> None:
    sent = bytes.fromhex("22681ab97d52c298010000005cf7c57926556bd0934c72f8")
    at = 1559741961
    assert ServerCookies(OLD_SECRET, clock=clock_at(at)).reply(sent, V6)[1] == cookies.VALID
    option, result = ServerCookies(NEW_SECRET, clock=clock_at(at)).reply(sent, V6)
    assert result == cookies.INVALID
    assert option == HEAD + bytes.fromhex("22681ab97d52c298010000005cf7c609a6bb79d16625507a")


# -- validation windows, reuse ---------------------------------------------------------

CLIENT = bytes.fromhex("0102030405060708")


def issued(keeper: ServerCookies, client: str = "192.0.2.1") -> bytes:
    option, result = keeper.reply(CLIENT, client)
    assert result == cookies.NEW and option[:4] == HEAD and option[4:12] == CLIENT
    return option[4:]


@pytest.mark.parametrize(("later", "result", "same"), [
    (0, cookies.VALID, True),
    (1799, cookies.VALID, True),  # fresh: sent back unchanged
    (1800, cookies.VALID, False),  # half an hour old: valid, and a new one
    (3600, cookies.VALID, False),  # an hour: the last second it holds
    (3601, cookies.INVALID, False),
    (-300, cookies.VALID, True),  # made five minutes "ahead" (another replica's clock)
    (-301, cookies.INVALID, False),
])
def test_validity_window(later: int, result: str, same: bool) -> None:
    clock = clock_at()
    cookie = issued(ServerCookies(SECRET, clock=clock))
    clock.now = START + later
    option, got = ServerCookies(SECRET, clock=clock).reply(cookie, "192.0.2.1")
    assert got == result
    assert (option[4:] == cookie) == same
    stamp = int.from_bytes(option[16:20], "big")
    assert stamp == (int(START) if same else int(START + later))


def test_timestamp_wraps_as_serial_number() -> None:
    clock = clock_at(2**32 - 100)
    cookie = issued(ServerCookies(SECRET, clock=clock))
    clock.now = 2**32 + 1000  # 1100 s later, across the wrap of the 32-bit timestamp
    assert ServerCookies(SECRET, clock=clock).reply(cookie, "192.0.2.1") == (HEAD + cookie,
                                                                              cookies.VALID)


def test_bad_server_cookies_are_invalid() -> None:
    keeper = ServerCookies(SECRET, clock=clock_at())
    cookie = issued(keeper)
    for bad in (cookie[:-1] + bytes((cookie[-1] ^ 1,)),  # hash
                cookie[:8] + b"\x02" + cookie[9:],  # version 2
                cookie[:8] + bytes(8),  # 8-byte server cookie: not ours
                cookie + bytes(8),  # 24-byte server cookie
                bytes(8) + cookie[8:]):  # another client cookie
        assert keeper.reply(bad, "192.0.2.1")[1] == cookies.INVALID, bad.hex()
    assert keeper.reply(cookie, "192.0.2.2")[1] == cookies.INVALID
    assert ServerCookies(bytes(16), clock=clock_at()).reply(cookie, "192.0.2.1")[1] == \
        cookies.INVALID


def test_issued_cookie_is_reused_for_a_while_then_renewed() -> None:
    clock = clock_at()
    keeper = ServerCookies(SECRET, clock=clock)
    first = issued(keeper)
    clock.now += cookies.REUSE - 1
    assert issued(keeper) == first  # the same: no new hash per query
    clock.now += 2
    second = issued(keeper)
    assert second != first and int.from_bytes(second[12:16], "big") == int(clock.now)
    assert issued(keeper, "192.0.2.9") != second  # bound to the address


def test_ipv4_mapped_client_is_its_ipv4_address() -> None:
    keeper = ServerCookies(SECRET, clock=clock_at())
    cookie = issued(keeper, "::ffff:192.0.2.1")
    assert keeper.reply(cookie, "192.0.2.1")[1] == cookies.VALID


def test_cache_is_bounded() -> None:
    keeper = ServerCookies(SECRET, clock=clock_at(), cache_max=50)
    issued(keeper)
    for i in range(120):
        keeper.reply(i.to_bytes(8, "big"), "192.0.2.1")
        assert len(keeper._cache) <= 50
    assert len(issued(keeper)) == 24  # still answers


def test_proven_reads_the_query() -> None:
    keeper = ServerCookies(SECRET, clock=clock_at())
    cookie = issued(keeper)

    def query(option: bytes | None) -> bytes:
        opts = [] if option is None else [dns.edns.GenericOption(COOKIE, option)]
        return dns.message.make_query(WWW, "A", use_edns=0, options=opts).to_wire()

    assert keeper.proven(query(cookie), "192.0.2.1")
    assert not keeper.proven(query(cookie), "192.0.2.2")
    assert not keeper.proven(query(CLIENT), "192.0.2.1")
    assert not keeper.proven(query(None), "192.0.2.1")
    assert not keeper.proven(dns.message.make_query(WWW, "A").to_wire(), "192.0.2.1")
    assert not keeper.proven(query(cookie)[:-3], "192.0.2.1")
    assert not keeper.proven(b"\x00" * 5, "192.0.2.1")


# -- rollover: previous secrets (RFC 9018 section 5) ----------------------------------------

OTHER_SECRET = bytes(range(16, 32))  # a secret this server never had
LOOPBACK = b"\x7f\x00\x00\x01"


def made_with(secret: bytes, at: float, client: str = "192.0.2.1") -> bytes:
    """The COOKIE option data a server with ``secret`` issued ``client`` at ``at``."""
    return CLIENT + server_cookie(secret, CLIENT, wire.packed_address(client), int(at))


def rolling(clock: FakeClock, *previous: bytes) -> ServerCookies:
    """A keeper issuing with ``SECRET`` that still validates ``previous``."""
    return ServerCookies(cookies.Keys.configured(SECRET, previous), clock=clock)


@pytest.mark.parametrize(("later", "result"), [
    (0, "rollover"),  # fresh: replaced all the same, never sent back
    (1799, "rollover"),
    (3600, "rollover"),  # the window of the previous secret's cookies is the same
    (3601, "invalid"),
    (-300, "rollover"),
    (-301, "invalid"),
])
def test_previous_secret_validates_and_is_replaced(later: int, result: str) -> None:
    old = made_with(OLD_SECRET, START)
    clock = clock_at(START + later)
    option, got = rolling(clock, OLD_SECRET).reply(old, "192.0.2.1")
    assert got == result
    assert option == HEAD + made_with(SECRET, START + later)  # a new one, current secret
    again, fresh = rolling(clock, OLD_SECRET).reply(option[4:], "192.0.2.1")
    assert (again, fresh) == (option, cookies.VALID)  # the replacement validates


def test_unknown_secret_forged_or_moved_cookie_is_invalid_despite_previous() -> None:
    clock = clock_at(START + 60)
    keeper = rolling(clock, OLD_SECRET, NEW_SECRET)
    old = made_with(OLD_SECRET, START)
    forged = old[:-1] + bytes((old[-1] ^ 1,))
    for bad, client in ((made_with(OTHER_SECRET, START), "192.0.2.1"), (forged, "192.0.2.1"),
                        (old, "192.0.2.2")):
        option, result = keeper.reply(bad, client)
        assert result == cookies.INVALID, bad.hex()
        assert option == HEAD + made_with(SECRET, clock.now, client)
    assert keeper.reply(made_with(NEW_SECRET, START), "192.0.2.1")[1] == cookies.ROLLOVER
    assert ServerCookies(SECRET, clock=clock).reply(old, "192.0.2.1")[1] == cookies.INVALID


def test_rollover_is_proven_for_rrl() -> None:
    clock = clock_at(START + 60)
    data = query(made_with(OLD_SECRET, START, "127.0.0.1")).to_wire()
    assert rolling(clock, OLD_SECRET).proven(data, "127.0.0.1")
    assert not ServerCookies(SECRET, clock=clock).proven(data, "127.0.0.1")
    assert not rolling(clock, OTHER_SECRET).proven(data, "127.0.0.1")


def test_rotated_keys_keep_the_old_secret_for_a_lifetime() -> None:
    """A reload that changes the secret: the old one validates until LIFETIME
    after the change (a replica not yet reloaded may still issue with it),
    then not at all; the decision kept never outlives that."""
    clock = clock_at()
    before = ServerCookies(OLD_SECRET, clock=clock)
    issued_before = issued(before)
    clock.now = START + 100  # the reload
    keys = before.keys.rotated(SECRET, (), clock.now)
    assert keys.current == SECRET and keys.previous == ((OLD_SECRET, START + 100 + 3600),)
    after = before.rekeyed(keys)
    assert after.clock is clock and after.keys == keys and before.keys.current == OLD_SECRET
    option, result = after.reply(issued_before, "192.0.2.1")
    assert result == cookies.ROLLOVER and option == HEAD + made_with(SECRET, clock.now)
    late = made_with(OLD_SECRET, START + 3650)  # another replica, still on the old secret
    clock.now = START + 3690  # 10 s before the old secret retires
    assert after.reply(late, "192.0.2.1")[1] == cookies.ROLLOVER
    clock.now = START + 3700  # the last second it validates
    assert after.reply(late, "192.0.2.1")[1] == cookies.ROLLOVER
    clock.now = START + 3701
    assert after.reply(late, "192.0.2.1")[1] == cookies.INVALID  # no longer, though 51 s old
    later = keys.rotated(SECRET, (), clock.now)
    assert later.previous == ()  # gone for good at the next rotation


def test_rotation_rules() -> None:
    now = START
    configured = cookies.Keys.configured(SECRET, (OLD_SECRET, OLD_SECRET, SECRET))
    assert configured.previous == ((OLD_SECRET, math.inf),)  # once, never the current one
    same = configured.rotated(SECRET, (OLD_SECRET,), now)
    assert same == configured  # nothing changed: nothing retired
    new = configured.rotated(NEW_SECRET, (), now)  # the old current retires; the
    assert new.previous == ((SECRET, now + 3600),)  # previous the config dropped goes now
    back = new.rotated(SECRET, (NEW_SECRET,), now + 10)  # rolled back: configured ones last
    assert back.previous == ((NEW_SECRET, math.inf),)
    again = new.rotated(OTHER_SECRET, (), now + 10)  # retired ones keep their time
    assert again.previous == ((NEW_SECRET, now + 3610), (SECRET, now + 3600))
    with pytest.raises(ValueError, match="16 bytes"):
        cookies.Keys.configured(SECRET, (b"short",))
    with pytest.raises(ValueError, match="16 bytes"):
        cookies.Keys.configured(b"short")
    for text in (repr(new), str(new), repr(ServerCookies(new))):
        assert SECRET.hex() not in text and repr(SECRET) not in text


def test_keeper_of_a_server_with_previous_secrets() -> None:
    server = Server(cookie_secret=SECRET, cookie_secret_previous=(OLD_SECRET,))
    keeper = cookies.make_cookies(server)
    assert keeper is not None and keeper is cookies.make_cookies(server)
    assert keeper is not cookies.make_cookies(Server(cookie_secret=SECRET))
    assert keeper.keys == cookies.Keys.configured(SECRET, (OLD_SECRET,))
    assert cookies.pinned(server) is server
    assert cookies.make_cookies(replace(server, cookies=False)) is None


def test_rollover_is_a_documented_metric_result() -> None:
    assert cookies.ROLLOVER == "rollover" and "rollover" in COOKIE_RESULTS
    assert {cookies.VALID, cookies.ROLLOVER} == cookies.ACCEPTED


# -- the parser ---------------------------------------------------------------------


def _with_cookie(*options: bytes, version: int = 0) -> bytes:
    msg = dns.message.make_query(WWW, "A", use_edns=version,
                                 options=[dns.edns.GenericOption(COOKIE, o) for o in options])
    return msg.to_wire()


def test_parse_query_reads_the_cookie() -> None:
    edns = wire.parse_query(_with_cookie(CLIENT)).edns
    assert edns is not None and edns.cookie == CLIENT and not edns.cookie_malformed
    long = CLIENT + bytes(range(32))
    edns = wire.parse_query(_with_cookie(long, CLIENT)).edns
    assert edns is not None and edns.cookie == long and not edns.cookie_malformed  # the first
    none = wire.parse_query(dns.message.make_query(WWW, "A", use_edns=0).to_wire()).edns
    assert none is not None and none.cookie is None
    v1 = wire.parse_query(_with_cookie(CLIENT, version=1)).edns
    assert v1 is not None and v1.cookie is None  # options of EDNS version 1 are not ours


@pytest.mark.parametrize("length", [0, 7, 9, 15, 41, 60])
def test_parse_query_marks_malformed_cookies(length: int) -> None:
    edns = wire.parse_query(_with_cookie(bytes(length))).edns
    assert edns is not None and edns.cookie_malformed
    edns = wire.parse_query(_with_cookie(CLIENT, bytes(length))).edns
    assert edns is not None and edns.cookie_malformed  # any of them


# -- config -------------------------------------------------------------------------

BASE = "zone: example.com.\nfederation: f\n"


def test_config_defaults_and_values(monkeypatch: pytest.MonkeyPatch) -> None:
    d = load_text(BASE).server
    assert d.cookies is True and d.cookie_secret is None and d.require_server_cookie is False
    s = load_text(BASE + "server:\n  cookies: false\n  require_server_cookie: true\n"
                  f"  cookie_secret: {SECRET.hex().upper()}\n").server
    assert (s.cookies, s.require_server_cookie, s.cookie_secret) == (False, True, SECRET)
    monkeypatch.setenv("FEDNS_TEST_COOKIE_SECRET", SECRET.hex())
    s = load_text(BASE + "server:\n  cookie_secret: ${FEDNS_TEST_COOKIE_SECRET}\n").server
    assert s.cookie_secret == SECRET


def _secret_problems(value: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_text(BASE + f"server:\n  cookie_secret: {value}\n", "t.yaml")
    problems = [str(p) for p in info.value.problems]
    assert len(problems) == 1 and "cookie_secret" in problems[0]
    return problems


@pytest.mark.parametrize("value", ["abcdef", "e5e973e5a6b2a43f48e7dc849e37bfcfaa",
                                   "zze973e5a6b2a43f48e7dc849e37bfcf"])
def test_bad_cookie_secret_is_refused_without_showing_it(value: str) -> None:
    (problem,) = _secret_problems(value)
    assert value not in problem and value[2:8] not in problem


def test_empty_cookie_secret_is_refused() -> None:
    _secret_problems('""')


def test_cookie_secret_from_a_missing_variable_is_refused() -> None:
    (problem,) = _secret_problems("${FEDNS_NO_SUCH_COOKIE_VAR}")
    assert "FEDNS_NO_SUCH_COOKIE_VAR" in problem


def test_secret_is_never_in_the_config_repr() -> None:
    cfg = load_text(BASE + f"server:\n  cookie_secret: {SECRET.hex()}\n")
    for text in (repr(cfg), repr(cfg.server), str(cfg)):
        assert SECRET.hex() not in text.lower() and repr(SECRET) not in text


def test_keeper_of_a_server() -> None:
    assert cookies.make_cookies(Server(cookies=False)) is None
    a = cookies.make_cookies(Server())
    assert a is not None and a is cookies.make_cookies(Server())  # one per process
    b = cookies.make_cookies(Server(cookie_secret=SECRET))
    assert b is not None and b is not a and b is cookies.make_cookies(Server(cookie_secret=SECRET))
    pinned = cookies.pinned(Server())
    assert pinned.cookie_secret == cookies.process_secret() and len(pinned.cookie_secret) == 16
    assert cookies.pinned(Server(cookie_secret=SECRET)).cookie_secret == SECRET


# -- over real sockets ------------------------------------------------------------------


@dataclass
class Live(Running):
    clock: FakeClock = field(default_factory=FakeClock)


@contextlib.asynccontextmanager
async def serving(clock: FakeClock | None = None, **server: object) -> AsyncIterator[Live]:
    """A DnsServer on 127.0.0.1 (port 0) whose cookies use ``SECRET`` and ``clock``."""
    clock = clock or clock_at()
    registry = CollectorRegistry()
    srv = DnsServer(zf.config(**server), zf.locator(), registry=registry,
                    cookies=ServerCookies(SECRET, clock=clock))
    assert srv.update(zf.snapshot())
    await srv.start()
    live = Live(srv, srv.addresses[0][1], registry, clock)
    try:
        yield live
    finally:
        await srv.stop()


def query(option: bytes | None = CLIENT, name: str = WWW, qid: int = 7,
          payload: int = 1232) -> dns.message.Message:
    opts = [] if option is None else [dns.edns.GenericOption(COOKIE, option)]
    q = dns.message.make_query(name, "A", use_edns=0, options=opts, payload=payload)
    q.id = qid
    return q


def cookie_of(reply: dns.message.Message) -> dns.edns.CookieOption:
    found = [o for o in reply.options if o.otype == COOKIE]
    assert len(found) == 1, reply
    assert isinstance(found[0], dns.edns.CookieOption)
    return found[0]


def full(c: dns.edns.CookieOption) -> bytes:
    return bytes(c.client) + bytes(c.server)


def counted(live: Running, result: str) -> float:
    text = generate_latest(live.registry).decode()
    for line in text.splitlines():
        if line.startswith(f'fedns_dns_cookies_total{{result="{result}"}}'):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no cookie counter for {result}: {text}")


async def tcp(live: Running, q: dns.message.Message) -> dns.message.Message:
    return await dns.asyncquery.tcp(q, "127.0.0.1", port=live.port, timeout=2)


async def test_client_cookie_gets_a_server_cookie_which_then_validates() -> None:
    async with serving() as live:
        first = await udp(live, query())
        assert first.rcode() == dns.rcode.NOERROR and first.answer
        c = cookie_of(first)
        assert c.client == CLIENT and len(c.server) == 16
        assert c.server[:4] == b"\x01\x00\x00\x00"  # version 1, reserved 0
        assert int.from_bytes(c.server[4:8], "big") == int(START)
        assert c.server == server_cookie(SECRET, CLIENT, b"\x7f\x00\x00\x01", int(START))
        live.clock.now += 60
        again = await udp(live, query(full(c)))
        assert again.rcode() == dns.rcode.NOERROR and again.answer == first.answer
        assert full(cookie_of(again)) == full(c)  # fresh and valid: kept
        assert counted(live, "new") == 1 and counted(live, "valid") == 1


async def test_expired_and_worn_cookies_get_a_new_one() -> None:
    async with serving() as live:
        c = full(cookie_of(await udp(live, query())))
        for later, result in ((1900, "valid"), (4000, "invalid")):
            live.clock.now = START + later
            reply = await udp(live, query(c))
            assert reply.rcode() == dns.rcode.NOERROR and reply.answer  # answered normally
            fresh = cookie_of(reply)
            assert fresh.client == CLIENT and full(fresh) != c
            assert int.from_bytes(fresh.server[4:8], "big") == int(START + later)
            assert counted(live, result) == 1
            again = await udp(live, query(full(fresh)))
            assert full(cookie_of(again)) == full(fresh)


async def test_wrong_client_or_forged_cookie_gets_a_new_one() -> None:
    async with serving() as live:
        c = full(cookie_of(await udp(live, query())))
        forged = c[:-1] + bytes((c[-1] ^ 0xFF,))
        reply = await udp(live, query(forged))
        assert reply.rcode() == dns.rcode.NOERROR and full(cookie_of(reply)) == c  # reissued
        other = await udp(live, query(c), source="127.0.0.2")  # the cookie is 127.0.0.1's
        assert full(cookie_of(other)) != c and counted(live, "invalid") == 2


@pytest.mark.parametrize("length", [1, 7, 12, 15, 41])
async def test_malformed_cookie_gets_formerr(length: int) -> None:
    async with serving() as live:
        for transport in (udp, tcp):
            reply = await transport(live, query(bytes(length)))
            assert reply.rcode() == dns.rcode.FORMERR and not reply.answer
        assert counted(live, "malformed") == 2


async def test_cookies_off_ignores_the_option() -> None:
    async with serving(cookies=False) as live:
        reply = await udp(live, query())
        assert reply.rcode() == dns.rcode.NOERROR and not reply.options
        reply = await udp(live, query(bytes(12)))  # no cookie support: nothing is malformed
        assert reply.rcode() == dns.rcode.NOERROR and reply.answer


async def test_tcp_echoes_cookies() -> None:
    async with serving() as live:
        c = cookie_of(await tcp(live, query()))
        assert c.client == CLIENT and len(c.server) == 16
        again = await tcp(live, query(full(c)))
        assert full(cookie_of(again)) == full(c) and again.answer


async def test_other_replies_carry_the_cookie_too() -> None:
    async with serving() as live:
        for name, rcode in ((f"nope.{Z}", dns.rcode.NXDOMAIN), ("www.example.net.",
                                                                dns.rcode.REFUSED)):
            reply = await udp(live, query(name=name))
            assert reply.rcode() == rcode and cookie_of(reply).client == CLIENT
        reply = await udp(live, query(name=f"bIg.{Z}", payload=512))  # truncated: still the cookie
        assert reply.flags & dns.flags.TC and cookie_of(reply).client == CLIENT


async def test_badcookie_only_when_required_and_never_over_tcp() -> None:
    async with serving(require_server_cookie=True) as live:
        plain = await udp(live, query(None))
        assert plain.rcode() == dns.rcode.NOERROR and plain.answer  # no cookie: answered
        bad = await udp(live, query())
        assert bad.rcode() == dns.rcode.BADCOOKIE and not bad.answer
        c = cookie_of(bad)
        assert c.client == CLIENT and len(c.server) == 16
        good = await udp(live, query(full(c)))
        assert good.rcode() == dns.rcode.NOERROR and good.answer
        over_tcp = await tcp(live, query())
        assert over_tcp.rcode() == dns.rcode.NOERROR and over_tcp.answer
        text = generate_latest(live.registry).decode()
        assert 'rcode="BADCOOKIE"' in text


async def flood(live: Running, option: bytes | None, wait: float = 0.3
                ) -> tuple[int, int, int]:
    """(answered, slipped, dropped) of 20 UDP queries with ``option``."""
    answered = slipped = dropped = 0
    for i in range(20):
        data = await raw_udp(live, query(option, qid=i).to_wire(), wait=wait)
        if data is None:
            dropped += 1
        elif dns.message.from_wire(data).flags & dns.flags.TC:
            slipped += 1
        else:
            answered += 1
    return answered, slipped, dropped


def frozen_rrl(live: Running) -> None:
    """No refill of the RRL's accounts: a flood's outcome is exact."""
    assert live.server.rrl is not None
    live.server.rrl.clock = FakeClock()


async def test_rrl_exempts_a_source_with_a_valid_cookie() -> None:
    async with serving(rrl_responses_per_second=5, rrl_slip=2) as live:
        frozen_rrl(live)
        c = full(cookie_of(await udp(live, query())))
        assert await flood(live, c, wait=2.0) == (20, 0, 0)
        answered, slipped, dropped = await flood(live, CLIENT)  # a client cookie proves nothing
        assert answered == 0 and slipped and dropped
        answered, slipped, dropped = await flood(live, None)
        assert answered == 0 and slipped and dropped
        assert await flood(live, c, wait=2.0) == (20, 0, 0)
        text = generate_latest(live.registry).decode()
        exempted = [line for line in text.splitlines()
                    if line.startswith('fedns_dns_rrl_total{action="exempted"}')]
        assert exempted and float(exempted[0].rsplit(" ", 1)[1]) >= 30


# -- rollover over real sockets: a reload changes the secret -------------------------------


def rotate(server: DnsServer, secret: bytes, *previous: bytes) -> list[str]:
    """Reconfigure ``server`` as a reload of its config with ``secret`` (and
    ``previous``) would; the keys that need a restart."""
    cfg = server.config
    return server.reconfigure(replace(cfg, server=replace(
        cfg.server, cookie_secret=secret, cookie_secret_previous=previous)))


async def test_reload_rotates_the_secret_without_losing_a_client() -> None:
    async with serving(cookie_secret=SECRET) as live:
        c = full(cookie_of(await udp(live, query())))
        live.clock.now += 100
        assert rotate(live.server, NEW_SECRET) == []  # no restart needed
        reply = await udp(live, query(c))  # issued before the reload
        assert reply.rcode() == dns.rcode.NOERROR and reply.answer
        fresh = full(cookie_of(reply))
        assert fresh == CLIENT + server_cookie(NEW_SECRET, CLIENT, LOOPBACK, int(live.clock.now))
        assert counted(live, "rollover") == 1 and counted(live, "valid") == 0
        assert full(cookie_of(await tcp(live, query(c)))) == fresh  # the same decision
        again = await udp(live, query(fresh))
        assert full(cookie_of(again)) == fresh and counted(live, "valid") == 1
        live.clock.now += cookies.LIFETIME + 1  # the old secret retired a LIFETIME ago
        late = CLIENT + server_cookie(SECRET, CLIENT, LOOPBACK, int(live.clock.now) - 10)
        reply = await udp(live, query(late))
        assert full(cookie_of(reply)) != late and counted(live, "invalid") == 1


async def test_reload_that_keeps_the_secret_keeps_the_keeper() -> None:
    async with serving(cookie_secret=SECRET) as live:
        keeper = live.server.cookies
        assert rotate(live.server, SECRET) == []
        assert live.server.cookies is keeper and live.server.handler.cookies is keeper
        cfg = live.server.config
        assert live.server.reconfigure(replace(cfg, server=replace(cfg.server,
                                                                   cookies=False))) == ["cookies"]


async def test_rrl_exempts_cookies_of_the_reloaded_secret() -> None:
    async with serving(rrl_responses_per_second=5, rrl_slip=2, cookie_secret=SECRET) as live:
        frozen_rrl(live)
        c = full(cookie_of(await udp(live, query())))
        assert rotate(live.server, NEW_SECRET) == []
        assert await flood(live, c, wait=2.0) == (20, 0, 0)  # the previous secret's
        fresh = full(cookie_of(await udp(live, query(c))))
        assert fresh != c
        assert await flood(live, fresh, wait=2.0) == (20, 0, 0)  # the new secret's


async def test_required_cookie_of_a_previous_secret_is_answered() -> None:
    async with serving(cookie_secret=SECRET, require_server_cookie=True) as live:
        c = full(cookie_of(await udp(live, query())))  # BADCOOKIE, with a cookie
        assert rotate(live.server, NEW_SECRET) == []
        reply = await udp(live, query(c))
        assert reply.rcode() == dns.rcode.NOERROR and reply.answer
        assert full(cookie_of(reply)) != c


# -- fast path and full path ------------------------------------------------------------


def _pair(keeper: ServerCookies, **server: object) -> tuple[QueryHandler, QueryHandler]:
    handlers = []
    for fast in (True, False):
        srv = DnsServer(zf.config(**server), zf.locator(), registry=None, fast_path=fast,
                        cookies=keeper)
        assert srv.update(zf.wild_snapshot())
        handlers.append(srv.handler)
    return handlers[0], handlers[1]


NAMES = [WWW, zf.GLOBAL, zf.EU_AZ, f"nope.{Z}", f"big.{Z}", f"alias.{Z}", "www.example.net.",
         *zf.WILD_NAMES]


@pytest.mark.parametrize("rollover", [False, True])
@pytest.mark.parametrize("require", [False, True])
def test_fast_and_full_paths_agree_on_cookie_queries(require: bool, rollover: bool) -> None:
    clock = clock_at()
    keeper = rolling(clock, OLD_SECRET) if rollover else ServerCookies(SECRET, clock=clock)
    fast, full_path = _pair(keeper, require_server_cookie=require)
    rng = random.Random(9018)
    learned: dict[str, bytes] = {}
    fast_answers = 0
    for i in range(3000):
        client = rng.choice(["127.0.0.1", "127.0.0.2", "127.0.0.3", "::1"])
        roll = rng.random()
        if roll < 0.3 or client not in learned:
            option = rng.choice([CLIENT, bytes(8), bytes(range(8))])
        elif roll < 0.8:
            option = learned[client]
        elif roll < 0.85:
            option = learned[client][:-1] + b"\x00"  # forged
        elif roll < 0.9:  # made with the previous secret, in or out of its window
            option = made_with(OLD_SECRET, clock.now - rng.randrange(-400, 4000), client)
        else:
            option = bytes(rng.choice([3, 12, 41]))  # malformed
        opts: list[dns.edns.Option] = [dns.edns.GenericOption(COOKIE, option)]
        if rng.random() < 0.3:
            opts.append(dns.edns.ECSOption(rng.choice(["198.51.100.0", "203.0.113.0"]), 24))
        q = dns.message.make_query(rng.choice(NAMES), rng.choice(["A", "AAAA", "TXT", "ANY"]),
                                   use_edns=0, payload=rng.choice([512, 1232, 4096]),
                                   options=opts, want_dnssec=rng.random() < 0.2)
        data = q.to_wire()
        tcp = rng.random() < 0.2
        before = fast.slow_queries
        a = fast.handle(data, client, tcp)
        b = full_path.handle(data, client, tcp)
        assert a == b, (q, client, tcp)
        assert a is not None
        fast_answers += fast.slow_queries == before
        reply = dns.message.from_wire(a)
        if reply.rcode() != dns.rcode.FORMERR:
            learned[client] = full(cookie_of(reply))
        if i % 500 == 499:
            clock.now += 1000  # cookies wear out, expire, get reissued
    assert fast_answers > 1000  # the fast path answered many of them
    assert fast.metrics.errors == 0 and full_path.metrics.errors == 0
    assert (fast.metrics.cookies.counts["rollover"] > 0) == rollover


def test_cookie_queries_do_not_fill_the_context_cache() -> None:
    """Each client cookie is its own OPT record: such queries are kept apart
    (``cookie_contexts``) so they never push the plain queries' contexts out."""
    fast, _ = _pair(ServerCookies(SECRET, clock=clock_at()))
    state = fast.state
    assert state is not None
    for i in range(200):
        fast.handle(query(i.to_bytes(8, "big")).to_wire(), "127.0.0.1", False)
    assert not any(b"\x00\x0a\x00\x08" in key for key in state.contexts)
    assert len(state.cookie_contexts) == 200


# -- worker processes share the secret --------------------------------------------------------


def ask(port: int, option: bytes) -> bytes:
    """One cookie query from a new socket (a new source port: SO_REUSEPORT
    spreads them over the processes); the reply's whole cookie."""
    reply = dns.query.udp(query(option), "127.0.0.1", port=port, timeout=2.0)
    return full(cookie_of(reply))


async def until(what: str, check: Callable[[], bool]) -> None:
    for _ in range(300):
        if await asyncio.to_thread(check):
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


async def test_workers_validate_the_parents_cookies() -> None:
    async with test_workers.parent_and_workers() as (parent, pool):
        port = parent.addresses[0][1]
        await until("workers serving", test_workers.serving(pool, 7))
        c = await asyncio.to_thread(ask, port, CLIENT)
        before = sum(s.queries for s in pool.stats())
        got = [await asyncio.to_thread(ask, port, c) for _ in range(40)]
        assert sum(s.queries for s in pool.stats()) > before  # workers answered some
        assert set(got) == {c}  # valid everywhere: each process kept it



def made_with_new(got: set[bytes]) -> bool:
    """Was every cookie in ``got`` made for 127.0.0.1 with ``NEW_SECRET``?"""
    keeper = ServerCookies(NEW_SECRET)
    return all(keeper.reply(g, "127.0.0.1")[1] == cookies.VALID for g in got)


async def asked(port: int, option: bytes, count: int = 40) -> set[bytes]:
    return {await asyncio.to_thread(ask, port, option) for _ in range(count)}


async def test_workers_follow_a_rotated_secret() -> None:
    """The parent rotates its secret at a reload and hands its keys to the
    workers: every process replaces a cookie of the old secret by one of the
    new, and a worker restarted later starts with the same keys."""
    async with test_workers.parent_and_workers() as (parent, pool):
        port = parent.addresses[0][1]
        await until("workers serving", test_workers.serving(pool, 7))
        c = await asyncio.to_thread(ask, port, CLIENT)  # the parent's per-process secret
        assert rotate(parent, NEW_SECRET) == []
        assert parent.cookies is not None
        pool.cookie_keys(parent.cookies.keys)
        before = sum(s.queries for s in await asyncio.to_thread(pool.stats))  # keys read
        got = await asked(port, c)
        assert sum(s.queries for s in await asyncio.to_thread(pool.stats)) > before
        assert c not in got and made_with_new(got)
        old = pool.pids()
        assert old[0] is not None
        os.kill(old[0], signal.SIGKILL)
        await until("worker 0 restarted", lambda: pool.pids()[0] not in (None, old[0]))
        await until("restarted worker serving", test_workers.serving(pool, 7))
        got = await asked(port, c)
        assert c not in got and made_with_new(got)


async def test_app_reload_rotates_the_secret_in_every_process(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = tmp_path / "f.yaml"
    base = test_app.BASE.format(us="192.0.2.10", more="")
    cfg.write_text(base + f"server: {{cookie_secret: {SECRET.hex()}, workers: 2}}\n")
    app = App(load(str(cfg)), config_path=str(cfg), publishers=False)
    await app.start()
    try:
        pool = app.workers
        assert pool is not None
        port = app.dns.addresses[0][1]
        await until("all serving", lambda: app.ready and test_workers.serving(
            pool, app.engine.snapshot.serial)())
        c = await asyncio.to_thread(ask, port, CLIENT)
        cfg.write_text(base + f"server: {{cookie_secret: {NEW_SECRET.hex()}, workers: 2}}\n")
        with caplog.at_level(logging.INFO):
            res = await app.reload()
        assert res.ok, res.problems
        assert "key=server.cookie_secret" not in caplog.text  # no restart needed
        assert "cookie_secret_rotated previous=1" in caplog.text
        await asyncio.to_thread(pool.stats)  # the worker has read its keys
        got = await asked(port, c)
        assert c not in got and made_with_new(got)
        assert not any(SECRET.hex() in r.getMessage() or NEW_SECRET.hex() in r.getMessage()
                       for r in caplog.records)
    finally:
        await app.stop()
