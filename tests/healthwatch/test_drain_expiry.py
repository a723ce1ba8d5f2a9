"""Drains that end by themselves: the engine's expiry timer, re-draining to
extend, a reload, and a restart with expired and unexpired drains."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import pytest

from healthwatch.drains import DrainOptionError
from healthwatch.engine import Engine
from healthwatch.state import DRAINS_FILE
from tests.healthwatch.test_engine import PLACES, Watcher, config, healthy


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def expired_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("drain_expired")]


async def test_a_drain_ends_at_its_expiry_on_the_engines_clock(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    t0 = clock.now
    engine = Engine(config(), clock=clock)
    w = Watcher(engine)
    await engine.start()
    try:
        await w.until(lambda s: len(s.shards) == 3)
        drained = engine.drain("us", reason="kernel upgrade", duration=3600, by="10.0.0.7")
        assert not healthy(drained, "us")
        d = engine.drains.get("us")
        assert d is not None and (d.since, d.until, d.reason) == (t0, t0 + 3600, "kernel upgrade")
        clock.now = t0 + 3599
        assert engine.expire_drains() is drained  # not yet: nothing published
        clock.now = t0 + 3600.5
        with caplog.at_level(logging.INFO, logger="healthwatch.drains"):
            back = engine.expire_drains()
        assert healthy(back, "us") and back.serial > drained.serial
        assert w.seen[-1][1] is back  # published to the subscribers
        assert engine.drains.get("us") is None
        [line] = expired_lines(caplog)
        assert "cluster=us" in line and "reason='kernel upgrade'" in line
    finally:
        await engine.stop()


async def test_the_timer_undrains_and_publishes_in_real_time(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = Engine(config(), state_dir=str(tmp_path))
    w = Watcher(engine)
    await engine.start()
    try:
        await w.until(lambda s: all(healthy(s, c) for c in PLACES))
        with caplog.at_level(logging.INFO, logger="healthwatch.drains"):
            t_drain = time.monotonic()
            assert not healthy(engine.drain("us", reason="short", duration=1.0), "us")
            t_back, snap = await w.until(lambda s: healthy(s, "us"), limit=5.0, since=t_drain)
        assert 0.95 <= t_back - t_drain <= 1.5
        assert snap is engine.snapshot and engine.drains.get("us") is None
        assert len(expired_lines(caplog)) == 1
        on_disk = json.loads((tmp_path / DRAINS_FILE).read_text())
        assert on_disk["clusters"] == [] and on_disk["details"] == []
    finally:
        await engine.stop()


async def test_draining_again_extends_without_publishing_and_rearms() -> None:
    engine = Engine(config())
    w = Watcher(engine)
    await engine.start()
    try:
        await w.until(lambda s: all(healthy(s, c) for c in PLACES))
        drained = engine.drain("us", reason="first", duration=0.5)
        n = len(w.seen)
        # the operator extends it: no new Snapshot, nothing served changed
        assert engine.drain("us", reason="extended", duration=3600) is drained
        assert len(w.seen) == n
        d = engine.drains.get("us")
        assert d is not None and d.reason == "extended"
        # a later, shorter drain: the timer is re-armed for it ...
        t = time.monotonic()
        engine.drain("eu", duration=1.0)
        _, snap = await w.until(lambda s: healthy(s, "eu"), limit=5.0, since=t)
        # ... and by then the first expiry of "us" has long passed: still drained
        assert not healthy(snap, "us") and engine.drains.get("us") is not None
    finally:
        await engine.stop()


async def test_expiry_survives_a_reload_even_of_a_removed_cluster() -> None:
    engine = Engine(config())
    w = Watcher(engine)
    await engine.start()
    try:
        await w.until(lambda s: all(healthy(s, c) for c in PLACES))
        engine.drain("asia", duration=0.6)
        engine.drain("us", duration=1.0)
        await engine.reload(config(clusters=("eu", "us")))  # asia is gone from the config
        t = time.monotonic()
        await w.until(lambda s: len(s.shards) == 2 and healthy(s, "us"), limit=5.0, since=t)
        assert engine.drains.clusters == frozenset()  # asia's drain ended too
    finally:
        await engine.stop()


async def test_restart_drops_expired_drains_and_rearms_the_rest(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    state = str(tmp_path)
    clock = Clock()
    one = Engine(config(), state_dir=state, clock=clock)
    w1 = Watcher(one)
    await one.start()
    await w1.until(lambda s: len(s.shards) == 3)
    one.drain("us", reason="long gone", duration=60)
    one.drain("asia", reason="for good")
    await one.stop()

    # 61 s later: "us" expired while no process ran; "eu" is a version 1 drain
    data = json.loads((tmp_path / DRAINS_FILE).read_text())
    data["shards"].append({"cluster": "eu", "service": "default/nginx"})
    now = time.time()
    data["details"].append({"cluster": "eu", "service": "default/nginx", "reason": "canary",
                            "since": now, "until": now + 61 + 1.0, "by": ""})
    (tmp_path / DRAINS_FILE).write_text(json.dumps(data))
    with caplog.at_level(logging.INFO, logger="healthwatch.drains"):
        two = Engine(config(), state_dir=state, clock=lambda: time.time() + 61)
    [line] = expired_lines(caplog)
    assert "cluster=us" in line and "at_start=True" in line
    assert two.drains.clusters == {"asia"}
    assert json.loads((tmp_path / DRAINS_FILE).read_text())["clusters"] == ["asia"]
    w2 = Watcher(two)
    t = time.monotonic()
    await two.start()
    try:
        _, live = await w2.until(lambda s: not s.stale)
        assert healthy(live, "us") and not healthy(live, "asia")
        # eu's shard drain was re-armed: it ends about a second after the start
        _, snap = await w2.until(lambda s: healthy(s, "eu"), limit=5.0, since=t)
        assert time.monotonic() - t <= 3.0
        assert not healthy(snap, "asia") and two.drains.get("asia") is not None
    finally:
        await two.stop()


async def test_bad_reason_or_duration_changes_nothing() -> None:
    engine = Engine(config())
    before = engine.snapshot
    for kw in ({"reason": "line\nbreak"}, {"duration": 0.0}, {"duration": -1.0},
               {"duration": 8 * 86400.0}, {"reason": "x" * 201}):
        with pytest.raises(DrainOptionError):
            engine.drain("us", **kw)  # type: ignore[arg-type]
    assert engine.drains.entries() == [] and engine.snapshot is before
