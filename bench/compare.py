#!/usr/bin/env python3
"""fedns vs gdnsd on loopback: max qps, CPU-us per query, p99 latency (issue 5, issue 3).

    python bench/compare.py [--seconds 10] [--services 100] [--json out.json] [--profile DIR]

Both servers get the same data (gdnsd serves ``fedns records`` of the generated
config, i.e. fedns's static view) and the same query files. The server runs
on CPU 0, ``dnsperf -T 1 -c 10 -q 100`` on CPU 1 (taskset). Per server and
query mix: max qps (no -Q), fixed rates (-Q 100000, -Q 200000) and a low rate
(-Q 5000, with per-query latencies for p50/p99). CPU-us per query = the
server's utime+stime delta over the run (/proc/<pid>/stat) / completed queries.
A round in which other processes took more than ``--busy`` of CPU 0 is run
again (at most ``--busy-repeats`` times; every attempt is printed and kept).
The acceptance lines (fedns geo-ecs against gdnsd static) come from paired
rounds, where gdnsd on ``static`` and fedns on ``geo-ecs`` alternate in the
same rounds (mix ``paired``; ``--no-paired`` judges from the per-mix rounds).
With ``--servers gdnsd,fedns,pyfloor`` a third server runs alike:
``pyfloor.py``, a loop that only does recvfrom, one dict lookup and sendto,
so each run also shows how much of the gap to gdnsd is Python's own.

Mixes (see ``benchdata``): ``static`` (apex, static, AZ/region names; no ECS),
``geo-ecs`` (global names + CNAME chains, ECS from ``--prefixes`` random
prefixes), ``geo`` (the same queries without ECS). All names in random case,
all queries with EDNS (1232). Then the ECS-vs-no-ECS rounds of issue 3 on fedns
(after warm-up, alternating, median of ``--ecs-rounds``), and optionally a
py-spy profile of fedns at max rate (``--profile DIR``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import benchdata as bd
import perfrun
import procs

MIXES = ("static", "geo-ecs", "geo")


@dataclass(frozen=True, slots=True)
class Row:
    server: str
    mix: str
    mode: str  # "max", "Q100000", ...
    target: int | None
    qps: float
    completed: int
    loss: float
    cpu_us: float  # server CPU-us per completed query
    lat_avg_ms: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu0_other: float = 0.0  # share of the server CPU's time busy with other processes
    steal: float = 0.0  # share of the server CPU's time stolen by the hypervisor
    rounds: int = 1
    busy: bool = False  # other processes took more than --busy of the server CPU: repeated


def measure(server: procs.ServerProc, mix: str, qfile: Path, seconds: float,
            qps: int | None, args: perfrun.PerfArgs, cpu: int | None,
            verbose: bool = False) -> Row:
    t0 = procs.cpu_times(cpu) if cpu is not None else None
    c0 = server.cpu_seconds()
    r = perfrun.run(server.port, qfile, seconds, qps=qps, verbose=verbose, args=args)
    c1 = server.cpu_seconds()
    other = steal = 0.0
    if t0 is not None and cpu is not None:
        d = procs.cpu_times(cpu) - t0
        if d.total > 0:
            other = max(0.0, d.busy - (c1 - c0)) / d.total
            steal = d.steal / d.total
    p50, p99 = r.percentile(50), r.percentile(99)
    return Row(server.name, mix, "max" if qps is None else f"Q{qps}", qps, r.qps, r.completed,
               r.loss, (c1 - c0) / max(1, r.completed) * 1e6, r.lat_avg * 1e3,
               None if p50 is None else p50 * 1e3, None if p99 is None else p99 * 1e3,
               other, steal)


def median_row(rows: list[Row]) -> Row:
    """Field-wise median of the rounds of one (server, mix, mode)."""

    def med(get: Callable[[Row], float | None]) -> float | None:
        xs = [x for x in (get(r) for r in rows) if x is not None]
        return statistics.median(xs) if xs else None

    first = rows[0]
    return Row(first.server, first.mix, first.mode, first.target,
               med(lambda r: r.qps) or 0.0, int(med(lambda r: r.completed) or 0),
               med(lambda r: r.loss) or 0.0, med(lambda r: r.cpu_us) or 0.0,
               med(lambda r: r.lat_avg_ms) or 0.0, med(lambda r: r.p50_ms),
               med(lambda r: r.p99_ms), med(lambda r: r.cpu0_other) or 0.0,
               med(lambda r: r.steal) or 0.0, len(rows))


def run_all(servers: list[procs.ServerProc], files: dict[str, Path],
            opts: argparse.Namespace, pargs: perfrun.PerfArgs, cpu: int | None,
            say: Callable[[str], None]) -> tuple[list[Row], list[Row]]:
    """Every (mix, mode) on every server back to back, ``--rounds`` times with the
    server order alternating, so load from elsewhere on the machine hits both
    alike. Returns (per-round rows, medians)."""
    for s in servers:  # warm-up: every ECS prefix seen once, every answer touched
        perfrun.run(s.port, files["geo-ecs"], opts.warmup, args=pargs)
    raw: list[Row] = []
    medians: list[Row] = []
    for mix in opts.mixes:
        for qps in [None, *opts.rates, opts.latency_rate]:
            medians += alternating(servers, mix, lambda s, m=mix: files[m], qps, opts, pargs,
                                   cpu, raw, say)
    if opts.paired and {"gdnsd", "fedns"} <= {s.name for s in servers}:
        medians += paired(servers, files, opts, pargs, cpu, raw, say)
    return raw, medians


PAIRED = "paired"  # the pseudo-mix of the acceptance rounds


def paired(servers: list[procs.ServerProc], files: dict[str, Path],
           opts: argparse.Namespace, pargs: perfrun.PerfArgs, cpu: int | None,
           raw: list[Row], say: Callable[[str], None]) -> list[Row]:
    """The acceptance lines compare fedns on ``geo-ecs`` with gdnsd on
    ``static``, which the per-mix rounds measure minutes apart: a slow spell of
    the host that hits one phase and not the other decides the ratio. Here each
    of max rate, the highest ``--rates`` rate and ``--latency-rate`` is run with
    gdnsd on ``static`` and the others on ``geo-ecs`` in the same alternating
    rounds (mix ``paired`` in the rows)."""
    say(f"{PAIRED}: gdnsd on static, fedns and pyfloor on geo-ecs, in the same rounds")
    medians: list[Row] = []
    for qps in [None, *([max(opts.rates)] if opts.rates else []), opts.latency_rate]:
        medians += alternating(
            servers, PAIRED, lambda s: files["static" if s.name == "gdnsd" else "geo-ecs"],
            qps, opts, pargs, cpu, raw, say)
    return medians


def alternating(servers: list[procs.ServerProc], mix: str,
                qfile: Callable[[procs.ServerProc], Path], qps: int | None,
                opts: argparse.Namespace, pargs: perfrun.PerfArgs, cpu: int | None,
                raw: list[Row], say: Callable[[str], None]) -> list[Row]:
    """``--rounds`` rounds of every server on its query file at ``qps``, back
    to back, the order alternating between rounds; each server's medians."""
    verbose = qps == opts.latency_rate
    per: dict[str, list[Row]] = {s.name: [] for s in servers}
    for i in range(opts.rounds):
        for s in (servers if i % 2 == 0 else servers[::-1]):
            per[s.name].append(measured(s, mix, qfile(s), qps, opts, pargs, cpu, verbose,
                                        raw, say))
    return [median_row(rs) for rs in per.values()]


