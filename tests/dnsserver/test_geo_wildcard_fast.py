"""Names under a geo-aware wildcard (``*.shop``: a wildcard Ingress host) are
answered without the full path, byte for byte as the full path answers them.

Such a name is in no answer table (it does not exist) and its answer depends
on the client's locality, so before this every query for it took the full
path: about 120 us for a name asked again and 330 us for a new one
(``QueryHandler.handle`` on pyenv's 3.11, the ``wild`` fixture), against 3 us
for a global name. Now the handler answers it from per-locality entries kept
per name (``QueryHandler._synthesized``): the wildcard's own when they hold
only A/AAAA records owned by the question (``_owner_only``), else built once
per name from the resolver's synthesized answers.
"""

from __future__ import annotations

import random

import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from prometheus_client import CollectorRegistry

from dnsserver.handler import QueryHandler, _owner_only
from dnsserver.names import name_to_wire
from dnsserver.server import DnsServer
from healthwatch.snapshot import Snapshot
from tests.dnsserver import zonefixture as zf
from tests.dnsserver.test_answers import CLIENTS
from tests.dnsserver.test_wildcards import _servers, ask, rrs

Z = zf.ZONE
rec = zf.rec
LB = f"*.lb.{Z}"  # geo-aware, a CNAME out of the zone per region (hostname Ingresses)
IN = f"*.in.{Z}"  # geo-aware, a CNAME into the zone (compressed against the question)
ECS = [None, ("198.51.100.0", 24), ("203.0.113.0", 24), ("2001:db8:1::", 56),
       ("0.0.0.0", 0), ("192.0.2.0", 24)]


def snapshot(serial: int = 7, us_ip: str = zf.US_IP) -> Snapshot:
    base = zf.wild_snapshot(serial)
    us_lb, eu_lb = rec(LB, "CNAME", "lb-us.example.net."), rec(LB, "CNAME", "lb-eu.example.net.")
    us_in, eu_in = rec(IN, "CNAME", f"www.{Z}"), rec(IN, "CNAME", zf.GLOBAL)
    shop = dict(base.geo[zf.GEO_WILD])
    if us_ip != zf.US_IP:
        us = (rec(zf.GEO_WILD, "A", us_ip),)
        shop = {loc: tuple(r for r in ans if r.value != zf.US_IP) + (us if "eu" not in loc
                                                                     else ())
                for loc, ans in shop.items()}
    geo = {**base.geo, zf.GEO_WILD: shop,
           LB: {"": (us_lb,), "region:us-east1": (us_lb,), "zone:us-east1-b": (us_lb,),
                "region:europe-west1": (eu_lb,), "zone:europe-west1-b": (eu_lb,)},
           IN: {"": (us_in,), "region:us-east1": (us_in,), "zone:us-east1-b": (us_in,),
                "region:europe-west1": (eu_in,), "zone:europe-west1-b": (eu_in,)}}
    return Snapshot(serial=serial, generated_at=0.0, zone=Z, ttl=30, records=base.records,
                    geo=geo, localities=zf.LOCALITIES)


@pytest.fixture(scope="module")
def pair() -> tuple[QueryHandler, QueryHandler]:
    return _servers(snapshot())


def random_names(rng: random.Random, base: str, count: int) -> list[str]:
    out = []
    for _ in range(count):
        labels = ["".join(rng.choice("abcXYZ019-") for _ in range(rng.randint(1, 12)))
                  .strip("-") or "a" for _ in range(rng.randint(1, 3))]
        out.append(".".join([*labels, base]))
    return out


def test_names_under_a_geo_wildcard_take_the_fast_path(
        pair: tuple[QueryHandler, QueryHandler]) -> None:
    """Random names (1-3 labels, random case) under each geo-aware wildcard,
    from every client and ECS option: the fast path answers (no full-path
    query) with the full path's bytes, the records or the NODATA of the
    client's locality."""
    rng = random.Random(11)
    asked = answered = 0
    for base, qtypes in ((f"shop.{Z}", ("A", "AAAA")), (f"lb.{Z}", ("A", "AAAA", "CNAME")),
                         (f"in.{Z}", ("A",))):
        for name in random_names(rng, base, 12):
            for qtype in qtypes:
                client, ecs = rng.choice(CLIENTS), rng.choice(ECS)
                reply = ask(pair, name, qtype, client, ecs, fast_only=True)
                assert reply.rcode() == dns.rcode.NOERROR, (name, qtype)
                if reply.answer:
                    assert str(reply.answer[0].name).lower() == name.lower()
                    answered += 1
                else:  # NODATA for this locality (AAAA where only A is served)
                    assert [r.rdtype for r in reply.authority] == [dns.rdatatype.SOA]
                asked += 1
    assert asked == 12 * (2 + 3 + 1) and answered > asked // 2


