"""One resource kind of a member cluster fails (RBAC 403, 500s, garbage) while the
others work: only the shards fed by the failing kind are affected, the rest of
the cluster keeps being served (SPEC §4: the cluster is reachable for them)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import pytest

from healthwatch.engine import Engine
from healthwatch.kube import KubeSource
from healthwatch.snapshot import ShardStatus, Snapshot
from tests.fakekube import FakeKubeAPI, endpoint_slice, ingress, node, service
from tests.healthwatch.kube.harness import FAST, Harness, One, one_cluster, shard, watched
from tests.healthwatch.kube.test_engine_kube import _published

GRACE = 0.3
WEB = "default/web"
SHOP = "ingress:default/shop"


@pytest.fixture
async def one(tmp_path: object) -> AsyncIterator[One]:
    """One simulated cluster running a federated Service and a federated Ingress,
    watched by an engine whose ``cluster_grace`` is short."""
    api = FakeKubeAPI(name="a")
    await api.start()
    api.apply("services", service("web", lb_ips=["192.0.2.10"]))
    api.apply("endpointslices", endpoint_slice("web", ready=2))
    api.apply("ingresses", ingress("shop", hosts=["shop.example.com"], backend="web",
                                   lb_ips=["198.51.100.7"]))
    async with watched(api, one_cluster(api, str(tmp_path), GRACE)) as one:
        yield one


def _shard(snap: Snapshot, service: str) -> ShardStatus | None:
    return next((s for s in snap.shards if s.service == service), None)


def _healthy(snap: Snapshot, service: str) -> bool:
    s = _shard(snap, service)
    return s is not None and s.healthy


def _cut_off(snap: Snapshot, service: str) -> bool:
    s = _shard(snap, service)
    return s is not None and not s.healthy and s.reason.startswith("cluster unreachable")


@pytest.mark.parametrize("status", [403, 500])
async def test_failing_ingress_watch_cuts_off_only_ingress_shards(one: One, status: int) -> None:
    await _published(one.engine, lambda s: _healthy(s, WEB) and _healthy(s, SHOP), within=5.0)
    one.api.fail("ingresses", status, on="any")  # e.g. the ClusterRole lost ingresses
    one.api.drop_watches("ingresses")
    # past the grace the Ingress shard (its data is stale) goes; the planner
    # judges both kinds at the same time, so the Service must still be served
    snap = await _published(one.engine, lambda s: _cut_off(s, SHOP), within=5.0)
    assert _healthy(snap, WEB), _shard(snap, WEB)
    assert any(v.value == "192.0.2.10" for v in snap.geo_answer(
        "web.default.fed.svc.example.com.", "") or ())
    cluster = snap.clusters[0]
    assert not cluster.reachable and cluster.last_error is not None
    assert cluster.last_error.startswith(f"watch ingresses: HTTP {status}")


async def test_failing_endpointslice_watch_cuts_off_both_kinds(one: One) -> None:
    await _published(one.engine, lambda s: _healthy(s, WEB) and _healthy(s, SHOP), within=5.0)
    one.api.fail("endpointslices", 500, on="any")
    one.api.drop_watches("endpointslices")
    await _published(one.engine, lambda s: _cut_off(s, WEB) and _cut_off(s, SHOP), within=5.0)


async def test_ingresses_forbidden_from_the_start(kube: Harness) -> None:
    kube.api.apply("services", service("web", lb_ips=["192.0.2.10"]))
    kube.api.apply("endpointslices", endpoint_slice("web", ready=2))
    kube.api.fail("ingresses", 403, on="any")
    await kube.start()
    report = await kube.wait_for(
        lambda r: shard(r, "web") is not None and r.unreachable_kinds == frozenset({"ingress"}))
    assert not report.reachable and report.last_error is not None
    assert report.last_error.startswith("list ingresses: HTTP 403 Forbidden")
    assert report.affects("ingress") and not report.affects("service")


async def test_failing_node_watch_affects_no_shard(kube: Harness) -> None:
    kube.api.apply("nodes", node("n1", region="eu-west1", zone="eu-west1-c"))
    kube.api.apply("services", service("web", lb_ips=["192.0.2.10"]))
    await kube.start(region=None, zone=None)
    await kube.wait_for(lambda r: r.synced and r.reachable and r.zone == "eu-west1-c")
    kube.api.fail("nodes", 403, on="any")
    kube.api.drop_watches("nodes")
    report = await kube.wait_for(lambda r: not r.reachable)
    assert report.unreachable_kinds == frozenset()
    assert not report.affects("service") and not report.affects("ingress")
    assert report.zone == "eu-west1-c"  # placement stays as last seen


async def test_api_not_answering_affects_every_kind(kube: Harness) -> None:
    await kube.start()
    await kube.synced()
    kube.api.pause()
    report = await kube.wait_for(lambda r: not r.reachable)
    assert report.unreachable_kinds is None
    assert report.affects("service") and report.affects("ingress")
    kube.api.resume()


async def test_restart_with_ingresses_forbidden_replaces_the_stale_zone(tmp_path: object) -> None:
    """After a restart the persisted zone is served (stale) until the sources
    have synced; a ClusterRole without Ingresses must not keep it forever."""
    state = os.path.join(str(tmp_path), "state")
    api = FakeKubeAPI(name="a")
    await api.start()
    api.apply("services", service("web", lb_ips=["192.0.2.10"]))
    api.apply("endpointslices", endpoint_slice("web", ready=2))
    config = one_cluster(api, str(tmp_path), GRACE)

    def engine() -> Engine:
        return Engine(config, state_dir=state,
                      source_factory=lambda c, cfg: KubeSource(c, cfg, FAST))

    def answers(snap: Snapshot) -> set[str]:
        return {r.value for r in snap.geo_answer("web.default.fed.svc.example.com.", "") or ()}

    first = engine()
    await first.start()
    try:
        await _published(first, lambda s: answers(s) == {"192.0.2.10"}, within=5.0)
    finally:
        await first.stop()
    api.fail("ingresses", 403, on="any")
    api.apply("services", service("web", lb_ips=["192.0.2.11"]))  # changed while down
    second = engine()
    assert second.snapshot.stale and answers(second.snapshot) == {"192.0.2.10"}
    await second.start()
    try:
        snap = await _published(second, lambda s: not s.stale, within=5.0)
        assert answers(snap) == {"192.0.2.11"}
        assert snap.clusters[0].synced and not snap.clusters[0].reachable
        assert len(api.lists("ingresses")) >= 1  # it keeps asking, with backoff
    finally:
        await second.stop()
        await api.kill()