def measured(server: procs.ServerProc, mix: str, qfile: Path, qps: int | None,
             opts: argparse.Namespace, pargs: perfrun.PerfArgs, cpu: int | None,
             verbose: bool, raw: list[Row], say: Callable[[str], None]) -> Row:
    """One round of ``measure``, repeated (up to ``--busy-repeats`` times) while
    other processes took more than ``--busy`` of the server's CPU: such a round
    measures the host, not the server. Every attempt goes to ``raw``, the
    repeated ones marked ``busy``; the last one counts."""
    for attempt in range(opts.busy_repeats + 1):
        row = measure(server, mix, qfile, opts.seconds, qps, pargs, cpu, verbose)
        busy = cpu is not None and row.cpu0_other > opts.busy and attempt < opts.busy_repeats
        row = replace(row, busy=busy)
        raw.append(row)
        say(fmt_row(row) + ("  (busy: measured again)" if busy else ""))
        if not busy:
            break
    return row


def fmt_row(r: Row) -> str:
    lat = f" p50 {r.p50_ms:.3f} ms p99 {r.p99_ms:.3f} ms" if r.p99_ms is not None else ""
    return (f"  {r.server:<6} {r.mix:<8} {r.mode:<8} {r.qps:>9.0f} qps  "
            f"{r.cpu_us:6.2f} CPU-us/q  loss {r.loss * 100:5.2f} %  "
            f"avg {r.lat_avg_ms:.3f} ms{lat}  cpu0-other {r.cpu0_other * 100:.0f} % "
            f"steal {r.steal * 100:.0f} %")


