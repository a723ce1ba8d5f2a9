"""Gateway API (HTTPRoutes on Gateways) as a source of federated hosts, learned
through the real kubernetes client from the simulated API server on 127.0.0.1."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from config.model import Federation
from healthwatch.engine import Engine
from healthwatch.kube import KubeSource
from healthwatch.kube.resources import resources
from healthwatch.kube.translate import make_marker
from healthwatch.model import ClusterReport
from healthwatch.snapshot import ShardStatus, Snapshot
from tests.fakekube import (
    FakeKubeAPI,
    endpoint_slice,
    gateway,
    httproute,
    ingress,
    listener,
    service,
)
from tests.healthwatch.backends import Backend
from tests.healthwatch.kube.harness import FAST, Harness, One, one_cluster, shard, watched
from tests.healthwatch.kube.test_engine_kube import _published

GATEWAY_API = "gateway.networking.k8s.io"
SHOP = "shop.example.com."
ROUTE = "httproute:default/shop"
DEPLOY = Path(__file__).resolve().parents[3] / "config" / "deploy"


def _answer(snap: Snapshot, name: str = SHOP) -> set[str]:
    return {r.value for r in snap.geo_answer(name, "") or ()}


def _status(snap: Snapshot, service: str = ROUTE) -> ShardStatus | None:
    return next((s for s in snap.shards if s.service == service), None)


def _route_ready(api: FakeKubeAPI, ready: int) -> None:
    api.apply("endpointslices", endpoint_slice("web", ready=ready))


@pytest.fixture
async def one(tmp_path: object) -> AsyncIterator[One]:
    """One simulated cluster with a federated HTTPRoute ``shop`` on the accepted
    Gateway ``gw`` (192.0.2.5), backed by the Service ``web``; an engine watches it."""
    api = FakeKubeAPI(name="a")
    await api.start()
    api.apply("services", service("web", type="ClusterIP", annotations=None))
    _route_ready(api, 2)
    api.apply("gateways", gateway("gw", addresses=["192.0.2.5"]))
    api.apply("httproutes", httproute("shop", hostnames=["shop.example.com"], backends=["web"]))
    async with watched(api, one_cluster(api, str(tmp_path), 5.0)) as one:
        yield one


async def test_route_hostname_answers_with_the_gateway_address_and_follows_it(one: One) -> None:
    snap = await _published(one.engine, lambda s: _answer(s) == {"192.0.2.5"}, within=5.0)
    route = _status(snap)
    assert route is not None and route.healthy and route.ready == 2
    assert route.hosts == (SHOP,)
    one.api.apply("gateways", gateway("gw", addresses=["192.0.2.6"]))  # the LB moved
    await _published(one.engine, lambda s: _answer(s) == {"192.0.2.6"}, within=5.0)


async def test_route_without_ready_backends_is_unhealthy(one: One) -> None:
    await _published(one.engine, lambda s: _answer(s) == {"192.0.2.5"}, within=5.0)
    _route_ready(one.api, 0)
    snap = await _published(one.engine, lambda s: (r := _status(s)) is not None
                            and not r.healthy, within=5.0)
    route = _status(snap)
    assert route is not None and route.reason == "ready endpoints 0 < min_ready 1"


async def test_only_hostnames_the_listener_accepts_are_answered(one: One) -> None:
    await _published(one.engine, lambda s: _answer(s) == {"192.0.2.5"}, within=5.0)
    pay = "pay.example.com."
    one.api.apply("gateways", gateway("gw", addresses=["192.0.2.5"],
                                      listeners=[listener(hostname="pay.example.com")]))
    one.api.apply("httproutes", httproute("shop", hostnames=["shop.example.com",
                                                              "pay.example.com"],
                                          backends=["web"]))
    snap = await _published(one.engine, lambda s: _answer(s, pay) == {"192.0.2.5"}
                            and not _answer(s), within=5.0)
    route = _status(snap)
    assert route is not None and route.healthy and route.hosts == (pay,)
    assert snap.geo_answer(SHOP, "") is None  # not a name at all


async def test_route_whose_only_backend_weighs_zero_is_unhealthy(one: One) -> None:
    await _published(one.engine, lambda s: _answer(s) == {"192.0.2.5"}, within=5.0)
    one.api.apply("httproutes", httproute("shop", hostnames=["shop.example.com"],
                                          backends=["web"], weights={"web": 0}))
    snap = await _published(one.engine, lambda s: (r := _status(s)) is not None
                            and not r.healthy, within=5.0)
    route = _status(snap)
    assert route is not None and route.ready == 0  # web still has 2 ready endpoints
    assert route.reason == "ready endpoints 0 < min_ready 1"


async def test_default_http_probe_of_a_route_reaches_its_listener_port(tmp_path: object) -> None:
    """A Gateway (127.0.0.1) whose only listener is on a free port, not 80:
    the cluster's ``default_probe: http`` reaches the server there, with the
    route's host, so the route is healthy by its probe."""
    backend = Backend(expect_host="shop.example.com")
    await backend.start()
    try:
        api = FakeKubeAPI(name="a")
        await api.start()
        api.apply("gateways", gateway("gw", addresses=["127.0.0.1"],
                                      listeners=[listener(port=backend.port)]))
        api.apply("httproutes", httproute("shop", hostnames=["shop.example.com"]))
        config = one_cluster(api, str(tmp_path), 5.0)
        config = replace(config, clusters=(replace(config.clusters[0], default_probe="http"),))
        async with watched(api, config) as one:
            snap = await _published(one.engine, lambda s: (r := _status(s)) is not None
                                    and r.reason.startswith(("probe ok", "probe failed")),
                                    within=5.0)
    finally:
        await backend.stop()
    route = _status(snap)
    assert route is not None and (route.healthy, route.reason) == (True, "probe ok")
    assert backend.seen_hosts and set(backend.seen_hosts) == {"shop.example.com"}


