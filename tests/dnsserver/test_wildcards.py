"""Wildcards (RFC 4592) and delegations (zone cuts) below the apex, on both
query paths (fast and full, byte-identical), through incremental rebuilds
(equal to a full build) and over real sockets with dig."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import replace

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from prometheus_client import CollectorRegistry

from dnsserver.handler import QueryHandler
from dnsserver.server import DnsServer
from healthwatch.snapshot import Record, Snapshot
from tests.dnsserver import zonefixture as zf
from tests.dnsserver.test_answers import (
    CLIENTS,
    _query,
    _toggled,
    _truth,
    _with_serial,
    derived_like_full_build,
)
from tests.dnsserver.test_server import Running, dig

Z = zf.ZONE
rec = zf.rec


def rfc4592_snapshot(serial: int = 1) -> Snapshot:
    """The example zone of RFC 4592 section 2.2.1, with ``example.com.`` for
    ``example.``."""
    records = [
        rec(Z, "SOA", f"ns1.{Z} hostmaster.{Z} {serial} 3600 600 86400 60", 3600),
        rec(Z, "NS", "ns.example.net.", 3600),
        rec(f"*.{Z}", "TXT", '"this is a wildcard"', 3600),
        rec(f"*.{Z}", "MX", f"10 host1.{Z}", 3600),
        rec(f"sub.*.{Z}", "TXT", '"this is not a wildcard"', 3600),
        rec(f"host1.{Z}", "A", "192.0.2.1", 3600),
        rec(f"_ssh._tcp.host1.{Z}", "SRV", f"0 0 22 host1.{Z}", 3600),
        rec(f"_ssh._tcp.host2.{Z}", "SRV", f"0 0 22 host2.{Z}", 3600),
        rec(f"subdel.{Z}", "NS", "ns.example.net.", 3600),
        rec(f"subdel.{Z}", "NS", f"ns.subdel.{Z}", 3600),
        rec(f"ns.subdel.{Z}", "A", "192.0.2.99", 3600),
    ]
    return Snapshot(serial=serial, generated_at=0.0, zone=Z, ttl=30,
                    records=tuple(sorted(records)), geo={}, localities=zf.LOCALITIES)


def _servers(snap: Snapshot) -> tuple[QueryHandler, QueryHandler]:
    fast = DnsServer(zf.config(), zf.locator(), registry=CollectorRegistry())
    full = DnsServer(zf.config(), zf.locator(), registry=CollectorRegistry(), fast_path=False)
    assert fast.update(snap) and full.update(snap)
    return fast.handler, full.handler


def ask(pair: tuple[QueryHandler, QueryHandler], name: str, qtype: str,
        client: str = "127.0.0.1", ecs: tuple[str, int] | None = None,
        fast_only: bool = False) -> dns.message.Message:
    """The reply from both paths (required byte-identical); ``fast_only``:
    and the fast path answered it without the full path."""
    options = [dns.edns.ECSOption(*ecs)] if ecs else []
    data = dns.message.make_query(name, qtype, use_edns=0, options=options).to_wire()
    fast, full = pair
    slow = fast.slow_queries
    a = fast.handle(data, client, False)
    assert a is not None and a == full.handle(data, client, False), (name, qtype)
    if fast_only:
        assert fast.slow_queries == slow, (name, qtype)
    return dns.message.from_wire(a)


def rrs(section: list[dns.rrset.RRset]) -> list[str]:
    """``name TYPE rdata`` per record, lower-cased (names compressed against
    the question take its letter case)."""
    return [f"{str(r.name).lower()} {dns.rdatatype.to_text(r.rdtype)} {rd.to_text().lower()}"
            for r in section for rd in r]


@pytest.fixture(scope="module")
def rfc() -> tuple[QueryHandler, QueryHandler]:
    return _servers(rfc4592_snapshot())


@pytest.fixture(scope="module")
def wild() -> tuple[QueryHandler, QueryHandler]:
    return _servers(zf.wild_snapshot())


# -- RFC 4592 section 2.2.1's examples -----------------------------------------------


@pytest.mark.parametrize(("name", "qtype", "rcode", "answer"), [
    # synthesized from *.example (owner rewritten to the query name)
    (f"host3.{Z}", "MX", "NOERROR", [f"host3.{Z} MX 10 host1.{Z}"]),
    (f"HOST3.{Z}", "TXT", "NOERROR", [f'host3.{Z} TXT "this is a wildcard"']),
    # the wildcard has no A: NODATA
    (f"host3.{Z}", "A", "NOERROR", []),
    # closest encloser example.com.: two labels below it still match
    (f"foo.bar.{Z}", "TXT", "NOERROR", [f'foo.bar.{Z} TXT "this is a wildcard"']),
    # names that exist (also empty non-terminals) are never synthesized
    (f"host1.{Z}", "MX", "NOERROR", []),
    (f"sub.*.{Z}", "MX", "NOERROR", []),
    (f"_tcp.host1.{Z}", "TXT", "NOERROR", []),
    (f"host2.{Z}", "TXT", "NOERROR", []),
    # closest encloser _tcp.host1 (no wildcard below it): NXDOMAIN
    (f"_telnet._tcp.host1.{Z}", "SRV", "NXDOMAIN", []),
    # closest encloser *.example (exists; no *.*.example): NXDOMAIN
    (f"ghost.*.{Z}", "MX", "NXDOMAIN", []),
    # the literal wildcard name: its own records
    (f"*.{Z}", "MX", "NOERROR", [f"*.{Z} MX 10 host1.{Z}"]),
    # ANY: minimal (one RRset), from the wildcard
    (f"host3.{Z}", "ANY", "NOERROR", [f"host3.{Z} MX 10 host1.{Z}"]),
])
def test_rfc4592_examples(rfc: tuple[QueryHandler, QueryHandler], name: str, qtype: str,
                          rcode: str, answer: list[str]) -> None:
    reply = ask(rfc, name, qtype, fast_only=True)
    assert dns.rcode.to_text(reply.rcode()) == rcode
    assert reply.flags & dns.flags.AA
    assert rrs(reply.answer) == answer
    if not answer:  # NXDOMAIN / NODATA: the SOA (RFC 2308)
        assert [r.rdtype for r in reply.authority] == [dns.rdatatype.SOA]
    else:
        assert not reply.authority
    # the owner is the name as asked (compressed against the question)
    assert all(r.name == reply.question[0].name for r in reply.answer)


def test_a_wildcard_does_not_match_across_a_cut(rfc: tuple[QueryHandler, QueryHandler]) -> None:
    """``host.subdel.example`` (RFC 4592 2.2.1): a referral, not ``*.example``."""
    reply = ask(rfc, f"host.subdel.{Z}", "MX", fast_only=True)
    assert reply.rcode() == dns.rcode.NOERROR and not reply.flags & dns.flags.AA
    assert not reply.answer
    assert rrs(reply.authority) == [f"subdel.{Z} NS ns.example.net.",
                                    f"subdel.{Z} NS ns.subdel.{Z}"]
    assert rrs(reply.additional) == [f"ns.subdel.{Z} A 192.0.2.99"]


# -- wildcards in the fixture zone --------------------------------------------------


def test_empty_non_terminals_block_the_wildcard(wild: tuple[QueryHandler, QueryHandler]) -> None:
    w = f"w.{Z}"
    # b.w exists (an empty non-terminal above c.b.w): x.b.w is NXDOMAIN, b.w NODATA
    assert ask(wild, f"x.b.{w}", "A", fast_only=True).rcode() == dns.rcode.NXDOMAIN
    reply = ask(wild, f"b.{w}", "A", fast_only=True)
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
    # y.z.w: z.w does not exist, closest encloser w: synthesized
    reply = ask(wild, f"y.z.{w}", "A", fast_only=True)
    assert rrs(reply.answer) == [f"y.z.{w} A 192.0.2.40"]
    reply = ask(wild, f"y.z.{w}", "MX", fast_only=True)  # NODATA with the SOA
    assert reply.rcode() == dns.rcode.NOERROR and not reply.answer
    assert [r.rdtype for r in reply.authority] == [dns.rdatatype.SOA]


def test_wildcard_cnames_are_chased_and_chains_end_in_wildcards(
        wild: tuple[QueryHandler, QueryHandler]) -> None:
    reply = ask(wild, f"q.cw.{Z}", "A", fast_only=True)
    assert rrs(reply.answer) == [f"q.cw.{Z} CNAME www.{Z}", f"www.{Z} A 192.0.2.1"]
    # static CNAMEs into wildcards (precomputed in the table)
    reply = ask(wild, f"tw.{Z}", "A", fast_only=True)
    assert rrs(reply.answer) == [f"tw.{Z} CNAME q.w.{Z}", f"q.w.{Z} A 192.0.2.40"]
    reply = ask(wild, f"twc.{Z}", "A")
    assert rrs(reply.answer) == [f"twc.{Z} CNAME q.cw.{Z}", f"q.cw.{Z} CNAME www.{Z}",
                                 f"www.{Z} A 192.0.2.1"]
    reply = ask(wild, f"tw2.{Z}", "A")  # into x.b.w: blocked by b.w
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert rrs(reply.answer) == [f"tw2.{Z} CNAME x.b.w.{Z}"]
    reply = ask(wild, f"x.nx.{Z}", "A", fast_only=True)  # a wildcard CNAME to nowhere
    assert reply.rcode() == dns.rcode.NXDOMAIN
    assert rrs(reply.answer) == [f"x.nx.{Z} CNAME nothing.{Z}"]


@pytest.mark.parametrize(("client", "ecs"), [
    ("127.0.0.1", None), ("127.0.0.2", None), ("127.0.0.3", None),
    ("127.0.0.1", ("198.51.100.0", 24)), ("127.0.0.1", ("203.0.113.0", 24)),
    ("127.0.0.1", ("2001:db8:1::", 56)), ("127.0.0.1", ("0.0.0.0", 0)),
    ("127.0.0.1", ("192.0.2.0", 24))])
def test_a_geo_aware_wildcard_answers_per_locality_like_a_geo_name(
        wild: tuple[QueryHandler, QueryHandler], client: str,
        ecs: tuple[str, int] | None) -> None:
    """``*.shop`` has the global name's per-locality answers: a name under it
    gets those records (owner rewritten) and the ECS scope the global name
    gets, for every client; a static CNAME into it too."""
    for qtype in ("A", "AAAA"):
        want = ask(wild, zf.GLOBAL, qtype, client, ecs)
        for name in (f"foo.shop.{Z}", f"a.b.shop.{Z}", f"tshop.{Z}"):
            got = ask(wild, name, qtype, client, ecs)
            tail = got.answer[1:] if name.startswith("tshop") else got.answer
            assert [sorted(rd.to_text() for rd in r) for r in tail] == \
                [sorted(rd.to_text() for rd in r) for r in want.answer], (name, qtype)
            assert (got.rcode(), got.flags & dns.flags.AA) == (want.rcode(), dns.flags.AA)
            assert [o.scopelen for o in got.options] == [o.scopelen for o in want.options]
            if ecs is not None and want.answer:
                assert got.options  # ECS echoed


# -- delegations ---------------------------------------------------------------------


REFERRAL_NS = [f"{zf.CUT} NS ns.other.example.net.", f"{zf.CUT} NS ns1.{zf.CUT}",
               f"{zf.CUT} NS ns3.{Z}"]
REFERRAL_GLUE = [f"ns1.{zf.CUT} A 192.0.2.53", f"ns1.{zf.CUT} AAAA 2001:db8::53",
                 f"ns3.{Z} A 192.0.2.54"]


@pytest.mark.parametrize("name", [zf.CUT, f"ns1.{zf.CUT}", f"hidden.{zf.CUT}", f"a.b.{zf.CUT}",
                                  f"x.deeper.{zf.CUT}", f"*.{zf.CUT}", f"Q.SUB.{Z}"])
@pytest.mark.parametrize("qtype", ["A", "NS", "TXT", "ANY", "SOA", "DS"])
def test_names_at_and_below_a_cut_get_a_referral(wild: tuple[QueryHandler, QueryHandler],
                                                 name: str, qtype: str) -> None:
    reply = ask(wild, name, qtype, fast_only=True)
    if name == zf.CUT and qtype == "DS":  # the parent's side of the cut: NODATA, AA=1
        assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
        assert not reply.answer and not reply.additional
        assert [r.rdtype for r in reply.authority] == [dns.rdatatype.SOA]
        return
    assert reply.rcode() == dns.rcode.NOERROR
    assert not reply.flags & dns.flags.AA  # not authoritative below the cut
    assert not reply.answer  # occluded records (hidden TXT, *.sub, deeper NS) never show
    assert rrs(reply.authority) == REFERRAL_NS
    assert rrs(reply.additional) == REFERRAL_GLUE


def test_a_cname_into_a_delegation_carries_the_referral(
        wild: tuple[QueryHandler, QueryHandler]) -> None:
    reply = ask(wild, f"tosub.{Z}", "A")
    assert reply.rcode() == dns.rcode.NOERROR and reply.flags & dns.flags.AA
    assert rrs(reply.answer) == [f"tosub.{Z} CNAME www.{zf.CUT}"]
    assert rrs(reply.authority) == REFERRAL_NS
    assert rrs(reply.additional) == REFERRAL_GLUE


def test_apex_ns_glue_is_unchanged(wild: tuple[QueryHandler, QueryHandler]) -> None:
    reply = ask(wild, Z, "NS", fast_only=True)
    assert reply.flags & dns.flags.AA
    assert rrs(reply.answer) == [f"{Z} NS ns1.{Z}", f"{Z} NS ns2.{Z}"]


def test_a_referral_too_big_for_udp_is_truncated_on_both_paths(
        wild: tuple[QueryHandler, QueryHandler]) -> None:
    fast, full = wild
    q = dns.message.make_query(f"a.b.{zf.CUT}", "A", use_edns=0, payload=512)
    q.flags = 0
    data = q.to_wire()
    for tcp in (False, True):
        a = fast.handle(data, "127.0.0.1", tcp)
        assert a is not None and a == full.handle(data, "127.0.0.1", tcp)
    # under 512 bytes it fits: no TC; with a shortened limit both paths agree too
    reply = dns.message.from_wire(a or b"")
    assert not reply.flags & dns.flags.TC and not reply.flags & dns.flags.AA


# -- incremental rebuilds -------------------------------------------------------------


def test_cuts_and_wildcards_that_come_and_go_match_a_full_build() -> None:
    """A cut (with glue, above existing names and a CNAME target), static and
    geo-aware wildcards, and a name that blocks a wildcard appear and go in
    random steps, served incrementally: every step equals a full build in the
    table's maps and dependency edges and in the bytes of replies."""
    pool: dict[str, tuple[Record, ...]] = {
        zf.CUT: (rec(zf.CUT, "NS", f"ns1.{zf.CUT}"), rec(zf.CUT, "NS", "ns.other.example.net.")),
        f"ns1.{zf.CUT}": (rec(f"ns1.{zf.CUT}", "A", "192.0.2.53"),),
        zf.WILD: (rec(zf.WILD, "A", "192.0.2.40"), rec(zf.WILD, "TXT", '"wild"')),
        f"c.b.w.{Z}": (rec(f"c.b.w.{Z}", "A", "192.0.2.41"),),
        f"*.b.w.{Z}": (rec(f"*.b.w.{Z}", "A", "192.0.2.42"),),
        f"*.{Z}": (rec(f"*.{Z}", "TXT", '"apex wildcard"'),),
        f"*.cw.{Z}": (rec(f"*.cw.{Z}", "CNAME", f"www.{zf.CUT}"),),
    }
    us = (rec(zf.GEO_WILD, "A", zf.US_IP),)
    eu = (rec(zf.GEO_WILD, "A", zf.EU_IP),)
    geo_pool = {zf.GEO_WILD: {"": (*us, *eu), "region:us-east1": us,
                              "region:europe-west1": eu}}
    base = zf.snapshot(serial=500)
    base = replace(base, records=tuple(sorted((
        *base.records,
        # names below where the cut comes and goes, and CNAMEs into everything
        rec(f"www.{zf.CUT}", "A", "192.0.2.60"), rec(f"deep.x.{zf.CUT}", "TXT", '"deep"'),
        rec(f"tosub.{Z}", "CNAME", f"www.{zf.CUT}"), rec(f"tonx.{Z}", "CNAME", f"nx.{zf.CUT}"),
        rec(f"tw.{Z}", "CNAME", f"q.w.{Z}"), rec(f"tw2.{Z}", "CNAME", f"x.b.w.{Z}"),
        rec(f"tw3.{Z}", "CNAME", f"q.r.{Z}"), rec(f"tshop.{Z}", "CNAME", f"x.shop.{Z}"),
        rec(f"twc.{Z}", "CNAME", f"q.cw.{Z}")))))
    candidates = sorted({*pool, *geo_pool})
    probe = sorted({*zf.WILD_NAMES, *candidates, f"www.{zf.CUT}", f"deep.x.{zf.CUT}",
                    f"x.{zf.CUT}", f"tonx.{Z}", f"tw3.{Z}", f"q.r.{Z}", f"nope.{Z}"})
    rng = random.Random(4592)
    inc = DnsServer(zf.config(), zf.locator(), registry=None)
    present: set[str] = set()
    prev = _toggled(base, present, pool, geo_pool, 500)
    assert inc.update(prev)
    # each alone in and out first, then random toggles
    steps: list[set[str]] = [{n} for n in candidates for _ in range(2)]
    steps += [set(rng.sample(candidates, rng.randint(1, 3))) for _ in range(30)]
    for step, flip in enumerate(steps):
        present ^= flip
        snap = _toggled(base, present, pool, geo_pool, 501 + step)
        if rng.random() < 0.5:
            snap = replace(snap, changed=frozenset(_truth(prev, snap)), base_serial=prev.serial)
        why = (step, sorted(present))
        state, built, fresh = derived_like_full_build(inc, snap, why)
        assert state.resolver._cuts == built.resolver._cuts, why
        assert state.resolver._wilds == built.resolver._wilds, why
        for _ in range(120):
            data = _query(rng, probe)
            client = rng.choice(CLIENTS)
            assert inc.handler.handle(data, client, False) == fresh.handler.handle(
                data, client, False), (*why, dns.message.from_wire(data))
        prev = snap


