#!/usr/bin/env python3
"""CPU cost of ``QueryHandler.handle`` alone (no sockets, no event loop), per query mix.

    python bench/handler_bench.py [--services 100] [--queries 50000] [--profile] [--cold]

Same data and query mixes as ``compare.py``: the config from ``benchdata``
(synthetic GeoIP MMDB), planned with the real planner, served by a
``DnsServer`` that is never started; each query's bytes go straight to
``handler.handle(data, "127.0.0.1", False)``. Reports CPU-ns per query
(``time.process_time``, so other load on the machine does not inflate it)
for the fast path and the full path, and with ``--profile`` the top
functions of a cProfile run on the geo-ecs mix. Comparing these with the
server's CPU-us per query in ``compare.py`` splits the per-query cost into
"the handler" and "the transport/event loop around it".

``--cold``: the handler as it runs at low query rates, where every query
finds the CPU's caches cold after an idle gap. Before each query the bench
writes one byte per cache line of ``--evict-mib`` MiB (more than the L2),
then times that one query (``perf_counter_ns``); it prints p50/p90/p98/p99
per mix and per kind of geo-ecs query (positive, CNAME chain, NXDOMAIN). At
5k queries a second, the server's own per-query handler times fell between
this and the warm figures.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import random
import struct
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchdata as bd

from config.loader import load_text
from config.model import Config
from dnsserver.locality import build_locator
from dnsserver.server import DnsServer
from healthwatch.drains import DrainSet
from healthwatch.model import ClusterReport
from healthwatch.planner import plan
from healthwatch.snapshot import Snapshot
from healthwatch.static_source import static_shards


def wire_queries(queries: list[bd.Query]) -> list[bytes]:
    return [bd.encode_query(k & 0xFFFF, q.name, q.qtype, edns=q.edns, ecs=q.ecs)
            for k, q in enumerate(queries)]


def kind_of(q: bd.Query) -> str:
    """The geo-ecs query kinds: ``svc`` names (geo-aware), ``www`` chains,
    ``nope`` names (NXDOMAIN)."""
    label = q.name.split(".", 1)[0].lower()
    return label.rstrip("0123456789") or label


def cold(config: Config, snap: Snapshot, mixes: dict[str, list[bytes]],
         geo: list[bd.Query], evict_mib: int) -> None:
    server = DnsServer(config, build_locator(config), registry=None)
    assert server.update(snap)
    handle = server.handler.handle
    junk = bytearray(evict_mib << 20)
    lines = b"\x01" * (len(junk) // 64)
    clock = time.perf_counter_ns

    def pct(ns: list[int]) -> str:
        ns = sorted(ns)
        return "  ".join(f"p{p} {ns[min(len(ns) - 1, len(ns) * p // 100)] / 1000:6.2f}"
                         for p in (50, 90, 98, 99))

    for msgs in mixes.values():  # warm every cache the handler keeps
        for data in msgs:
            handle(data, "127.0.0.1", False)
    for name, msgs in mixes.items():
        times: list[int] = []
        for data in msgs[:5000]:
            junk[::64] = lines
            t0 = clock()
            handle(data, "127.0.0.1", False)
            times.append(clock() - t0)
        print(f"cold  {name:<18} us: {pct(times)}", flush=True)
        if name == "geo-ecs":
            kinds: dict[str, list[int]] = {}
            for q, t in zip(geo, times, strict=False):
                kinds.setdefault(kind_of(q), []).append(t)
            for kind, ts in sorted(kinds.items(), key=lambda kv: -len(kv[1])):
                print(f"cold    {kind:<8} {len(ts):5d} queries  us: {pct(ts)}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--services", type=int, default=100)
    ap.add_argument("--queries", type=int, default=50_000)
    ap.add_argument("--prefixes", type=int, default=10_000)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--cold", action="store_true",
                    help="time single queries after evicting the caches (see above)")
    ap.add_argument("--evict-mib", type=int, default=8)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    topo = bd.Topology(services=args.services)
    with tempfile.TemporaryDirectory() as tmp:
        db = str(bd.build_database(Path(tmp) / "city.mmdb"))
        config = load_text(yaml.safe_dump(bd.fedns_config(topo, 0, 0, db)))
        reports = {c.name: ClusterReport(c.name, static_shards(c), last_contact=0.0)
                   for c in config.clusters}
        snap = plan(config, reports, {}, DrainSet(), 1, 0.0)
        mixes: dict[str, list[bytes]] = {}
        prefixes = bd.ecs_prefixes(rng, args.prefixes)
        geo = bd.mix_geo(topo, rng, args.queries, prefixes)
        mixes["static"] = wire_queries(bd.mix_static(topo, rng, args.queries))
        mixes["geo-ecs"] = wire_queries(geo)
        mixes["geo"] = wire_queries([replace(q, ecs=None) for q in geo])
        # a locality-free name asked without EDNS: the smallest fast-path case
        plain = struct.pack("!HHHHHH", 1, 0, 1, 0, 0, 0) + b"\x06static\x05bench\x07example\x00"
        mixes["one-static-noedns"] = [plain + b"\x00\x01\x00\x01"] * args.queries
        if args.cold:
            cold(config, snap, mixes, geo, args.evict_mib)
            return 0
        for fast in (True, False):
            server = DnsServer(config, build_locator(config), registry=None, fast_path=fast)
            assert server.update(snap)
            handle = server.handler.handle
            for data in mixes["geo-ecs"]:  # warm the locality cache
                handle(data, "127.0.0.1", False)
            for name, msgs in mixes.items():
                best = float("inf")
                for _ in range(args.passes):
                    t0 = time.process_time()
                    for data in msgs:
                        handle(data, "127.0.0.1", False)
                    best = min(best, time.process_time() - t0)
                print(f"{'fast' if fast else 'full'} path  {name:<18} "
                      f"{best / len(msgs) * 1e9:8.0f} CPU-ns/query", flush=True)
            if fast and args.profile:
                prof = cProfile.Profile()
                msgs = mixes["geo-ecs"]
                prof.enable()
                for data in msgs:
                    handle(data, "127.0.0.1", False)
                prof.disable()
                out = io.StringIO()
                pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(15)
                print(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(main())