def ecs_rounds(server: procs.ServerProc, files: dict[str, Path], opts: argparse.Namespace,
               pargs: perfrun.PerfArgs, say: Callable[[str], None]) -> dict[str, object]:
    """Issue 3: max qps with ECS from many prefixes vs. the same queries without."""
    perfrun.run(server.port, files["geo-ecs"], opts.warmup, args=pargs)
    ecs: list[float] = []
    plain: list[float] = []
    for i in range(opts.ecs_rounds):
        order = (("geo-ecs", ecs), ("geo", plain)) if i % 2 == 0 else (
            ("geo", plain), ("geo-ecs", ecs))
        for mix, out in order:
            out.append(perfrun.run(server.port, files[mix], opts.seconds, args=pargs).qps)
    e, p = statistics.median(ecs), statistics.median(plain)
    say(f"  ECS rounds {[round(x) for x in ecs]}  no-ECS rounds {[round(x) for x in plain]}")
    return {"ecs_qps": ecs, "plain_qps": plain, "ecs_median": e, "plain_median": p,
            "difference": (p - e) / p if p else 0.0}


def profile(server: procs.ServerProc, qfile: Path, seconds: float, out_dir: Path,
            pargs: perfrun.PerfArgs, say: Callable[[str], None]) -> dict[str, object]:
    """py-spy (sampling, native off) on the fedns process during a max-rate run."""
    spy = shutil.which("py-spy")
    if spy is None:
        say("  py-spy not installed (pip install py-spy): no profile")
        return {}
    out_dir.mkdir(parents=True, exist_ok=True)
    raw = out_dir / "fedns-pyspy.txt"
    cmd = procs.pinned([spy, "record", "-p", str(server.pid), "-f", "raw", "-o", str(raw),
                        "-d", str(int(seconds)), "-r", "250", "--nonblocking"], pargs.cpu)
    spy_proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.5)
    r = perfrun.run(server.port, qfile, seconds, args=pargs)
    _, err = spy_proc.communicate(timeout=seconds + 60)
    if not raw.exists():
        say(f"  py-spy failed: {err.decode(errors='replace')[-500:]}")
        return {}
    stacks = parse_collapsed(raw.read_text())
    summary = summarize(stacks)
    (out_dir / "fedns-pyspy-summary.json").write_text(json.dumps(summary, indent=1))
    say(f"  profiled at {r.qps:.0f} qps ({seconds:.0f} s); top self time:")
    for name, share in summary["self"][:15]:  # type: ignore[index]
        say(f"    {share * 100:5.1f} %  {name}")
    return summary


def parse_collapsed(text: str) -> list[tuple[list[str], int]]:
    out = []
    for line in text.splitlines():
        stack, _, n = line.rpartition(" ")
        if stack and n.isdigit():
            out.append((stack.split(";"), int(n)))
    return out


def summarize(stacks: list[tuple[list[str], int]]) -> dict[str, object]:
    total = sum(n for _, n in stacks) or 1
    self_t: dict[str, int] = {}
    incl: dict[str, int] = {}
    for frames, n in stacks:
        leaf = frames[-1]
        self_t[leaf] = self_t.get(leaf, 0) + n
        for f in set(frames):
            incl[f] = incl.get(f, 0) + n
    top = sorted(self_t.items(), key=lambda kv: -kv[1])[:40]
    topi = sorted(incl.items(), key=lambda kv: -kv[1])[:60]
    return {"samples": total,
            "self": [(k, v / total) for k, v in top],
            "inclusive": [(k, v / total) for k, v in topi]}


