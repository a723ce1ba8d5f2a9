"""healthwatch.heap: pausing the collector during builds, freezing the
serving state after each swap, the growth mark that bounds what frozen
cycles can hold, and the pause metrics."""

from __future__ import annotations

import gc
import threading
import weakref
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from healthwatch.heap import HeapKeeper, paused


class Node:
    """A weak-referenceable object that can sit in a reference cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


def cycle() -> weakref.ref[Node]:
    """A two-object cycle nothing else holds (only the collector frees it)."""
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def tracked(obj: object) -> bool:
    """``obj`` is in a generation the collector walks (not frozen)."""
    return any(o is obj for o in gc.get_objects())


@pytest.fixture(autouse=True)
def clean_gc() -> Iterator[None]:
    """Every test leaves the collector as it found it: enabled, nothing frozen."""
    assert gc.isenabled()
    yield
    gc.unfreeze()
    gc.enable()


@pytest.fixture
def keeper() -> Iterator[HeapKeeper]:
    k = HeapKeeper(growth=1.05)
    k.start()
    yield k
    k.stop()


def grow_heap(keeper: HeapKeeper) -> list[list[int]]:
    """Enough new objects to take the heap past ``keeper``'s growth mark
    (a ``[i]`` is three blocks: the list, its item array, the int)."""
    need = int(keeper.baseline * (keeper.growth - 1)) + 30_000
    return [[i + 1000] for i in range(need // 2)]


def test_paused_nests_and_restores() -> None:
    with paused():
        assert not gc.isenabled()
        with paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause still holds
    assert gc.isenabled()


def test_paused_leaves_a_collector_someone_disabled_disabled() -> None:
    gc.disable()
    with paused():
        pass
    assert not gc.isenabled()


def test_paused_across_threads_enables_when_the_last_one_leaves() -> None:
    entered, release = threading.Event(), threading.Event()

    def other() -> None:
        with paused():
            entered.set()
            release.wait(5)

    t = threading.Thread(target=other)
    t.start()
    assert entered.wait(5)
    with paused():
        pass
    assert not gc.isenabled()  # the other thread's build still runs
    release.set()
    t.join(5)
    assert gc.isenabled()


def test_paused_restores_after_an_exception() -> None:
    with pytest.raises(ValueError), paused():
        raise ValueError("build failed")
    assert gc.isenabled()


def test_settle_freezes_what_is_alive(keeper: HeapKeeper) -> None:
    state = [[i] for i in range(1000)]
    assert tracked(state)
    keeper.settle()
    assert not tracked(state)  # no collection walks it any more
    assert gc.get_freeze_count() >= 1000
    assert keeper.settles == 1 and keeper.full_collections == 0  # the first sets the mark
    assert keeper.baseline == keeper.blocks > 0


def test_a_frozen_object_is_still_freed_by_reference_counting(keeper: HeapKeeper) -> None:
    state = Node()
    ref = weakref.ref(state)
    keeper.settle()
    del state
    assert ref() is None


def test_frozen_cycles_are_collected_once_the_heap_grows(keeper: HeapKeeper) -> None:
    keeper.settle()
    ref = cycle()
    keeper.settle()  # no walk: the cycle is frozen too (what the growth mark is for)
    gc.collect()
    assert ref() is not None
    assert keeper.full_collections == 0
    grown = grow_heap(keeper)
    keeper.settle()
    assert keeper.full_collections == 1
    assert ref() is None
    assert not tracked(grown)  # frozen again after the full collection
    assert keeper.baseline == keeper.blocks


def test_the_mark_follows_a_heap_that_shrank(keeper: HeapKeeper) -> None:
    """After a large state is replaced by a small one, frozen cycles are
    collected once the heap grows by the growth factor above the small one,
    not only once it is back above the large one."""
    big = [[i + 1000] for i in range(200_000)]
    keeper.settle()
    big_mark = keeper.baseline
    del big
    keeper.settle()
    assert keeper.baseline == keeper.blocks < big_mark - 400_000
    ref = cycle()
    grown = grow_heap(keeper)
    assert keeper.baseline * keeper.growth < len(grown) * 2 + keeper.blocks < big_mark
    keeper.settle()
    assert keeper.full_collections == 1
    assert ref() is None


def test_churn_does_not_collect(keeper: HeapKeeper) -> None:
    """A state replaced by one of the same size never grows the heap."""
    state = [[i + 1000] for i in range(20_000)]
    keeper.settle()
    for round_ in range(5):
        state = [[i + 1000 + round_] for i in range(20_000)]
        keeper.settle()
    assert keeper.full_collections == 0
    assert len(state) == 20_000


def test_settle_does_nothing_when_stopped_or_paused() -> None:
    keeper = HeapKeeper()
    state = [[i] for i in range(100)]
    keeper.settle()  # not started
    assert tracked(state) and keeper.settles == 0
    keeper.start()
    try:
        with paused():  # a build runs on another thread
            keeper.settle()
        assert tracked(state) and keeper.settles == 0
    finally:
        keeper.stop()


def test_stop_unfreezes_and_removes_the_callback() -> None:
    keeper = HeapKeeper()
    keeper.start()
    keeper.start()  # idempotent
    assert gc.callbacks.count(keeper._on_gc) == 1
    keeper.settle()
    assert gc.get_freeze_count() > 0
    keeper.stop()
    keeper.stop()
    assert gc.get_freeze_count() == 0
    assert keeper._on_gc not in gc.callbacks


def test_pauses_and_the_heap_are_exported() -> None:
    registry = CollectorRegistry()
    keeper = HeapKeeper(registry, growth=1.05)
    keeper.start()
    try:
        gc.collect(0)
        gc.collect()
        keeper.settle()
        grown = grow_heap(keeper)
        keeper.settle()  # a full collection
    finally:
        keeper.stop()
    value = registry.get_sample_value
    assert (value("fedns_gc_pause_seconds_count", {"generation": "0"}) or 0) >= 1
    # the explicit full collection and settle's
    assert (value("fedns_gc_pause_seconds_count", {"generation": "2"}) or 0) >= 2
    assert (value("fedns_gc_pause_seconds_sum", {"generation": "2"}) or 0) > 0
    assert value("fedns_gc_heap_blocks") == keeper.blocks > len(grown)
    assert value("fedns_gc_full_collections_total") == 1
    before = value("fedns_gc_pause_seconds_count", {"generation": "2"})
    gc.collect()  # after stop: no longer timed
    assert value("fedns_gc_pause_seconds_count", {"generation": "2"}) == before
