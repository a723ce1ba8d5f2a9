"""Python's cyclic garbage collector and the long-lived serving state.

At 10,000 services the Snapshot, the planner's state and the answer tables
are about 650,000 objects the collector tracks (Records, CNAME chains, tuples
that hold lists). A full (generation 2) collection walks every one of them:
0.3-0.5 s on a 2-vCPU VM (``bench/snapshot_scale.py``), with the GIL held,
so no thread answers a query meanwhile. Python starts one whenever the
objects promoted since the last one exceed a quarter of the old heap: during
a full build at that size, and later at a moment nobody chose, after enough
churn.

``paused()`` keeps automatic collections off while a build runs: a build
makes hundreds of thousands of objects and no cyclic garbage, and each
collection it triggers walks the growing heap again.

``HeapKeeper.settle()``, called each time a new state serves, ``gc.freeze()``s
every object alive into the permanent generation, which no collection walks:
automatic collections only see what was allocated since, so they stay short.
Settling walks nothing: collecting the young heap first would walk the new
Snapshot's record tuple, 12-16 ms per change at 10,000 services. A frozen
object is still freed by reference counting when its last reference goes (a
replaced state is: it holds no reference cycles, tests/dnsserver/test_heap.py);
only garbage that is part of a reference cycle stays once frozen. That is
bounded by the heap's size: when the interpreter's allocated blocks
(``sys.getallocatedblocks``, a fraction of a millisecond to read) have grown
by a quarter since the last full collection (or since the lowest point
after it, when a large state was replaced by a small one), ``settle``
unfreezes and collects everything once. Churn (a state replaced by one of
the same size) does not grow the heap, so in steady state that full pause
comes rarely, and as the heap grows, no more often than Python's own rule
would start one.

``HeapKeeper`` also times every collection (``gc.callbacks``) into
``fedns_gc_pause_seconds{generation}``: how long the process stopped.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from healthwatch.metrics import PlainHistogram

PAUSE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                 0.25, 0.5, 1.0)
GROWTH = 1.25  # allocated blocks / their number after the last full collection

_lock = threading.Lock()
_depth = 0
_reenable = False


@contextmanager
def paused() -> Iterator[None]:
    """No automatic collection inside (nests, across threads; a collector
    someone else disabled stays disabled)."""
    global _depth, _reenable
    with _lock:
        if _depth == 0:
            _reenable = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _reenable:
                gc.enable()


class HeapKeeper(Collector):
    """Keeps the serving state out of the collector's walks (``settle``) and
    times its pauses; ``start``/``stop`` own the process-wide hooks.

    One per process (``App``, a DNS worker); settle from one thread."""

    def __init__(self, registry: CollectorRegistry | None = None, *,
                 growth: float = GROWTH) -> None:
        self.growth = growth
        self.baseline = 0  # allocated blocks at the lowest settle since the last full collection
        self.blocks = 0  # allocated blocks at the last settle
        self.settles = 0
        self.full_collections = 0  # the ones ``settle`` started
        self.pauses = {g: PlainHistogram(PAUSE_BUCKETS) for g in range(3)}
        self._started_at = 0.0
        self.active = False
        if registry is not None:
            registry.register(self)

    def start(self) -> None:
        if not self.active:
            gc.callbacks.append(self._on_gc)
            self.active = True

    def stop(self) -> None:
        """Remove the callback and give frozen objects back to the collector."""
        if self.active:
            self.active = False
            gc.callbacks.remove(self._on_gc)
            gc.unfreeze()

    def settle(self) -> None:
        """A new state serves: freeze everything alive; collect everything
        once first if the heap grew by ``growth`` since the last time (the
        first settle sets the baseline without a walk)."""
        if not self.active or not gc.isenabled():  # stopped, or a build runs (paused)
            return
        self.settles += 1
        self.blocks = sys.getallocatedblocks()
        if not self.baseline or self.blocks < self.baseline:  # first, or the heap shrank
            self.baseline = self.blocks
        elif self.blocks > self.baseline * self.growth:
            gc.unfreeze()
            gc.collect()
            self.blocks = self.baseline = sys.getallocatedblocks()
            self.full_collections += 1
        gc.freeze()

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started_at = time.perf_counter()
        else:
            hist = self.pauses.get(info.get("generation", 2))
            if hist is not None:
                hist.observe(time.perf_counter() - self._started_at)

    def describe(self) -> Iterator[Metric]:
        return iter(())

    def collect(self) -> Iterator[Metric]:
        pause = HistogramMetricFamily(
            "fedns_gc_pause_seconds",
            "Python garbage collections by generation: how long each stopped the "
            "process (every thread, DNS answers too)", labels=["generation"])
        for gen, hist in self.pauses.items():
            hist.family("", "", [], [str(gen)], pause)
        yield pause
        yield GaugeMetricFamily(
            "fedns_gc_heap_blocks",
            "Memory blocks the interpreter had allocated at the last new state "
            "(a full collection runs when they grew by a quarter)", value=float(self.blocks))
        yield CounterMetricFamily(
            "fedns_gc_full_collections",
            "Full collections started because the heap grew by a quarter",
            value=float(self.full_collections))