def print_table(rows: list[Row], say: Callable[[str], None]) -> None:
    """One line per (mix, mode, metric): fedns, gdnsd, fedns/gdnsd, and with
    the Python floor in the run its figure and floor/gdnsd too."""
    by = {(r.server, r.mix, r.mode): r for r in rows}
    floor = any(r.server == "pyfloor" for r in rows)
    modes = sorted({r.mode for r in rows}, key=lambda m: (m != "max", int(m[1:] or 0)
                                                          if m != "max" else 0))
    say("")
    extra = f" {'pyfloor':>10} {'floor/g':>7}" if floor else ""
    say(f"{'mix':<8} {'mode':<8} {'metric':<12} {'fedns':>10} {'gdnsd':>10} {'ratio':>7}{extra}")
    for mix in (*MIXES, PAIRED):
        for mode in modes:
            f, g, p = (by.get((name, mix, mode)) for name in ("fedns", "gdnsd", "pyfloor"))
            present = [r for r in (f, g, p) if r is not None]
            if not present:
                continue
            metrics: list[tuple[str, Callable[[Row], float | None]]] = [
                ("qps", lambda r: r.qps), ("CPU-us/q", lambda r: r.cpu_us),
                ("loss %", lambda r: r.loss * 100)]
            if present[0].p99_ms is not None:
                metrics += [("p50 ms", lambda r: r.p50_ms), ("p99 ms", lambda r: r.p99_ms)]
            for label, get in metrics:
                fv, gv, pv = (get(r) if r else None for r in (f, g, p))
                line = (f"{mix:<8} {mode:<8} {label:<12} {_num(fv):>10} {_num(gv):>10} "
                        f"{_ratio(fv, gv)}")
                if floor:
                    line += f" {_num(pv):>10} {_ratio(pv, gv)}"
                say(line)


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:7.2f}" if a is not None and b else "      -"


def _num(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.0f}" if v >= 1000 else f"{v:.3f}" if v < 10 else f"{v:.1f}"


