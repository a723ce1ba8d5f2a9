#!/usr/bin/env python3
"""Planner speed and memory: full plan vs. incremental re-plan (issue 5 item 5).

    python bench/planner_bench.py [--shape wide|large|both] [--repeat 20]
                                  [--baseline] [--profile] [--json out.json]

Shapes (every shard has a TCP probe reported up, one static cluster per AZ):

- ``wide``:  500 services x 20 clusters; 20 regions x 2 AZs -> 61 localities
  ("" + 20 regions + 40 AZs); every service runs in every cluster (10,000 shards).
- ``large``: 10,000 services, 5 regions x 3 AZs -> 21 localities, each service
  on 3 clusters in 3 regions (30,000 shards; 3 levels = AZ, region, global
  names: 200,000 locality-free records + 10,000 geo names x 21 localities).

Method: inputs are built first; then (with ``--baseline``) the planner as of
commit 7b3245a (before incremental planning; loaded from git) plans once;
then ``plan`` (a fresh ``Planner``) plans once, and an engine-style
``Planner`` plans once and is then fed ``--repeat`` single changes, timing
each call (median and max over the calls; the Snapshot at each step is the
``previous`` of the next, as in the engine):

- ``probe``:   one shard's probe verdict flips down/up (a new health dict
               with one new value, the rest the same objects);
- ``ready``:   one EndpointSlice change: one shard's ready count goes 0/2
               (unhealthy/healthy; a new report tuple for its cluster, every
               other spec the same objects, as the Kubernetes source keeps them);
- ``drain``:   one cluster drained/undrained (re-plans every service in it).

RSS is VmRSS of this process (after ``gc.collect()``): after the inputs,
and after the engine-style Planner's first plan (its Snapshot plus the
caches it keeps). Timings use ``time.perf_counter``; the machine's load
average is printed with them (the CI box is shared, so absolute numbers move).

Figures: 2-core box shared with other jobs (load average 3-5 during the
run; timings move 2-3x with the load), Python 3.11, ``--baseline --repeat 20``:

    shape  metric                              before (7b3245a)    after
    wide   full plan                           1.04 s              0.71 s (0.59 s warm)
    wide   one probe flip -> new Snapshot      1.04 s (full plan)  2.5 ms median (max 7.7)
    wide   one EndpointSlice (ready) change    1.04 s (full plan)  1.9 ms median (max 6.5)
    wide   drain one cluster (500 services)    1.04 s (full plan)  134 ms
    large  full plan                           5.4 s               3.2 s (1.8-3.1 s warm)
    large  one probe flip -> new Snapshot      5.4 s (full plan)   12.5-13.4 ms median (max 17)
    large  one EndpointSlice (ready) change    5.4 s (full plan)   12-17 ms median (max 20)
    large  drain one cluster (2,000 services)  5.4 s (full plan)   0.30-0.32 s
    large  RSS of Snapshot + planner caches                        119-134 MB
                                                                   (process 213 MB)

Earlier, under heavier load (8.7), the 7b3245a planner took 16.6 s for the
large shape (bench/snapshot_scale.py). What is left of a one-change re-plan
at the large shape is mostly building the two big tuples (200,000 records,
30,000 shard statuses: ~10 ms, memory-bound); ``Snapshot.changed`` names the
3-4 names that differ, so consumers need not scan them.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import importlib.util
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from config.model import Cluster, Config, Region, Server, TcpProbe  # noqa: E402
from healthwatch.drains import DrainSet  # noqa: E402
from healthwatch.model import ClusterReport, ShardHealth, ShardSpec  # noqa: E402
from healthwatch.planner import Planner, plan  # noqa: E402
from healthwatch.snapshot import Snapshot  # noqa: E402

BASELINE_COMMIT = "7b3245a"
Key = tuple[str, str, str, str]
Inputs = tuple[Config, dict[str, ClusterReport], dict[Key, ShardHealth]]
UP = ShardHealth(True, "probe ok", True, 1.0)
DOWN = ShardHealth(False, "probe failed: connection refused \u00d72", False, 2.0)


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _ip(n: int) -> str:
    n += 0x0A000000
    return f"{n >> 24}.{(n >> 16) & 255}.{(n >> 8) & 255}.{n & 255}"


def federation(services: int, n_regions: int, n_zones: int, shards: int) -> Inputs:
    """``services`` services, each on ``shards`` clusters in different regions."""
    regions = []
    clusters = []
    for r in range(n_regions):
        name = f"region{r}"
        zones = tuple(f"{name}-{chr(ord('a') + z)}" for z in range(n_zones))
        regions.append(Region(name, (-60 + 120 * r / max(1, n_regions - 1),
                                     -170 + 340 * r / max(1, n_regions)), zones=zones))
        clusters += [Cluster(f"c{r}-{z}", name, zones[z]) for z in range(n_zones)]
    config = Config(zone="scale.example.", federation="fed", regions=tuple(regions),
                    clusters=tuple(clusters), server=Server())
    per_cluster: dict[str, list[ShardSpec]] = {c.name: [] for c in clusters}
    health: dict[Key, ShardHealth] = {}
    n = len(clusters)
    probe = TcpProbe("127.0.0.1", 1)
    for i in range(services):
        for k in range(shards):
            c = clusters[(i + k * n_zones + (i // n_regions) % n_zones) % n]
            spec = ShardSpec(c.name, "service", f"ns{i % 50}", f"svc{i}",
                             addresses=(_ip(i * shards + k + 1),), ready=2, probe=probe)
            per_cluster[c.name].append(spec)
            health[spec.key] = UP
    reports = {name: ClusterReport(name, tuple(specs), last_contact=1.0)
               for name, specs in per_cluster.items()}
    return config, reports, health


def wide() -> Inputs:
    """500 services x 20 clusters, 20 regions x 2 AZs (61 localities)."""
    return federation(500, 20, 2, 20)


def large() -> Inputs:
    """10,000 services x 3 clusters, 5 regions x 3 AZs (21 localities)."""
    return federation(10_000, 5, 3, 3)


def load_baseline() -> ModuleType | None:
    """The planner module as of ``BASELINE_COMMIT`` (full re-plan every time)."""
    try:
        text = subprocess.run(["git", "-C", str(ROOT), "show",
                               f"{BASELINE_COMMIT}:healthwatch/planner.py"],
                              capture_output=True, text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"baseline unavailable: {exc}")
        return None
    path = Path(tempfile.mkdtemp()) / "baseline_planner.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("baseline_planner", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


class Run:
    """Feeds an engine-style Planner one change at a time."""

    def __init__(self, config: Config, reports: dict[str, ClusterReport],
                 health: dict[Key, ShardHealth]) -> None:
        self.config = config
        self.reports = dict(reports)
        self.health = dict(health)
        self.drains = DrainSet()
        self.planner = Planner()
        self.serial = 1
        self.now = 1000.0
        self.snap: Snapshot | None = None

    def step(self) -> float:
        self.serial += 1
        self.now += 1.0
        snap, t = timed(lambda: self.planner.plan(
            self.config, dict(self.reports), dict(self.health), self.drains, self.serial,
            self.now, previous=self.snap))
        self.snap = snap
        return t

    def flip_probe(self, i: int) -> None:
        key = sorted(self.health)[0]
        self.health[key] = DOWN if i % 2 == 0 else UP

    def ready_change(self, i: int) -> None:
        name = sorted(self.reports)[0]
        rep = self.reports[name]
        first = rep.shards[0]
        shards = (replace(first, ready=0 if i % 2 == 0 else 2), *rep.shards[1:])
        self.reports[name] = replace(rep, shards=shards)

    def drain(self, i: int) -> None:
        name = sorted(self.reports)[0]
        self.drains = DrainSet(frozenset({name}) if i % 2 == 0 else frozenset())


def bench(shape: str, make: Callable[[], Inputs], repeat: int, baseline: ModuleType | None,
          profile: bool, fig: dict[str, Any]) -> None:
    def say(key: str, value: float, unit: str, note: str = "") -> None:
        fig[f"{shape}.{key}"] = round(value, 4)
        print(f"{shape:<6} {key:<30} {value:10.3f} {unit:<3} {note}", flush=True)

    print(f"--- {shape}: {make.__doc__}  (load average {os.getloadavg()[0]:.1f})")
    gc.collect()
    rss0 = rss_mb()
    (config, reports, health), t = timed(make)
    gc.collect()
    say("inputs_seconds", t, "s")
    rss_inputs = rss_mb()
    say("rss_inputs", rss_inputs - rss0, "MB")
    if baseline is not None:
        snap, t = timed(lambda: baseline.plan(config, reports, health, DrainSet(), 1, 1000.0))
        say("baseline_full_plan", t, "s", f"(planner at {BASELINE_COMMIT}; every change)")
        del snap
        gc.collect()
    snap, t = timed(lambda: plan(config, reports, health, DrainSet(), 1, 1000.0))
    print(f"{shape:<6} snapshot: {len(snap.records)} records, {len(snap.geo)} geo names x "
          f"{len(snap.localities)} localities, {len(snap.shards)} shards")
    say("full_plan", t, "s", "(plan: a fresh Planner)")
    del snap
    gc.collect()
    rss_before = rss_mb()
    run = Run(config, reports, health)
    say("planner_first_plan", run.step(), "s")
    gc.collect()
    say("rss_snapshot_and_caches", rss_mb() - rss_before, "MB",
        f"(process total {rss_mb():.0f} MB; target < 500)")
    for what, change in (("probe", run.flip_probe), ("ready", run.ready_change),
                         ("drain", run.drain)):
        times = []
        changed = 0
        n = repeat if what != "drain" else max(2, repeat // 5)
        for i in range(n):
            change(i)
            times.append(run.step())
            assert run.snap is not None
            changed = max(changed, len(run.snap.changed or ()))
        say(f"{what}_replan_median", statistics.median(times) * 1000, "ms",
            f"(max {max(times) * 1000:.1f} ms over {n}; <= {changed} names changed)")
    if profile:
        run.flip_probe(0)
        prof = cProfile.Profile()
        prof.enable()
        run.step()
        prof.disable()
        print(f"--- {shape}: profile of one probe flip")
        pstats.Stats(prof).sort_stats("cumulative").print_stats(15)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=("wide", "large", "both"), default="both")
    ap.add_argument("--repeat", type=int, default=20, help="single changes timed per kind")
    ap.add_argument("--baseline", action="store_true",
                    help=f"also time the planner of commit {BASELINE_COMMIT} (slow)")
    ap.add_argument("--profile", action="store_true", help="cProfile one probe flip")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    baseline = load_baseline() if args.baseline else None
    fig: dict[str, Any] = {"load_average": os.getloadavg()[0]}
    shapes = {"wide": wide, "large": large}
    for name in (("wide", "large") if args.shape == "both" else (args.shape,)):
        bench(name, shapes[name], args.repeat, baseline, args.profile, fig)
        gc.collect()
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(fig, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
