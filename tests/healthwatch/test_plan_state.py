"""The incremental Planner gives exactly what a full plan gives, step by step.

Random walks over a small federation (services, Ingress hosts, hostname
shards, IPv6, ClusterIPs, a cluster whose region is discovered, AZ
overrides): probe flips, ready counts, added/removed/changed shards, drains,
unreachable clusters and time passing. After every step the incremental
result must equal a fresh ``plan`` of the same inputs, its ``changed`` must
cover every name that differs from the previous Snapshot, and every answer
outside ``changed`` must be the very same tuple as before.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest

from config.model import Cluster, Config, Geo, Health, HttpProbe, Server
from healthwatch.drains import DrainSet
from healthwatch.model import ClusterReport, ShardHealth, ShardSpec
from healthwatch.planner import Planner, ShardKey, plan, with_serial
from healthwatch.snapshot import Snapshot
from tests.healthwatch.helpers import CLUSTERS, ZONE, gname, make_config

PROBE = HttpProbe("http://192.0.2.99/healthz")
UP = ShardHealth(True, "probe ok", probe_up=True, changed_at=5.0)
DOWN = ShardHealth(False, "probe failed: connection refused \u00d72", probe_up=False,
                   changed_at=6.0)
# "k8s" has no configured place: its region/AZ come from its report
CLUSTER_NAMES = [c.name for c in CLUSTERS] + ["k8s"]
SERVICES = ["nginx", "api", "db", "web"]


def _config(rng: random.Random) -> Config:
    return make_config(
        clusters=(*CLUSTERS, Cluster("k8s", None, None, source="kubernetes")),
        geo=Geo(cluster_local=rng.random() < 0.5),
        health=Health(when_all_unhealthy=rng.choice(("serve_all", "nxdomain"))),
        server=Server(max_answers=rng.choice((1, 2, 8))),
    )


def _spec(rng: random.Random, cluster: str, i: int) -> ShardSpec:
    kind = "ingress" if rng.random() < 0.25 else "service"
    name = rng.choice(SERVICES)
    addrs: tuple[str, ...] = tuple(rng.sample(
        [f"192.0.2.{i % 200 + 1}", f"198.51.100.{rng.randrange(1, 9)}", f"2001:db8::{i:x}"],
        rng.randrange(0, 3)))
    hostnames = (f"lb{rng.randrange(3)}.elb.example.net",) if rng.random() < 0.3 else ()
    hosts: tuple[str, ...] = ()
    if kind == "ingress":
        hosts = tuple(rng.sample([f"{rng.choice(SERVICES)}.example.com.", "shop.example.com.",
                                  "shop.other.org.", gname(rng.choice(SERVICES))],
                                 rng.randrange(1, 3)))
    zone = rng.choice((None, None, "us-east1-c", "asia-east1-a"))
    return ShardSpec(
        cluster=cluster, kind=kind, namespace="default", name=name, addresses=addrs,
        hostnames=hostnames, ready=rng.randrange(0, 3), hosts=hosts,
        cluster_ip=f"10.96.0.{i % 250 + 1}" if rng.random() < 0.5 else None,
        probe=PROBE if rng.random() < 0.5 else None, zone=zone)


class World:
    """The planner's inputs, changed one random step at a time."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.config = _config(rng)
        self.now = 2000.0
        self.n = 0
        self.shards: dict[str, list[ShardSpec]] = {c: [] for c in CLUSTER_NAMES}
        for c in CLUSTER_NAMES:
            for _ in range(rng.randrange(1, 5)):
                self.add(c)
        self.reports: dict[str, ClusterReport] = {}
        for c in CLUSTER_NAMES:
            self.report(c)
        self.health: dict[ShardKey, ShardHealth] = {}
        self.drains = DrainSet()

    def add(self, cluster: str) -> None:
        self.n += 1
        self.shards[cluster].append(_spec(self.rng, cluster, self.n))

    def report(self, cluster: str, **kw: Any) -> None:
        old = self.reports.get(cluster)
        base = old or ClusterReport(cluster, (), last_contact=self.now)
        if cluster == "k8s" and old is None:
            kw.setdefault("region", "mars-north1")
            kw.setdefault("zone", "mars-north1-a")
        self.reports[cluster] = replace(base, shards=tuple(self.shards[cluster]), **kw)

    def step(self, churn: bool = False) -> str:
        rng = self.rng
        cluster = rng.choice(CLUSTER_NAMES)
        mine = self.shards[cluster]
        what = rng.choice(("add", "remove", "place", "probe") if churn else (
            "probe", "probe", "probe", "ready", "add", "remove", "address", "drain",
            "drain_shard", "unreachable", "reachable", "time", "place", "nothing"))
        if what == "probe":
            probed = [s for c in CLUSTER_NAMES for s in self.shards[c] if s.probe]
            if probed:
                key = rng.choice(probed).key
                self.health[key] = DOWN if self.health.get(key) is UP else UP
        elif what == "ready" and mine:
            i = rng.randrange(len(mine))
            mine[i] = replace(mine[i], ready=rng.randrange(0, 3))
            self.report(cluster)
        elif what == "add":
            self.add(cluster)
            self.report(cluster)
        elif what == "remove" and mine:
            mine.pop(rng.randrange(len(mine)))
            self.report(cluster)
        elif what == "address" and mine:
            i = rng.randrange(len(mine))
            mine[i] = replace(mine[i], addresses=(f"203.0.113.{rng.randrange(1, 250)}",))
            self.report(cluster)
        elif what == "drain":
            self.drains = replace(self.drains, clusters=self.drains.clusters ^ {cluster})
        elif what == "drain_shard" and mine:
            pair = (cluster, rng.choice(mine).service)
            self.drains = replace(self.drains, shards=self.drains.shards ^ {pair})
        elif what == "unreachable":
            self.report(cluster, reachable=False, last_contact=self.now - rng.choice((1.0, 10.0)))
        elif what == "reachable":
            self.report(cluster, reachable=True, last_contact=self.now)
        elif what == "time":
            self.now += rng.choice((0.5, 3.0))
        elif what == "place":
            self.report("k8s", region=rng.choice(("mars-north1", "us-east1")),
                        zone=rng.choice(("mars-north1-a", "us-east1-b")))
        return what


