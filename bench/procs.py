"""Start fedns, gdnsd and the Python floor pinned to one CPU; read their CPU time from /proc.

``ServerProc.cpu_seconds()`` is utime + stime of the server and every process
below it (``fedns serve`` with workers forks; threads are already counted in
their process's /proc/<pid>/stat), in clock ticks / ``SC_CLK_TCK``.
"""

from __future__ import annotations

import os
import shutil
import socket
import struct
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port(host: str = "127.0.0.1") -> int:
    """A port that is free on ``host`` for both UDP and TCP right now (DNS
    servers bind both). Another process can still take it before the caller
    binds it: a test that starts a server on it should retry on
    "Address already in use".

    The one copy: tests/ports.py re-exports it (tests may import bench
    helpers; bench never imports tests)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(100):
        with socket.socket(family, socket.SOCK_DGRAM) as udp:
            udp.bind((host, 0))
            port = int(udp.getsockname()[1])
            with socket.socket(family, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind((host, port))
                except OSError:
                    continue
                return port
    raise RuntimeError(f"no port free for both UDP and TCP on {host} in 100 tries")


@dataclass(frozen=True, slots=True)
class CpuTimes:
    """One CPU's counters from /proc/stat, in seconds."""

    busy: float  # user + nice + system + irq + softirq
    idle: float  # idle + iowait
    steal: float  # taken by the hypervisor for other guests

    def __sub__(self, other: CpuTimes) -> CpuTimes:
        return CpuTimes(self.busy - other.busy, self.idle - other.idle,
                        self.steal - other.steal)

    @property
    def total(self) -> float:
        return self.busy + self.idle + self.steal


