"""Kubernetes source at scale: simulated clusters x federated services x endpoints.

    python bench/kube_bench.py [--clusters 3] [--services 2000] [--endpoints 10] [--changes 20]

Prints: time to first full sync (all clusters listed, every shard reported),
resident memory (process total, and growth caused by the sources), and the
latency from one EndpointSlice change to (a) the new ClusterReport and
(b) the engine's published Snapshot (the DNS answer data; the server answers
from it with a map lookup). The simulated API servers run in this same
process and event loop, so the figures include their serving cost.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import replace

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from config.model import Cluster, Config, Region
from healthwatch.engine import Engine
from healthwatch.kube import KubeOptions, KubeSource
from healthwatch.kube.sim import (
    FakeKubeAPI,
    ObjectStore,
    endpoint_slice,
    service,
    write_kubeconfig,
)
from healthwatch.model import ClusterReport
from healthwatch.planner import zone_name

PLACES = [
    ("us-east1", "us-east1-b", (33.8, -84.4)),
    ("europe-west1", "europe-west1-b", (50.4, 3.8)),
    ("asia-east1", "asia-east1-a", (24.0, 121.0)),
    ("us-west1", "us-west1-a", (45.6, -121.2)),
]


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    tmp = tempfile.mkdtemp(prefix="kube-bench-")
    names = [f"c{i}" for i in range(args.clusters)]
    apis: dict[str, FakeKubeAPI] = {}
    t0 = time.perf_counter()
    for i, name in enumerate(names):
        api = FakeKubeAPI(ObjectStore(history=1000), name=name)
        for s in range(args.services):
            ip = f"10.{i}.{s // 250}.{s % 250 + 1}"
            api.apply("services", service(f"svc{s}", lb_ips=[ip]))
            api.apply("endpointslices", endpoint_slice(f"svc{s}", ready=args.endpoints))
        await api.start()
        apis[name] = api
    print(f"populate      {time.perf_counter() - t0:8.2f} s  ({args.clusters} x {args.services} "
          f"services x {args.endpoints} endpoints)")
    path = write_kubeconfig(os.path.join(tmp, "kubeconfig"),
                            [api.kubeconfig_entry(n) for n, api in apis.items()])
    places = [PLACES[i % len(PLACES)] for i in range(args.clusters)]
    regions = tuple({r: Region(r, loc, (z,)) for r, z, loc in places}.values())
    clusters = tuple(Cluster(name=n, region=r, zone=z, source="kubernetes", kubeconfig=path,
                             context=n) for n, (r, z, _) in zip(names, places, strict=True))
    config = Config(zone="example.com.", federation="fed", regions=regions, clusters=clusters)
    options = KubeOptions(coalesce=0.005)

    # -- sources alone -------------------------------------------------------------
    rss0 = rss_mb()
    latest: dict[str, ClusterReport] = {}
    changed = asyncio.Event()

    def emit(report: ClusterReport) -> None:
        latest[report.cluster] = report
        changed.set()

    async def until(cond: object) -> None:
        while not cond():  # type: ignore[operator]
            changed.clear()
            await changed.wait()

    sources = [KubeSource(c, config, options) for c in clusters]
    t0 = time.perf_counter()
    for src in sources:
        await src.start(emit)
    await until(lambda: len(latest) == len(names) and all(
        r.synced and len(r.shards) == args.services for r in latest.values()))
    sync = time.perf_counter() - t0
    rss1 = rss_mb()
    print(f"first sync    {sync:8.2f} s  (all {len(names)} clusters, "
          f"{len(names) * args.services} shards)")
    print(f"memory        {rss1:8.1f} MB resident ({rss1 - rss0:+.1f} MB for the sources)")

    target = names[0]
    lat: list[float] = []
    for k in range(args.changes):
        svc = f"svc{k % args.services}"
        want = 0 if k % 2 == 0 else args.endpoints
        shard_of = {s.name: s for s in latest[target].shards}
        assert shard_of[svc].ready != want or k > 0
        t0 = time.perf_counter()
        apis[target].apply("endpointslices", endpoint_slice(
            svc, ready=want, not_ready=args.endpoints - want))

        def seen(svc: str = svc, want: int = want) -> bool:
            return any(s.name == svc and s.ready == want for s in latest[target].shards)

        await until(seen)
        lat.append((time.perf_counter() - t0) * 1000)
        if want == 0:  # restore for the next round
            apis[target].apply("endpointslices", endpoint_slice(svc, ready=args.endpoints))
            await until(lambda svc=svc: any(
                s.name == svc and s.ready == args.endpoints for s in latest[target].shards))
    print(f"slice->report {statistics.median(lat):8.1f} ms median, p95 {pct(lat, 0.95):.1f} ms, "
          f"max {max(lat):.1f} ms  ({len(lat)} changes)")
    for src in sources:
        await src.stop()

    # -- through the engine: the published Snapshot (what DNS answers from) ---------
    engine = Engine(replace(config), source_factory=lambda c, cfg: KubeSource(c, cfg, options))
    published = asyncio.Event()
    engine.subscribe(lambda _s: published.set())
    t0 = time.perf_counter()
    await engine.start()
    while not engine.ready or len(engine.snapshot.shards) < len(names) * args.services:
        published.clear()
        await published.wait()
    print(f"engine sync   {time.perf_counter() - t0:8.2f} s  (first full snapshot)")
    region, zone, _ = places[0]
    lat = []
    for k in range(args.changes):
        svc = f"svc{k}"
        name = zone_name(config, "default", svc, region, zone)
        ip = f"10.0.{k // 250}.{k % 250 + 1}"
        t0 = time.perf_counter()
        apis[target].apply("endpointslices", endpoint_slice(svc, ready=0,
                                                            not_ready=args.endpoints))
        while any(r.value == ip for r in engine.snapshot.records if r.name == name):
            published.clear()
            await published.wait()
        lat.append((time.perf_counter() - t0) * 1000)
    print(f"slice->answer {statistics.median(lat):8.1f} ms median, p95 {pct(lat, 0.95):.1f} ms, "
          f"max {max(lat):.1f} ms  ({len(lat)} changes, AZ name stops answering)")
    print(f"memory        {rss_mb():8.1f} MB resident (engine + sources + simulators)")
    await engine.stop()
    for api in apis.values():
        await api.kill()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clusters", type=int, default=3)
    parser.add_argument("--services", type=int, default=2000)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--changes", type=int, default=20)
    asyncio.run(main(parser.parse_args()))