async def test_route_is_a_shard_only_once_its_gateway_accepts_it(kube: Harness) -> None:
    kube.api.apply("gateways", gateway("gw", addresses=["192.0.2.5"]))
    kube.api.apply("httproutes", httproute("shop", hostnames=["shop.example.com"],
                                           accepted=False))
    await kube.start()
    report = await kube.synced()
    assert shard(report, "shop", "httproute") is None
    kube.api.apply("httproutes", httproute("shop", hostnames=["shop.example.com"]))
    report = await kube.wait_for(lambda r: shard(r, "shop", "httproute") is not None)
    route = shard(report, "shop", "httproute")
    assert route is not None and (route.hosts, route.addresses) == ((SHOP,), ("192.0.2.5",))
    assert route.ready == 1  # no Service backends: counts as one, as an Ingress does


async def test_deleting_the_gateway_takes_the_addresses_from_its_routes(kube: Harness) -> None:
    kube.api.apply("gateways", gateway("gw", addresses=["192.0.2.5"], hostnames=["lb.aws.com"]))
    kube.api.apply("httproutes", httproute("shop", hostnames=["shop.example.com"]))
    await kube.start()
    await kube.wait_for(lambda r: (s := shard(r, "shop", "httproute")) is not None
                        and s.addresses == ("192.0.2.5",) and s.hostnames == ("lb.aws.com.",))
    kube.api.delete("gateways", "default", "gw")
    report = await kube.wait_for(lambda r: (s := shard(r, "shop", "httproute")) is not None
                                 and not s.addresses)
    route = shard(report, "shop", "httproute")
    assert route is not None and route.hostnames == ()


async def test_unmarked_routes_are_ignored_in_annotation_and_label_modes(kube: Harness) -> None:
    kube.api.apply("gateways", gateway("gw", addresses=["192.0.2.5"]))
    kube.api.apply("httproutes", httproute("plain", hostnames=["plain.example.com"],
                                           annotations=None))
    kube.api.apply("httproutes", httproute("tagged", hostnames=["tagged.example.com"],
                                           annotations=None, labels={"fed": "yes"}))
    await kube.start(federation=Federation(mode="label", label_selector="fed=yes"))
    report = await kube.wait_for(lambda r: r.synced and shard(r, "tagged", "httproute")
                                 is not None)
    assert shard(report, "plain", "httproute") is None


async def test_hostnames_outside_the_zone_or_refused_are_not_published(
        kube: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="healthwatch.kube")
    kube.api.apply("gateways", gateway("gw", addresses=["192.0.2.5"]))
    kube.api.apply("httproutes", httproute("mixed", hostnames=[
        "*.example.com", "web.default.fed.svc.us-east1.example.com", "shop.example.com",
        "shop.other.org"]))
    kube.api.apply("httproutes", httproute("away", hostnames=["shop.other.org"]))
    await kube.start()
    report = await kube.wait_for(lambda r: r.synced and shard(r, "mixed", "httproute")
                                 is not None)
    mixed = shard(report, "mixed", "httproute")
    assert mixed is not None and mixed.hosts == (SHOP,)
    assert shard(report, "away", "httproute") is None  # no host inside the zone: no shard
    ignored = sorted(r.getMessage() for r in caplog.records
                     if r.getMessage().startswith("ingress_host_ignored"))
    assert ignored == [
        "ingress_host_ignored object=httproute/default/mixed host='*.example.com.' "
        "reason=wildcard_at_apex",
        "ingress_host_ignored object=httproute/default/mixed "
        "host='web.default.fed.svc.us-east1.example.com.' reason=inside_generated_names"]


