"""Kubernetes source at scale: simulated clusters x federated services x endpoints.

    python bench/kube_bench.py [--clusters 3] [--services 2000] [--endpoints 10]
                               [--changes 20] [--mode serve|inproc|both]

``--mode serve`` (default, the realistic one): the simulated API servers run
on an event loop in a thread of this process; ``fedns serve`` runs as a
subprocess with a config pointing at their kubeconfig. Prints the time to
first full sync (process start -> listening -> /readyz -> the last Service of
every cluster answers over DNS, then every AZ name is checked once), the
resident memory of the fedns process (VmRSS/VmHWM from /proc/<pid>/status),
and for ``--changes`` Services: the latency from flipping the Service's
EndpointSlice to all-not-ready (in the simulator) to its AZ name answering
the CNAME fallback, polled over UDP with dnspython (1 ms between queries),
and from flipping it back to the AZ name answering the LB address again;
for ``--creates`` new Services in one cluster: from applying the Service and
its EndpointSlice to the AZ name answering, and from deleting both to the
name no longer answering (NXDOMAIN).

``--mode inproc``: the earlier in-process figures (sources alone: slice ->
ClusterReport; engine: slice -> published Snapshot), simulators in the same
event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Coroutine
from dataclasses import replace
from typing import Any, TypeVar

import dns.exception
import dns.message
import dns.query
import dns.rdatatype
import yaml

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.procs import free_port
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


T = TypeVar("T")
ZONE = "example.com."
FED = "fed"


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def inproc(args: argparse.Namespace) -> None:
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


# -- fedns serve as a subprocess ---------------------------------------------------


class SimThread:
    """The simulated API servers on their own event loop in a daemon thread
    (the simulator is not thread-safe: everything on it goes through ``call``)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="sim", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        async def wrapper() -> T:
            return fn(*args, **kw)
        return self.run(wrapper(), timeout=10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS / VmHWM / Threads of ``pid`` (MB for the Vm fields)."""
    out: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0]) / 1024
            elif key == "Threads":
                out[key] = int(rest)
    return out


def lb_ip(cluster: int, svc: int) -> str:
    return f"10.{cluster}.{svc // 250}.{svc % 250 + 1}"


def serve_config(args: argparse.Namespace, kubeconfig: str, names: list[str],
                 places: list[tuple[str, str, tuple[float, float]]],
                 dns_port: int, http_port: int) -> dict[str, Any]:
    regions: dict[str, dict[str, Any]] = {}
    for region, zone, loc in places:
        entry = regions.setdefault(region, {"location": list(loc), "zones": []})
        if zone not in entry["zones"]:
            entry["zones"].append(zone)
    return {
        "zone": ZONE,
        "federation": FED,
        "ttl": 5,
        "nameservers": {f"ns1.{ZONE}": ["127.0.0.1"]},
        "listen": {"dns": [f"127.0.0.1:{dns_port}"], "http": f"127.0.0.1:{http_port}"},
        "regions": regions,
        "clusters": [{"name": n, "region": r, "zone": z, "source": "kubernetes",
                      "kubeconfig": kubeconfig, "context": n}
                     for n, (r, z, _) in zip(names, places, strict=True)],
    }


def az_name(svc: str, place: tuple[str, str, tuple[float, float]]) -> str:
    region, zone, _ = place
    return f"{svc}.default.{FED}.svc.{zone}.{region}.{ZONE}"


class Prober:
    """Blocking dnspython UDP queries of A records at the fedns server."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)  # dnspython waits with select on a given socket

    def answer(self, name: str, timeout: float = 1.0) -> tuple[str, str] | None:
        """("A", first address) / ("CNAME", target) / None (no answer, timeout)."""
        query = dns.message.make_query(name, dns.rdatatype.A)
        try:
            response = dns.query.udp(query, "127.0.0.1", port=self.port, timeout=timeout,
                                     sock=self.sock)
        except (dns.exception.Timeout, OSError):
            return None
        for rrset in response.answer:
            if rrset.name.to_text() != name:
                continue
            if rrset.rdtype == dns.rdatatype.CNAME:
                return ("CNAME", rrset[0].to_text())
            if rrset.rdtype == dns.rdatatype.A:
                return ("A", sorted(rd.to_text() for rd in rrset)[0])
        return None

    def soa(self) -> bool:
        query = dns.message.make_query(ZONE, dns.rdatatype.SOA)
        try:
            response = dns.query.udp(query, "127.0.0.1", port=self.port, timeout=0.2,
                                     sock=self.sock)
        except (dns.exception.Timeout, OSError):
            return False
        return bool(response.answer)

    def until(self, name: str, ok: Callable[[tuple[str, str] | None], bool],
              timeout: float, pause: float = 0.001) -> tuple[float, int]:
        """Seconds (perf_counter) at which ``ok(answer)`` first held, and queries sent."""
        deadline = time.perf_counter() + timeout
        n = 0
        while True:
            got = self.answer(name)
            n += 1
            now = time.perf_counter()
            if ok(got):
                return now, n
            if now > deadline:
                raise RuntimeError(f"{name}: still {got} after {timeout}s")
            time.sleep(pause)


def serve(args: argparse.Namespace) -> None:
    tmp = tempfile.mkdtemp(prefix="kube-bench-serve-")
    names = [f"c{i}" for i in range(args.clusters)]
    places = [PLACES[i % len(PLACES)] for i in range(args.clusters)]
    sim = SimThread()
    apis: dict[str, FakeKubeAPI] = {}

    async def populate() -> None:
        for i, name in enumerate(names):
            api = FakeKubeAPI(ObjectStore(history=1000), name=name)
            for s in range(args.services):
                api.apply("services", service(f"svc{s}", lb_ips=[lb_ip(i, s)]))
                api.apply("endpointslices", endpoint_slice(f"svc{s}", ready=args.endpoints))
            await api.start()
            apis[name] = api

    t0 = time.perf_counter()
    sim.run(populate())
    print(f"populate        {time.perf_counter() - t0:8.2f} s  ({args.clusters} clusters x "
          f"{args.services} services x {args.endpoints} endpoints, simulators in a thread)")
    kubeconfig = write_kubeconfig(os.path.join(tmp, "kubeconfig"),
                                  [api.kubeconfig_entry(n) for n, api in apis.items()])
    dns_port, http_port = free_port(), free_port()
    cfg = os.path.join(tmp, "fedns.yaml")
    with open(cfg, "w") as f:
        yaml.safe_dump(serve_config(args, kubeconfig, names, places, dns_port, http_port), f,
                       sort_keys=False)
    exe = shutil.which("fedns")
    cmd = [exe] if exe else [sys.executable, "-m", "dnsserver.cli"]
    if args.trace:
        cmd = [sys.executable, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                            "kube_trace.py")]
    log = open(os.path.join(tmp, "fedns.log"), "wb")  # noqa: SIM115 (closed below)
    t0 = time.perf_counter()
    proc = subprocess.Popen([*cmd, "serve", "-c", cfg, "--log-level", "WARNING"],
                            stdout=log, stderr=subprocess.STDOUT)
    prober = Prober(dns_port)
    rows: list[tuple[str, str]] = []
    try:
        while not prober.soa():
            if proc.poll() is not None:
                raise RuntimeError(f"fedns exited {proc.returncode}, see {log.name}")
            time.sleep(0.01)
        up = time.perf_counter() - t0
        while not readyz(http_port):
            if proc.poll() is not None:
                raise RuntimeError(f"fedns exited {proc.returncode}, see {log.name}")
            time.sleep(0.01)
        ready = time.perf_counter() - t0
        last = f"svc{args.services - 1}"
        for i in range(len(names)):
            want = lb_ip(i, args.services - 1)
            prober.until(az_name(last, places[i]), lambda a, w=want: a == ("A", w), 120, 0.005)
        answered = time.perf_counter() - t0
        st = proc_status(proc.pid)
        rows.append(("fedns listening", f"{up:8.2f} s   process start -> SOA answered"))
        rows.append(("/readyz 200", f"{ready:8.2f} s   every cluster listed once"))
        rows.append(("first full sync", f"{answered:8.2f} s   the last Service of every "
                     f"cluster answers its AZ name"))
        missing = 0
        for i, _name in enumerate(names):
            for s in range(args.services):
                if prober.answer(az_name(f"svc{s}", places[i])) != ("A", lb_ip(i, s)):
                    missing += 1
        rows.append(("all names", f"{len(names) * args.services - missing:8d}     of "
                     f"{len(names) * args.services} AZ names answer their LB address"))
        rows.append(("memory (synced)", f"{st['VmRSS']:8.1f} MB VmRSS (peak VmHWM "
                     f"{st['VmHWM']:.1f} MB, {int(st['Threads'])} threads)"))

        target, place = names[0], places[0]
        down: list[float] = []
        back: list[float] = []
        queries = 0
        changes: list[tuple[str, float, float]] = []  # (kind, changed at, answered at)
        for k in range(args.changes):
            svc = f"svc{k % args.services}"
            name = az_name(svc, place)
            ip = lb_ip(0, k % args.services)
            assert prober.answer(name) == ("A", ip), (name, prober.answer(name))
            t0 = time.perf_counter()
            sim.call(apis[target].apply, "endpointslices",
                     endpoint_slice(svc, ready=0, not_ready=args.endpoints))
            t1, n = prober.until(name, lambda a: a is not None and a[0] == "CNAME", 10)
            down.append((t1 - t0) * 1000)
            changes.append(("down", t0, t1))
            queries += n
            time.sleep(args.settle)
            t0 = time.perf_counter()
            sim.call(apis[target].apply, "endpointslices",
                     endpoint_slice(svc, ready=args.endpoints))
            t1, n = prober.until(name, lambda a, ip=ip: a == ("A", ip), 10)
            back.append((t1 - t0) * 1000)
            changes.append(("up", t0, t1))
            queries += n
            time.sleep(args.settle)
        # a Service that appears (Service + EndpointSlice applied) and goes
        # (both deleted) in one cluster only: its names appear and go
        created: list[float] = []
        deleted: list[float] = []
        for k in range(args.creates):
            svc = f"new{k}"
            name = az_name(svc, place)
            ip = f"10.250.{k // 250}.{k % 250 + 1}"
            assert prober.answer(name) is None, name
            t0 = time.perf_counter()
            sim.call(apis[target].apply, "services", service(svc, lb_ips=[ip]))
            sim.call(apis[target].apply, "endpointslices",
                     endpoint_slice(svc, ready=args.endpoints))
            t1, n = prober.until(name, lambda a, ip=ip: a == ("A", ip), 30)
            created.append((t1 - t0) * 1000)
            queries += n
            time.sleep(args.settle)
            t0 = time.perf_counter()
            sim.call(apis[target].delete, "endpointslices", "default", f"{svc}-abcde")
            sim.call(apis[target].delete, "services", "default", svc)
            t1, n = prober.until(name, lambda a: a is None, 30)
            deleted.append((t1 - t0) * 1000)
            queries += n
            time.sleep(args.settle)
        for label, lat in (("slice->CNAME", down), ("slice->A again", back),
                           ("Service created->A", created), ("Service deleted->gone", deleted)):
            if not lat:
                continue
            rows.append((label, f"{statistics.median(lat):8.1f} ms median, p95 "
                         f"{pct(lat, 0.95):.1f} ms, max {max(lat):.1f} ms, min {min(lat):.1f} ms"
                         f"  ({len(lat)} changes)"))
        st = proc_status(proc.pid)
        rows.append(("memory (after)", f"{st['VmRSS']:8.1f} MB VmRSS (peak VmHWM "
                     f"{st['VmHWM']:.1f} MB) after {2 * args.changes} slice changes, "
                     f"{args.creates} Services created and deleted, "
                     f"{queries} polling queries"))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()
        sim.run(stop_all(apis))
        sim.close()
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    if args.trace:
        with open(log.name, "rb") as f:
            print_breakdown(f.read().decode(errors="replace"), changes)