def acceptance(rows: list[Row], ecs: dict[str, object] | None,
               opts: argparse.Namespace) -> list[tuple[str, float | None, str, bool | None]]:
    by = {(r.server, r.mix, r.mode): r for r in rows}
    if any(r.mix == PAIRED for r in rows):  # same rounds: use those
        by.update({(r.server, "geo-ecs" if r.server != "gdnsd" else "static", r.mode): r
                   for r in rows if r.mix == PAIRED})
    out: list[tuple[str, float | None, str, bool | None]] = []

    def ratio(a: Row | None, b: Row | None, get: Callable[[Row], float | None]) -> float | None:
        if a is None or b is None:
            return None
        x, y = get(a), get(b)
        return x / y if x is not None and y else None

    mx = ratio(by.get(("fedns", "geo-ecs", "max")), by.get(("gdnsd", "static", "max")),
               lambda r: r.qps)
    out.append(("max qps fedns geo-ecs / gdnsd static", mx, ">= 0.9",
                None if mx is None else mx >= 0.9))
    key = f"Q{max(opts.rates)}" if opts.rates else None
    f200 = by.get(("fedns", "geo-ecs", key)) if key else None
    cpu = ratio(f200, by.get(("gdnsd", "static", key)) if key else None, lambda r: r.cpu_us)
    note = "<= 1.5"
    if f200 is not None and f200.target and f200.qps < 0.97 * f200.target:
        note += f" (fedns reached only {f200.qps:.0f} qps)"
    out.append((f"CPU-us/q at {key} fedns geo-ecs / gdnsd static", cpu, note,
                None if cpu is None else cpu <= 1.5))
    lk = f"Q{opts.latency_rate}"
    p99 = ratio(by.get(("fedns", "geo-ecs", lk)), by.get(("gdnsd", "static", lk)),
                lambda r: r.p99_ms)
    out.append((f"p99 at {lk} fedns geo-ecs / gdnsd static", p99, "<= 1.2",
                None if p99 is None else p99 <= 1.2))
    floor = by.get(("pyfloor", "geo-ecs", lk))
    if floor is not None:  # no target: what Python alone costs, same run
        for label, mode, get in (("max qps", "max", lambda r: r.qps),
                                 (f"p99 at {lk}", lk, lambda r: r.p99_ms)):
            out.append((f"{label} Python floor geo-ecs / gdnsd static",
                        ratio(by.get(("pyfloor", "geo-ecs", mode)),
                              by.get(("gdnsd", "static", mode)), get), "(info)", None))
        p99_floor = ratio(by.get(("fedns", "geo-ecs", lk)), floor, lambda r: r.p99_ms)
        out.append((f"p99 at {lk} fedns geo-ecs / Python floor geo-ecs", p99_floor, "(info)",
                    None))
    if ecs:
        d = float(ecs["difference"])  # type: ignore[arg-type]
        out.append(("fedns qps drop with ECS (10k prefixes) vs without", d, "< 0.15",
                    abs(d) < 0.15))
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=10, help="dnsperf -l per run (default 10)")
    ap.add_argument("--warmup", type=float, default=3, help="warm-up seconds per server")
    ap.add_argument("--services", type=int, default=100, help="services (default 100)")
    ap.add_argument("--queries", type=int, default=100_000, help="queries per file")
    ap.add_argument("--prefixes", type=int, default=10_000, help="distinct ECS prefixes")
    ap.add_argument("--rates", default="100000,200000", help="fixed -Q rates, comma separated")
    ap.add_argument("--latency-rate", type=int, default=5000, help="-Q rate for p99")
    ap.add_argument("--mixes", default=",".join(MIXES), help=f"subset of {','.join(MIXES)}")
    ap.add_argument("--rounds", type=int, default=3,
                    help="repeat every measurement, alternating servers; medians reported")
    ap.add_argument("--ecs-rounds", type=int, default=3, help="0: skip the ECS-vs-plain test")
    ap.add_argument("--servers", default="gdnsd,fedns",
                    help="subset of gdnsd,fedns,pyfloor (pyfloor: bench/pyfloor.py, the "
                         "least a Python server can do per query)")
    ap.add_argument("--workers", type=int, default=1, help="fedns server.workers")
    ap.add_argument("--loop", choices=["asyncio", "uvloop"], default="asyncio",
                    help="fedns event loop (FEDNS_LOOP)")
    ap.add_argument("--udp", choices=["mmsg", "thread", "loop"], default=None,
                    help="fedns UDP receive path (FEDNS_UDP; default: the server's, mmsg)")
    ap.add_argument("--no-geoip", action="store_true",
                    help="no MMDB: ECS prefixes locate to 'unknown' (all healthy shards)")
    ap.add_argument("--no-pin", action="store_true", help="do not use taskset")
    ap.add_argument("--profile", type=Path, default=None,
                    help="directory for a py-spy profile of fedns at max rate")
    ap.add_argument("--no-paired", dest="paired", action="store_false",
                    help="skip the paired rounds (gdnsd static and fedns geo-ecs alternating "
                         "in the same rounds) and judge from the per-mix rounds")
    ap.add_argument("--busy", type=float, default=0.10,
                    help="repeat a round in which other processes took more than this share "
                         "of the server's CPU (default 0.10; pinned runs only)")
    ap.add_argument("--busy-repeats", type=int, default=2,
                    help="at most this many repeats per round (default 2; 0: never)")
    ap.add_argument("--json", type=Path, default=None, help="write all figures here")
    ap.add_argument("--seed", type=int, default=5)
    opts = ap.parse_args(argv)
    opts.rates = [int(x) for x in opts.rates.split(",") if x]
    opts.mixes = [m for m in opts.mixes.split(",") if m]
    opts.servers = [s for s in opts.servers.split(",") if s]
    return opts