def _comparable(s: Snapshot) -> dict[str, Any]:
    return s.to_dict()


def _differing_names(a: Snapshot, b: Snapshot) -> set[str]:
    out = {r.name for r in set(a.records) ^ set(b.records)}
    for name in a.geo.keys() | b.geo.keys():
        if a.geo.get(name) != b.geo.get(name):
            out.add(name)
    return out


@pytest.mark.parametrize(("seed", "churn"), [(s, False) for s in range(24)]
                         + [(s, True) for s in range(100, 108)])
def test_incremental_equals_full_plan(seed: int, churn: bool) -> None:
    """``churn``: mostly shards coming and going and clusters moving region."""
    rng = random.Random(seed)
    world = World(rng)
    planner = Planner()
    published: Snapshot | None = None  # what the engine serves
    full_prev: Snapshot | None = None
    last: Snapshot | None = None
    serial = 10
    for step in range(60):
        what = world.step(churn) if step else "start"
        args = (world.config, dict(world.reports), dict(world.health), world.drains,
                serial, world.now)
        got = planner.plan(*args, previous=published)
        want = plan(*args, previous=full_prev)
        assert _comparable(got) == _comparable(want), f"step {step} ({what})"
        if published is not None and got.changed is not None:
            assert got.base_serial == published.serial
            differs = _differing_names(published, got)
            assert differs <= got.changed, f"step {step} ({what}): {differs - got.changed}"
            for name, per in got.geo.items():
                # tuples are reused from the planner's own last result (the
                # engine's case: it publishes every result that differs)
                if name not in got.changed and published.geo is last.geo:
                    assert per is published.geo[name] or all(
                        ans is published.geo[name][loc] for loc, ans in per.items()), \
                        f"step {step} ({what}): {name} answers not reused"
        last = got
        # publish at a new serial; sometimes skip (whether or not anything changed)
        if rng.random() < 0.8:
            serial += 1
            published = with_serial(got, serial)
            full_prev = with_serial(want, serial)
        elif rng.random() < 0.1:
            published = full_prev = None  # e.g. a restart


