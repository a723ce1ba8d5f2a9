"""State files: atomic writes, corrupt files reported and ignored, drains persisted."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from healthwatch.drains import Drains, DrainSet
from healthwatch.errors import StateError
from healthwatch.planner import plan
from healthwatch.state import DRAINS_FILE, SNAPSHOT_FILE, StateStore, atomic_write, read_json
from tests.healthwatch.helpers import ADDR, make_config, reports, svc


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path: Path) -> None:
    p = tmp_path / "sub" / "f.json"
    atomic_write(str(p), '{"a": 1}')
    atomic_write(str(p), '{"a": 2}')
    assert read_json(str(p)) == {"a": 2}
    assert os.listdir(p.parent) == ["f.json"]


def test_atomic_write_error_is_a_state_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StateError):
        atomic_write(str(blocker / "f.json"), "{}")


def test_read_json_missing_and_corrupt(tmp_path: Path) -> None:
    assert read_json(str(tmp_path / "none.json")) is None
    bad = tmp_path / "bad.json"
    bad.write_text('{"serial": 1, ')
    with pytest.raises(StateError, match="corrupt JSON"):
        read_json(str(bad))


def test_snapshot_round_trip_marks_stale(tmp_path: Path) -> None:
    cfg = make_config()
    snap = plan(cfg, reports(svc("use", ADDR["use"])), {}, DrainSet(), 99, 1000.0)
    store = StateStore(str(tmp_path))
    assert store.save_snapshot(snap)
    back = store.load_snapshot(cfg.zone)
    assert back is not None and back.stale and back.serial == 99
    assert back.records == snap.records and dict(back.geo) == dict(snap.geo)
    assert back.shards == snap.shards
    assert store.load_snapshot("other.org.") is None  # zone changed: not ours


@pytest.mark.parametrize("content", ["not json", "[]", '{"serial": "x"}', '{"zone": 1}'])
def test_corrupt_snapshot_is_reported_and_ignored(tmp_path: Path, content: str) -> None:
    (tmp_path / SNAPSHOT_FILE).write_text(content)
    store = StateStore(str(tmp_path))
    assert store.load_snapshot("example.com.") is None
    assert len(store.problems) == 1 and SNAPSHOT_FILE in store.problems[0]


def test_without_state_dir_everything_is_memory_only() -> None:
    store = StateStore(None)
    assert store.load_snapshot("example.com.") is None
    d = Drains(store)
    assert d.load() == DrainSet()
    assert d.drain("eu") is True
    assert d.current.reason("eu", "default/nginx") == "cluster drained"


def test_drains_persist_and_reload(tmp_path: Path) -> None:
    d = Drains(StateStore(str(tmp_path)))
    assert d.drain("eu") and d.drain("use", "default/nginx")
    assert not d.drain("eu")  # already drained: no change
    again = Drains(StateStore(str(tmp_path)))
    assert again.load().names() == DrainSet(frozenset({"eu"}),
                                            frozenset({("use", "default/nginx")}))
    assert again.undrain("eu") and not again.undrain("eu")
    assert Drains(StateStore(str(tmp_path))).load().clusters == frozenset()
    data = json.loads((tmp_path / DRAINS_FILE).read_text())
    assert data["shards"] == [{"cluster": "use", "service": "default/nginx"}]


@pytest.mark.parametrize("content", ["{{{", '{"clusters": "eu"}', '{"shards": [1]}', "7"])
def test_corrupt_drains_reported_and_ignored(tmp_path: Path, content: str) -> None:
    (tmp_path / DRAINS_FILE).write_text(content)
    store = StateStore(str(tmp_path))
    assert Drains(store).load() == DrainSet()
    assert len(store.problems) == 1