@pytest.mark.parametrize("ecs", ECS)
def test_each_locality_gets_its_own_records_under_every_wildcard(
        pair: tuple[QueryHandler, QueryHandler], ecs: tuple[str, int] | None) -> None:
    """The synthesized name's records are the wildcard's for that locality
    (the same as asking the wildcard itself, owner rewritten)."""
    for client in CLIENTS:
        for wild, name in ((zf.GEO_WILD, f"Foo.Shop.{Z}"), (LB, f"x.y.lb.{Z}"),
                           (IN, f"q.in.{Z}")):
            want = ask(pair, wild, "A", client, ecs)
            got = ask(pair, name, "A", client, ecs, fast_only=True)
            owner = name.lower()
            assert rrs(got.answer) == [r.replace(wild, owner, 1) for r in rrs(want.answer)]
            assert [o.scopelen for o in got.options] == [o.scopelen for o in want.options]


def test_types_the_wildcard_lacks_and_other_classes_stay_byte_identical(
        pair: tuple[QueryHandler, QueryHandler]) -> None:
    for name in (f"n1.shop.{Z}", f"n2.lb.{Z}", f"n3.in.{Z}"):
        for qtype in ("TXT", "MX", "SRV", "ANY", "HTTPS", "TYPE65"):
            ask(pair, name, qtype)  # NODATA or ANY: fast and full agree
    fast, full = pair
    data = dns.message.make_query(f"n4.shop.{Z}", "A", "CH").to_wire()
    assert fast.handle(data, "127.0.0.1", False) == full.handle(data, "127.0.0.1", False)


def test_tcp_and_a_small_udp_limit_agree_with_the_full_path(
        pair: tuple[QueryHandler, QueryHandler]) -> None:
    fast, full = pair
    for name in (f"t1.shop.{Z}", f"t2.lb.{Z}", f"t3.in.{Z}"):
        for edns in (False, 0):
            data = dns.message.make_query(name, "A", use_edns=edns).to_wire()
            for tcp in (False, True):
                assert fast.handle(data, "127.0.0.2", tcp) == full.handle(data, "127.0.0.2", tcp)


def test_only_owner_pointing_address_records_are_shared() -> None:
    """The wildcard's bytes are reused for every name only when every record
    is an A/AAAA owned by the question; a CNAME (its target, or a name
    compressed against the question) makes them per name."""
    fast, _ = _servers(snapshot())
    assert fast.state is not None
    table = fast.state.table
    shop, lb, into = (table.get(name_to_wire(w), 1) for w in (zf.GEO_WILD, LB, IN))
    assert isinstance(shop, list) and isinstance(lb, list) and isinstance(into, list)
    assert all(_owner_only(e) for e in shop if isinstance(e, tuple))
    assert not any(_owner_only(e) for e in lb if isinstance(e, tuple))
    assert not any(_owner_only(e) for e in into if isinstance(e, tuple))


def test_a_new_snapshot_is_served_at_once_for_names_already_asked() -> None:
    """The per-name entries belong to the serving state: after an update that
    changes the wildcard's records, a name asked before gets the new ones."""
    servers = [DnsServer(zf.config(), zf.locator(), registry=CollectorRegistry(),
                         fast_path=fast) for fast in (True, False)]
    for server in servers:
        assert server.update(snapshot())
    pair = (servers[0].handler, servers[1].handler)
    name = f"again.shop.{Z}"
    assert rrs(ask(pair, name, "A", "127.0.0.2", fast_only=True).answer) == [
        f"{name} A {zf.US_IP}"]
    for server in servers:
        assert server.update(snapshot(serial=8, us_ip="192.0.2.77"))
    assert rrs(ask(pair, name, "A", "127.0.0.2", fast_only=True).answer) == [
        f"{name} A 192.0.2.77"]
