"""The fast path (AnswerTable + patching) against the full path (dnslib).

A differential test sends varied queries to both and requires byte-identical
replies; plus table shape checks (sharing, bounds, atomic swap).
"""

from __future__ import annotations

import random

import dns.edns
import dns.flags
import dns.message
import pytest
from prometheus_client import CollectorRegistry

from dnsserver import wire
from dnsserver.answers import AnswerTable
from dnsserver.handler import QueryHandler
from dnsserver.resolver import Resolver, name_to_wire
from dnsserver.server import DnsServer
from tests.dnsserver import zonefixture as zf

QTYPES = ["A", "AAAA", "CNAME", "MX", "NS", "SOA", "TXT", "SRV", "CAA", "ANY", "HTTPS", "PTR",
          "TYPE4242", "TYPE65280", "DS"]
ECS_CHOICES = [None, ("198.51.100.0", 24), ("203.0.113.0", 24), ("203.0.113.128", 25),
               ("10.0.0.0", 8), ("0.0.0.0", 0), ("2001:db8:1::", 48), ("2001:db8:1::", 56),
               ("192.0.2.0", 24), ("fd00::", 8)]
CLIENTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "::1", "::ffff:127.0.0.2"]


def _names() -> list[str]:
    snap = zf.snapshot()
    names = sorted(set(snap.names()))
    names += [f"nope{i}.{zf.ZONE}" for i in range(5)] + ["ent." + zf.ZONE, "www.example.net.",
                                                          "."]
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
        if rng.random() < 0.1:
            options.append(dns.edns.GenericOption(10, bytes(8)))  # client cookie
    msg = dns.message.make_query(
        name, qtype, use_edns=0 if edns else None, want_dnssec=edns and rng.random() < 0.3,
        payload=rng.choice([0, 256, 512, 600, 1232, 4096, 65535]) if edns else None,
        options=options)
    msg.flags = dns.flags.Flag(0)
    if rng.random() < 0.7:
        msg.flags |= dns.flags.RD
    if rng.random() < 0.2:
        msg.flags |= dns.flags.CD
    if rng.random() < 0.1:
        msg.flags |= dns.flags.AD
    return msg.to_wire()


@pytest.fixture(scope="module")
def pair() -> tuple[QueryHandler, QueryHandler]:
    fast = DnsServer(zf.config(), zf.locator(), registry=CollectorRegistry())
    full = DnsServer(zf.config(), zf.locator(), registry=CollectorRegistry(), fast_path=False)
    assert fast.update(zf.snapshot()) and full.update(zf.snapshot())
    return fast.handler, full.handler


def test_fast_and_full_paths_are_byte_identical(pair: tuple[QueryHandler, QueryHandler]) -> None:
    fast, full = pair
    rng = random.Random(20240501)
    names = _names()
    hits = 0
    total = 3000
    for _ in range(total):
        data = _query(rng, names)
        client = rng.choice(CLIENTS)
        tcp = rng.random() < 0.15
        if fast._fast(data, client, tcp) is not None:
            hits += 1
        a = fast.handle(data, client, tcp)
        b = full.handle(data, client, tcp)
        assert a == b, (dns.message.from_wire(data), client, tcp)
    # the comparison means something only if the fast path did most of the work
    assert hits > total // 4
    assert fast.metrics.errors == 0 and full.metrics.errors == 0


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
    www = table.get((name_to_wire(f"www.{zf.ZONE}"), wire.T_A, wire.C_IN, wire.V_PLAIN))
    assert isinstance(www, tuple)
    same = table.get((name_to_wire(f"same.{zf.ZONE}"), wire.T_A, wire.C_IN, wire.V_PLAIN))
    assert isinstance(same, tuple)  # geo name whose answers never differ
    glob = table.get((name_to_wire(zf.GLOBAL), wire.T_A, wire.C_IN, wire.V_EDNS))
    assert isinstance(glob, dict)
    assert set(glob) == set(resolver.localities)
    # AZ and region of the US share one reply object
    assert glob["zone:us-east1-b"] is glob["region:us-east1"]
    assert glob[""] is not glob["region:us-east1"]
    alias = table.get((name_to_wire(f"geoalias.{zf.ZONE}"), wire.T_A, wire.C_IN, wire.V_PLAIN))
    assert isinstance(alias, dict)  # static CNAME into a geo name


def test_table_is_bounded() -> None:
    resolver = Resolver(zf.snapshot(), zf.config().server)
    table = AnswerTable.build(resolver, max_keys=100)
    assert not table.stats.complete
    assert table.stats.keys <= 100 + 9 + 3 * 8 * 6
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
                "fe80::/10", "::/128"]


def test_is_private_matches_the_rfc_ranges() -> None:
    import ipaddress

    nets = [ipaddress.ip_network(n) for n in PRIVATE_NETS]
    rng = random.Random(7)
    samples = [ipaddress.ip_address(rng.getrandbits(32)) for _ in range(3000)]
    samples += [ipaddress.ip_address(rng.getrandbits(128)) for _ in range(1000)]
    samples += [net.network_address for net in nets] + [net.broadcast_address for net in nets]
    samples += [ipaddress.ip_address(x) for x in ("172.15.255.255", "172.32.0.0", "100.63.1.1",
                                                   "100.128.0.0", "fec0::1", "::2", "fe7f::1")]
    for ip in samples:
        want = any(ip.version == n.version and ip in n for n in nets)
        assert wire.is_private(ip.packed) == want, ip
