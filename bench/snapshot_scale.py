#!/usr/bin/env python3
"""Memory and rebuild time of a large Snapshot (issue 5, item 5).

    python bench/snapshot_scale.py [--services 10000] [--regions 5] [--zones 3]
                                   [--shards 3] [--changes 20] [--max-keys N]
                                   [--breakdown] [--sizes] [--json out.json]

Builds a federation of ``--services`` services with the real planner
(``healthwatch.plan_state.Planner``, kept across plans as the engine keeps
it), each service on ``--shards`` clusters in different regions,
``--regions`` x ``--zones`` AZs with one static cluster per AZ
(defaults: 5 x 3 = 15 AZ + 5 region localities = 20, plus "unknown"), every
shard with a TCP probe reported up. Names: 3 levels per service (AZ, region,
global). Then serves the Snapshot the way ``fedns serve`` does
(``DnsServer.update``: ``Resolver`` + ``AnswerTable``), and flips one probe
to down and serves the new Snapshot, then ``--changes`` - 1 more single probe
flips (other shards, down and back up), each replanned and served
incrementally; then one Service added (its names and an empty non-terminal
appear) and removed again, each served incrementally too. The server runs
with a ``HeapKeeper`` as under ``fedns serve`` (the state frozen after each
swap, healthwatch/heap.py). Prints plan time, build time (split into resolver
and answer table with ``--breakdown``), the median and max time per change,
the Service's add and remove, the full garbage collections during the build
and the changes (count, longest), what one full collection costs while
serving with the state frozen and without, RSS after each step (VmRSS) and
peak RSS (VmHWM); with ``--sizes``, the bytes reachable
from the Snapshot, the planner, the Resolver and the AnswerTable
(``sys.getsizeof`` summed, each object counted once, in that order; a
minute or two more at 10,000 services, and the later RSS figures then include
its bookkeeping). At 10,000 services it takes about a
minute and ~0.4 GB; run it pinned and niced on a shared machine:
``taskset -c 1 nice python bench/snapshot_scale.py``.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config.model import Cluster, Config, Region, Server, TcpProbe
from dnsserver import answers
from dnsserver.answers import AnswerTable
from dnsserver.locality import NullLocator
from dnsserver.resolver import Resolver
from dnsserver.server import DnsServer
from healthwatch.drains import DrainSet
from healthwatch.heap import HeapKeeper
from healthwatch.model import ClusterReport, ShardHealth, ShardSpec
from healthwatch.plan_state import Planner

T = TypeVar("T")


def status_kb(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_mb() -> float:
    return status_kb("VmRSS") / 1024


def peak_mb() -> float:
    return status_kb("VmHWM") / 1024


def reachable_bytes(root: object, seen: set[int]) -> int:
    """``sys.getsizeof`` summed over the objects reachable from ``root``
    through containers and instance fields, skipping those in ``seen`` (and
    adding the rest to it); types, modules and functions are not followed."""
    total = 0
    stack = [root]
    skip = (type, type(sys), type(reachable_bytes), type(len))
    while stack:
        o = stack.pop()
        if id(o) in seen or isinstance(o, skip):
            continue
        seen.add(id(o))
        total += sys.getsizeof(o)
        if isinstance(o, dict):
            stack.extend(o.keys())
            stack.extend(o.values())
        elif isinstance(o, (list, tuple, set, frozenset)):
            stack.extend(o)
        elif not isinstance(o, (str, bytes, int, float)) and o is not None:
            if hasattr(o, "__dict__"):
                stack.append(o.__dict__)
            for cls in type(o).__mro__:
                for slot in getattr(cls, "__slots__", ()):
                    if hasattr(o, slot):
                        stack.append(getattr(o, slot))
    return total


class Pauses:
    """Full (generation 2) collections and their pauses since the last report."""

    def __init__(self) -> None:
        self.full: list[float] = []
        self._start = 0.0

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        elif info["generation"] == 2:
            self.full.append(time.perf_counter() - self._start)

    def report(self, say: Callable[..., None], phase: str, note: str) -> None:
        say(f"gc_full_{phase}", len(self.full), "", note)
        say(f"gc_full_{phase}_max_ms", max(self.full, default=0.0) * 1000, "ms")
        self.full.clear()


pauses = Pauses()


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def federation(services: int, n_regions: int, n_zones: int,
               shards: int) -> tuple[Config, dict[str, ClusterReport], dict[tuple[str, str, str, str], ShardHealth]]:  # noqa: E501
    regions = []
    clusters = []
    for r in range(n_regions):
        name = f"region{r}"
        zones = tuple(f"{name}-{chr(ord('a') + z)}" for z in range(n_zones))
        regions.append(Region(name, (-60 + 120 * r / max(1, n_regions - 1), -170 + 67 * r),
                              zones=zones))
        clusters += [Cluster(f"c{r}-{z}", name, zones[z]) for z in range(n_zones)]
    config = Config(zone="scale.example.", federation="fed", regions=tuple(regions),
                    clusters=tuple(clusters), server=Server())
    per_cluster: dict[str, list[ShardSpec]] = {c.name: [] for c in clusters}
    health: dict[tuple[str, str, str, str], ShardHealth] = {}
    n = len(clusters)
    for i in range(services):
        for k in range(shards):
            # spread shards over different regions: step by n_zones clusters
            c = clusters[(i + k * n_zones + (i // n_regions) % n_zones) % n]
            ip = 0x0A000000 + i * shards + k + 1
            spec = ShardSpec(c.name, "service", f"ns{i % 50}", f"svc{i}",
                             addresses=(f"{ip >> 24}.{(ip >> 16) & 255}.{(ip >> 8) & 255}."
                                        f"{ip & 255}",),
                             ready=2, probe=TcpProbe("127.0.0.1", 1))
            per_cluster[c.name].append(spec)
            health[spec.key] = ShardHealth(True, "probe ok", True, 1.0)
    reports = {name: ClusterReport(name, tuple(specs), last_contact=1.0)
               for name, specs in per_cluster.items()}
    return config, reports, health


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--services", type=int, default=10_000)
    ap.add_argument("--regions", type=int, default=5)
    ap.add_argument("--zones", type=int, default=3, help="AZs per region")
    ap.add_argument("--shards", type=int, default=3, help="clusters per service")
    ap.add_argument("--changes", type=int, default=20,
                    help="single probe flips to replan and serve (median/max reported)")
    ap.add_argument("--max-keys", type=int, default=answers.DEFAULT_MAX_KEYS,
                    help="AnswerTable key bound (default: the server's)")
    ap.add_argument("--breakdown", action="store_true",
                    help="also time Resolver and AnswerTable.build apart (a third build)")
    ap.add_argument("--sizes", action="store_true",
                    help="bytes reachable from each structure while serving (slow)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    answers.DEFAULT_MAX_KEYS = args.max_keys  # what DnsServer.update builds with
    fig: dict[str, object] = {"args": vars(args) | {"json": str(args.json)}}

    def say(key: str, value: float, unit: str, note: str = "") -> None:
        fig[key] = value
        print(f"{key:<34} {value:12.1f} {unit:<3} {note}", flush=True)

    say("rss_start", rss_mb(), "MB")
    (config, reports, health), t = timed(
        lambda: federation(args.services, args.regions, args.zones, args.shards))
    say("inputs_seconds", t, "s")
    say("rss_inputs", rss_mb(), "MB")
    # one Planner kept across plans, as the engine does: the second plan is
    # incremental and hands the server its change hint (Snapshot.changed)
    gc.callbacks.append(pauses.on_gc)
    planner = Planner()
    snap, t = timed(lambda: planner.plan(config, reports, health, DrainSet(), 1, 1000.0))
    localities = len(snap.localities)
    names = sum(1 for _ in snap.names())
    print(f"snapshot: {len(snap.records)} records, {len(snap.geo)} geo names x "
          f"{localities} localities, {names} names, {len(snap.shards)} shards")
    fig.update(records=len(snap.records), geo_names=len(snap.geo), localities=localities,
               names=names, shards=len(snap.shards))
    say("plan_seconds", t, "s")
    say("rss_snapshot", rss_mb(), "MB")

    # as ``fedns serve`` runs it: the serving state is frozen after each swap
    # (healthwatch/heap.py); every collection's pause is recorded per phase
    heap = HeapKeeper()
    heap.start()
    server = DnsServer(config, NullLocator(), registry=None, heap=heap)
    ok, t = timed(lambda: server.update(snap))
    assert ok, "initial snapshot rejected"
    state = server.handler.state
    assert state is not None
    st = state.table.stats
    print(f"answer table: {st.keys} keys, {st.entries} entries, {st.per_locality_keys} "
          f"per-locality keys, complete={st.complete}")
    fig.update(table_keys=st.keys, table_entries=st.entries, table_complete=st.complete)
    say("serve_first_seconds", t, "s", "(DnsServer.update: Resolver + AnswerTable)")
    say("table_build_seconds", st.build_seconds, "s")
    say("table_us_per_key", st.build_seconds / max(1, st.keys) * 1e6, "us")
    pauses.report(say, "build", "(plan + first serve)")
    gc.collect()
    say("rss_serving", rss_mb(), "MB", "(snapshot + resolver + answer table)")
    say("peak_rss_so_far", peak_mb(), "MB")
    if args.sizes:
        seen = {id(config)}
        for label, obj in (("snapshot", snap), ("planner", planner),
                           ("resolver", state.resolver), ("answer_table", state.table)):
            say(f"size_{label}", reachable_bytes(obj, seen) / 1e6, "MB",
                "(reachable, not counted above)")

    # one health change: the first shard's probe goes down
    key = next(iter(health))
    changed = dict(health)
    changed[key] = ShardHealth(False, "probe failed: connection refused x2", False, 2.0)
    snap2, t = timed(lambda: planner.plan(config, reports, changed, DrainSet(), 2, 1001.0,
                                          previous=snap))
    say("replan_seconds", t, "s", "(one probe down)")
    replans: list[float] = [t]
    ok, t = timed(lambda: server.update(snap2))
    assert ok, "second snapshot rejected"
    say("serve_change_seconds", t, "s", f"({t * 1000:.1f} ms; target < 0.050 s)")
    serves: list[float] = [t]
    keys = list(health)
    for i in range(1, args.changes):
        # flip another shard each time; every other change brings one back up
        key = keys[(i + 1) // 2 * 7 % len(keys)]
        changed = dict(changed)
        changed[key] = health[key] if i % 2 == 0 else ShardHealth(
            False, "probe failed: connection refused x2", False, 2.0 + i)
        t0 = time.perf_counter()
        snap2 = planner.plan(config, reports, changed, DrainSet(), 2 + i, 1001.0 + i,
                             previous=snap2)
        t1 = time.perf_counter()
        assert server.update(snap2), "snapshot rejected"
        serves.append(time.perf_counter() - t1)
        replans.append(t1 - t0)
    if args.changes > 1:
        n = len(serves)
        say("replan_median_ms", statistics.median(replans) * 1000, "ms",
            f"(max {max(replans) * 1000:.1f} ms over {n} changes)")
        say("serve_change_median_ms", statistics.median(serves) * 1000, "ms",
            f"(max {max(serves) * 1000:.1f} ms over {n} changes; target < 50)")
        fig["serve_change_max_ms"] = max(serves) * 1000
        fig["replan_max_ms"] = max(replans) * 1000
    # a new Service (one shard, its names and an empty non-terminal appear),
    # then the same Service deleted: served incrementally, like a probe flip
    first = config.clusters[0].name
    spec = ShardSpec(first, "service", "ns-new", "svc-new", addresses=("10.255.0.1",),
                     ready=2, probe=TcpProbe("127.0.0.1", 1))
    grown = dict(reports)
    grown[first] = replace(reports[first], shards=(*reports[first].shards, spec))
    grown_health = dict(changed)
    grown_health[spec.key] = ShardHealth(True, "probe ok", True, 1.0)
    serial = 2 + args.changes
    for label, reps, verdicts in (("add", grown, grown_health), ("remove", reports, changed)):
        t0 = time.perf_counter()
        snap2 = planner.plan(config, reps, verdicts, DrainSet(), serial, 1001.0 + serial,
                             previous=snap2)
        t1 = time.perf_counter()
        assert server.update(snap2), "snapshot rejected"
        t2 = time.perf_counter()
        serial += 1
        st = server.handler.state.table.stats  # type: ignore[union-attr]
        say(f"serve_{label}_service_ms", (t2 - t1) * 1000, "ms",
            f"({st.rebuilt_names} of {st.names} names rebuilt; replan {(t1 - t0) * 1000:.1f} ms)")
    state = server.handler.state
    assert state is not None and state.table.complete
    pauses.report(say, "changes", f"({args.changes} changes, a service added and removed)")
    # what one full collection costs while serving: with the state frozen (a
    # collection Python starts now) and without (as before healthwatch/heap.py)
    _, t = timed(gc.collect)
    say("gc_full_collect_ms", t * 1000, "ms", f"(state frozen: {gc.get_freeze_count()} objects)")
    heap.stop()
    _, t = timed(gc.collect)
    say("gc_full_collect_unfrozen_ms", t * 1000, "ms",
        f"({len(gc.get_objects())} objects walked)")
    gc.callbacks.remove(pauses.on_gc)
    say("rss_serving_after_changes", rss_mb(), "MB")
    say("cpu_seconds_total", time.process_time(), "s", "(this process, all steps)")
    say("peak_rss", peak_mb(), "MB", "(whole run; target < 500)")
    if args.breakdown:
        resolver, t = timed(lambda: Resolver(snap2, config.server))
        say("resolver_seconds", t, "s")
        _, t = timed(lambda: AnswerTable.build(resolver))
        say("answer_table_seconds", t, "s")
    say("publish_after_change_seconds", fig["replan_seconds"] + fig["serve_change_seconds"],  # type: ignore[operator]
        "s", "(plan + serve)")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(fig, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
