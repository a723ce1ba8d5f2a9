"""Run dnsperf once and read its figures (qps, loss, latency percentiles).

Percentiles: dnsperf 2.10 prints only average/min/max/stddev, so runs that need
a p99 add ``-v`` and read the per-query latency that ends each ``> RCODE ...``
line (fine at low rates such as 5k qps; too much output at max rate).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

_PATS = {
    "sent": r"Queries sent:\s+(\d+)",
    "completed": r"Queries completed:\s+(\d+)",
    "lost": r"Queries lost:\s+(\d+)",
    "qps": r"Queries per second:\s+([\d.]+)",
    "runtime": r"Run time \(s\):\s+([\d.]+)",
    "lat_avg": r"Average Latency \(s\):\s+([\d.]+)",
    "lat_sd": r"Latency StdDev \(s\):\s+([\d.]+)",
}
_VERBOSE = re.compile(r"^> \S+ .* ([\d.]+)$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class PerfResult:
    qps: float
    sent: int
    completed: int
    lost: int
    runtime: float
    lat_avg: float
    lat_sd: float
    latencies: tuple[float, ...] = field(default=(), repr=False)

    def percentile(self, p: float) -> float | None:
        if not self.latencies:
            return None
        xs = sorted(self.latencies)
        k = min(len(xs) - 1, max(0, round(p / 100 * len(xs)) - 1))
        return xs[k]

    @property
    def loss(self) -> float:
        return self.lost / self.sent if self.sent else 0.0


@dataclass(frozen=True, slots=True)
class PerfArgs:
    clients: int = 10
    outstanding: int = 100
    threads: int = 1
    cpu: int | None = 1  # taskset CPU for dnsperf, None: not pinned
    timeout: float = 2.0


def dnsperf_cmd(port: int, qfile: Path, seconds: float, qps: int | None, verbose: bool,
                args: PerfArgs) -> list[str]:
    exe = shutil.which("dnsperf")
    if exe is None:
        raise SystemExit("dnsperf not found: apt-get install dnsperf")
    cmd = [exe, "-s", "127.0.0.1", "-p", str(port), "-B", "-d", str(qfile),
           "-l", str(seconds), "-T", str(args.threads), "-c", str(args.clients),
           "-q", str(args.outstanding), "-t", str(args.timeout)]
    if qps:
        cmd += ["-Q", str(qps)]
    if verbose:
        cmd.append("-v")
    if args.cpu is not None:
        cmd = ["taskset", "-c", str(args.cpu), *cmd]
    return cmd


def run(port: int, qfile: Path, seconds: float, *, qps: int | None = None,
        verbose: bool = False, args: PerfArgs = PerfArgs()) -> PerfResult:
    cmd = dnsperf_cmd(port, qfile, seconds, qps, verbose, args)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    out = proc.stdout
    if proc.returncode != 0 or "Queries per second" not in out:
        raise RuntimeError(f"dnsperf failed ({proc.returncode}): {proc.stderr[-2000:]}")
    vals: dict[str, float] = {}
    for key, pat in _PATS.items():
        m = re.search(pat, out)
        vals[key] = float(m.group(1)) if m else 0.0
    lats = tuple(float(x) for x in _VERBOSE.findall(out)) if verbose else ()
    return PerfResult(qps=vals["qps"], sent=int(vals["sent"]), completed=int(vals["completed"]),
                      lost=int(vals["lost"]), runtime=vals["runtime"], lat_avg=vals["lat_avg"],
                      lat_sd=vals["lat_sd"], latencies=lats)
