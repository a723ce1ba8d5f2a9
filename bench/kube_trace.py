"""``fedns`` with timestamps at each stage of the change path (for kube_bench --trace).

    python bench/kube_trace.py serve -c fedns.yaml

Wraps a few methods (no source file is changed) so that each call writes
``TRACE <point> <time.perf_counter()>`` to stderr. perf_counter is
CLOCK_MONOTONIC on Linux, the same clock in every process, so the bench
can line the points up with the moment it changed the simulator.

Points, in path order:
  watch_line      Watcher._handle: a watch-stream line read (watch thread)
  source_event    KubeSource._on_changed: the event reached the event loop
  source_flush    KubeSource._flush: coalescing over, report built + emitted
  plan_start      Engine._plan: planner lock taken (worker thread)
  plan_end        Engine._plan returned
  publish         Engine._publish: subscribers (the DNS server) called
  dns_installed   DnsServer._install: the new answer table is live

Besides, ``TDUR <name> <start> <milliseconds>`` for the calls on the event
loop whose cost is paid per change (per report or per publish), see DURATIONS.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from dnsserver import cli
from dnsserver.rebuild import Rebuilder
from dnsserver.server import DnsServer
from healthwatch.engine import Engine
from healthwatch.hostnames import ResolvingSource
from healthwatch.kube.source import KubeSource
from healthwatch.kube.watch import Watcher
from healthwatch.metrics import HealthMetrics


def _mark(point: str) -> None:
    os.write(2, f"TRACE {point} {time.perf_counter():.6f}\n".encode())


def _wrap(cls: type, method: str, point: str, end: str | None = None) -> None:
    original: Callable[..., Any] = getattr(cls, method)

    @functools.wraps(original)
    def traced(*args: Any, **kw: Any) -> Any:
        _mark(point)
        try:
            return original(*args, **kw)
        finally:
            if end is not None:
                _mark(end)

    setattr(cls, method, traced)


def _time(cls: type, method: str, name: str) -> None:
    original: Callable[..., Any] = getattr(cls, method)

    @functools.wraps(original)
    def timed(*args: Any, **kw: Any) -> Any:
        start = time.perf_counter()
        try:
            return original(*args, **kw)
        finally:
            end = time.perf_counter()
            os.write(2, f"TDUR {name} {start:.6f} {(end - start) * 1000:.3f}\n".encode())

    setattr(cls, method, timed)


DURATIONS = [  # (class, method, name): where each runs, see kube_bench's table
    (KubeSource, "_flush", "KubeSource._flush"),
    (ResolvingSource, "_on_report", "ResolvingSource._on_report"),
    (Engine, "_on_report", "Engine._on_report"),
    (Engine, "_sync_probes", "Engine._sync_probes"),
    (Engine, "_plan_inputs", "Engine._plan_inputs"),
    (Engine, "_publish", "Engine._publish"),
    (HealthMetrics, "published", "HealthMetrics.published"),
    (Rebuilder, "submit", "Rebuilder.submit"),
]


def install() -> None:
    for cls, method, name in DURATIONS:
        _time(cls, method, name)
    _wrap(Watcher, "_handle", "watch_line")
    _wrap(KubeSource, "_on_changed", "source_event")
    _wrap(KubeSource, "_flush", "source_flush")
    _wrap(Engine, "_plan", "plan_start", "plan_end")
    _wrap(Engine, "_publish", "publish")
    _wrap(DnsServer, "_install", "dns_installed")


if __name__ == "__main__":
    install()
    sys.exit(cli.main(sys.argv[1:]))
