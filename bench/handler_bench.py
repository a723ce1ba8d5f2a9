#!/usr/bin/env python3
"""CPU cost of ``QueryHandler.handle`` alone (no sockets, no event loop), per query mix.

    python bench/handler_bench.py [--services 100] [--queries 50000] [--profile]

Same data and query mixes as ``compare.py``: the config from ``benchdata``
(synthetic GeoIP MMDB), planned with the real planner, served by a
``DnsServer`` that is never started; each query's bytes go straight to
``handler.handle(data, "127.0.0.1", False)``. Reports CPU-ns per query
(``time.process_time``, so other load on the machine does not inflate it)
for the fast path and the full path, and with ``--profile`` the top
functions of a cProfile run on the geo-ecs mix. Comparing these with the
server's CPU-us per query in ``compare.py`` splits the per-query cost into
"the handler" and "the transport/event loop around it".
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
from dnsserver.locality import build_locator
from dnsserver.server import DnsServer
from healthwatch.drains import DrainSet
from healthwatch.model import ClusterReport
from healthwatch.planner import plan
from healthwatch.static_source import static_shards


def wire_queries(queries: list[bd.Query]) -> list[bytes]:
    return [bd.encode_query(k & 0xFFFF, q.name, q.qtype, edns=q.edns, ecs=q.ecs)
            for k, q in enumerate(queries)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--services", type=int, default=100)
    ap.add_argument("--queries", type=int, default=50_000)
    ap.add_argument("--prefixes", type=int, default=10_000)
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--seed", type=int, default=5)
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
