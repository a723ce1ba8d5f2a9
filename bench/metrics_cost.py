#!/usr/bin/env python3
"""What do the DNS metrics cost? qps of ``fedns serve`` with metrics on vs. off.

    python bench/metrics_cost.py [--seconds 8] [--rounds 3] [--scrape 1.0]

Both variants run the real ``fedns serve`` code path with the same generated
config and dnsperf query mix as ``bench/dnsperf_bench.py`` (server pinned to
CPU 0, dnsperf to CPU 1 when ``taskset`` exists):

- **on**: ``fedns serve`` as shipped (per-query counters; duration and size
  sampled 1 in 8), with ``/metrics`` scraped every ``--scrape`` seconds during
  the run, as Prometheus would (1 s is a pessimistic scrape interval).
- **off**: the same ``dnsserver.cli.main(["serve", ...])`` in a process where
  ``DnsMetrics`` never samples (no ``perf_counter``, no histograms) and is
  never registered (``/metrics`` has no ``fedns_dns_*``), and nothing scrapes.
  The per-query request counter is a dict increment inlined in the handler
  and stays: the "off" figure is therefore an upper bound on qps without it
  only to that extent (one dict get/set, tens of ns of a query's tens of µs).

Variants alternate (on, off, off, on, ...) so drifting load from other work
on the machine hits both; the median of the rounds is compared. Besides qps
the server's own CPU time per answered query (from /proc) is printed: it is
far less sensitive to other processes competing for the CPU than qps. The
target is a cost below 10 %. Figures from a shared, loaded machine are
noisy: read the per-round spread printed next to the medians.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import urllib.request
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dnsperf_bench import bench_config, parse_dnsperf, query_lines
from procs import free_port, wait_http

OFF_RUNNER = """\
import sys
from dnsserver import metrics
init = metrics.DnsMetrics.__init__
def quiet_init(self, registry, *, sample_every=8):
    init(self, None, sample_every=10**9)  # never sampled, never registered