def cpu_times(cpu: int) -> CpuTimes:
    with open("/proc/stat", encoding="ascii") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:]]
                user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
                return CpuTimes((user + nice + system + irq + softirq) / CLK_TCK,
                                (idle + iowait) / CLK_TCK, steal / CLK_TCK)
    raise RuntimeError(f"cpu{cpu} not in /proc/stat")


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        kids.setdefault(ppid, []).append(int(entry))
    return kids


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime (live processes only) of ``pid`` and its descendants."""
    kids = _children()
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
        todo.extend(kids.get(p, ()))
    return total / CLK_TCK


@dataclass
class ServerProc:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def pinned(cmd: list[str], cpu: int | None) -> list[str]:
    return cmd if cpu is None else ["taskset", "-c", str(cpu), *cmd]


def _spawn(cmd: list[str], log: Path,
           env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("wb") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT,
                                env=None if env is None else {**os.environ, **env})


def wait_dns(port: int, proc: subprocess.Popen[bytes], name: str, qname_text: str,
             timeout: float = 60.0, qtype: int = 6) -> None:
    """Until the server answers ``qname_text``/``qtype`` (default SOA) with
    NOERROR and at least one answer record, over UDP."""
    labels = [lab for lab in qname_text.rstrip(".").split(".") if lab]
    qname = b"".join(bytes((len(x),)) + x.encode() for x in labels) + b"\x00"
    query = struct.pack("!HHHHHH", 7, 0, 1, 0, 0, 0) + qname + struct.pack("!HH", qtype, 1)
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.2)
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited with {proc.returncode}")
            try:
                s.sendto(query, ("127.0.0.1", port))
                data = s.recv(4096)
                if len(data) > 12 and data[3] & 0x0F == 0 and data[6:8] != b"\x00\x00":
                    return
            except OSError:
                pass
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer on port {port} within {timeout}s")


def wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"fedns serve exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=1.0) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready within {timeout}s")


def fedns_exe() -> str:
    exe = shutil.which("fedns")
    if exe is None:
        raise SystemExit("fedns not on PATH: pip install -e .")
    return exe


def fedns_python() -> dict[str, str]:
    """The interpreter that runs ``fedns`` (its script's ``#!`` line): path,
    version, and whether the binary links libpython statically (Debian's
    ``python3``, built with PGO and LTO) or as a shared library (pyenv's
    default build: neither). The build moves fedns's figures; see
    docs/performance.md, session 6."""
    exe = fedns_exe()
    with open(exe, encoding="utf-8", errors="replace") as f:
        first = f.readline()
    words = first[2:].split() if first.startswith("#!") else []
    if words and os.path.basename(words[0]) == "env":
        words = words[1:]
    # (a pyenv shim is a shell script that runs the active version's script)
    interp = words[0] if words and "python" in os.path.basename(words[0]) else sys.executable
    real = os.path.realpath(interp)
    try:
        version = subprocess.run([interp, "-c", "import sys; print(sys.version.split()[0])"],
                                 capture_output=True, text=True, timeout=30).stdout.strip()
        linked = subprocess.run(["ldd", real], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as e:
        return {"path": interp, "error": repr(e)}
    return {"path": interp, "binary": real, "version": version or "?",
            "libpython": "shared" if "libpython" in linked else "static"}


def start_fedns(workdir: Path, config: dict[str, object], cpu: int | None,
                zone: str, loop: str = "asyncio", probe_name: str | None = None,
                udp: str | None = None) -> ServerProc:
    """``fedns serve``; ``loop`` goes to FEDNS_LOOP (asyncio or uvloop), ``udp``
    (if given) to FEDNS_UDP (mmsg, thread or loop: ``dnsserver.udp.UDP_MODES``).

    Ready when /readyz says so *and* ``probe_name`` (a name of the data, not
    the apex) has an A answer: /readyz has been seen to turn 200 while the
    first table was still being built (NXDOMAIN for existing names)."""
    cfg = workdir / "fedns.yaml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    listen = config["listen"]
    assert isinstance(listen, dict)
    port = int(str(listen["dns"][0]).rsplit(":", 1)[1])
    http = str(listen["http"])
    log = workdir / "fedns.log"
    cmd = pinned([fedns_exe(), "serve", "-c", str(cfg), "--log-level", "WARNING"], cpu)
    proc = _spawn(cmd, log, {"FEDNS_LOOP": loop, **({"FEDNS_UDP": udp} if udp else {})})
    server = ServerProc("fedns", proc, port, log)
    try:
        wait_http(f"http://{http}/readyz", proc)
        wait_dns(port, proc, "fedns", probe_name or zone, qtype=1 if probe_name else 6)
    except Exception:
        server.stop()
        raise
    return server


def fedns_zone_text(workdir: Path, config: dict[str, object]) -> str:
    """``fedns records`` of ``config``: the static view, in zone-file format."""
    cfg = workdir / "records.yaml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    out = subprocess.run([fedns_exe(), "records", "-c", str(cfg), "--log-level", "ERROR"],
                         capture_output=True, text=True, timeout=120, check=True)
    return out.stdout


def gdnsd_exe() -> str:
    exe = shutil.which("gdnsd") or ("/usr/sbin/gdnsd" if os.path.exists("/usr/sbin/gdnsd")
                                    else None)
    if exe is None:
        raise SystemExit("gdnsd not found: apt-get install gdnsd")
    return exe


def start_gdnsd(workdir: Path, zone: str, zone_text: str, port: int,
                cpu: int | None) -> ServerProc:
    """gdnsd 3.x in the foreground (``start``), one UDP and one TCP thread."""
    base = workdir / "gdnsd"
    for sub in ("zones", "run", "state"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    (base / "config").write_text(
        "options => {\n"
        f'  listen => [ "127.0.0.1:{port}" ]\n'
        "  udp_threads => 1\n"
        "  tcp_threads => 1\n"
        f"  run_dir => {base / 'run'}\n"
        f"  state_dir => {base / 'state'}\n"
        "}\n")
    (base / "zones" / zone.rstrip(".")).write_text(zone_text)
    log = workdir / "gdnsd.log"
    proc = _spawn(pinned([gdnsd_exe(), "-c", str(base), "start"], cpu), log)
    server = ServerProc("gdnsd", proc, port, log)
    try:
        wait_dns(port, proc, "gdnsd", zone)
    except Exception:
        server.stop()
        raise
    return server


def start_pyfloor(workdir: Path, port: int, cpu: int | None) -> ServerProc:
    """``bench/pyfloor.py``: the least per-query work a Python UDP server can do."""
    script = Path(__file__).resolve().parent / "pyfloor.py"
    log = workdir / "pyfloor.log"
    proc = _spawn(pinned([sys.executable, str(script), str(port)], cpu), log)
    server = ServerProc("pyfloor", proc, port, log)
    try:
        wait_dns(port, proc, "pyfloor", "floor.example", qtype=1)
    except Exception:
        server.stop()
        raise
    return server