def test_one_probe_flip_changes_only_that_service_and_reuses_the_rest() -> None:
    config = make_config()
    specs = [ShardSpec(c, "service", "default", name, addresses=(f"192.0.2.{i * 10 + j}",),
                       ready=1, probe=PROBE)
             for i, name in enumerate(SERVICES) for j, c in enumerate(("use", "usw", "eu"))]
    reports = {c: ClusterReport(c, tuple(s for s in specs if s.cluster == c))
               for c in ("use", "usw", "eu", "asia")}
    health = {s.key: UP for s in specs}
    planner = Planner()
    first = planner.plan(config, reports, health, DrainSet(), 1, 100.0)
    health = dict(health)
    health[specs[0].key] = DOWN  # nginx in "use"
    second = planner.plan(config, reports, health, DrainSet(), 2, 101.0, previous=first)
    assert _comparable(second) == _comparable(
        plan(config, reports, health, DrainSet(), 2, 101.0, previous=first))
    assert second.base_serial == 1
    assert second.changed is not None
    assert ZONE in second.changed  # the SOA serial moved
    assert gname("nginx") in second.changed
    assert not any(n.startswith(("api.", "db.", "web.")) for n in second.changed)
    for name in SERVICES[1:]:
        assert second.geo[gname(name)] is first.geo[gname(name)]
    # records outside the changed names are the same objects
    before = {(r.name, r.rtype, r.value): r for r in first.records}
    for r in second.records:
        if r.name not in second.changed:
            assert before[(r.name, r.rtype, r.value)] is r
    # the nginx answers that did not change keep their tuples too
    ng1, ng2 = first.geo[gname("nginx")], second.geo[gname("nginx")]
    assert ng2["region:us-west1"] is ng1["region:us-west1"]
    assert ng2["region:us-east1"] is not ng1["region:us-east1"]


def test_same_inputs_again_change_nothing_but_the_apex() -> None:
    config = make_config()
    reports = {"use": ClusterReport("use", (ShardSpec("use", "service", "default", "nginx",
                                                      addresses=("192.0.2.1",), ready=1),))}
    planner = Planner()
    first = planner.plan(config, reports, {}, DrainSet(), 1, 100.0)
    again = planner.plan(config, reports, {}, DrainSet(), 2, 100.0, previous=first)
    assert again.changed == frozenset({ZONE})
    assert again.records[1:] != () and again.geo == first.geo
    # a Snapshot it did not make (or none): nothing is known about what changed
    other = plan(config, reports, {}, DrainSet(), 1, 100.0)
    assert planner.plan(config, reports, {}, DrainSet(), 3, 100.0, previous=other).changed \
        is not None  # equal to its last result apart from the serial: continues
    assert planner.plan(config, reports, {}, DrainSet(), 4, 100.0).changed is None


def test_a_failing_plan_leaves_the_planner_usable() -> None:
    config = make_config()
    good = {"use": ClusterReport("use", (ShardSpec("use", "service", "default", "nginx",
                                                   addresses=("192.0.2.1",), ready=1),))}
    planner = Planner()
    first = planner.plan(config, good, {}, DrainSet(), 1, 100.0)
    bad: Any = {"use": ClusterReport("use", (None,))}  # type: ignore[arg-type]
    with pytest.raises(AttributeError):
        planner.plan(config, bad, {}, DrainSet(), 2, 100.0, previous=first)
    again = planner.plan(config, good, {}, DrainSet(), 2, 100.0, previous=first)
    assert _comparable(again) == _comparable(plan(config, good, {}, DrainSet(), 2, 100.0,
                                                  previous=first))