# -- real clients -------------------------------------------------------------------


@pytest.fixture
async def live() -> AsyncIterator[Running]:
    registry = CollectorRegistry()
    server = DnsServer(zf.config(), zf.locator(), registry=registry)
    assert server.update(_with_serial(zf.wild_snapshot()))
    await server.start()
    try:
        yield Running(server, server.addresses[0][1], registry)
    finally:
        await server.stop()


def _lines(out: str) -> set[str]:
    """dig's output lines, whitespace runs as one space."""
    return {" ".join(line.split()) for line in out.splitlines()}


async def test_dig_sees_wildcards_and_referrals(live: Running) -> None:
    out = await dig(live, "+norec", f"Anything.W.{Z}", "A")
    assert "status: NOERROR" in out and " aa" in out.split("flags:")[1].split(";")[0]
    assert f"Anything.W.{Z} 30 IN A 192.0.2.40" in _lines(out)
    out = await dig(live, "+norec", f"x.b.w.{Z}", "A")
    assert "status: NXDOMAIN" in out
    out = await dig(live, "+norec", f"www.{zf.CUT}", "A")
    flags = out.split("flags:")[1].split(";")[0]
    assert "status: NOERROR" in out and " aa" not in flags, out
    assert "ANSWER: 0, AUTHORITY: 3, ADDITIONAL: 4" in out  # (+1: OPT)
    assert f"{zf.CUT} 3600 IN NS ns1.{zf.CUT}" in _lines(out)
    assert f"ns1.{zf.CUT} 3600 IN AAAA 2001:db8::53" in _lines(out)
    out = await dig(live, "+norec", zf.CUT, "DS")
    flags = out.split("flags:")[1].split(";")[0]
    assert "status: NOERROR" in out and " aa" in flags and "ANSWER: 0, AUTHORITY: 1" in out
    out = await dig(live, "+norec", "+tcp", f"hidden.{zf.CUT}", "TXT")
    assert "occluded" not in out and "AUTHORITY: 3" in out