def machine() -> dict[str, object]:
    model = "?"
    with open("/proc/cpuinfo", encoding="utf-8") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    repo = Path(__file__).resolve().parent.parent

    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", "-C", str(repo), *a], capture_output=True,
                                  text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return "?"

    return {"nproc": os.cpu_count(), "cpu_model": model, "python": sys.version.split()[0],
            "kernel": os.uname().release, "commit": git("rev-parse", "--short", "HEAD"),
            "dirty": git("status", "--short", "--", "dnsserver").replace("\n", "; "),
            "loadavg": Path("/proc/loadavg").read_text().split()[:3],
            "fedns_python": procs.fedns_python()}


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)

    def say(s: str) -> None:
        print(s, flush=True)

    pin = not opts.no_pin and (os.cpu_count() or 1) >= 2 and shutil.which("taskset")
    srv_cpu = 0 if pin else None
    pargs = perfrun.PerfArgs(cpu=1 if pin else None)
    rng = random.Random(opts.seed)
    topo = bd.Topology(services=opts.services)
    raw: list[Row] = []
    rows: list[Row] = []
    ecs: dict[str, object] | None = None
    prof: dict[str, object] = {}
    host: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="fedns-compare-") as tmpdir:
        tmp = Path(tmpdir)
        db = None if opts.no_geoip else str(bd.build_database(tmp / "bench-city.mmdb"))
        dns_port, http_port = procs.free_port(), procs.free_port()
        config = bd.fedns_config(topo, dns_port, http_port, db, opts.workers)
        prefixes = bd.ecs_prefixes(rng, opts.prefixes)
        geo = bd.mix_geo(topo, rng, opts.queries, prefixes)
        files = {
            "static": bd.write_binary(tmp / "static.bin", bd.mix_static(topo, rng, opts.queries)),
            "geo-ecs": bd.write_binary(tmp / "geo-ecs.bin", geo),
            "geo": bd.write_binary(tmp / "geo.bin", [replace(q, ecs=None) for q in geo]),
        }
        host = machine()  # at the start: the tree the servers run
        say(f"machine: {host}")
        interp = host["fedns_python"]
        if isinstance(interp, dict) and interp.get("libpython") == "shared":
            say("note: fedns runs on a CPython with a shared libpython (pyenv's default "
                "build: no PGO, no LTO); the container image's is optimised. "
                "See docs/performance.md, session 6.")
        say(f"data: {opts.services} services, {len(list(topo.clusters()))} clusters, "
            f"{opts.queries} queries per file, {opts.prefixes} ECS prefixes, "
            f"geoip={'synthetic MMDB' if db else 'none'}; pinned={'yes' if pin else 'no'}")
        servers: list[procs.ServerProc] = []
        try:
            if "gdnsd" in opts.servers:
                zone_text = procs.fedns_zone_text(tmp, config)
                servers.append(procs.start_gdnsd(tmp, bd.ZONE, zone_text, procs.free_port(),
                                                 srv_cpu))
            if "fedns" in opts.servers:
                servers.append(procs.start_fedns(tmp, config, srv_cpu, bd.ZONE, opts.loop,
                                                 bd.global_names(topo)[0], opts.udp))
            if "pyfloor" in opts.servers:
                servers.append(procs.start_pyfloor(tmp, procs.free_port(), srv_cpu))
            for s in servers:
                say(f"{s.name} pid {s.pid} port {s.port}")
            raw, rows = run_all(servers, files, opts, pargs, srv_cpu, say)
            fedns = [s for s in servers if s.name == "fedns"]
            if fedns and opts.ecs_rounds > 0:
                ecs = ecs_rounds(fedns[0], files, opts, pargs, say)
            if fedns and opts.profile is not None:
                prof = profile(fedns[0], files["geo-ecs"], opts.seconds, opts.profile,
                               pargs, say)
        finally:
            for s in servers:
                s.stop()
    print_table(rows, say)
    say("")
    repeated = [r for r in raw if r.busy]
    if repeated:
        say(f"rounds measured again (other processes took > {opts.busy:.0%} of the server's "
            f"CPU): {len(repeated)}, " + ", ".join(
                f"{r.server} {r.mix} {r.mode} ({r.cpu0_other:.0%})" for r in repeated))
    results = acceptance(rows, ecs, opts)
    for label, value, target, ok in results:
        v = "-" if value is None else f"{value:.3f}"
        verdict = "n/a" if ok is None else "PASS" if ok else "MISS"
        say(f"{label:<52} {v:>8}  target {target:<8} {verdict}")
    if opts.json is not None:
        opts.json.parent.mkdir(parents=True, exist_ok=True)
        opts.json.write_text(json.dumps({
            "machine": host, "options": {k: (str(v) if isinstance(v, Path) else v)
                                              for k, v in vars(opts).items()},
            "rows": [asdict(r) for r in rows],
            "raw_rows": [asdict(r) for r in raw], "ecs_rounds": ecs,
            "acceptance": results, "profile_top": prof.get("self", [])[:25],  # type: ignore[index]
        }, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
