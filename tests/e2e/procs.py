"""Helpers for end-to-end tests: run ``fedns`` as a real process, query it with dig.

Servers are started with port 0 (DNS and HTTP) and their real ports are read
from the ``started`` log line, so parallel runs never race for ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import pytest

STARTED = re.compile(r"\bstarted zone=\S+ dns=127\.0\.0\.1:(\d+)\S* http=127\.0\.0\.1:(\d+)")
DIG = shutil.which("dig")


def fedns_cmd() -> list[str]:
    exe = shutil.which("fedns")
    return [exe] if exe else [sys.executable, "-m", "dnsserver.cli"]


def run_fedns(*args: str, timeout: float = 60.0,
              env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*fedns_cmd(), *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


class Fedns:
    """A running ``fedns`` process whose stdout+stderr lines are collected."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.proc = subprocess.Popen(
            [*fedns_cmd(), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env={**os.environ, **(env or {})}, start_new_session=True)
        self.lines: list[str] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.dns_port = 0
        self.http_port = 0

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._lock:
                self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        with self._lock:
            return "\n".join(self.lines)

    def wait_for(self, pred: Callable[[str], bool], timeout: float = 20.0,
                 what: str = "output") -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            out = self.output
            if pred(out):
                return out
            if self.proc.poll() is not None:
                time.sleep(0.1)
                pytest.fail(f"fedns exited ({self.proc.returncode}) before {what}:\n"
                            f"{self.output}")
            time.sleep(0.05)
        pytest.fail(f"timed out waiting for {what}:\n{self.output}")

    def wait_started(self, timeout: float = 20.0) -> None:
        out = self.wait_for(lambda o: STARTED.search(o) is not None, timeout, "startup")
        m = STARTED.search(out)
        assert m is not None
        self.dns_port, self.http_port = int(m.group(1)), int(m.group(2))

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if http(self.api + "/readyz")[0] == 200:
                return
            time.sleep(0.05)
        pytest.fail(f"not ready in {timeout}s:\n{self.output}")

    def wait_healthy(self, timeout: float = 20.0) -> None:
        """Until every shard is healthy (probes settle after a loaded start)."""
        eventually(lambda: status(self.api)["shards"],
                   lambda shards: bool(shards) and all(s["healthy"] for s in shards),
                   timeout)

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
                pytest.fail(f"fedns did not stop on SIGTERM:\n{self.output}")
        self._reader.join(timeout=5)
        return self.proc.returncode


@contextlib.contextmanager
def serving(cfg: Path) -> Iterator[Fedns]:
    """``fedns serve -c cfg``, started and ready; stopped on exit, which must be clean."""
    srv = Fedns("serve", "-c", str(cfg))
    try:
        srv.wait_started()
        srv.wait_ready()
        yield srv
    finally:
        assert srv.stop() == 0, srv.output


def http(url: str, method: str = "GET", token: str | None = None,
         timeout: float = 5.0) -> tuple[int, str]:
    req = urllib.request.Request(url, method=method, data=b"" if method != "GET" else None)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError as e:
        return 0, str(e)


def status(api: str) -> dict[str, Any]:
    code, body = http(api + "/v1/status")
    assert code == 200, body
    doc: dict[str, Any] = json.loads(body)
    return doc


def dig(port: int, name: str, rtype: str = "A", *, source: str | None = None,
        extra: Sequence[str] = ()) -> list[str]:
    """``dig +short`` answer lines (CNAME targets and addresses, in order)."""
    if DIG is None:
        pytest.skip("dig is not installed (apt-get install dnsutils)")
    cmd = [DIG, "@127.0.0.1", "-p", str(port), "+short", "+tries=1", "+time=2",
           name, rtype, *extra]
    if source:
        cmd += ["-b", source]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stdout + out.stderr
    return [ln for ln in out.stdout.splitlines() if ln and not ln.startswith(";")]


def dig_full(port: int, name: str, rtype: str = "A", *, source: str | None = None) -> str:
    if DIG is None:
        pytest.skip("dig is not installed (apt-get install dnsutils)")
    cmd = [DIG, "@127.0.0.1", "-p", str(port), "+tries=1", "+time=2", name, rtype]
    if source:
        cmd += ["-b", source]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    return out.stdout


def eventually(fn: Callable[[], Any], ok: Callable[[Any], bool], timeout: float,
               interval: float = 0.1) -> tuple[Any, float]:
    """Call ``fn`` until ``ok(result)``; return (result, seconds taken) or fail."""
    start = time.monotonic()
    last: Any = None
    while time.monotonic() - start < timeout:
        last = fn()
        if ok(last):
            return last, time.monotonic() - start
        time.sleep(interval)
    pytest.fail(f"condition not met within {timeout}s; last value: {last!r}")


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


T = TypeVar("T")


class LoopThread:
    """An event loop in a daemon thread, e.g. for simulated Kubernetes APIs
    that must keep serving while the test blocks on a ``fedns`` process."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 15) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any, **kw: Any) -> T:
        """Run a plain function on the loop (the simulator is not thread-safe)."""
        async def wrapper() -> T:
            return fn(*args, **kw)
        return self.run(wrapper())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()