metrics.DnsMetrics.__init__ = quiet_init
from dnsserver.cli import main
sys.exit(main(sys.argv[1:]))
"""
# "on" through the same launcher, to rule out a launcher difference
ON_RUNNER = "import sys; from dnsserver.cli import main; sys.exit(main(sys.argv[1:]))"


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Scraper:
    """GET /metrics every ``interval`` seconds until stopped; counts scrapes."""

    def __init__(self, url: str, interval: float) -> None:
        self.url, self.interval = url, interval
        self.count = 0
        self.bytes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with urllib.request.urlopen(self.url, timeout=5) as r:
                    self.bytes = len(r.read())
                    self.count += 1
            except OSError:
                pass

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)


def run_round(variant: str, args: argparse.Namespace, tmp: Path, qfile: Path,
              taskset: str | None, dnsperf: str) -> dict[str, float]:
    dns_port, http_port = free_port(), free_port()
    cfg = tmp / f"{variant}.yaml"
    cfg.write_text(yaml.safe_dump(bench_config(dns_port, http_port), sort_keys=False))
    serve = ["serve", "-c", str(cfg), "--log-level", "WARNING"]
    runner = OFF_RUNNER if variant == "off" else ON_RUNNER
    cmd = [sys.executable, "-c", runner, *serve]
    if taskset:
        cmd = [taskset, "-c", "0", *cmd]
    with open(tmp / f"{variant}.log", "wb") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        scraper = Scraper(f"http://127.0.0.1:{http_port}/metrics", args.scrape)
        try:
            wait_http(f"http://127.0.0.1:{http_port}/readyz", proc)
            perf = [dnsperf, "-s", "127.0.0.1", "-p", str(dns_port), "-d", str(qfile),
                    "-l", str(args.seconds), "-c", str(args.clients),
                    "-q", str(args.outstanding), "-t", "2"]
            if taskset:
                perf = [taskset, "-c", "1", *perf]
            # warm-up: answer tables and caches, then the measured run
            subprocess.run([*perf[:perf.index("-l") + 1], "1", *perf[perf.index("-l") + 2:]],
                           capture_output=True, timeout=60)
            if variant == "on" and args.scrape > 0:
                scraper.start()
            cpu0 = cpu_seconds(proc.pid)
            run = subprocess.run(perf, capture_output=True, text=True,
                                 timeout=args.seconds + 60)
            scraper.stop()
            cpu = cpu_seconds(proc.pid) - cpu0
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/metrics",
                                        timeout=5) as r:
                exposed = b"fedns_dns_requests_total" in r.read()
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
    if run.returncode != 0:
        raise SystemExit(f"dnsperf failed:\n{run.stdout}{run.stderr}")
    res = parse_dnsperf(run.stdout)
    if exposed != (variant == "on"):
        raise SystemExit(f"variant {variant}: fedns_dns_requests_total exposed={exposed}")
    res["cpu_us_per_query"] = cpu / max(res.get("completed", 0.0), 1.0) * 1e6
    res["scrapes"] = float(scraper.count)
    res["scrape_bytes"] = float(scraper.bytes)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=int, default=8, help="dnsperf -l per round (default 8)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds per variant (default 3)")
    ap.add_argument("--scrape", type=float, default=1.0,
                    help="seconds between /metrics scrapes in the 'on' variant "
                    "(default 1; 0: no scraping)")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--outstanding", type=int, default=200)
    ap.add_argument("--no-pin", action="store_true", help="do not pin with taskset")
    args = ap.parse_args()
    dnsperf = shutil.which("dnsperf")
    if dnsperf is None:
        print("dnsperf not found: apt-get install dnsperf", file=sys.stderr)
        return 1
    taskset = None if args.no_pin or (os.cpu_count() or 1) < 2 else shutil.which("taskset")
    results: dict[str, list[dict[str, float]]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory(prefix="fedns-metrics-cost-") as d:
        tmp = Path(d)
        qfile = tmp / "queries.txt"
        qfile.write_text("\n".join(query_lines()) + "\n")
        for i in range(args.rounds):
            for variant in ("on", "off") if i % 2 == 0 else ("off", "on"):
                res = run_round(variant, args, tmp, qfile, taskset, dnsperf)
                results[variant].append(res)
                print(f"round {i + 1} {variant:>3}: {res['qps']:8.0f} q/s  "
                      f"lost {res.get('lost', 0):.0f}  "
                      f"avg latency {res.get('lat_avg', 0) * 1000:.2f} ms  "
                      f"server CPU {res['cpu_us_per_query']:.1f} µs/query"
                      + (f"  scrapes {res['scrapes']:.0f} ({res['scrape_bytes'] / 1024:.0f} KiB)"
                         if variant == "on" else ""), flush=True)
    on = [r["qps"] for r in results["on"]]
    off = [r["qps"] for r in results["off"]]
    m_on, m_off = statistics.median(on), statistics.median(off)
    cost = (m_off - m_on) / m_off * 100 if m_off else 0.0
    c_on = statistics.median(r["cpu_us_per_query"] for r in results["on"])
    c_off = statistics.median(r["cpu_us_per_query"] for r in results["off"])
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"\nmetrics on : median {m_on:.0f} q/s (rounds {', '.join(f'{q:.0f}' for q in on)})")
    print(f"metrics off: median {m_off:.0f} q/s (rounds {', '.join(f'{q:.0f}' for q in off)})")
    print(f"server CPU per query: on {c_on:.1f} µs, off {c_off:.1f} µs "
          f"({(c_on - c_off) / c_off * 100 if c_off else 0.0:+.1f} %)")
    print(f"cost of metrics: {cost:+.1f} % of qps (target < 10 %); "
          f"pinned={'yes' if taskset else 'no'}; load average {' '.join(load)}")
    print("note: a shared machine makes single rounds noisy; compare the spread of the "
          "rounds with the difference of the medians.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
