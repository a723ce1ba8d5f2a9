"""``fedns_shard_drained`` tells an operator's drain from a failure.

A drained shard is not served, so ``fedns_shard_healthy`` reads 0 for it as
for a dead one; alerts on unhealthy shards (config/prometheus/alerts.yaml)
leave drained ones out with this gauge.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from healthwatch.engine import Engine
from tests.healthwatch.test_engine import Watcher, config


def sample(registry: CollectorRegistry, name: str, cluster: str, region: str) -> float | None:
    return registry.get_sample_value(
        name, {"service": "default/nginx", "cluster": cluster, "region": region})


async def test_a_drain_shows_in_its_own_gauge_and_goes_with_the_undrain() -> None:
    registry = CollectorRegistry()
    engine = Engine(config(), registry=registry)
    w = Watcher(engine)
    await engine.start()
    try:
        await w.until(lambda s: len(s.shards) == 3 and all(x.healthy for x in s.shards))
        assert sample(registry, "fedns_shard_drained", "us", "us-east1") == 0
        engine.drain("us")
        assert sample(registry, "fedns_shard_healthy", "us", "us-east1") == 0
        assert sample(registry, "fedns_shard_drained", "us", "us-east1") == 1
        assert sample(registry, "fedns_shard_drained", "eu", "europe-west1") == 0
        engine.undrain("us")
        assert sample(registry, "fedns_shard_healthy", "us", "us-east1") == 1
        assert sample(registry, "fedns_shard_drained", "us", "us-east1") == 0
        # one service of a cluster
        engine.drain("eu", "default/nginx")
        assert sample(registry, "fedns_shard_drained", "eu", "europe-west1") == 1
    finally:
        await engine.stop()


async def test_the_gauge_goes_with_the_shard() -> None:
    registry = CollectorRegistry()
    engine = Engine(config(), registry=registry)
    w = Watcher(engine)
    await engine.start()
    try:
        await w.until(lambda s: len(s.shards) == 3)
        engine.drain("asia")
        assert sample(registry, "fedns_shard_drained", "asia", "asia-east1") == 1
        await engine.reload(config(clusters=("eu", "us")))
        await w.until(lambda s: len(s.shards) == 2)
        assert sample(registry, "fedns_shard_drained", "asia", "asia-east1") is None
        assert sample(registry, "fedns_shard_healthy", "asia", "asia-east1") is None
    finally:
        await engine.stop()
