#!/usr/bin/env python3
"""Benchmark ``fedns serve`` with dnsperf on loopback; print qps and latency.

    python bench/dnsperf_bench.py [--seconds 10] [--clients 4] [--ecs]

Starts ``fedns serve`` with a generated config (4 regions, 8 static clusters
with 16 services each, no probes), writes a dnsperf query file that mixes
global, region and AZ names with A/AAAA/SOA/NXDOMAIN queries, and runs
``dnsperf -l SECONDS``. With ``taskset`` available the server is pinned to
CPU 0 and dnsperf to CPU 1 (this is a 2-core machine). ``--ecs`` adds an EDNS
Client Subnet option (from a cluster's network) to every query, so answers
are tailored per client locality.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

import yaml
from procs import free_port, wait_http  # bench/ is sys.path[0] when run as a script

ZONE = "bench.example."
FED = "fed"
REGIONS = {
    "us-east1": {"location": [33.2, -80.0], "zones": ["us-east1-b", "us-east1-c"]},
    "us-west1": {"location": [45.6, -121.2], "zones": ["us-west1-a", "us-west1-b"]},
    "europe-west1": {"location": [50.4, 3.8], "zones": ["europe-west1-b", "europe-west1-c"]},
    "asia-east1": {"location": [24.0, 120.5], "zones": ["asia-east1-a", "asia-east1-b"]},
}
SERVICES = 16




def bench_config(dns_port: int, http_port: int) -> dict[str, object]:
    clusters = []
    n = 0
    for region, spec in REGIONS.items():
        for az in spec["zones"]:  # type: ignore[attr-defined]
            n += 1
            clusters.append({
                "name": f"c{n}", "region": region, "zone": az, "source": "static",
                "networks": [f"10.{n}.0.0/16"],
                "services": [
                    {"name": f"svc{i}", "namespace": "default",
                     "addresses": [f"192.0.{n}.{i + 1}", f"2001:db8:{n}::{i + 1}"], "ready": 1}
                    for i in range(SERVICES)
                ],
            })
    return {
        "zone": ZONE, "federation": FED, "ttl": 30,
        "nameservers": {f"ns1.{ZONE}": ["127.0.0.1"]},
        "listen": {"dns": [f"127.0.0.1:{dns_port}"], "http": f"127.0.0.1:{http_port}"},
        "regions": REGIONS,
        "clusters": clusters,
        "records": [{"name": "www", "type": "CNAME", "value": f"svc0.default.{FED}.svc.{ZONE}"}],
    }


def query_lines() -> list[str]:
    lines: list[str] = []
    for i in range(SERVICES):
        base = f"svc{i}.default.{FED}.svc"
        lines += [f"{base}.{ZONE} A", f"{base}.{ZONE} AAAA"]
        for region, spec in REGIONS.items():
            lines.append(f"{base}.{region}.{ZONE} A")
            for az in spec["zones"]:  # type: ignore[attr-defined]
                lines.append(f"{base}.{az}.{region}.{ZONE} A")
    lines += [f"{ZONE} SOA", f"www.{ZONE} A", f"nope.{ZONE} A", f"{ZONE} NS"]
    return lines


def ecs_option(cluster_index: int) -> str:
    """dnsperf ``-E code:hexvalue`` for ECS 10.<n>.0.0/24 (RFC 7871)."""
    # family 1 (IPv4), source prefix 24, scope 0, address 3 bytes
    return f"8:0001{24:02x}00{10:02x}{cluster_index:02x}00"



def parse_dnsperf(out: str) -> dict[str, float]:
    res: dict[str, float] = {}
    pats = {
        "qps": r"Queries per second:\s+([\d.]+)",
        "sent": r"Queries sent:\s+(\d+)",
        "completed": r"Queries completed:\s+(\d+)",
        "lost": r"Queries lost:\s+(\d+)",
        "lat_avg": r"Average Latency \(s\):\s+([\d.]+)",
        "lat_min": r"Average Latency \(s\):\s+[\d.]+\s+\(min ([\d.]+)",
        "lat_max": r"Average Latency \(s\):\s+[\d.]+\s+\(min [\d.]+, max ([\d.]+)\)",
        "lat_sd": r"Latency StdDev \(s\):\s+([\d.]+)",
    }
    for key, pat in pats.items():
        m = re.search(pat, out)
        if m:
            res[key] = float(m.group(1))
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=10, help="dnsperf -l (default 10)")
    ap.add_argument("--clients", type=int, default=4, help="dnsperf -c (default 4)")
    ap.add_argument("--outstanding", type=int, default=200, help="dnsperf -q (default 200)")
    ap.add_argument("--ecs", action="store_true", help="send EDNS Client Subnet on every query")
    ap.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    args = ap.parse_args()

    dnsperf = shutil.which("dnsperf")
    if dnsperf is None:
        print("dnsperf not found: apt-get install dnsperf", file=sys.stderr)
        return 1
    fedns = shutil.which("fedns") or sys.argv[0]
    taskset = None if args.no_pin or (os.cpu_count() or 1) < 2 else shutil.which("taskset")
    dns_port, http_port = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="fedns-bench-") as tmp:
        cfg = os.path.join(tmp, "bench.yaml")
        with open(cfg, "w", encoding="utf-8") as f:
            yaml.safe_dump(bench_config(dns_port, http_port), f, sort_keys=False)
        qfile = os.path.join(tmp, "queries.txt")
        with open(qfile, "w", encoding="utf-8") as f:
            f.write("\n".join(query_lines()) + "\n")
        server_cmd = [fedns, "serve", "-c", cfg, "--log-level", "WARNING"]
        if taskset:
            server_cmd = [taskset, "-c", "0", *server_cmd]
        log = open(os.path.join(tmp, "server.log"), "wb")  # noqa: SIM115
        proc = subprocess.Popen(server_cmd, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_http(f"http://127.0.0.1:{http_port}/readyz", proc)
            perf = [dnsperf, "-s", "127.0.0.1", "-p", str(dns_port), "-d", qfile,
                    "-l", str(args.seconds), "-c", str(args.clients),
                    "-q", str(args.outstanding), "-t", "2"]
            if args.ecs:
                perf += ["-E", ecs_option(1)]
            if taskset:
                perf = [taskset, "-c", "1", *perf]
            print("server:", " ".join(server_cmd))
            print("client:", " ".join(perf), flush=True)
            run = subprocess.run(perf, capture_output=True, text=True,
                                 timeout=args.seconds + 60)
            if run.returncode != 0:
                print(run.stdout + run.stderr, file=sys.stderr)
                return 1
            res = parse_dnsperf(run.stdout)
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
        if "qps" not in res:
            print(run.stdout, file=sys.stderr)
            return 1
        mode = "ECS" if args.ecs else "plain"
        print(f"fedns serve ({mode}, {args.seconds}s, pinned={'yes' if taskset else 'no'}): "
              f"{res['qps']:.0f} queries/s, completed {res.get('completed', 0):.0f}"
              f"/{res.get('sent', 0):.0f}, lost {res.get('lost', 0):.0f}")
        print(f"latency: avg {res.get('lat_avg', 0) * 1000:.3f} ms, "
              f"min {res.get('lat_min', 0) * 1000:.3f} ms, "
              f"max {res.get('lat_max', 0) * 1000:.3f} ms, "
              f"stddev {res.get('lat_sd', 0) * 1000:.3f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