def test_service_leaving_with_its_locality_leaves_the_failovers() -> None:
    """A failed-over service disappears in the same plan as the only locality it
    created (a discovered region): no stale failover is left behind."""
    config = make_config(clusters=(*CLUSTERS, Cluster("k8s", None, None, source="kubernetes")))
    x_k8s = ShardSpec("k8s", "service", "default", "x", addresses=("192.0.2.7",), ready=0)
    x_use = ShardSpec("use", "service", "default", "x", addresses=("192.0.2.8",), ready=1)
    before = {"k8s": ClusterReport("k8s", (x_k8s,), region="mars-north1", zone="mars-north1-a"),
              "use": ClusterReport("use", (x_use,))}
    planner = Planner()
    first = planner.plan(config, before, {}, DrainSet(), 1, 100.0)
    assert first.failovers == (gname("x"),)
    assert "region:mars-north1" in first.localities
    after = {"k8s": replace(before["k8s"], shards=()), "use": replace(before["use"], shards=())}
    second = planner.plan(config, after, {}, DrainSet(), 2, 101.0, previous=first)
    assert second.failovers == ()
    assert _comparable(second) == _comparable(plan(config, after, {}, DrainSet(), 2, 101.0,
                                                   previous=first))


def test_a_health_mapping_changed_in_place_is_seen() -> None:
    config = make_config()
    spec = ShardSpec("use", "service", "default", "nginx", addresses=("192.0.2.1",), ready=1,
                     probe=PROBE)
    reports = {"use": ClusterReport("use", (spec,))}
    health = {spec.key: UP}
    planner = Planner()
    first = planner.plan(config, reports, health, DrainSet(), 1, 100.0)
    health[spec.key] = DOWN  # the same dict object, changed
    second = planner.plan(config, reports, health, DrainSet(), 2, 101.0, previous=first)
    assert [s.healthy for s in first.shards] == [True]
    assert [s.healthy for s in second.shards] == [False]


def test_cname_values_share_their_target_names_string() -> None:
    """A fallback CNAME (AZ -> region -> global name) holds the very string
    its target's records are named with (one string per name, not two), and
    replanning a service keeps the CNAMEs that did not change."""
    config = make_config()
    specs = [ShardSpec("use", "service", "default", name, addresses=(f"192.0.2.{i}",),
                       ready=1, probe=PROBE) for i, name in enumerate(SERVICES, 1)]
    reports = {"use": ClusterReport("use", tuple(specs))}
    health = {s.key: UP for s in specs}
    planner = Planner()
    first = planner.plan(config, reports, health, DrainSet(), 1, 100.0)
    names = {r.name: r.name for r in first.records}
    names.update((n, n) for n in first.geo)
    planned = tuple(f"{s}.default." for s in SERVICES)  # not the config's static records
    cnames = [r for r in first.records if r.rtype == "CNAME" and r.name.startswith(planned)]
    assert len(cnames) >= 4
    for r in cnames:
        assert r.value in names and r.value is names[r.value], r
    health = dict(health)
    health[specs[0].key] = DOWN
    second = planner.plan(config, reports, health, DrainSet(), 2, 101.0, previous=first)
    kept = {(r.name, r.value): r for r in first.records if r.rtype == "CNAME"}
    same = [r for r in second.records if r.rtype == "CNAME" and (r.name, r.value) in kept]
    assert same and all(kept[(r.name, r.value)] is r for r in same)
    names = {r.name: r.name for r in second.records}
    names.update((n, n) for n in second.geo)
    cnames = [r for r in second.records if r.rtype == "CNAME" and r.name.startswith(planned)]
    assert len(cnames) > len(same)  # the flipped service's AZ now falls back too
    for r in cnames:  # new CNAMEs point at the strings of the kept records
        assert r.value is names[r.value], r
