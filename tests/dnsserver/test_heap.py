"""The serving state and the garbage collector (healthwatch/heap.py).

``DnsServer`` freezes each new state once it serves, so a replaced state
must be freed by reference counting alone: a reference cycle in it would
outlive the swap while frozen. These tests swap with the cyclic collector
disabled and require the old state's Resolver to be gone."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from dataclasses import replace

import pytest

from dnsserver.server import DnsServer
from healthwatch.heap import HeapKeeper
from healthwatch.snapshot import Snapshot
from tests.dnsserver import zonefixture as zf


@pytest.fixture
def server() -> Iterator[DnsServer]:
    heap = HeapKeeper()
    heap.start()
    try:
        yield DnsServer(zf.config(), zf.locator(), registry=None, heap=heap)
    finally:
        heap.stop()
        gc.enable()


def snapshot(serial: int) -> Snapshot:
    """The fixture zone without its bad record: the warning it logs carries the
    exception, whose traceback holds the Resolver while pytest keeps the log."""
    snap = zf.snapshot(serial=serial)
    return replace(snap, records=tuple(r for r in snap.records
                                       if not r.name.startswith("bad.")))


def with_www(snap: Snapshot, address: str, serial: int) -> Snapshot:
    """``snap`` with www's A record changed (one name: an incremental build)."""
    records = tuple(sorted(replace(r, value=address) if r.name == f"www.{zf.ZONE}"
                           and r.rtype == "A" else r for r in snap.records))
    return replace(snap, serial=serial, records=records)


def test_a_state_replaced_by_a_full_build_is_freed_without_the_collector(
        server: DnsServer) -> None:
    assert server.update(snapshot(1))
    state = server.handler.state
    assert state is not None
    old = weakref.ref(state.resolver)
    frozen = gc.get_freeze_count()
    assert frozen > 0  # settled: the state is frozen
    del state
    gc.disable()
    bigger = snapshot(2)  # one more name: a full build
    bigger = replace(bigger, records=tuple(sorted(
        (*bigger.records, zf.rec(f"new.{zf.ZONE}", "A", "192.0.2.9")))))
    assert server.update(bigger)
    assert server.metrics.table_builds == 2
    assert old() is None


def test_states_replaced_by_incremental_builds_are_freed_without_the_collector(
        server: DnsServer) -> None:
    snap = snapshot(1)
    assert server.update(snap)
    gc.disable()
    olds = []
    for i in range(2, 6):
        state = server.handler.state
        assert state is not None
        olds.append(weakref.ref(state.resolver))
        del state
        snap = with_www(snap, f"192.0.2.{i}", i)
        assert server.update(snap)
        new = server.handler.state
        assert new is not None and new.table.stats.rebuilt_names < 5  # incremental (of 49)
        del new
    assert [r() for r in olds] == [None] * len(olds)
