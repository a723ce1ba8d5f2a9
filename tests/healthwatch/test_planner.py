"""Planner tables in the CoreDNS style: inputs -> expected answers per (name, locality)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pytest

from config.model import Config, Geo, Health, HttpProbe, Server
from healthwatch.drains import DrainSet
from healthwatch.geometry import fallback_order
from healthwatch.model import ClusterReport, ShardHealth
from healthwatch.planner import ShardKey, plan
from healthwatch.snapshot import Record, Snapshot
from tests.healthwatch.helpers import (
    ADDR,
    gname,
    ing,
    make_config,
    reports,
    rname,
    svc,
    zname,
)

NOW = 2000.0
PROBE = HttpProbe("http://192.0.2.99/healthz")
DOWN = ShardHealth(False, "probe failed: connection refused \u00d72", probe_up=False)
UP = ShardHealth(True, "probe ok", probe_up=True)

Answer = frozenset[tuple[str, str]]  # {(rtype, value)}


def a(*clusters: str) -> Answer:
    return frozenset(("A", ADDR[c]) for c in clusters)


def cname(target: str) -> Answer:
    return frozenset({("CNAME", target)})


def everyone() -> dict[str, ClusterReport]:
    return reports(*(svc(c, ADDR[c]) for c in ADDR))


def probed(*down: str) -> tuple[dict[str, ClusterReport], dict[ShardKey, ShardHealth]]:
    """Every cluster runs nginx with a probe; the clusters in ``down`` fail it."""
    specs = [svc(c, ADDR[c], probe=PROBE) for c in ADDR]
    return reports(*specs), {s.key: (DOWN if s.cluster in down else UP) for s in specs}


@dataclass
class Case:
    name: str
    reports: Mapping[str, ClusterReport]
    expect: list[tuple[str, str | None, Answer]]  # (qname, locality or None for records, answer)
    health: Mapping[ShardKey, ShardHealth] = field(default_factory=dict)
    drains: DrainSet = field(default_factory=DrainSet)
    config: Config = field(default_factory=make_config)
    failovers: tuple[str, ...] | None = None


def _case_list() -> list[Case]:
    r_down, h_down = probed("usw")
    r_eu, h_eu = probed("eu")
    r_all, h_all = probed("asia", "eu", "use", "usw")
    return [
        Case("all healthy: locality picks its own region", everyone(), [
            (gname(), "", a("asia", "eu", "use", "usw")),
            (gname(), "region:us-west1", a("usw")),
            (gname(), "region:europe-west1", a("eu")),
            (gname(), "zone:us-east1-b", a("use")),
            # AZ without shards: the region's shards
            (gname(), "zone:us-east1-c", a("use")),
            (zname("us-east1-b", "us-east1"), None, a("use")),
            (zname("us-east1-c", "us-east1"), None, cname(rname("us-east1"))),
            (rname("us-east1"), None, a("use")),
            (gname(), "region:mars", a("asia", "eu", "use", "usw")),
        ], failovers=()),
        Case("distance fallback, not name order: us-west1 -> us-east1 (not asia-east1)",
             r_down, [
                 (gname(), "region:us-west1", a("use")),
                 (gname(), "zone:us-west1-a", a("use")),
                 (rname("us-west1"), None, cname(gname())),
                 (zname("us-west1-a", "us-west1"), None, cname(rname("us-west1"))),
                 (gname(), "", a("asia", "eu", "use")),
             ], health=h_down, failovers=(gname(),)),
        Case("configured fallback wins over distance: europe-west1 -> asia-east1",
             r_eu, [(gname(), "region:europe-west1", a("asia"))], health=h_eu),
        Case("service absent from a region: its names still exist and CNAME upwards",
             reports(svc("use", ADDR["use"])), [
                 (rname("europe-west1"), None, cname(gname())),
                 (zname("europe-west1-b", "europe-west1"), None, cname(rname("europe-west1"))),
                 # europe-west1's configured fallback (asia) has nothing: next by distance
                 (gname(), "region:europe-west1", a("use")),
             ], failovers=()),
        Case("nothing healthy, serve_all: every shard with an address", r_all, [
            (gname(), "", a("asia", "eu", "use", "usw")),
            (gname(), "region:us-west1", a("asia", "eu", "use", "usw")),
            (rname("us-west1"), None, cname(gname())),
        ], health=h_all),
        Case("nothing healthy, nxdomain: empty answers", r_all, [
            (gname(), "", frozenset()),
            (gname(), "region:us-west1", frozenset()),
        ], health=h_all, config=make_config(health=Health(when_all_unhealthy="nxdomain"))),
        Case("probe configured but no result yet counts as down",
             reports(*(svc(c, ADDR[c], probe=PROBE) for c in ("use", "eu"))), [
                 (gname(), "region:us-east1", a("eu")),
             ], health={svc("eu", ADDR["eu"], probe=PROBE).key: UP},
             failovers=None),
        Case("drained cluster moves its clients like a failure", everyone(), [
            (gname(), "region:us-west1", a("use")),
            (gname(), "", a("asia", "eu", "use")),
        ], drains=DrainSet(clusters=frozenset({"usw"}))),
        Case("drained shard only affects that service",
             reports(*(svc(c, ADDR[c]) for c in ADDR),
                     svc("usw", "198.51.100.4", name="api")), [
                 (gname(), "region:us-west1", a("use")),
                 (gname("api"), "region:us-west1", frozenset({("A", "198.51.100.4")})),
             ], drains=DrainSet(shards=frozenset({("usw", "default/nginx")}))),
        Case("ready below min_ready is unhealthy",
             reports(svc("usw", ADDR["usw"], ready=0), svc("use", ADDR["use"])), [
                 (gname(), "region:us-west1", a("use")),
             ]),
        Case("cluster unreachable past grace without probe: unhealthy",
             reports(svc("usw", ADDR["usw"]), svc("use", ADDR["use"]),
                     unreachable={"usw": NOW - 4.1}), [
                 (gname(), "region:us-west1", a("use")),
             ]),
        Case("cluster unreachable within grace: still served",
             reports(svc("usw", ADDR["usw"]), svc("use", ADDR["use"]),
                     unreachable={"usw": NOW - 1.0}), [
                 (gname(), "region:us-west1", a("usw")),
             ]),
        Case("cluster unreachable but its probe passes: served (data path outranks API)",
             reports(svc("usw", ADDR["usw"], probe=PROBE), svc("use", ADDR["use"]),
                     unreachable={"usw": None}), [
                 (gname(), "region:us-west1", a("usw")),
             ], health={svc("usw", ADDR["usw"], probe=PROBE).key: UP}),
        Case("hostname-only shards: one CNAME to the first hostname",
             reports(svc("use", hostnames=("b-elb.aws.example.net",)),
                     svc("usw", hostnames=("a-elb.aws.example.net",))), [
                 (gname(), "", cname("a-elb.aws.example.net.")),
                 (gname(), "region:us-east1", cname("b-elb.aws.example.net.")),
                 (rname("us-east1"), None, cname("b-elb.aws.example.net.")),
             ]),
        Case("mixed hostname and IP shards: the IPs",
             reports(svc("use", hostnames=("b-elb.aws.example.net",)),
                     svc("usw", ADDR["usw"])), [
                 (gname(), "", a("usw")),
             ]),
        Case("A and AAAA by address family",
             reports(svc("use", "2001:db8::1", ADDR["use"]), svc("usw", "2001:DB8::2")), [
                 (gname(), "", frozenset({("A", ADDR["use"]), ("AAAA", "2001:db8::1"),
                                          ("AAAA", "2001:db8::2")})),
                 (gname(), "region:us-west1", frozenset({("AAAA", "2001:db8::2")})),
             ]),
        Case("ingress hosts inside the zone are geo names; outside ignored",
             reports(ing("use", ADDR["use"], hosts=("shop.example.com.", "shop.other.org.")),
                     ing("eu", ADDR["eu"], hosts=("shop.example.com.",))), [
                 ("shop.example.com.", "region:us-east1", a("use")),
                 ("shop.example.com.", "region:us-west1", a("use")),
                 ("shop.example.com.", "", a("eu", "use")),
                 ("shop.other.org.", "", frozenset()),
             ]),
        Case("cluster_local: healthy shard's ClusterIP, else its zone's answer",
             reports(svc("use", ADDR["use"], cluster_ip="10.96.0.10"),
                     svc("usw", ADDR["usw"], cluster_ip="10.96.0.20", probe=PROBE)), [
                 (gname(), "cluster:use", frozenset({("A", "10.96.0.10")})),
                 (gname(), "cluster:usw", a("use")),
                 (gname(), "cluster:eu", a("use")),
             ], health={svc("usw", ADDR["usw"], probe=PROBE).key: DOWN},
             config=make_config(geo=Geo(cluster_local=True))),
        Case("apex: SOA, NS, in-zone glue only, static records", everyone(), [
            ("example.com.", None, frozenset({
                ("SOA", "ns1.example.com. hostmaster.example.com. 7 3600 600 86400 30"),
                ("NS", "ns1.example.com."), ("NS", "ns.other.net.")})),
            ("ns1.example.com.", None, frozenset({("A", "127.0.0.1"), ("AAAA", "::1")})),
            ("ns.other.net.", None, frozenset()),
            ("eu.nginx.example.com.", None,
             cname("nginx.default.myfed.svc.europe-west1.example.com.")),
            ("txt.example.com.", None, frozenset({("TXT", '"hello"')})),
        ]),
    ]


CASES = _case_list()


def _records_for(snap: Snapshot, name: str) -> Answer:
    return frozenset((r.rtype, r.value) for r in snap.records if r.name == name)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_plan_table(case: Case) -> None:
    snap = plan(case.config, case.reports, case.health, case.drains, 7, NOW)
    for qname, loc, want in case.expect:
        if loc is None:
            got = _records_for(snap, qname)
        else:
            ans = snap.geo_answer(qname, loc)
            got = frozenset((r.rtype, r.value) for r in ans or ())
            assert all(r.name == qname and r.ttl == case.config.ttl for r in ans or ())
        assert got == want, f"{qname} @ {loc!r}"
    if case.failovers is not None:
        assert snap.failovers == case.failovers


def test_fallback_orders_differ_from_name_order() -> None:
    cfg = make_config()
    assert fallback_order(cfg, "us-west1") == ("us-east1", "europe-west1", "asia-east1")
    assert sorted(fallback_order(cfg, "us-west1")) != list(fallback_order(cfg, "us-west1"))
    assert fallback_order(cfg, "europe-west1")[0] == "asia-east1"


def test_shard_status_reasons() -> None:
    rep = reports(svc("asia", ADDR["asia"], ready=0), svc("eu"),
                  svc("use", ADDR["use"], probe=PROBE), svc("usw", ADDR["usw"]),
                  unreachable={"usw": NOW - 4.1})
    health = {svc("use", ADDR["use"], probe=PROBE).key: DOWN}
    snap = plan(make_config(), rep, health, DrainSet(), 1, NOW)
    reasons = {s.cluster: (s.healthy, s.reason) for s in snap.shards}
    assert reasons == {
        "asia": (False, "ready endpoints 0 < min_ready 1"),
        "eu": (False, "no load-balancer address"),
        "use": (False, "probe failed: connection refused \u00d72"),
        "usw": (False, "cluster unreachable for 4.1s (grace 3s)"),
    }
    drained = plan(make_config(), everyone(), {}, DrainSet(frozenset({"eu"}),
                   frozenset({("use", "default/nginx")})), 1, NOW)
    got = {s.cluster: (s.reason, s.drained) for s in drained.shards}
    assert got["eu"] == ("cluster drained", True)
    assert got["use"] == ("shard drained", True)
    assert got["asia"] == ("ok", False)
    assert [c.drained for c in drained.clusters] == [False, True, False, False]


def test_max_answers_is_a_stable_bounded_choice() -> None:
    addrs = tuple(f"192.0.2.{i}" for i in range(1, 21))
    cfg = make_config(server=Server(max_answers=3))
    rep = reports(svc("use", *addrs))
    one = plan(cfg, rep, {}, DrainSet(), 1, NOW).geo_answer(gname(), "")
    two = plan(cfg, rep, {}, DrainSet(), 2, NOW + 5).geo_answer(gname(), "")
    assert one is not None and len(one) == 3 and one == two
    # removing an address that was not chosen leaves the answer as it was
    unchosen = next(a for a in addrs if a not in {r.value for r in one})
    fewer = reports(svc("use", *(a for a in addrs if a != unchosen)))
    assert plan(cfg, fewer, {}, DrainSet(), 3, NOW).geo_answer(gname(), "") == one


def test_identical_answers_share_one_tuple() -> None:
    snap = plan(make_config(), reports(svc("use", ADDR["use"])), {}, DrainSet(), 1, NOW)
    per = snap.geo[gname()]
    assert len(per) == len(snap.localities) > 5
    first = per[""]
    assert all(ans is first for ans in per.values())


def test_every_region_and_az_has_names_and_localities() -> None:
    cfg = make_config()
    snap = plan(cfg, reports(svc("use", ADDR["use"])), {}, DrainSet(), 1, NOW)
    names = set(snap.names())
    for r in cfg.regions:
        assert rname(r.name) in names
        for az in r.zones:
            assert zname(az, r.name) in names
            assert f"zone:{az}" in snap.localities
    assert snap.localities[0] == ""


def test_names_lower_case_and_pure() -> None:
    cfg = make_config(zone="Example.COM.")
    rep = reports(svc("use", ADDR["use"], name="Web", namespace="Shop"))
    one = plan(cfg, rep, {}, DrainSet(), 5, NOW)
    assert all(n == n.lower() and n.endswith(".") for n in one.names())
    assert "web.shop.myfed.svc.example.com." in one.geo
    two = plan(cfg, rep, {}, DrainSet(), 5, NOW)
    assert one == two
    again = Snapshot.from_json(one.to_json())
    assert again.records == one.records and dict(again.geo) == dict(one.geo)


def test_discovered_region_gets_names() -> None:
    """A kube cluster whose region comes from Node labels still gets names."""
    from config.model import Cluster
    cfg = make_config(clusters=(Cluster("k", None, None, source="kubernetes"),))
    rep = {"k": ClusterReport("k", (svc("k", "192.0.2.50"),), region="me-central1",
                              zone="me-central1-a")}
    snap = plan(cfg, rep, {}, DrainSet(), 1, NOW)
    assert _records_for(snap, zname("me-central1-a", "me-central1")) == frozenset(
        {("A", "192.0.2.50")})
    assert snap.shards[0].region == "me-central1"
    assert snap.clusters[0].region == "me-central1"


def test_serial_in_soa() -> None:
    snap = plan(make_config(), everyone(), {}, DrainSet(), 4242, NOW)
    soa = [r for r in snap.records if r.rtype == "SOA"]
    assert soa == [Record("example.com.", "SOA", 30,
                          "ns1.example.com. hostmaster.example.com. 4242 3600 600 86400 30")]
    assert snap.serial == 4242 and snap.generated_at == NOW
