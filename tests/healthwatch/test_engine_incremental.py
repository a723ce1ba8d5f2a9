"""The engine plans incrementally: each publish names what changed since the last.

A consumer (the DNS server) rebuilds only ``Snapshot.changed`` when
``base_serial`` is the serial it serves; these tests hold the engine to that
chain and to equality with a full plan of the same inputs.
"""

from __future__ import annotations

import time
from dataclasses import replace
from itertools import pairwise
from typing import Any

from healthwatch.drains import DrainSet
from healthwatch.engine import Engine
from healthwatch.model import ClusterReport, ShardSpec
from healthwatch.planner import plan
from healthwatch.snapshot import Snapshot
from tests.healthwatch.backends import Backend
from tests.healthwatch.test_engine import (
    PLACES,
    ZONE,
    ManualSource,
    Watcher,
    answer,
    config,
    healthy,
    manual_factory,
)

SERVICES = ("nginx", "api", "db")


def gname(service: str) -> str:
    return f"{service}.default.myfed.svc.{ZONE}"


def shards(cluster: str, ip_base: int, **ready: int) -> tuple[ShardSpec, ...]:
    return tuple(ShardSpec(cluster, "service", "default", s,
                           addresses=(f"192.0.2.{ip_base + i}",), ready=ready.get(s, 1))
                 for i, s in enumerate(SERVICES))


def check_chain(seen: list[tuple[float, Snapshot]]) -> None:
    """Every publish after the first names its base and covers every difference."""
    for (_, old), (_, new) in pairwise(seen):
        if new.changed is None:
            continue
        assert new.base_serial == old.serial
        differs = {r.name for r in set(old.records) ^ set(new.records)}
        differs |= {n for n in old.geo.keys() | new.geo.keys()
                    if old.geo.get(n) != new.geo.get(n)}
        assert differs <= new.changed, differs - new.changed


async def test_report_change_and_drain_publish_only_what_changed() -> None:
    made: dict[str, list[ManualSource]] = {}
    cfg = config(clusters=("us", "eu"))
    engine = Engine(cfg, source_factory=manual_factory(made))
    w = Watcher(engine)
    await engine.start()
    try:
        now = time.time()
        us = ClusterReport("us", shards("us", 10), last_contact=now)
        eu = ClusterReport("eu", shards("eu", 20), last_contact=now)
        for name, rep in (("us", us), ("eu", eu)):
            emit = made[name][0].emit
            assert emit is not None
            emit(rep)
        await w.until(lambda s: len(s.shards) == 6)
        # one EndpointSlice change: "api" in us has no ready endpoints any more
        emit = made["us"][0].emit
        assert emit is not None
        us2 = replace(us, shards=shards("us", 10, api=0))
        emit(us2)
        _, second = await w.until(lambda s: not healthy_service(s, "us", "default/api"))
        assert second.changed is not None and second.base_serial is not None
        assert gname("api") in second.changed
        assert not second.changed & {gname("nginx"), gname("db")}
        assert second.geo[gname("nginx")] is engine_snapshot_before(w, second).geo[gname("nginx")]
        # the engine's result is the full plan's
        want = plan(cfg, {"us": us2, "eu": eu}, {}, DrainSet(), second.serial, second.generated_at)
        assert strip(second) == strip(want)
        # a drain re-plans that cluster's services only, and still chains
        third = engine.drain("eu")
        assert third.changed is not None and third.base_serial == second.serial
        assert answer(third, "region:europe-west1", gname("db")) == {"192.0.2.12"}
        check_chain(w.seen)
    finally:
        await engine.stop()


async def test_probe_flip_chains_changed_names(backends: dict[str, Backend]) -> None:
    engine = Engine(config(backends))
    w = Watcher(engine)
    await engine.start()
    try:
        await w.until(lambda s: all(healthy(s, c) for c in PLACES))
        t = time.monotonic()
        await backends["asia"].stop()
        _, down = await w.until(lambda s: not healthy(s, "asia"), since=t)
        assert down.changed is not None
        assert gname("nginx") in down.changed
        check_chain(w.seen)
    finally:
        await engine.stop()


def healthy_service(snap: Snapshot, cluster: str, service: str) -> bool:
    return any(s.cluster == cluster and s.service == service and s.healthy
               for s in snap.shards)


def engine_snapshot_before(w: Watcher, snap: Snapshot) -> Snapshot:
    snaps = [s for _, s in w.seen]
    return snaps[snaps.index(snap) - 1]


def strip(s: Snapshot) -> dict[str, Any]:
    """``to_dict`` without what depends on time and history: serial, SOA,
    contact times, when shards last changed."""
    d = s.to_dict()
    for k in ("serial", "generated_at"):
        d.pop(k)
    d["records"] = [r for r in d["records"] if r[1] != "SOA"]
    d["clusters"] = [{**c, "last_contact": None} for c in d["clusters"]]
    d["shards"] = [{**x, "changed_at": None} for x in d["shards"]]
    return d