async def test_route_and_ingress_of_the_same_name_are_two_shards(kube: Harness) -> None:
    kube.api.apply("gateways", gateway("gw", addresses=["192.0.2.5"]))
    kube.api.apply("httproutes", httproute("shop", hostnames=["shop.example.com"]))
    kube.api.apply("ingresses", ingress("shop", hosts=["shop.example.com"],
                                        lb_ips=["198.51.100.7"]))
    await kube.start()
    report = await kube.wait_for(lambda r: shard(r, "shop", "httproute") is not None
                                 and shard(r, "shop", "ingress") is not None)
    route, ing = shard(report, "shop", "httproute"), shard(report, "shop", "ingress")
    assert route is not None and ing is not None
    assert (route.addresses, ing.addresses) == (("192.0.2.5",), ("198.51.100.7",))
    assert {route.service, ing.service} == {ROUTE, "ingress:default/shop"}


async def test_drain_of_the_route_leaves_the_ingress_of_the_same_name(tmp_path: object) -> None:
    api = FakeKubeAPI(name="a")
    await api.start()
    api.apply("gateways", gateway("gw", addresses=["192.0.2.5"]))
    api.apply("httproutes", httproute("shop", hostnames=["shop.example.com"]))
    api.apply("ingresses", ingress("shop", hosts=["shop.example.com"], lb_ips=["198.51.100.7"]))
    engine = Engine(one_cluster(api, str(tmp_path), 5.0),
                    source_factory=lambda c, cfg: KubeSource(c, cfg, FAST))
    await engine.start()
    try:
        await _published(engine, lambda s: _answer(s) == {"192.0.2.5", "198.51.100.7"}, 5.0)
        engine.drain("a", ROUTE)
        snap = await _published(engine, lambda s: _answer(s) == {"198.51.100.7"}, 5.0)
        route = _status(snap)
        assert route is not None and route.drained and not route.healthy
    finally:
        await engine.stop()
        await api.kill()


# -- clusters without the Gateway API ------------------------------------------------

def _clean(report: ClusterReport) -> bool:
    return (report.synced and report.reachable and report.last_error is None
            and shard(report, "web") is not None and shard(report, "shop", "ingress") is not None)


def _messages(caplog: pytest.LogCaptureFixture, event: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(event)]


async def test_cluster_without_the_gateway_api_syncs_and_serves_as_before(
        kube: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="healthwatch")
    kube.api.unserve(GATEWAY_API)  # the CRDs are not installed: lists answer 404
    kube.api.apply("services", service("web", lb_ips=["192.0.2.10"]))
    kube.api.apply("endpointslices", endpoint_slice("web", ready=2))
    kube.api.apply("ingresses", ingress("shop", hosts=["shop.example.com"], backend="web",
                                        lb_ips=["198.51.100.7"]))
    await kube.start()
    report = await kube.wait_for(_clean)
    assert report.unreachable_kinds is None and report.unreachable_since is None
    await kube.eventually(lambda: len(kube.api.lists("httproutes")) >= 3)  # checked again
    assert all(r.injected is None for r in kube.api.lists("httproutes"))  # a real 404
    assert _clean(kube.last)
    assert len(_messages(caplog, "api_not_served resource=httproutes")) == 1  # once
    # the CRDs are installed later: the routes are found without a restart
    kube.api.serve(GATEWAY_API)
    kube.api.apply("gateways", gateway("gw", addresses=["192.0.2.5"]))
    kube.api.apply("httproutes", httproute("shop", hostnames=["shop.example.com"]))
    report = await kube.wait_for(lambda r: (s := shard(r, "shop", "httproute")) is not None
                                 and s.addresses == ("192.0.2.5",))
    assert _clean(report)


async def test_gateway_api_removed_while_watched_drops_its_routes(kube: Harness) -> None:
    kube.api.apply("gateways", gateway("gw", addresses=["192.0.2.5"]))
    kube.api.apply("httproutes", httproute("shop", hostnames=["shop.example.com"]))
    await kube.start()
    await kube.wait_for(lambda r: shard(r, "shop", "httproute") is not None)
    kube.api.unserve(GATEWAY_API)  # the CRDs are deleted: the watches end, 404 from now on
    kube.api.drop_watches("httproutes")
    kube.api.drop_watches("gateways")
    report = await kube.wait_for(lambda r: shard(r, "shop", "httproute") is None)
    assert report.reachable and report.last_error is None


