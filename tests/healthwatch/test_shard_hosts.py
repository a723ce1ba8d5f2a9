"""``ShardStatus.hosts``: an Ingress shard's rule hosts in the Snapshot.

Filled by the planner from the spec, kept through JSON (last-known-good
state and worker processes), absent (empty) in a Snapshot persisted by a
version without the field, and no reason for the planner to replace the
status objects of unchanged shards.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from healthwatch.drains import DrainSet
from healthwatch.plan_state import Planner
from healthwatch.planner import plan
from healthwatch.snapshot import Snapshot
from healthwatch.state import SNAPSHOT_FILE, StateStore
from tests.healthwatch.helpers import ADDR, ZONE, ing, make_config, reports, svc

SHOP = "shop.example.com."
WILD = "*.apps.example.com."
SPECS = (svc("use", ADDR["use"]), svc("eu", ADDR["eu"]),
         ing("use", "192.0.2.30", hosts=(SHOP, WILD)),
         ing("eu", "192.0.2.31", hosts=(SHOP,)))

# A Snapshot as the version before ``ShardStatus.hosts`` wrote it (its shards
# have no "hosts" key).
OLD_SHAPE = {
    "serial": 7, "generated_at": 1000.0, "zone": ZONE, "ttl": 30,
    "records": [[ZONE, "NS", 30, "ns1.example.com."]],
    "geo": {SHOP: {"": [[SHOP, "A", 30, "192.0.2.31"]]}},
    "localities": [""],
    "shards": [
        {"service": "ingress:default/web", "cluster": "use", "region": "us-east1",
         "zone": "us-east1-b", "addresses": ["192.0.2.30"], "hostnames": [], "ready": 0,
         "healthy": False, "reason": "ready endpoints 0 < min_ready 1", "drained": False,
         "changed_at": 990.0},
        {"service": "default/nginx", "cluster": "eu", "region": "europe-west1",
         "zone": "europe-west1-b", "addresses": ["192.0.2.2"], "hostnames": [], "ready": 1,
         "healthy": True, "reason": "ok", "drained": False, "changed_at": 990.0},
    ],
    "clusters": [], "stale": False, "failovers": [],
}


def test_the_planner_puts_an_ingress_shards_hosts_in_its_status() -> None:
    snap = plan(make_config(), reports(*SPECS), {}, DrainSet(), 1, 1000.0)
    hosts = {(s.cluster, s.service): s.hosts for s in snap.shards}
    assert hosts == {("use", "default/nginx"): (), ("eu", "default/nginx"): (),
                     ("use", "ingress:default/web"): (SHOP, WILD),
                     ("eu", "ingress:default/web"): (SHOP,)}


def test_hosts_survive_json_and_the_state_file(tmp_path: Path) -> None:
    cfg = make_config()
    snap = plan(cfg, reports(*SPECS), {}, DrainSet(), 1, 1000.0)
    back = Snapshot.from_json(snap.to_json())
    assert back == snap
    assert all(type(s.hosts) is tuple for s in back.shards)
    store = StateStore(str(tmp_path))
    assert store.save_snapshot(snap)
    saved = json.loads((tmp_path / SNAPSHOT_FILE).read_text())
    assert sorted(s["hosts"] for s in saved["shards"]) == [[], [], [SHOP], [SHOP, WILD]]
    loaded = store.load_snapshot(cfg.zone)
    assert loaded is not None and loaded.shards == snap.shards


def test_a_snapshot_written_without_hosts_still_loads(tmp_path: Path) -> None:
    (tmp_path / SNAPSHOT_FILE).write_text(json.dumps(OLD_SHAPE))
    store = StateStore(str(tmp_path))
    snap = store.load_snapshot(ZONE)
    assert store.problems == []
    assert snap is not None and snap.stale and snap.serial == 7
    assert [(s.service, s.hosts, s.reason) for s in snap.shards] == [
        ("ingress:default/web", (), "ready endpoints 0 < min_ready 1"),
        ("default/nginx", (), "ok")]
    # written again, it has the field (empty)
    assert Snapshot.from_json(snap.to_json()) == snap


@pytest.mark.parametrize("hosts", ['"shop.example.com."', "[1]", "null"])
def test_bad_hosts_in_the_state_file_are_reported_and_ignored(tmp_path: Path,
                                                               hosts: str) -> None:
    data = json.loads(json.dumps(OLD_SHAPE))
    data["shards"][0]["hosts"] = json.loads(hosts)
    (tmp_path / SNAPSHOT_FILE).write_text(json.dumps(data))
    store = StateStore(str(tmp_path))
    assert store.load_snapshot(ZONE) is None
    [problem] = store.problems
    assert "hosts must be a list of strings" in problem and "use/ingress:default/web" in problem


def test_unchanged_shards_keep_their_status_objects() -> None:
    """Every spec a new object with its hosts in a new tuple and a new weight
    (so every shard is judged again), and one Ingress not ready: only that
    Ingress's status is a new object (``healthwatch.metrics`` and the
    ``previous`` comparison rely on ``is``)."""
    cfg = make_config()
    planner = Planner()
    first = planner.plan(cfg, reports(*SPECS), {}, DrainSet(), 1, 1000.0)
    relisted = [dataclasses.replace(s, hosts=tuple(list(s.hosts)), weight=5)
                for s in SPECS]
    relisted[3] = dataclasses.replace(relisted[3], ready=0)  # eu's Ingress: not ready
    second = planner.plan(cfg, reports(*relisted), {}, DrainSet(), 2, 1001.0,
                          previous=first)
    before = {(s.cluster, s.service): s for s in first.shards}
    changed = [(s.cluster, s.service) for s in second.shards
               if s is not before[(s.cluster, s.service)]]
    assert changed == [("eu", "ingress:default/web")]
    [eu] = [s for s in second.shards if s.cluster == "eu" and s.service.startswith("ingress")]
    assert eu.hosts == (SHOP,) and not eu.healthy and eu.changed_at == 1001.0
