"""The fast path (AnswerTable + patching) against the full path (dnslib).

A differential test sends varied queries to both and requires byte-identical
replies; plus table shape checks (sharing, bounds, atomic swap).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import zlib
from dataclasses import fields, replace

import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import pytest
from prometheus_client import CollectorRegistry

from dnsserver import wire
from dnsserver.answers import AnswerTable, Chain, question_key
from dnsserver.handler import QueryHandler, ServingState
from dnsserver.names import name_to_wire
from dnsserver.rebuild import changed_names
from dnsserver.resolver import Resolver
from dnsserver.server import DnsServer
from healthwatch.snapshot import Record, Snapshot
from tests.dnsserver import zonefixture as zf

QTYPES = ["A", "AAAA", "CNAME", "MX", "NS", "SOA", "TXT", "SRV", "CAA", "ANY", "HTTPS", "PTR",
          "TYPE4242", "TYPE65280", "DS",
          # meta-types (FORMERR) and query types the full path answers
          "TSIG", "TKEY", "TYPE200", "OPT", "IXFR", "AXFR", "MAILB", "MAILA"]
ECS_CHOICES = [None, ("198.51.100.0", 24), ("203.0.113.0", 24), ("203.0.113.128", 25),
               ("10.0.0.0", 8), ("0.0.0.0", 0), ("2001:db8:1::", 48), ("2001:db8:1::", 56),
               ("192.0.2.0", 24), ("fd00::", 8),
               # IPv4-mapped IPv6: located as the IPv4 subnet (private, configured, public)
               ("::ffff:10.1.2.3", 128), ("::ffff:127.0.0.2", 128), ("::ffff:203.0.113.0", 120),
               ("::ffff:198.51.100.0", 120), ("::ffff:0.0.0.0", 96)]
CLIENTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "::1", "::ffff:127.0.0.2"]


def _names() -> list[str]:
    snap = zf.snapshot()
    names = sorted(set(snap.names()))
    names += [f"nope{i}.{zf.ZONE}" for i in range(5)] + ["ent." + zf.ZONE, "www.example.net.",
                                                          "."]
    # wildcards, a zone cut and the names around them (``zf.wild_snapshot``)
    names += zf.WILD_NAMES
    return names


def _random_case(rng: random.Random, name: str) -> str:
    return "".join(c.upper() if rng.random() < 0.5 else c for c in name)


def _query(rng: random.Random, names: list[str]) -> bytes:
    name = _random_case(rng, rng.choice(names))
    qtype = rng.choice(QTYPES)
    edns = rng.random() < 0.6
    options = []
    if edns:
        ecs = rng.choice(ECS_CHOICES)
        if ecs is not None:
            options.append(dns.edns.ECSOption(ecs[0], ecs[1]))
        if rng.random() < 0.1:
            options.append(dns.edns.GenericOption(65001, b"\x01\x02"))
        cookie = rng.random()
        if cookie < 0.1:
            options.append(dns.edns.GenericOption(10, bytes(8)))  # client cookie
        elif cookie < 0.15:  # with a server cookie that is not ours: a new one
            options.append(dns.edns.GenericOption(10, bytes(8) + rng.randbytes(16)))
        elif cookie < 0.17:  # a length RFC 7873 refuses: FORMERR
            options.append(dns.edns.GenericOption(10, bytes(rng.choice((5, 12, 41)))))
    msg = dns.message.make_query(
        name, qtype, use_edns=0 if edns else None, want_dnssec=edns and rng.random() < 0.3,
        payload=rng.choice([0, 256, 512, 600, 1232, 4096, 65535]) if edns else None,
        options=options if edns else None)  # options=[] alone turns EDNS on
    if rng.random() < 0.04:  # IXFR with the client's SOA in authority (RFC 1995 section 3)
        msg.question[0].rdtype = dns.rdatatype.IXFR
        owner = name if rng.random() < 0.8 else rng.choice(names)  # else maybe FORMERR
        msg.authority.append(dns.rrset.from_text(
            owner, 0, "IN", "SOA", f". . {rng.choice([0, 3, 7, 8, 2**32 - 1])} 0 0 0 0"))
    msg.flags = dns.flags.Flag(0)
    if rng.random() < 0.7:
        msg.flags |= dns.flags.RD
    if rng.random() < 0.2:
        msg.flags |= dns.flags.CD
    if rng.random() < 0.1:
        msg.flags |= dns.flags.AD
    data = msg.to_wire()
    shape = rng.random()
    if shape < 0.02:  # an opcode other than QUERY (NOTIMP; with OPT when the query has one)
        data = data[:2] + bytes((data[2] | rng.choice((1, 2, 3, 4, 5, 6, 15)) << 3,)) + data[3:]
    elif shape < 0.03 and edns:  # EDNS version 1: BADVERS
        at = data.find(b"\x00", 12) + 5 + 6  # the OPT record (after the question): VERSION
        data = data[:at] + b"\x01" + data[at + 1:]
    return data


@pytest.fixture(scope="module")
def pair() -> tuple[QueryHandler, QueryHandler]:
    """Both paths serving the fixture zone with wildcards (static and geo-aware),
    a zone cut with glue, occluded names and CNAMEs into them."""
    fast = DnsServer(zf.config(), zf.locator(), registry=CollectorRegistry())
    full = DnsServer(zf.config(), zf.locator(), registry=CollectorRegistry(), fast_path=False)
    assert fast.update(zf.wild_snapshot()) and full.update(zf.wild_snapshot())
    return fast.handler, full.handler


def test_fast_and_full_paths_are_byte_identical(pair: tuple[QueryHandler, QueryHandler]) -> None:
    fast, full = pair
    rng = random.Random(20240501)
    names = _names()
    hits = 0
    referrals = 0  # answered by the fast path (AA=0, NOERROR, authority records)
    total = 10_000
    for _ in range(total):
        data = _query(rng, names)
        client = rng.choice(CLIENTS)
        tcp = rng.random() < 0.15
        slow = fast.slow_queries
        a = fast.handle(data, client, tcp)
        hits += fast.slow_queries == slow
        b = full.handle(data, client, tcp)
        assert a == b, (dns.message.from_wire(data), client, tcp)
        if a is not None and fast.slow_queries == slow and not a[2] & 0x04 and a[9]:
            referrals += a[3] & 0x0F == dns.rcode.NOERROR
    # the comparison means something only if the fast path did most of the work
    assert hits > total // 4
    assert referrals > 100
    assert fast.metrics.errors == 0 and full.metrics.errors == 0


def _changes() -> list[Snapshot]:
    """A run of Snapshots, each a small change from the one before (serial up)."""
    base = zf.snapshot(serial=10)
    us = (zf.rec(zf.GLOBAL, "A", zf.US_IP),)
    eu6 = (zf.rec(zf.GLOBAL, "AAAA", zf.EU_IP6),)
    g1 = {**base.geo, zf.GLOBAL: {**base.geo[zf.GLOBAL], "region:europe-west1": us}}
    s1 = replace(base, serial=11, geo=g1)
    recs2 = tuple(r if r.name != zf.US_REGION else zf.rec(zf.US_REGION, "A", "192.0.2.11")
                  for r in s1.records)
    s2 = replace(s1, serial=12, records=recs2)
    g3 = {**g1, zf.GLOBAL: {loc: eu6 for loc in zf.LOCALITIES}}  # A gone: chains to NODATA
    s3 = replace(s2, serial=13, geo=g3)
    recs4 = tuple(r if r.name != f"www.{zf.ZONE}" or r.rtype != "A"
                  else zf.rec(r.name, "A", "192.0.2.2") for r in s3.records)
    s4 = replace(s3, serial=14, records=recs4, geo=base.geo)
    return [base, s1, s2, s3, s4]


def _with_serial(snap: Snapshot) -> Snapshot:
    soa = f"ns1.{zf.ZONE} hostmaster.{zf.ZONE} {snap.serial} 3600 600 86400 60"
    return replace(snap, records=tuple(
        r if r.rtype != "SOA" else zf.rec(r.name, "SOA", soa, r.ttl) for r in snap.records))


def _truth(a: Snapshot, b: Snapshot) -> set[str]:
    """Names whose records or geo answers differ (the oracle for change hints)."""
    def by_name(s: Snapshot) -> dict[str, object]:
        out: dict[str, object] = {}
        for r in s.records:
            out.setdefault(r.name, set()).add(r)  # type: ignore[union-attr]
        for n, per in s.geo.items():
            out[n + "#geo"] = per
        return out
    x, y = by_name(a), by_name(b)
    return {k.removesuffix("#geo") for k in {*x, *y} if x.get(k) != y.get(k)}


@pytest.mark.parametrize("hinted", [False, True])
def test_incremental_update_matches_a_full_build(hinted: bool) -> None:
    inc = DnsServer(zf.config(), zf.locator(), registry=None)
    rng = random.Random(99)
    names = _names()
    prev: Snapshot | None = None
    if hinted and "changed" not in {f.name for f in fields(Snapshot)}:
        pytest.skip("Snapshot has no planner change hint yet")
    for snap in map(_with_serial, _changes()):
        if hinted and prev is not None:
            snap = replace(snap, changed=frozenset(_truth(prev, snap)),
                           base_serial=prev.serial)
        assert inc.update(snap)
        state = inc.handler.state
        assert state is not None
        if prev is not None:
            assert state.table.stats.rebuilt_names < 12  # only the changed names
        fresh = DnsServer(zf.config(), zf.locator(), registry=None, fast_path=False)
        assert fresh.update(snap)
        built = fresh.handler.state
        assert built is not None
        # the flat index follows the per-name maps through every derive
        assert state.table.questions == built.table.questions
        assert state.table.names == built.table.names
        assert state.table.letters == built.table.letters
        for _ in range(600):
            data = _query(rng, names)
            client = rng.choice(CLIENTS)
            assert inc.handler.handle(data, client, False) == fresh.handler.handle(
                data, client, False), (snap.serial, dns.message.from_wire(data))
        prev = snap


@pytest.mark.parametrize("shuffled", [False, True])
def test_incremental_update_shares_the_maps_and_keeps_per_snapshot_parts(
        shuffled: bool) -> None:
    """A hinted change updates the name maps in place (no copy of the table
    or the Resolver's maps), while the old state keeps its own SOA; records
    not sorted by name (not the planner's order) still give the same answers."""
    server = DnsServer(zf.config(), zf.locator(), registry=None)
    snaps = [_with_serial(s) for s in _changes()]
    if shuffled:
        # one fixed order, not by name (a name's records keep their relative
        # order from Snapshot to Snapshot, as an RRset's order matters to the
        # byte comparison below; the planner sorts by name)
        snaps = [replace(s, records=tuple(sorted(
            s.records, key=lambda r: zlib.crc32(repr(r).encode())))) for s in snaps]
        assert any(a.name > b.name for a, b in itertools.pairwise(snaps[0].records))
    assert server.update(snaps[0])
    old = server.handler.state
    assert old is not None
    new_snap = replace(snaps[2], changed=frozenset(_truth(snaps[0], snaps[2])),
                       base_serial=snaps[0].serial)
    assert server.update(new_snap)
    new = server.handler.state
    assert new is not None and new is not old
    if not shuffled:  # the planner's order (sorted by name): found by bisection
        assert new.table.names is old.table.names
        assert new.resolver._static is old.resolver._static
        assert new.table.stats.rebuilt_names < 12
    assert new.resolver.snapshot is new_snap and old.resolver.snapshot is snaps[0]
    assert old.resolver.negative_soa is not None and new.resolver.negative_soa is not None
    assert old.resolver.negative_soa.value.split()[2] == str(snaps[0].serial)
    assert new.resolver.negative_soa.value.split()[2] == str(new_snap.serial)
    fresh = DnsServer(zf.config(), zf.locator(), registry=None, fast_path=False)
    assert fresh.update(new_snap)
    rng = random.Random(11)
    names = _names()
    for _ in range(400):
        data = _query(rng, names)
        client = rng.choice(CLIENTS)
        assert server.handler.handle(data, client, False) == fresh.handler.handle(
            data, client, False), dns.message.from_wire(data)


def test_refused_derive_leaves_the_serving_maps_alone() -> None:
    base = _with_serial(zf.snapshot(serial=1))
    resolver = Resolver(base, zf.config().server)
    table = AnswerTable.build(resolver)
    before = (dict(table.names), dict(table.questions), dict(table.letters))
    static_before = dict(resolver._static)
    geo_before = dict(resolver._geo)
    moved = {**base.geo, zf.GLOBAL: {loc: (zf.rec(zf.GLOBAL, "A", "192.0.2.77"),)
                                     for loc in zf.LOCALITIES}}
    elsewhere = {"": (zf.rec(f"same.{zf.ZONE}", "A", "192.0.2.78"),),
                 "region:mars-1": (zf.rec(f"same.{zf.ZONE}", "A", "192.0.2.79"),)}
    grown = replace(base, serial=2, geo={**moved, f"same.{zf.ZONE}": elsewhere},
                    records=tuple(sorted((*base.records,
                                          zf.rec(f"brand-new.{zf.ZONE}", "A", "192.0.2.5")))))
    # the geo change and the new name come first in no particular order; the
    # locality this Resolver does not know refuses
    assert resolver.derive(grown, {zf.GLOBAL, f"brand-new.{zf.ZONE}", f"same.{zf.ZONE}"}) is None
    assert resolver._static == static_before and resolver._geo == geo_before
    assert (table.names, table.questions, table.letters) == before


def test_changed_names_finds_record_and_geo_changes() -> None:
    snaps = _changes()
    assert changed_names(snaps[0], snaps[0]) == set()
    assert changed_names(snaps[0], snaps[1]) == {zf.GLOBAL}
    assert changed_names(snaps[1], snaps[2]) == {zf.US_REGION}
    fewer = replace(snaps[0], records=snaps[0].records[1:])
    # another count: records grouped by name
    assert changed_names(snaps[0], fewer) == {snaps[0].records[0].name}
    more = replace(snaps[0],
                   records=(*snaps[0].records, zf.rec(f"new.{zf.ZONE}", "A", "192.0.2.5")),
                   geo={**snaps[0].geo, f"geo-new.{zf.ZONE}": snaps[0].geo[zf.GLOBAL]})
    assert changed_names(snaps[0], more) == {f"new.{zf.ZONE}", f"geo-new.{zf.ZONE}"}
    assert changed_names(more, snaps[0]) == {f"new.{zf.ZONE}", f"geo-new.{zf.ZONE}"}


def test_a_name_set_change_is_incremental() -> None:
    """A name that appears (under a new empty non-terminal) and one that goes
    are rebuilt on their own, not with a full build."""
    server = DnsServer(zf.config(), zf.locator(), registry=None)
    base = zf.snapshot(serial=1)
    assert server.update(base)
    gone = base.records[-1].name
    extra = replace(base, serial=2, records=tuple(sorted(
        (*(r for r in base.records if r.name != gone),
         zf.rec(f"new.deep.{zf.ZONE}", "A", "192.0.2.5")))))
    assert server.update(extra)
    state = server.handler.state
    assert state is not None and state.table.stats.rebuilt_names < 8
    assert state.table.stats.names == len(state.resolver.names())
    for name, rcode, answered in ((f"deep.{zf.ZONE}", dns.rcode.NOERROR, False),  # new ENT
                                  (f"new.deep.{zf.ZONE}", dns.rcode.NOERROR, True),
                                  (gone, dns.rcode.NXDOMAIN, False)):
        q = dns.message.make_query(name, "A")
        reply = dns.message.from_wire(
            server.handler.handle(q.to_wire(), "127.0.0.1", False) or b"")
        assert (reply.rcode(), bool(reply.answer)) == (rcode, answered), name


async def test_submit_builds_off_the_loop_and_newest_wins() -> None:
    server = DnsServer(zf.config(), zf.locator(), registry=None)
    base = zf.snapshot(serial=1)
    server.submit(base)  # nothing served yet: built at once
    assert server.serial == 1
    grown = replace(base, serial=2, localities=(*base.localities, "region:mars-1"),
                    records=tuple(sorted((*base.records, *(
                        zf.rec(f"n{i}.{zf.ZONE}", "A", "192.0.2.9") for i in range(300))))))
    server.submit(grown)  # a new locality: a full build, in a thread
    assert server.serial == 1
    ticks = 0
    while server.serial != 3:
        if ticks == 1:
            server.submit(replace(grown, serial=3))
        await asyncio.sleep(0.001)
        ticks += 1
        assert ticks < 20_000
    assert ticks > 1  # the loop kept running while the table was built
    q = dns.message.make_query(f"n299.{zf.ZONE}", "A")
    reply = dns.message.from_wire(server.handler.handle(q.to_wire(), "127.0.0.1", False) or b"")
    assert reply.answer
    await server.stop()


async def _served(server: DnsServer, serial: int) -> ServingState:
    """The state once ``serial`` serves (a build in a worker thread; 20 s at most)."""
    for _ in range(20_000):
        state = server.handler.state
        if state is not None and state.serial == serial:
            return state
        await asyncio.sleep(0.001)
    raise AssertionError(f"serial {serial} not served")


async def test_a_change_of_many_names_is_derived_off_the_loop(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """More than ``INLINE_MAX_NAMES`` changed names: ``submit`` returns at once
    and a worker thread derives the state (not a full build), which then
    answers like a full build."""
    import dnsserver.rebuild as rebuild_mod

    monkeypatch.setattr(rebuild_mod, "INLINE_MAX_NAMES", 2)
    snaps = [_with_serial(s) for s in _changes()]
    assert len(changed_names(snaps[0], snaps[3])) > 2
    calls: list[int] = []

    def counted(old: Snapshot, new: Snapshot) -> set[str]:
        calls.append(new.serial)
        return changed_names(old, new)

    monkeypatch.setattr(rebuild_mod, "changed_names", counted)
    server = DnsServer(zf.config(), zf.locator(), registry=None)
    server.submit(snaps[0])  # nothing served yet: built at once
    server.submit(snaps[3])
    assert server.serial == snaps[0].serial  # not on the loop
    state = await _served(server, snaps[3].serial)
    assert calls == [snaps[3].serial]  # worked out once, on the loop; not again in the thread
    assert state.table.stats.rebuilt_names < state.table.stats.names // 2  # derived
    fresh = DnsServer(zf.config(), zf.locator(), registry=None, fast_path=False)
    assert fresh.update(snaps[3])
    rng = random.Random(3)
    for _ in range(300):
        data = _query(rng, _names())
        assert server.handler.handle(data, "127.0.0.1", False) == fresh.handler.handle(
            data, "127.0.0.1", False)
    await server.stop()


async def test_a_derive_that_fails_off_the_loop_falls_back_to_a_full_build(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import dnsserver.rebuild as rebuild_mod

    def broken(*args: object, **kw: object) -> None:
        raise RuntimeError("derive failed")

    monkeypatch.setattr(rebuild_mod, "INLINE_MAX_NAMES", 0)
    monkeypatch.setattr(rebuild_mod, "derive_state", broken)
    snaps = [_with_serial(s) for s in _changes()]
    server = DnsServer(zf.config(), zf.locator(), registry=None)
    server.submit(snaps[0])
    server.submit(snaps[1])
    state = await _served(server, snaps[1].serial)
    assert state.table.stats.rebuilt_names == state.table.stats.names  # a full build
    await server.stop()


def test_truncation_identical_and_carries_question_and_opt(
        pair: tuple[QueryHandler, QueryHandler]) -> None:
    fast, full = pair
    for payload in (None, 512, 600):
        for ecs in (None, dns.edns.ECSOption("198.51.100.0", 24)):
            if payload is None and ecs is not None:
                continue
            if payload is None:
                q = dns.message.make_query("BIG.example.com.", "A")
            else:
                q = dns.message.make_query("BIG.example.com.", "A", use_edns=0,
                                           payload=payload, options=[ecs] if ecs else [])
            a = fast.handle(q.to_wire(), "127.0.0.1", False)
            assert a is not None and a == full.handle(q.to_wire(), "127.0.0.1", False)
            assert len(a) <= (payload or 512)
            reply = dns.message.from_wire(a)
            assert reply.flags & dns.flags.TC
            assert str(reply.question[0].name) == "BIG.example.com."
            assert (reply.edns == 0) == (payload is not None)
            whole = fast.handle(q.to_wire(), "127.0.0.1", True)
            assert whole is not None
            assert len(dns.message.from_wire(whole).answer[0]) == zf.BIG_COUNT


def test_locality_free_names_share_one_entry() -> None:
    resolver = Resolver(zf.snapshot(), zf.config().server)
    table = AnswerTable.build(resolver)
    www = table.get(name_to_wire(f"www.{zf.ZONE}"), wire.T_A)
    assert isinstance(www, tuple)  # a Reply
    same = table.get(name_to_wire(f"same.{zf.ZONE}"), wire.T_A)
    assert isinstance(same, tuple)  # geo name whose answers never differ
    glob = table.get(name_to_wire(zf.GLOBAL), wire.T_A)
    assert isinstance(glob, list)  # one entry per locality, in Resolver.localities order
    assert len(glob) == len(resolver.localities) and resolver.localities[0] == ""
    at = {loc: i for i, loc in enumerate(resolver.localities)}
    # AZ and region of the US share one reply object
    assert glob[at["zone:us-east1-b"]] is glob[at["region:us-east1"]]
    assert glob[at[""]] is not glob[at["region:us-east1"]]
    # ANY answers with the A RRset here: the same per-locality dict, not a copy
    assert table.get(name_to_wire(zf.GLOBAL), wire.T_ANY) is glob
    alias = table.get(name_to_wire(f"geoalias.{zf.ZONE}"), wire.T_A)
    # a static CNAME into a geo name: the chain prefix once, the geo name's
    # per-locality records shared with every chain that ends there
    assert isinstance(alias, Chain)
    tails = alias.tails
    assert isinstance(tails, list) and len(tails) == len(resolver.localities)
    assert tails[at["zone:us-east1-b"]] is tails[at["region:us-east1"]]


def test_table_is_bounded() -> None:
    resolver = Resolver(zf.snapshot(), zf.config().server)
    table = AnswerTable.build(resolver, max_keys=30)
    assert not table.stats.complete
    assert table.stats.keys <= 30 + 8  # the bound is checked between names
    full = AnswerTable.build(resolver)
    assert full.stats.complete and full.stats.keys > table.stats.keys


def test_update_swaps_atomically_and_bad_snapshot_keeps_old() -> None:
    server = DnsServer(zf.config(), zf.locator(), registry=CollectorRegistry())
    assert server.update(zf.snapshot(serial=7))
    q = dns.message.make_query(zf.ZONE, "SOA")
    first = dns.message.from_wire(server.handler.handle(q.to_wire(), "127.0.0.1", False) or b"")
    assert first.answer[0][0].serial == 7
    assert server.update(zf.snapshot(serial=8))
    second = dns.message.from_wire(server.handler.handle(q.to_wire(), "127.0.0.1", False) or b"")
    assert second.answer[0][0].serial == 8
    broken = zf.snapshot(serial=9)
    object.__setattr__(broken, "zone", "x" * 64 + ".com.")
    assert not server.update(broken)
    assert server.serial == 8


PRIVATE_NETS = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8",
                "169.254.0.0/16", "100.64.0.0/10", "0.0.0.0/8", "fc00::/7", "::1/128",
                "fe80::/10", "::/128",
                # the same IPv4 ranges written as IPv4-mapped IPv6 (::ffff:0:0/96)
                "::ffff:10.0.0.0/104", "::ffff:172.16.0.0/108", "::ffff:192.168.0.0/112",
                "::ffff:127.0.0.0/104", "::ffff:169.254.0.0/112", "::ffff:100.64.0.0/106",
                "::ffff:0.0.0.0/104"]


@pytest.mark.parametrize(("qtype", "indexed"), [
    (1, True), (28, True), (33, True), (255, True), (0x1092, True), (0xFF00, True),
    (65, False), (64, True), (0x5A, False), (0x5B, True), (0x61, False), (0x7A, False),
    (0x7B, True), (0x4101, False), (0x0141, False), (-1, False)])
def test_question_key_leaves_out_qtypes_lower_would_change(qtype: int, indexed: bool) -> None:
    key = question_key(b"\x01a\x00", qtype)
    assert (key is not None) == indexed
    if key is not None:
        assert key == b"\x01a\x00" + qtype.to_bytes(2, "big") + b"\x00\x01"
        assert key.lower() == key


def test_letter_qtypes_are_answered_from_names() -> None:
    """HTTPS (0x0041) is not in ``questions``: a positive HTTPS answer (here a
    CNAME owner's) takes the full path, and a query for qtype 0x0061 (what
    lower-casing HTTPS gives) gets its own NODATA on the fast path."""
    server = DnsServer(zf.config(), zf.locator(), registry=None)
    full = DnsServer(zf.config(), zf.locator(), registry=None, fast_path=False)
    assert server.update(zf.snapshot()) and full.update(zf.snapshot())
    handler = server.handler
    state = handler.state
    assert state is not None
    assert type(state.table.get(b"\x05loop1\x07example\x03com\x00", 65)) is tuple
    for name, qtype, slow, answered in (("LOOP1.example.com.", 65, 1, True),
                                        ("WWW.example.com.", 97, 0, False),
                                        ("WWW.example.com.", 65, 0, False)):
        data = dns.message.make_query(name, qtype).to_wire()
        before = handler.slow_queries
        out = handler.handle(data, "127.0.0.1", False)
        assert out == full.handler.handle(data, "127.0.0.1", False)
        assert handler.slow_queries - before == slow
        reply = dns.message.from_wire(out or b"")
        assert reply.question[0].rdtype == qtype
        assert bool(reply.answer) == answered


def test_is_private_matches_the_rfc_ranges() -> None:
    import ipaddress

    nets = [ipaddress.ip_network(n) for n in PRIVATE_NETS]
    rng = random.Random(7)
    samples = [ipaddress.ip_address(rng.getrandbits(32)) for _ in range(3000)]
    samples += [ipaddress.ip_address(rng.getrandbits(128)) for _ in range(1000)]
    samples += [ipaddress.ip_address((0xFFFF << 32) | rng.getrandbits(32)) for _ in range(3000)]
    samples += [net.network_address for net in nets] + [net.broadcast_address for net in nets]
    samples += [ipaddress.ip_address(x) for x in ("172.15.255.255", "172.32.0.0", "100.63.1.1",
                                                   "100.128.0.0", "fec0::1", "::2", "fe7f::1")]
    for ip in samples:
        want = any(ip.version == n.version and ip in n for n in nets)
        assert wire.is_private(ip.packed) == want, ip


def test_negative_answers_are_decided_once_per_question(monkeypatch: pytest.MonkeyPatch) -> None:
    """NXDOMAIN, NODATA and REFUSED are worked out once per lower-cased
    question and state (bounded), give the full path's bytes from the cache,
    and a type byte that lower() would change (HTTPS, 0x0041) never shares
    an entry with the type it lowers to (0x0061)."""
    import dnsserver.handler as handler_mod

    monkeypatch.setattr(handler_mod, "NEGATIVE_CACHE_MAX", 3)
    server = DnsServer(zf.config(), zf.locator(), registry=CollectorRegistry())
    full = DnsServer(zf.config(), zf.locator(), registry=None, fast_path=False)
    assert server.update(zf.snapshot()) and full.update(zf.snapshot())
    handler = server.handler
    state = handler.state
    assert state is not None
    cases = [(f"NoPe1.{zf.ZONE}", 1, dns.rcode.NXDOMAIN),
             (f"nope1.{zf.ZONE}", 1, dns.rcode.NXDOMAIN),
             (f"nOpE2.{zf.ZONE}", 97, dns.rcode.NXDOMAIN),
             (f"nope2.{zf.ZONE}", 65, dns.rcode.NXDOMAIN),
             (f"WWW.{zf.ZONE}", 97, dns.rcode.NOERROR), (f"www.{zf.ZONE}", 65, dns.rcode.NOERROR),
             ("www.example.net.", 1, dns.rcode.REFUSED), ("WWW.example.NET.", 1, dns.rcode.REFUSED)]
    for rounds in range(2):
        for name, qtype, rcode in cases:
            data = dns.message.make_query(name, qtype, id=rounds + 7).to_wire()
            before = handler.slow_queries
            out = handler.handle(data, "127.0.0.1", False)
            assert out == full.handler.handle(data, "127.0.0.1", False), (name, qtype)
            assert handler.slow_queries == before  # all on the fast path
            reply = dns.message.from_wire(out or b"")
            assert (reply.rcode(), reply.question[0].rdtype, reply.answer) == (rcode, qtype, [])
            assert len(state.negatives) <= 3
    assert all(wire.plain_name(key[:-4]) for key in state.negatives)
    state.negatives.clear()  # HTTPS questions are answered, never cached under 0x0061
    for name in (f"NOPE2.{zf.ZONE}", f"www.{zf.ZONE}"):
        handler.handle(dns.message.make_query(name, 65).to_wire(), "127.0.0.1", False)
    assert not state.negatives
    totals = server.metrics.totals()
    assert totals[("udp", 65, dns.rcode.NXDOMAIN, "none")] == 3  # (two rounds and one more)
    assert totals[("udp", 97, dns.rcode.NXDOMAIN, "none")] == 2


def test_a_question_cut_short_takes_the_full_path() -> None:
    """A header that promises one question and no OPT, with the question's
    type or class cut off: the full path's FORMERR, never a fast answer built
    from a short question."""
    server = DnsServer(zf.config(), zf.locator(), registry=None)
    assert server.update(zf.snapshot())
    whole = dns.message.make_query(f"www.{zf.ZONE}", "A", id=9).to_wire()
    for cut in (1, 2, 3, 4):
        data = whole[:-cut]
        before = server.handler.slow_queries
        out = server.handler.handle(data, "127.0.0.1", False)
        assert server.handler.slow_queries == before + 1
        assert out is not None and out[3] & 0x0F == dns.rcode.FORMERR


def test_the_context_cache_is_bounded_and_keyed_by_header_and_opt(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import dnsserver.handler as handler_mod

    monkeypatch.setattr(handler_mod, "CONTEXT_CACHE_MAX", 4)
    server = DnsServer(zf.config(), zf.locator(), registry=None)
    full = DnsServer(zf.config(), zf.locator(), registry=None, fast_path=False)
    assert server.update(zf.snapshot()) and full.update(zf.snapshot())
    state = server.handler.state
    assert state is not None
    rng = random.Random(11)
    for _ in range(200):
        data = _query(rng, _names())
        assert server.handler.handle(data, "127.0.0.1", False) == full.handler.handle(
            data, "127.0.0.1", False)
        assert len(state.contexts) <= 4
    assert state.contexts
    for key, context in state.contexts.items():
        assert context is False or context[0] == bytes((0x84 | (key[0] & 1), key[1] & 0x10))


def _toggled(base: Snapshot, present: set[str], pool: dict[str, tuple[Record, ...]],
             geo_pool: dict[str, dict[str, tuple[Record, ...]]], serial: int) -> Snapshot:
    """``base`` plus the pool's records and geo answers of the ``present`` names."""
    extra = [r for n in sorted(present) for r in pool.get(n, ())]
    geo = {**base.geo, **{n: geo_pool[n] for n in present if n in geo_pool}}
    return _with_serial(replace(base, serial=serial, geo=geo,
                                records=tuple(sorted((*base.records, *extra)))))


def test_names_that_appear_and_go_match_a_full_build() -> None:
    """Runs of names appearing and going (with the empty non-terminals
    above them, CNAMEs into them, NS targets' glue, geo names), each served
    incrementally, hinted or not: every step equals a full build, in the
    table's maps, the Resolver's name structure and the bytes of replies."""
    z = zf.ZONE
    rec = zf.rec
    pool: dict[str, tuple[Record, ...]] = {
        f"a.b.c.{z}": (rec(f"a.b.c.{z}", "A", "192.0.2.31"),),
        f"x.b.c.{z}": (rec(f"x.b.c.{z}", "TXT", '"x"'),),
        f"b.c.{z}": (rec(f"b.c.{z}", "AAAA", "2001:db8::31"),),
        f"c.{z}": (rec(f"c.{z}", "MX", f"10 a.b.c.{z}"),),
        f"target.{z}": (rec(f"target.{z}", "A", "192.0.2.32"),),
        f"to-target.{z}": (rec(f"to-target.{z}", "CNAME", f"target.{z}"),),
        f"mid.{z}": (rec(f"mid.{z}", "CNAME", f"end.y.{z}"),),
        f"end.y.{z}": (rec(f"end.y.{z}", "A", "192.0.2.33"),
                       rec(f"end.y.{z}", "AAAA", "2001:db8::33")),
        f"ns3.{z}": (rec(f"ns3.{z}", "A", "192.0.2.53"),),
        f"deep.{z}": (rec(f"deep.{z}", "TXT", '"was an empty non-terminal"'),),
    }
    geo_pool: dict[str, dict[str, tuple[Record, ...]]] = {
        f"svc{i}.{z}": {loc: (rec(f"svc{i}.{z}", "A", f"192.0.2.{100 + 10 * i + k}"),)
                        for k, loc in enumerate(zf.LOCALITIES)}
        for i in range(3)}
    geo_pool[f"svc.b.c.{z}"] = {"": (rec(f"svc.b.c.{z}", "A", "192.0.2.90"),),
                                "region:us-east1": (rec(f"svc.b.c.{z}", "A", "192.0.2.91"),)}
    base = zf.snapshot(serial=100)
    base = replace(base, records=tuple(sorted((
        *base.records, rec(z, "NS", f"ns3.{z}", 3600), rec(f"nsdata.{z}", "NS", f"ns3.{z}"),
        rec(f"chain.{z}", "CNAME", f"mid.{z}"), rec(f"dangling2.{z}", "CNAME", f"target.{z}")))))
    candidates = sorted({*pool, *geo_pool})
    probe = sorted({*_names(), *candidates, f"b.c.{z}", f"c.{z}", f"y.{z}", f"chain.{z}",
                    f"dangling2.{z}", f"nope.b.c.{z}", f"nsdata.{z}"})
    rng = random.Random(2024)
    inc = DnsServer(zf.config(), zf.locator(), registry=None)
    present: set[str] = set()
    prev = _toggled(base, present, pool, geo_pool, 100)
    assert inc.update(prev)
    # first a parent and its children together (in, out, and one of them
    # staying as the others go), then random toggles
    together = [{f"a.b.c.{z}", f"b.c.{z}", f"c.{z}"}, {f"a.b.c.{z}", f"b.c.{z}", f"c.{z}"},
                {f"x.b.c.{z}", f"b.c.{z}", f"svc.b.c.{z}"}, {f"b.c.{z}", f"x.b.c.{z}"}]
    for step in range(44):
        if step < len(together):
            present ^= together[step]
        else:
            for name in rng.sample(candidates, rng.randint(1, 3)):
                present ^= {name}
        snap = _toggled(base, present, pool, geo_pool, 101 + step)
        if rng.random() < 0.5:
            snap = replace(snap, changed=frozenset(_truth(prev, snap)), base_serial=prev.serial)
        state, built, fresh = derived_like_full_build(inc, snap, step)
        assert state.resolver._ents == built.resolver._ents, step
        assert state.resolver._children == built.resolver._children, step
        assert state.resolver.names() == built.resolver.names(), step
        for _ in range(150):
            data = _query(rng, probe)
            client = rng.choice(CLIENTS)
            assert inc.handler.handle(data, client, False) == fresh.handler.handle(
                data, client, False), (step, sorted(present), dns.message.from_wire(data))
        prev = snap


def derived_like_full_build(inc: DnsServer, snap: Snapshot, why: object
                            ) -> tuple[ServingState, ServingState, DnsServer]:
    """Update ``inc`` with ``snap`` (derived, not a full build) and check its
    table against a full build of ``snap``: the maps the fast path reads and
    the dependency edges (none left over from names or chains gone).
    Returns (derived state, built state, the full-build server)."""
    assert inc.update(snap)
    state = inc.handler.state
    assert state is not None
    stats = state.table.stats
    assert stats.rebuilt_names < stats.names // 2, (why, stats)  # not a full build
    fresh = DnsServer(zf.config(), zf.locator(), registry=None, fast_path=False)
    assert fresh.update(snap)
    built = fresh.handler.state
    assert built is not None
    assert state.table.names == built.table.names, why
    assert state.table.questions == built.table.questions, why
    assert state.table.letters == built.table.letters, why
    assert state.table.deps == built.table.deps, why
    assert ({t: set(d) for t, d in state.table.rdeps.items()}
            == {t: set(d) for t, d in built.table.rdeps.items()}), why
    return state, built, fresh


def test_edges_from_names_that_went_go_with_them() -> None:
    """Names that CNAME out of the zone come and go (Services created and
    deleted): each one that went leaves ``rdeps`` at once, so the target's
    entry does not keep every name that ever pointed at it; the answers stay
    those of a full build."""
    z = zf.ZONE
    target = "lb.elsewhere.example.net."
    pointers = {f"p{i}.{z}": zf.rec(f"p{i}.{z}", "CNAME", target) for i in range(40)}
    base = zf.snapshot(serial=300)
    inc = DnsServer(zf.config(), zf.locator(), registry=None)
    assert inc.update(replace(base, records=tuple(sorted((*base.records,
                                                          *pointers.values())))))
    key = name_to_wire(target)
    state = inc.handler.state
    assert state is not None and len(state.table.rdeps[key]) == 40
    for serial, keep in ((301, 30), (302, 20), (303, 10), (304, 0)):
        kept = [r for n, r in pointers.items() if int(n[1:].split(".")[0]) < keep]
        snap = replace(base, serial=serial, records=tuple(sorted((*base.records, *kept))))
        inc.submit(snap)
        state = inc.handler.state
        assert state is not None and state.serial == serial
        assert state.table.stats.rebuilt_names < 20  # derived, not built anew
        full = DnsServer(zf.config(), zf.locator(), registry=None)
        assert full.update(snap)
        fstate = full.handler.state
        assert fstate is not None
        assert state.table.questions == fstate.table.questions
        have = set(state.table.rdeps.get(key, ()))
        assert len(have) == keep and have == set(fstate.table.rdeps.get(key, ()))
        assert state.table.deps == fstate.table.deps