async def test_engine_is_ready_and_publishes_without_the_gateway_api(
        kube: Harness, tmp_path: object) -> None:
    api = kube.api  # the engine watches it; the harness only stops it
    api.unserve(GATEWAY_API)
    await api.start()
    api.apply("services", service("web", lb_ips=["192.0.2.10"]))
    api.apply("endpointslices", endpoint_slice("web", ready=2))
    engine = Engine(one_cluster(api, str(tmp_path), 0.3),  # a short grace: no cut-off either
                    source_factory=lambda c, cfg: KubeSource(c, cfg, FAST))
    await engine.start()
    try:
        web = "web.default.fed.svc.example.com."
        await _published(engine, lambda s: engine.ready and _answer(s, web) == {"192.0.2.10"},
                         within=5.0)
        await kube.eventually(lambda: len(api.lists("gateways")) >= 4)  # > grace later
        snap = engine.snapshot
        assert engine.ready and _answer(snap, web) == {"192.0.2.10"}
        [cluster] = snap.clusters
        assert cluster.synced and cluster.reachable and cluster.last_error is None
    finally:
        await engine.stop()


async def test_gateway_api_forbidden_degrades_the_same_but_says_so_once(
        kube: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="healthwatch")
    kube.api.fail("httproutes", 403, on="any", message="httproutes.gateway.networking.k8s.io "
                  "is forbidden: User \"fedns\" cannot list resource \"httproutes\"")
    kube.api.apply("services", service("web", lb_ips=["192.0.2.10"]))
    kube.api.apply("endpointslices", endpoint_slice("web", ready=2))
    await kube.start()
    report = await kube.wait_for(lambda r: r.synced and r.reachable and shard(r, "web"))
    await kube.eventually(lambda: len(kube.api.lists("httproutes")) >= 3)
    report = kube.last
    assert report.synced and report.reachable and report.unreachable_kinds is None
    assert report.last_error is not None
    assert report.last_error.startswith("list httproutes: HTTP 403 Forbidden")
    assert len(_messages(caplog, "api_forbidden resource=httproutes")) == 1
    # RBAC granted: the note goes
    kube.api.clear_faults("httproutes")
    await kube.wait_for(lambda r: r.last_error is None and r.reachable)


def _api_errors(reg: CollectorRegistry, resource: str) -> float | None:
    return reg.get_sample_value("fedns_kube_api_errors_total",
                                {"cluster": "a", "resource": resource, "op": "list"})


async def test_gateway_api_not_served_is_no_api_error(kube: Harness) -> None:
    reg = CollectorRegistry()
    kube.api.unserve(GATEWAY_API)
    await kube.start(registry=reg)
    await kube.synced()
    await kube.eventually(lambda: len(kube.api.lists("httproutes")) >= 3
                          and len(kube.api.lists("gateways")) >= 3)
    assert _api_errors(reg, "httproutes") == 0 and _api_errors(reg, "gateways") == 0


async def test_gateway_api_forbidden_counts_one_api_error_per_refusal(kube: Harness) -> None:
    reg = CollectorRegistry()
    kube.api.fail("httproutes", 403, on="any")
    await kube.start(registry=reg)
    await kube.synced()
    await kube.eventually(lambda: len(kube.api.lists("httproutes")) >= 3)
    assert _api_errors(reg, "httproutes") == 1  # not one per retry
    assert _api_errors(reg, "gateways") == 0
    kube.api.clear_faults("httproutes")  # RBAC granted
    await kube.wait_for(lambda r: r.last_error is None and r.reachable)
    kube.api.fail("httproutes", 403, on="any")  # and revoked: the next list is refused
    seen = len(kube.api.lists("httproutes"))
    kube.api.expire("httproutes")
    await kube.eventually(lambda: len(kube.api.lists("httproutes")) >= seen + 3)
    assert _api_errors(reg, "httproutes") == 2


# -- RBAC -------------------------------------------------------------------------------

@pytest.mark.parametrize("manifest", ["rbac.yaml", "member-rbac.yaml"])
def test_cluster_roles_grant_every_watched_resource(manifest: str) -> None:
    docs = [d for d in yaml.safe_load_all((DEPLOY / manifest).read_text()) if d]
    [role] = [d for d in docs if d["kind"] == "ClusterRole"]
    granted = {(group, res) for rule in role["rules"] if {"get", "list", "watch"} <= set(
        rule["verbs"]) for group in rule["apiGroups"] for res in rule["resources"]}
    watched = resources(make_marker(Federation()), mode="serviceexport", nodes=True,
                        gateway_api=True)
    assert {(r.group, r.name) for r in watched} <= granted
    assert (GATEWAY_API, "httproutes") in {(r.group, r.name) for r in watched}