STAGES = [  # (trace point ending the stage, what the stage is)
    ("watch_line", "sim apply -> watch line read (HTTP chunk, watch thread)"),
    ("source_event", "watch thread -> event loop (call_soon_threadsafe)"),
    ("source_flush", "source coalescing (KubeOptions.coalesce) -> report"),
    ("plan_start", "engine coalescing (engine.COALESCE) + to_thread"),
    ("plan_end", "incremental plan (worker thread)"),
    ("publish", "back to the loop, publish"),
    ("dns_installed", "DNS table update (Rebuilder.submit -> _install)"),
    ("answered", "seen by the poller (<= 1 ms sleep + one query)"),
]


def print_breakdown(log_text: str, changes: list[tuple[str, float, float]]) -> None:
    """Per stage median/max over the changes, from kube_trace.py's TRACE lines."""
    points: dict[str, list[float]] = {}
    for line in log_text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "TRACE":
            points.setdefault(parts[1], []).append(float(parts[2]))
    per_stage: dict[str, list[float]] = {name: [] for name, _ in STAGES}
    for _kind, t0, t1 in changes:
        at = t0
        for name, _ in STAGES:
            if name == "answered":
                nxt = t1
            else:
                later = [t for t in points.get(name, ()) if at <= t <= t1]
                if not later:
                    break
                nxt = later[0]
            per_stage[name].append((nxt - at) * 1000)
            at = nxt
    print(f"\nwhere the time goes ({len(changes)} changes; ms from the previous point)")
    print(f"  {'stage':<62} {'median':>7} {'max':>7}")
    total = 0.0
    for name, what in STAGES:
        lat = per_stage[name]
        if not lat:
            print(f"  {what:<62}    (no trace)")
            continue
        total += statistics.median(lat)
        print(f"  {what:<62} {statistics.median(lat):7.2f} {max(lat):7.2f}")
    print(f"  {'sum of medians':<62} {total:7.2f}")
    durations: dict[str, list[float]] = {}
    for line in log_text.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "TDUR":
            start = float(parts[2])
            if any(t0 <= start <= t1 + 0.05 for _k, t0, t1 in changes):
                durations.setdefault(parts[1], []).append(float(parts[3]))
    if durations:
        print("\nper-call cost on the event loop during the changes (ms; calls are nested: "
              "_flush -> _on_report -> _sync_probes, _publish -> published)")
        print(f"  {'call':<40} {'calls':>6} {'median':>7} {'max':>7}")
        for name, lat in durations.items():
            print(f"  {name:<40} {len(lat):6d} {statistics.median(lat):7.2f} {max(lat):7.2f}")


async def stop_all(apis: dict[str, FakeKubeAPI]) -> None:
    for api in apis.values():
        await api.kill()


def readyz(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1.0) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.WARNING)
    if args.mode in ("serve", "both"):
        serve(args)
    if args.mode in ("inproc", "both"):
        asyncio.run(inproc(args))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clusters", type=int, default=3)
    parser.add_argument("--services", type=int, default=2000)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--creates", type=int, default=5,
                        help="Services created, then deleted, in one cluster (serve mode)")
    parser.add_argument("--settle", type=float, default=0.2,
                        help="seconds between changes (serve mode)")
    parser.add_argument("--trace", action="store_true",
                        help="serve mode: run fedns via bench/kube_trace.py, print a per-stage "
                             "breakdown of the change latency")
    parser.add_argument("--mode", choices=("serve", "inproc", "both"), default="serve")
    main(parser.parse_args())
