"""The engine with three simulated member clusters publishes the service names."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from prometheus_client import CollectorRegistry

from config.model import Cluster, Config, Region
from healthwatch.engine import Engine
from healthwatch.kube import KubeSource
from healthwatch.planner import global_name, region_name, zone_name
from healthwatch.snapshot import Snapshot
from tests.fakekube import FakeKubeAPI, endpoint_slice, ingress, service, write_kubeconfig
from tests.healthwatch.kube.harness import FAST

PLACES = {"a": ("us-east1", "us-east1-b"), "b": ("europe-west1", "europe-west1-b"),
          "c": ("asia-east1", "asia-east1-a")}


@dataclass
class Fleet:
    config: Config
    apis: dict[str, FakeKubeAPI]
    engine: Engine


@pytest.fixture
async def fleet(tmp_path: object) -> AsyncIterator[Fleet]:
    apis = {name: FakeKubeAPI(name=name) for name in PLACES}
    for api in apis.values():
        await api.start()
    path = write_kubeconfig(os.path.join(str(tmp_path), "kubeconfig"),
                            [api.kubeconfig_entry(f"fed-{n}") for n, api in apis.items()])
    regions = tuple(
        Region(r, loc, (z,)) for (r, z), loc in zip(
            PLACES.values(), [(33.8, -84.4), (50.4, 3.8), (24.0, 121.0)], strict=True))
    clusters = tuple(
        Cluster(name=n, region=r, zone=z, source="kubernetes", kubeconfig=path, context=f"fed-{n}")
        for n, (r, z) in PLACES.items())
    config = Config(zone="example.com.", federation="fed", regions=regions, clusters=clusters)
    engine = Engine(config, source_factory=lambda c, cfg: KubeSource(c, cfg, FAST))
    await engine.start()
    try:
        yield Fleet(config, apis, engine)
    finally:
        await engine.stop()
        for api in apis.values():
            await api.kill()


def _values(snap: Snapshot, name: str) -> set[str]:
    flat = {r.value for r in snap.records if r.name == name}
    for answer in snap.geo.get(name, {}).values():
        flat |= {r.value for r in answer if r.rtype in ("A", "AAAA")}
    return flat


async def _published(engine: Engine, cond: object, within: float) -> Snapshot:
    changed = asyncio.Event()
    engine.subscribe(lambda _s: changed.set())

    async def loop() -> Snapshot:
        while not cond(engine.snapshot):  # type: ignore[operator]
            changed.clear()
            await changed.wait()
        return engine.snapshot

    return await asyncio.wait_for(loop(), within)


async def test_engine_publishes_global_region_and_az_names_within_a_second(fleet: Fleet) -> None:
    await _published(fleet.engine, lambda s: fleet.engine.ready, within=5.0)
    cfg = fleet.config
    names = (global_name(cfg, "default", "web"),
             region_name(cfg, "default", "web", "us-east1"),
             zone_name(cfg, "default", "web", "us-east1", "us-east1-b"))
    fleet.apis["a"].apply("services", service("web", lb_ips=["192.0.2.10"]))
    fleet.apis["a"].apply("endpointslices", endpoint_slice("web", ready=2))
    await _published(fleet.engine, lambda s: all("192.0.2.10" in _values(s, n) for n in names),
                     within=1.0)
    # endpoints not ready: the AZ name falls back (CNAME) and stops answering the address
    fleet.apis["a"].apply("endpointslices", endpoint_slice("web", ready=0, not_ready=2))
    await _published(fleet.engine, lambda s: "192.0.2.10" not in _values(s, names[2]),
                     within=1.0)


async def test_default_source_factory_reports_kube_metrics_to_the_engine_registry(
        tmp_path: object) -> None:
    api = FakeKubeAPI(name="a")
    await api.start()
    path = write_kubeconfig(os.path.join(str(tmp_path), "kubeconfig"),
                            [api.kubeconfig_entry("fed-a")])
    region, zone = PLACES["a"]
    config = Config(zone="example.com.", federation="fed",
                    regions=(Region(region, (33.8, -84.4), (zone,)),),
                    clusters=(Cluster(name="a", region=region, zone=zone, source="kubernetes",
                                      kubeconfig=path, context="fed-a"),))
    registry = CollectorRegistry()
    engine = Engine(config, registry=registry)  # no source_factory: the default one
    await engine.start()
    try:
        await _published(engine, lambda s: engine.ready, within=10.0)
        contact = registry.get_sample_value(
            "fedns_kube_last_contact_timestamp_seconds", {"cluster": "a"})
        assert contact is not None and contact > 0
    finally:
        await engine.stop()
        await api.kill()


async def test_wildcard_ingress_in_two_clusters_is_one_geo_name_beside_a_concrete_host(
        fleet: Fleet) -> None:
    """``*.shop`` in a (us-east1) and b (europe-west1) merges into one geo-aware
    wildcard name answered per locality; ``a.shop`` (only in a) is published
    too, as its own geo name (it blocks the wildcard for itself at the server)."""
    await _published(fleet.engine, lambda s: fleet.engine.ready, within=5.0)
    wild, concrete = "*.shop.example.com.", "a.shop.example.com."
    fleet.apis["a"].apply("ingresses", ingress("shop", hosts=["*.shop.example.com",
                                                              "a.shop.example.com"],
                                               lb_ips=["192.0.2.10"]))
    fleet.apis["b"].apply("ingresses", ingress("shop", hosts=["*.shop.example.com"],
                                               lb_ips=["192.0.2.20"]))
    snap = await _published(
        fleet.engine, lambda s: _values(s, wild) == {"192.0.2.10", "192.0.2.20"}, within=2.0)

    def a_of(name: str, locality: str) -> set[str]:
        return {r.value for r in snap.geo_answer(name, locality) or () if r.rtype == "A"}

    assert a_of(wild, "region:us-east1") == {"192.0.2.10"}
    assert a_of(wild, "region:europe-west1") == {"192.0.2.20"}
    assert a_of(wild, "zone:europe-west1-b") == {"192.0.2.20"}
    assert a_of(wild, "") == {"192.0.2.10", "192.0.2.20"}
    assert a_of(concrete, "region:europe-west1") == {"192.0.2.10"}  # only a has it
    assert not any(r.name in (wild, concrete) for r in snap.records)  # geo names only
