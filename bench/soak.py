#!/usr/bin/env python3
"""Soak ``fedns serve``: mixed load, health flapping and config reloads; print a summary.

    python bench/soak.py [--minutes 10] [--rate 2000] [--flap 5] [--reload 30]

Runs ``fedns serve`` (pinned to CPU 0 when taskset is available) with three
static clusters whose HTTP probes hit local backends; the ``us`` backend flaps
(healthy / 503) every ``--flap`` seconds, so its shard keeps failing over and
back. Every ``--reload`` seconds the config file is rewritten (the TTL and a
static record change) and SIGHUP'd. Meanwhile:

- ``dnsperf`` sends ``--rate`` qps of mixed names and types for the whole run
  (its ``Queries lost`` is the UDP loss under load);
- a dnspython client alternates UDP and TCP queries of the geo name from the
  us, eu and unknown localities, with a 2 s timeout and no retry, and counts
  lost and wrong answers (an answer must be a subset of the configured IPs);
- the server's RSS (``/proc/<pid>/status`` VmRSS) is sampled every
  ``--sample`` seconds.

At the end the log is searched for tracebacks and ERROR lines. The summary
compares the RSS of the first and last fifth of the run (after a warm-up) and
exits 1 if a query was lost by the dnspython client, an answer was wrong, a
traceback was logged, a reload failed or RSS grew more than ``--max-growth``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import dns.exception
import dns.message
import dns.query
import dns.rcode

ZONE = "soak.example."
GLOBAL = f"nginx.default.fed.svc.{ZONE}"
IPS = {"us": "192.0.2.10", "eu": "192.0.2.20", "asia": "192.0.2.30"}
CLIENTS = {"us": "127.0.1.10", "eu": "127.0.2.10", "unknown": "127.0.0.1"}
STARTED = re.compile(r"\bstarted zone=\S+ dns=127\.0\.0\.1:(\d+)\S* http=127\.0\.0\.1:(\d+)")


# -- pieces shared with overload.py ---------------------------------------------------


def fedns_cmd() -> list[str]:
    """``$FEDNS_CMD`` (e.g. to bench an exported tree), else ``fedns`` on PATH."""
    if os.environ.get("FEDNS_CMD"):
        return shlex.split(os.environ["FEDNS_CMD"])
    exe = shutil.which("fedns")
    return [exe] if exe else [sys.executable, "-m", "dnsserver.cli"]


def pinned(cmd: list[str], cpu: int, enable: bool) -> list[str]:
    taskset = shutil.which("taskset")
    if enable and taskset and (os.cpu_count() or 1) >= 2:
        return [taskset, "-c", str(cpu), *cmd]
    return cmd


class Server:
    """``fedns serve -c CONFIG`` with its log in a file; ports read from the log."""

    def __init__(self, config: Path, log: Path, *, pin: bool) -> None:
        self.log_path = log
        self._log = open(log, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(pinned([*fedns_cmd(), "serve", "-c", str(config)], 0, pin),
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.dns_port = 0
        self.http_port = 0

    def wait_started(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = STARTED.search(self.log_path.read_text())
            if m:
                self.dns_port, self.http_port = int(m.group(1)), int(m.group(2))
                return
            if self.proc.poll() is not None:
                raise SystemExit(f"fedns exited:\n{self.log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        raise SystemExit("fedns did not start")

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url("/readyz"), timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        raise SystemExit("fedns not ready")

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.http_port}{path}"

    def get(self, path: str) -> str:
        with urllib.request.urlopen(self.url(path), timeout=5) as r:
            return str(r.read().decode())

    def rss_kib(self) -> int:
        """Resident memory of the server (and any workers it forked)."""
        total = 0
        for pid in [self.proc.pid, *children(self.proc.pid)]:
            try:
                text = Path(f"/proc/{pid}/status").read_text()
            except OSError:
                continue
            m = re.search(r"VmRSS:\s+(\d+) kB", text)
            if m and "fedns" in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                total += int(m.group(1))
        return total

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log.close()
        return int(self.proc.returncode)


def children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return out
    for k in kids:
        out.append(int(k))
        out.extend(children(int(k)))
    return out


def parse_dnsperf(out: str) -> dict[str, float]:
    res: dict[str, float] = {}
    for key, pat in {"qps": r"Queries per second:\s+([\d.]+)",
                     "sent": r"Queries sent:\s+(\d+)",
                     "completed": r"Queries completed:\s+(\d+)",
                     "lost": r"Queries lost:\s+(\d+)",
                     "lat_avg": r"Average Latency \(s\):\s+([\d.]+)",
                     "lat_max": r"Average Latency \(s\):\s+[\d.]+\s+\(min [\d.]+, max ([\d.]+)\)",
                     }.items():
        m = re.search(pat, out)
        if m:
            res[key] = float(m.group(1))
    return res


def query_file(path: Path, zone: str, names: list[str]) -> Path:
    lines = []
    for name in names:
        for rtype in ("A", "A", "A", "AAAA", "TXT"):
            lines.append(f"{name} {rtype}")
    lines += [f"{zone} SOA", f"nope.{zone} A", f"www.{zone} A"]
    path.write_text("\n".join(lines) + "\n")
    return path


def dnsperf_cmd(port: int, qfile: Path, seconds: float, *, rate: float | None,
                clients: int = 4, outstanding: int = 200, timeout: float = 2.0) -> list[str]:
    exe = shutil.which("dnsperf")
    if exe is None:
        raise SystemExit("dnsperf not found: apt-get install dnsperf")
    cmd = [exe, "-s", "127.0.0.1", "-p", str(port), "-d", str(qfile), "-l", str(int(seconds)),
           "-c", str(clients), "-q", str(outstanding), "-t", str(timeout)]
    if rate:
        cmd += ["-Q", str(int(rate))]
    return cmd


def percent(a: float, b: float) -> float:
    return 100.0 * (b - a) / a if a else 0.0


# -- the soak -------------------------------------------------------------------------


class Backend:
    """An HTTP backend whose /healthz is 200, or 503 while ``down``."""

    def __init__(self) -> None:
        self.down = False
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(503 if outer.down else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def soak_config(ports: dict[str, int], state: Path, generation: int) -> str:
    regions = {"us": ("us-east1", "us-east1-b", [33.8, -84.4], "127.0.1.0/24"),
               "eu": ("europe-west1", "europe-west1-b", [50.4, 3.8], "127.0.2.0/24"),
               "asia": ("asia-east1", "asia-east1-a", [24.0, 120.5], "127.0.3.0/24")}
    doc: dict[str, Any] = {
        "zone": ZONE, "federation": "fed", "ttl": 5 + generation % 2,
        "nameservers": {f"ns1.{ZONE}": ["127.0.0.1"]},
        "listen": {"dns": ["127.0.0.1:0"], "http": "127.0.0.1:0"},
        "state_dir": str(state),
        "health": {"interval": "500ms", "timeout": "300ms", "rise": 1, "fall": 1},
        "regions": {r: {"location": loc, "zones": [z]} for r, z, loc, _ in regions.values()},
        "clusters": [{
            "name": name, "region": r, "zone": z, "source": "static", "networks": [net],
            "services": [{"name": "nginx", "namespace": "default", "addresses": [IPS[name]],
                          "probe": {"http": f"http://127.0.0.1:{ports[name]}/healthz"}}],
        } for name, (r, z, _, net) in regions.items()],
        "records": [{"name": "www", "type": "A", "value": "192.0.2.80"},
                    {"name": "gen", "type": "TXT", "value": f'"generation {generation}"'}],
    }
    return json.dumps(doc, indent=1)  # JSON is YAML


@dataclass
class ClientStats:
    sent: int = 0
    lost: int = 0
    wrong: int = 0
    examples: list[str] = field(default_factory=list)


def dnspython_client(port: int, stop: threading.Event, stats: ClientStats) -> None:
    """Sequential queries, alternating UDP/TCP and client localities; no retries."""
    allowed = set(IPS.values())
    n = 0
    while not stop.is_set():
        name, source = list(CLIENTS.items())[n % len(CLIENTS)]
        tcp = n % 4 == 3
        n += 1
        q = dns.message.make_query(GLOBAL, "A")
        stats.sent += 1
        try:
            if tcp:
                r = dns.query.tcp(q, "127.0.0.1", port=port, timeout=2, source=source)
            else:
                r = dns.query.udp(q, "127.0.0.1", port=port, timeout=2, source=source)
        except (dns.exception.Timeout, OSError) as exc:
            stats.lost += 1
            if len(stats.examples) < 5:
                stats.examples.append(f"lost {name} tcp={tcp}: {exc!r}")
            continue
        got = {rd.address for rrset in r.answer for rd in rrset if hasattr(rd, "address")}
        if r.rcode() != dns.rcode.NOERROR or not got or not got <= allowed:
            stats.wrong += 1
            if len(stats.examples) < 5:
                stats.examples.append(f"wrong {name}: {r.rcode()} {sorted(got)}")
        time.sleep(0.005)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=2000, help="dnsperf qps (-Q)")
    ap.add_argument("--flap", type=float, default=5.0, help="seconds between us flaps")
    ap.add_argument("--reload", type=float, default=30.0, help="seconds between SIGHUPs")
    ap.add_argument("--sample", type=float, default=3.0, help="seconds between RSS samples")
    ap.add_argument("--warmup", type=float, default=20.0, help="seconds excluded from RSS")
    ap.add_argument("--max-growth", type=float, default=10.0, help="RSS growth limit, %%")
    ap.add_argument("--no-pin", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    args = ap.parse_args()
    seconds = args.minutes * 60

    work = Path(tempfile.mkdtemp(prefix="fedns-soak-"))
    backends = {name: Backend() for name in IPS}
    ports = {name: b.port for name, b in backends.items()}
    cfg = work / "fedns.yaml"
    cfg.write_text(soak_config(ports, work / "state", 0))
    server = Server(cfg, work / "fedns.log", pin=not args.no_pin)
    stop = threading.Event()
    rss: list[tuple[float, int]] = []
    flaps = reloads = 0
    perf_out = ""
    stats = ClientStats()
    try:
        server.wait_started()
        server.wait_ready()
        qfile = query_file(work / "queries.txt", ZONE, [
            GLOBAL, f"nginx.default.fed.svc.us-east1.{ZONE}",
            f"nginx.default.fed.svc.europe-west1-b.europe-west1.{ZONE}", f"gen.{ZONE}"])
        perf = subprocess.Popen(
            pinned(dnsperf_cmd(server.dns_port, qfile, seconds, rate=args.rate), 1,
                   not args.no_pin), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        client = threading.Thread(target=dnspython_client,
                                  args=(server.dns_port, stop, stats), daemon=True)
        client.start()
        t0 = time.monotonic()
        next_flap, next_reload, next_sample = t0 + args.flap, t0 + args.reload, t0
        while (now := time.monotonic()) - t0 < seconds:
            if now >= next_sample:
                rss.append((now - t0, server.rss_kib()))
                next_sample += args.sample
            if now >= next_flap:
                backends["us"].down = not backends["us"].down
                flaps += 1
                next_flap += args.flap
            if now >= next_reload:
                reloads += 1
                cfg.write_text(soak_config(ports, work / "state", reloads))
                server.proc.send_signal(signal.SIGHUP)
                next_reload += args.reload
            if server.proc.poll() is not None:
                print("fedns exited during the soak", file=sys.stderr)
                break
            time.sleep(0.05)
        stop.set()
        client.join(5)
        backends["us"].down = False
        perf_out = perf.communicate(timeout=60)[0]
        metrics = server.get("/metrics")
    finally:
        stop.set()
        rc = server.stop()
        for b in backends.values():
            b.close()
    log = server.log_path.read_text()
    tracebacks = log.count("Traceback")
    errors = [ln for ln in log.splitlines() if " ERROR " in ln]
    applied = log.count("reload_applied")
    failovers = sum(float(m.group(1)) for m in re.finditer(
        r"^fedns_failovers_total\{[^}]*\} ([\d.e+]+)$", metrics, re.M))
    perf_res = parse_dnsperf(perf_out)

    steady = [kib for t, kib in rss if t >= args.warmup]
    fifth = max(1, len(steady) // 5)
    first, last = statistics.median(steady[:fifth]), statistics.median(steady[-fifth:])
    growth = percent(first, last)
    print(f"soak: {seconds:.0f}s, load average {os.getloadavg()[0]:.2f}, "
          f"dnsperf rate {args.rate:.0f} qps, us flapped {flaps}x "
          f"every {args.flap:g}s, {reloads} SIGHUP reloads ({applied} applied)")
    print(f"  dnsperf: sent {perf_res.get('sent', 0):.0f} completed "
          f"{perf_res.get('completed', 0):.0f} lost {perf_res.get('lost', 0):.0f} "
          f"qps {perf_res.get('qps', 0):.0f} avg latency "
          f"{perf_res.get('lat_avg', 0) * 1000:.2f} ms "
          f"max {perf_res.get('lat_max', 0) * 1000:.1f} ms")
    print(f"  dnspython (UDP+TCP, no retry): sent {stats.sent} lost {stats.lost} "
          f"wrong {stats.wrong} {stats.examples}")
    print(f"  failovers counted by fedns: {failovers:.0f}")
    print(f"  RSS: first fifth {first / 1024:.1f} MiB, last fifth {last / 1024:.1f} MiB, "
          f"growth {growth:+.1f}%, max {max(steady) / 1024:.1f} MiB ({len(rss)} samples)")
    print(f"  log: {tracebacks} tracebacks, {len(errors)} ERROR lines; exit status {rc}")
    for line in errors[:5]:
        print(f"    {line[:200]}")
    ok = (stats.lost == 0 and stats.wrong == 0 and tracebacks == 0 and rc == 0
          and applied == reloads and growth <= args.max_growth)
    print(f"  verdict: {'PASS' if ok else 'FAIL'}; work dir {work}")
    if not args.keep and ok:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
