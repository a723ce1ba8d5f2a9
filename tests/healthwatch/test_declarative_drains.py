"""Drains every replica applies alike: the config's ``drains`` and the
``fedns.io/drain`` annotation (carried on ``ShardSpec.drain``), merged with
the drain API's per-process drains. Never written to the state dir; the
config's end with a reload or their ``until``; an undrain through the API
cannot end them."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import pytest

from config.loader import load
from config.model import ConfigDrain
from healthwatch.drains import DeclaredDrainError, Drain, DrainSet
from healthwatch.engine import Engine
from healthwatch.model import ClusterReport, ShardSpec
from healthwatch.state import DRAINS_FILE
from tests.healthwatch.test_drain_expiry import Clock
from tests.healthwatch.test_engine import (
    ManualSource,
    Watcher,
    config,
    healthy,
    manual_factory,
)


def drained(engine: Engine, cluster: str, service: str | None = None) -> list[str]:
    """The sources that drain this cluster or shard now (in the engine's order)."""
    return [d.source for d in engine.drains.drains_of(cluster, service)]


async def test_a_config_drain_drains_and_a_reload_without_it_undrains() -> None:
    cfg = replace(config(), drains=(ConfigDrain("us", reason="kernel upgrade"),))
    engine = Engine(cfg)
    w = Watcher(engine)
    await engine.start()
    try:
        _, snap = await w.until(lambda s: len(s.shards) == 3 and healthy(s, "eu"))
        assert not healthy(snap, "us")
        us = next(s for s in snap.shards if s.cluster == "us")
        assert us.drained and us.reason == "cluster drained"
        d = engine.drains.get("us")
        assert d is not None and (d.source, d.reason, d.until) == ("config", "kernel upgrade",
                                                                   None)
        assert drained(engine, "us") == ["config"]
        t = time.monotonic()
        await engine.reload(config())
        await w.until(lambda s: healthy(s, "us"), since=t)
        assert engine.drains.get("us") is None and engine.drains.entries() == []
    finally:
        await engine.stop()


async def test_a_config_drain_of_a_shard_drains_only_that_shard() -> None:
    cfg = replace(config(), drains=(ConfigDrain("eu", "default/nginx"),
                                    ConfigDrain("asia", "ingress:web/shop")))
    engine = Engine(cfg)
    w = Watcher(engine)
    await engine.start()
    try:
        _, snap = await w.until(lambda s: len(s.shards) == 3 and healthy(s, "us"))
        assert not healthy(snap, "eu") and healthy(snap, "asia")
        assert engine.drains.shards == {("eu", "default/nginx"), ("asia", "ingress:web/shop")}
    finally:
        await engine.stop()


async def test_config_drains_end_at_their_until_on_the_engines_clock(
        caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    t0 = clock.now
    cfg = replace(config(), drains=(ConfigDrain("us", reason="window", until=t0 + 3600),
                                    ConfigDrain("eu", until=t0 - 1)))  # over already
    engine = Engine(cfg, clock=clock)
    w = Watcher(engine)
    await engine.start()
    try:
        _, snap = await w.until(lambda s: len(s.shards) == 3 and healthy(s, "asia"))
        assert not healthy(snap, "us") and healthy(snap, "eu")
        assert engine.drains.get("eu") is None
        d = engine.drains.get("us")
        assert d is not None and d.until == t0 + 3600 and d.source == "config"
        clock.now = t0 + 3599
        assert engine.expire_drains() is snap  # not yet: nothing published
        assert engine.drains.get("us") is not None
        clock.now = t0 + 3600.5
        with caplog.at_level(logging.INFO, logger="healthwatch.drains"):
            back = engine.expire_drains()
        assert healthy(back, "us") and engine.drains.get("us") is None
        assert w.seen[-1][1] is back
        lines = [r.getMessage() for r in caplog.records
                 if r.getMessage().startswith("drain_expired")]
        assert len(lines) == 1 and "cluster=us" in lines[0] and "source=config" in lines[0]
    finally:
        await engine.stop()


async def test_the_expiry_timer_fires_for_a_config_drains_until() -> None:
    engine = Engine(replace(config(), drains=(ConfigDrain("us", until=time.time() + 1.0),)))
    w = Watcher(engine)
    await engine.start()
    try:
        _, snap = await w.until(lambda s: len(s.shards) == 3 and healthy(s, "eu"))
        assert not healthy(snap, "us")
        # no one calls expire_drains: the engine's own timer ends it
        await w.until(lambda s: healthy(s, "us"), limit=5.0)
        assert engine.drains.get("us") is None
    finally:
        await engine.stop()


async def test_an_api_drain_and_a_config_drain_of_one_target_both_show(
        tmp_path: Path) -> None:
    engine = Engine(replace(config(), drains=(ConfigDrain("us", reason="planned"),)),
                    state_dir=str(tmp_path))
    w = Watcher(engine)
    await engine.start()
    try:
        await w.until(lambda s: len(s.shards) == 3 and not healthy(s, "us"))
        engine.drain("us", reason="now", by="10.0.0.7")  # harmless: one more source
        assert drained(engine, "us") == ["api", "config"]
        api = engine.drains.get("us")  # the API's drain first: the one the API can end
        assert api is not None and (api.source, api.reason, api.by) == ("api", "now",
                                                                        "10.0.0.7")
        assert [(d.target, d.source) for d in engine.drains.entries()] == [
            ("us", "api"), ("us", "config")]
        engine.undrain("us")  # ends the API's drain only
        assert drained(engine, "us") == ["config"]
        assert not healthy(engine.snapshot, "us")
        # what the API's undrain would still find in the way
        assert engine.drains.covering("us") == ["us (config)"]
    finally:
        await engine.stop()


async def test_undrain_of_a_target_only_the_config_drains_is_refused() -> None:
    engine = Engine(replace(config(), drains=(ConfigDrain("us"),
                                              ConfigDrain("eu", "default/nginx")),
                            source_path="/etc/fedns/fedns.yaml"))
    with pytest.raises(DeclaredDrainError) as info:
        engine.undrain("us")
    assert "drained by the config (drains: {cluster: us} in /etc/fedns/fedns.yaml)" \
        in str(info.value)
    assert "remove it there and reload" in str(info.value)
    with pytest.raises(DeclaredDrainError) as info:
        engine.undrain("eu", "default/nginx")
    assert "{cluster: eu, service: default/nginx}" in str(info.value)
    assert drained(engine, "us") == ["config"]  # nothing changed
    engine.undrain("asia")  # not drained at all: fine, as before


async def test_declared_drains_are_never_written_to_the_state_dir(tmp_path: Path) -> None:
    made: dict[str, list[ManualSource]] = {}
    cfg = replace(config(clusters=("eu", "us")), drains=(ConfigDrain("us", reason="planned"),))
    engine = Engine(cfg, state_dir=str(tmp_path), source_factory=manual_factory(made))
    w = Watcher(engine)
    await engine.start()
    try:
        emit = made["eu"][0].emit
        assert emit is not None
        spec = ShardSpec("eu", "service", "default", "nginx", addresses=("192.0.2.20",),
                         ready=1, drain="bad canary")
        emit(ClusterReport("eu", (spec,), last_contact=time.time()))
        await w.until(lambda s: any(x.cluster == "eu" and x.drained for x in s.shards))
        engine.drain("eu", reason="api")
        assert drained(engine, "us") == ["config"]
        assert drained(engine, "eu", "default/nginx") == ["annotation"]
    finally:
        await engine.stop()
    saved = json.loads((tmp_path / DRAINS_FILE).read_text())
    assert saved["clusters"] == ["eu"] and saved["shards"] == []
    assert [d["reason"] for d in saved["details"]] == ["api"]
    assert "config" not in json.dumps(saved) and "canary" not in json.dumps(saved)
    # a replica started on that state dir with a config without the drain
    again = Engine(config(clusters=("eu", "us")), state_dir=str(tmp_path))
    assert [(d.target, d.source) for d in again.drains.entries()] == [("eu", "api")]


async def test_the_annotation_drains_a_shard_while_its_report_says_so() -> None:
    made: dict[str, list[ManualSource]] = {}
    engine = Engine(config(clusters=("eu", "us")), source_factory=manual_factory(made))
    w = Watcher(engine)
    await engine.start()
    try:
        emit_eu, emit_us = made["eu"][0].emit, made["us"][0].emit
        assert emit_eu is not None and emit_us is not None

        def eu(drain: str | None) -> ClusterReport:
            shards = (ShardSpec("eu", "service", "default", "nginx", addresses=("192.0.2.20",),
                                ready=1, drain=drain),
                      ShardSpec("eu", "ingress", "web", "shop", addresses=("192.0.2.21",),
                                ready=1, hosts=("shop.example.com.",), drain="ingress too"))
            return ClusterReport("eu", shards, last_contact=time.time())

        us = ClusterReport("us", (ShardSpec("us", "service", "default", "nginx",
                                            addresses=("192.0.2.10",), ready=1),),
                           last_contact=time.time())
        emit_us(us)
        emit_eu(eu("bad canary, INC-1"))
        _, snap = await w.until(lambda s: len(s.shards) == 3 and healthy(s, "us"))
        nginx = next(s for s in snap.shards if s.cluster == "eu" and s.service == "default/nginx")
        assert nginx.drained and not nginx.healthy and nginx.reason == "shard drained"
        d = engine.drains.get("eu", "default/nginx")
        assert d is not None and (d.source, d.reason) == ("annotation", "bad canary, INC-1")
        assert engine.drains.get("eu", "ingress:web/shop") is not None
        with pytest.raises(DeclaredDrainError) as info:
            engine.undrain("eu", "default/nginx")
        assert ("drained by the annotation fedns.io/drain on service default/nginx "
                "in cluster eu") in str(info.value)
        with pytest.raises(DeclaredDrainError) as info:
            engine.undrain("eu", "ingress:web/shop")
        assert "on ingress web/shop in cluster eu" in str(info.value)

        # another cluster's report leaves eu's annotation drains alone
        since = d.since
        emit_us(replace(us, last_contact=time.time()))
        assert engine.drains.get("eu", "default/nginx") == d and d.since == since

        t = time.monotonic()
        emit_eu(eu(None))  # the annotation removed (or set to "false")
        _, snap = await w.until(lambda s: any(x.cluster == "eu" and x.healthy
                                              for x in s.shards), since=t)
        assert engine.drains.get("eu", "default/nginx") is None
        assert engine.drains.get("eu", "ingress:web/shop") is not None
    finally:
        await engine.stop()


async def test_a_removed_cluster_takes_its_annotation_drains_along() -> None:
    made: dict[str, list[ManualSource]] = {}
    engine = Engine(config(clusters=("eu", "us")), source_factory=manual_factory(made))
    await engine.start()
    try:
        emit = made["eu"][0].emit
        assert emit is not None
        emit(ClusterReport("eu", (ShardSpec("eu", "service", "default", "nginx",
                                            addresses=("192.0.2.20",), ready=1, drain=""),)))
        assert engine.drains.shards == {("eu", "default/nginx")}
        await engine.reload(config(clusters=("us",)))
        assert engine.drains.entries() == []
    finally:
        await engine.stop()


CONFIG = """\
zone: example.com.
federation: myfed
regions:
  us-east1: {location: [33.8, -84.4], zones: [us-east1-b]}
  europe-west1: {location: [50.4, 3.8], zones: [europe-west1-b]}
clusters:
  - name: us
    zone: us-east1-b
    services: [{name: nginx, namespace: default, addresses: [192.0.2.10], ready: 1}]
  - name: eu
    zone: europe-west1-b
    services: [{name: nginx, namespace: default, addresses: [192.0.2.20], ready: 1}]
"""


async def test_two_replicas_reading_one_config_drain_alike(tmp_path: Path) -> None:
    """The point of config drains: every replica that loads the file (the
    ConfigMap) drains the same targets, and ends them with the same reload;
    an API drain stays in the process that took it."""
    path = tmp_path / "fedns.yaml"
    path.write_text(CONFIG + "drains:\n  - {cluster: us, reason: kernel upgrade}\n")
    replicas = [Engine(load(str(path)), state_dir=str(tmp_path / f"state{i}")) for i in (1, 2)]
    watchers = [Watcher(e) for e in replicas]
    for e in replicas:
        await e.start()
    try:
        for w in watchers:
            _, snap = await w.until(lambda s: len(s.shards) == 2 and healthy(s, "eu"))
            assert not healthy(snap, "us")
        replicas[0].drain("eu", reason="emergency")  # one replica only
        assert not healthy(replicas[0].snapshot, "eu") and healthy(replicas[1].snapshot, "eu")

        path.write_text(CONFIG)  # the drain removed from the ConfigMap
        t = time.monotonic()
        for e in replicas:
            await e.reload(load(str(path)))
        for w in watchers:
            await w.until(lambda s: healthy(s, "us"), since=t)
        assert [e.drains.get("us") for e in replicas] == [None, None]
    finally:
        for e in replicas:
            await e.stop()


def test_drain_sets_keep_one_drain_per_target_and_source() -> None:
    """A bare API drain (a version 1 file) next to a config drain of the same
    target keeps both; the file holds only the API's."""
    merged = DrainSet.of([Drain("us"), Drain("us", source="config", reason="planned"),
                          Drain("eu", "default/nginx", source="annotation")])
    assert [(d.target, d.source, d.reason) for d in merged.entries()] == [
        ("us", "api", ""), ("us", "config", "planned"), ("eu/default/nginx", "annotation", "")]
    assert merged.sources("us") == ["api", "config"]
    assert merged.get("us") == Drain("us")
    doc = merged.to_dict()
    assert (doc["clusters"], doc["shards"], doc["details"]) == (["us"], [], [])
    only_declared = DrainSet.of([Drain("us", source="config")])
    assert only_declared.to_dict()["clusters"] == []
