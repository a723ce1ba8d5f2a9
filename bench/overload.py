#!/usr/bin/env python3
"""Overload ``fedns serve``: measure its max rate, offer 2x that, then fall back.

    python bench/overload.py [--seconds 20] [--factor 2] [--no-pin]

Phases (dnsperf pinned to CPU 1, the server to CPU 0 when taskset exists):

1. ``max``: dnsperf unthrottled (many outstanding queries) -> the measured
   max rate (completed queries per second);
2. ``overload``: dnsperf offers ``factor`` x max (``-Q``); reported: qps held
   (answered per second), queries lost (dropped by the kernel's full socket
   buffer or by the server) and the server's RSS over the phase;
3. ``recovery``: half the max rate right after -> answered rate, loss and
   latency (should be what an idle server gives, at once).

RSS (VmRSS) is sampled every second throughout; the summary prints it per
phase so growth under overload is visible. Server drop counters come from
``/metrics`` (``fedns_dns_dropped_total``) and kernel UDP receive-buffer
errors from ``/proc/net/snmp``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from soak import Server, dnsperf_cmd, parse_dnsperf, pinned, query_file

ZONE = "overload.example."
GLOBAL = f"nginx.default.fed.svc.{ZONE}"


def config() -> str:
    regions = {"us-east1": ([33.8, -84.4], "us-east1-b"), "europe-west1": ([50.4, 3.8],
               "europe-west1-b"), "asia-east1": ([24.0, 120.5], "asia-east1-a")}
    doc: dict[str, Any] = {
        "zone": ZONE, "federation": "fed", "ttl": 30,
        "nameservers": {f"ns1.{ZONE}": ["127.0.0.1"]},
        "listen": {"dns": ["127.0.0.1:0"], "http": "127.0.0.1:0"},
        "regions": {r: {"location": loc, "zones": [z]} for r, (loc, z) in regions.items()},
        "clusters": [{
            "name": f"c{i}", "region": r, "zone": z, "source": "static",
            "networks": [f"127.0.{i + 1}.0/24"],
            "services": [{"name": "nginx", "namespace": "default",
                          "addresses": [f"192.0.2.{10 * (i + 1)}"]}],
        } for i, (r, (_, z)) in enumerate(regions.items())],
        "records": [{"name": "www", "type": "A", "value": "192.0.2.80"}],
    }
    return json.dumps(doc, indent=1)


def udp_rcvbuf_errors() -> int:
    text = Path("/proc/net/snmp").read_text().splitlines()
    rows = [ln.split() for ln in text if ln.startswith("Udp:")]
    head, vals = rows[0], rows[1]
    return int(vals[head.index("RcvbufErrors")])


def dropped(server: Server) -> dict[str, float]:
    out: dict[str, float] = {}
    for m in re.finditer(r'^fedns_dns_dropped_total\{reason="(\w+)"\} ([\d.e+]+)$',
                         server.get("/metrics"), re.M):
        out[m.group(1)] = float(m.group(2))
    return out


class RssSampler(threading.Thread):
    def __init__(self, server: Server) -> None:
        super().__init__(daemon=True)
        self.server = server
        self.samples: list[tuple[float, str, int]] = []
        self.phase = "idle"
        self.stop = threading.Event()

    def run(self) -> None:
        t0 = time.monotonic()
        while not self.stop.wait(1.0):
            self.samples.append((time.monotonic() - t0, self.phase, self.server.rss_kib()))

    def of(self, phase: str) -> list[int]:
        return [kib for _, p, kib in self.samples if p == phase]


def run_phase(name: str, server: Server, sampler: RssSampler, qfile: Path, seconds: float,
              rate: float | None, pin: bool, outstanding: int) -> dict[str, float]:
    sampler.phase = name
    drops0, kern0 = dropped(server), udp_rcvbuf_errors()
    cmd = pinned(dnsperf_cmd(server.dns_port, qfile, seconds, rate=rate, clients=8,
                             outstanding=outstanding, timeout=1.0), 1, pin)
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60).stdout
    res = parse_dnsperf(out)
    drops1 = dropped(server)
    res["server_drops"] = sum(drops1.values()) - sum(drops0.values())
    res["kernel_rcvbuf_errors"] = udp_rcvbuf_errors() - kern0
    res["offered"] = rate or 0.0
    rss = sampler.of(name)
    res["rss_first_mib"] = rss[0] / 1024 if rss else 0.0
    res["rss_last_mib"] = rss[-1] / 1024 if rss else 0.0
    res["rss_max_mib"] = max(rss) / 1024 if rss else 0.0
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=20.0, help="per phase")
    ap.add_argument("--factor", type=float, default=2.0, help="overload = factor x max")
    ap.add_argument("--no-pin", action="store_true")
    args = ap.parse_args()
    pin = not args.no_pin
    if shutil.which("dnsperf") is None:
        print("dnsperf not found: apt-get install dnsperf", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="fedns-overload-"))
    cfg = work / "fedns.yaml"
    cfg.write_text(config())
    server = Server(cfg, work / "fedns.log", pin=pin)
    results: dict[str, dict[str, float]] = {}
    sampler = RssSampler(server)
    try:
        server.wait_started()
        server.wait_ready()
        qfile = query_file(work / "queries.txt", ZONE, [
            GLOBAL, f"nginx.default.fed.svc.us-east1.{ZONE}", f"www.{ZONE}"])
        sampler.start()
        time.sleep(2)
        results["max"] = run_phase("max", server, sampler, qfile, args.seconds, None, pin, 500)
        top = results["max"]["qps"]
        # enough outstanding queries that the offered rate is not capped by
        # replies: every query in flight for the whole 1 s timeout
        offered = args.factor * top
        results["overload"] = run_phase("overload", server, sampler, qfile, args.seconds,
                                        offered, pin, min(60000, int(offered * 1.2)))
        results["recovery"] = run_phase("recovery", server, sampler, qfile, args.seconds,
                                        top / 2, pin, 500)
        sampler.phase = "after"
        time.sleep(2)
    finally:
        sampler.stop.set()
        rc = server.stop()
    log = server.log_path.read_text()
    print(f"overload: {args.seconds:g}s per phase, pinned={'yes' if pin else 'no'}, "
          f"load average {os.getloadavg()[0]:.2f}, server exit {rc}, "
          f"tracebacks {log.count('Traceback')}")
    print(f"  {'phase':9} {'offered':>9} {'answered/s':>11} {'sent':>9} {'lost':>8} "
          f"{'lost%':>6} {'srv drop':>8} {'kern drop':>9} {'avg ms':>7} "
          f"{'RSS MiB first/last/max':>24}")
    for name, r in results.items():
        sent = r.get("sent", 0.0)
        lost = r.get("lost", 0.0)
        offered = f"{r['offered']:.0f}" if r["offered"] else "unlimited"
        print(f"  {name:9} {offered:>9} {r.get('qps', 0):11.0f} {sent:9.0f} {lost:8.0f} "
              f"{100 * lost / sent if sent else 0:6.2f} {r['server_drops']:8.0f} "
              f"{r['kernel_rcvbuf_errors']:9.0f} {r.get('lat_avg', 0) * 1000:7.2f} "
              f"{r['rss_first_mib']:8.1f}/{r['rss_last_mib']:.1f}/{r['rss_max_mib']:.1f}")
    idle = sampler.of("idle") + sampler.of("max")
    over = sampler.of("overload")
    if idle and over:
        print(f"  RSS before overload {idle[-1] / 1024:.1f} MiB, max during "
              f"{max(over) / 1024:.1f} MiB, after {sampler.of('after')[-1] / 1024:.1f} MiB"
              if sampler.of("after") else "")
    held = results["overload"].get("qps", 0) / max(1.0, results["max"].get("qps", 1))
    print(f"  held {100 * held:.0f}% of the max rate under {args.factor:g}x load; "
          f"recovery answered {results['recovery'].get('qps', 0):.0f}/s of "
          f"{results['recovery']['offered']:.0f} offered, lost "
          f"{results['recovery'].get('lost', 0):.0f}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
