"""KubeSource against the simulated API server, through the real kubernetes client."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from config.model import Cluster, Federation, HttpProbe
from healthwatch.kube import KubeSource, make_kube_source
from tests.fakekube import endpoint_slice, ingress, node, service, service_export
from tests.healthwatch.kube.harness import CONFIG, FAST, Harness, shard


async def test_federated_service_appears_with_ready_endpoints(kube: Harness) -> None:
    await kube.start()
    await kube.synced()
    start = time.monotonic()
    kube.api.apply("services", service("web", lb_ips=["192.0.2.10", "2001:db8::10"]))
    kube.api.apply("endpointslices", endpoint_slice("web", ready=2))
    report = await kube.wait_for(lambda r: (s := shard(r, "web")) is not None and s.ready == 2,
                                 within=1.0)
    assert time.monotonic() - start < 1.0
    web = shard(report, "web")
    assert web is not None
    assert web.addresses == ("192.0.2.10", "2001:db8::10")
    assert (web.cluster_ip, web.region, web.zone) == ("10.96.0.10", "us-east1", "us-east1-b")
    assert web.probe is None  # no annotation, no cluster default: no probe


async def test_endpoints_turning_not_ready_give_ready_zero(kube: Harness) -> None:
    kube.api.apply("services", service("web", lb_ips=["192.0.2.10"]))
    kube.api.apply("endpointslices", endpoint_slice("web", ready=2))
    await kube.start()
    await kube.wait_for(lambda r: (s := shard(r, "web")) is not None and s.ready == 2)
    kube.api.apply("endpointslices", endpoint_slice("web", ready=0, not_ready=2))
    await kube.wait_for(lambda r: (s := shard(r, "web")) is not None and s.ready == 0)
    # a second slice of the same service adds up; deleting it subtracts again
    kube.api.apply("endpointslices", endpoint_slice("web", ready=3, name="web-v6", base="fd00::1"))
    await kube.wait_for(lambda r: (s := shard(r, "web")) is not None and s.ready == 3)
    kube.api.delete("endpointslices", "default", "web-v6")
    await kube.wait_for(lambda r: (s := shard(r, "web")) is not None and s.ready == 0)


async def test_non_federated_service_never_appears(kube: Harness) -> None:
    await kube.start()
    await kube.synced()
    kube.api.apply("services", service("private", lb_ips=["192.0.2.1"], annotations=None))
    kube.api.apply("services", service("internal", type="ClusterIP"))
    kube.api.apply("endpointslices", endpoint_slice("private", ready=5))
    kube.api.apply("services", service("public", lb_ips=["192.0.2.2"]))
    await kube.wait_for(lambda r: shard(r, "public") is not None)
    assert all(shard(r, "private") is None and shard(r, "internal") is None for r in kube.reports)
    # un-annotating a federated service removes it
    kube.api.apply("services", service("public", lb_ips=["192.0.2.2"], annotations=None))
    await kube.wait_for(lambda r: shard(r, "public") is None)


async def test_serviceexport_mode(kube: Harness) -> None:
    await kube.start(federation=Federation(mode="serviceexport"))
    await kube.synced()
    kube.api.apply("services", service("api", lb_ips=["192.0.2.3"], annotations=None))
    kube.api.apply("services", service("annotated", lb_ips=["192.0.2.4"]))
    kube.api.apply("serviceexports", service_export("api"))
    await kube.wait_for(lambda r: shard(r, "api") is not None)
    assert shard(kube.last, "annotated") is None
    assert kube.api.lists("serviceexports")
    kube.api.delete("serviceexports", "default", "api")
    await kube.wait_for(lambda r: shard(r, "api") is None)


async def test_label_selector_mode(kube: Harness) -> None:
    await kube.start(federation=Federation(mode="label", label_selector="global=yes"))
    await kube.synced()
    kube.api.apply("services", service("a", lb_ips=["192.0.2.5"], labels={"global": "yes"},
                                       annotations=None))
    kube.api.apply("services", service("b", lb_ips=["192.0.2.6"]))  # annotation does not count
    await kube.wait_for(lambda r: shard(r, "a") is not None)
    assert shard(kube.last, "b") is None
    assert not kube.api.lists("serviceexports")  # not watched outside serviceexport mode


async def test_ingress_hosts_ready_and_node_placement(kube: Harness) -> None:
    for i, zone in enumerate(["eu-west1-c", "eu-west1-c", "eu-west1-d"]):
        kube.api.apply("nodes", node(f"n{i}", region="eu-west1", zone=zone))
    kube.api.apply("services", service("web", type="ClusterIP", annotations=None))
    kube.api.apply("endpointslices", endpoint_slice("web", ready=3))
    kube.api.apply("ingresses", ingress("shop", hosts=["Shop.Example.com", "shop.other.org"],
                                        backend="web", lb_ips=["198.51.100.7"]))
    await kube.start(region=None, zone=None)
    report = await kube.wait_for(lambda r: r.synced and shard(r, "shop", "ingress") is not None)
    ing = shard(report, "shop", "ingress")
    assert ing is not None
    assert (ing.hosts, ing.addresses, ing.ready) == (("shop.example.com.",), ("198.51.100.7",), 3)
    assert (report.region, report.zone) == ("eu-west1", "eu-west1-c")
    assert (ing.region, ing.zone) == ("eu-west1", "eu-west1-c")
    kube.api.apply("endpointslices", endpoint_slice("web", ready=0, not_ready=3))
    await kube.wait_for(lambda r: (s := shard(r, "shop", "ingress")) is not None and s.ready == 0)
    kube.api.apply("nodes", node("n3", region="eu-west1", zone="eu-west1-d"))
    kube.api.apply("nodes", node("n4", region="eu-west1", zone="eu-west1-d"))
    await kube.wait_for(lambda r: r.zone == "eu-west1-d"
                        and (s := shard(r, "shop", "ingress")) is not None
                        and s.zone == "eu-west1-d")


async def test_probe_annotation_and_cluster_default(kube: Harness) -> None:
    kube.api.apply("services", service(
        "web", lb_ips=["192.0.2.9"], ports=(8080,),
        annotations={"fedns.io/federate": "true", "fedns.io/probe": "http:/ready"}))
    kube.api.apply("services", service("db", lb_ips=["192.0.2.8"], ports=(5432,)))
    await kube.start(default_probe="tcp")
    report = await kube.wait_for(lambda r: len(r.shards) == 2)
    web, db = shard(report, "web"), shard(report, "db")
    assert web is not None and web.probe == HttpProbe(url="http://192.0.2.9:8080/ready")
    assert db is not None and db.probe is not None and (db.probe.host, db.probe.port) == (
        "192.0.2.8", 5432)


async def test_kill_marks_unreachable_and_restart_resumes_from_resource_version(
    kube: Harness,
) -> None:
    kube.api.apply("services", service("web", lb_ips=["192.0.2.10"]))
    source = await kube.start()
    await kube.wait_for(lambda r: r.synced and r.reachable and shard(r, "web") is not None)
    lists_before = {w.name: len(kube.api.lists(w.name)) for w in source.watchers}
    rv_before = {w.name: w.resource_version for w in source.watchers}

    await kube.api.kill()
    # (a watch reconnecting while the server dies may first see it hang up)
    down = await kube.wait_for(
        lambda r: not r.reachable and "cannot connect" in (r.last_error or ""))
    assert shard(down, "web") is not None  # the last known state is kept; grace is the engine's
    kube.api.apply("services", service("web", lb_ips=["192.0.2.11"]))  # changes while down
    watches_before = len(kube.api.watches("services"))

    await kube.api.start()
    report = await kube.wait_for(
        lambda r: r.reachable and (s := shard(r, "web")) is not None
        and s.addresses == ("192.0.2.11",))
    assert report.last_error is None
    resumed = kube.api.watches("services")[watches_before:]
    assert resumed and resumed[0].resource_version == rv_before["services"]
    assert {w.name: len(kube.api.lists(w.name)) for w in source.watchers} == lists_before


async def test_gone_leads_to_exactly_one_relist(kube: Harness) -> None:
    kube.api.apply("services", service("web", lb_ips=["192.0.2.10"]))
    source = await kube.start()
    await kube.wait_for(lambda r: r.synced and shard(r, "web") is not None)
    await kube.eventually(lambda: kube.api.open_watches("services") == 1)
    reports_before = len(kube.reports)
    assert len(kube.api.lists("services")) == 1
    kube.api.expire("services")
    watcher = next(w for w in source.watchers if w.name == "services")
    await kube.eventually(lambda: watcher.lists == 2)
    kube.api.apply("services", service("web2", lb_ips=["192.0.2.12"]))
    await kube.wait_for(lambda r: shard(r, "web2") is not None)
    await asyncio.sleep(0.3)  # room for a wrong second relist to show up
    assert len(kube.api.lists("services")) == 2
    assert len(kube.api.lists("endpointslices")) == 1
    # the relist changed nothing: web never left, and only web2 was added
    assert all({s.name for s in r.shards} in ({"web"}, {"web", "web2"})
               for r in kube.reports[reports_before:])


async def test_refused_connection_resumes_with_resource_version_not_relist(
    kube: Harness,
) -> None:
    source = await kube.start()
    await kube.synced()
    await kube.eventually(lambda: kube.api.open_watches("services") == 1)
    kube.api.apply("nodes", node("n1"))  # irrelevant resource moves the global RV
    kube.api.send_bookmark("services")
    watcher = next(w for w in source.watchers if w.name == "services")
    await kube.eventually(lambda: watcher.resource_version == str(kube.api.store.rv))
    await kube.api.restart()
    await kube.eventually(lambda: len(kube.api.watches("services")) >= 2)
    assert kube.api.watches("services")[-1].resource_version == str(kube.api.store.rv)
    assert len(kube.api.lists("services")) == 1


async def test_stream_cut_mid_event_and_malformed_event_are_survived(
    kube: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await kube.start()
    await kube.synced()
    kube.api.cut_next_event("services")
    kube.api.apply("services", service("web", lb_ips=["192.0.2.10"]))
    await kube.wait_for(lambda r: shard(r, "web") is not None)
    assert any("watch_broken resource=services" in m for m in caplog.messages)
    assert len(kube.api.lists("services")) == 1  # resumed, not relisted

    await kube.eventually(lambda: kube.api.open_watches("endpointslices") > 0)
    kube.api.inject_raw("endpointslices", b'{"type":"ADDED","object":{"metadata":\n')
    kube.api.inject_raw("endpointslices", b'{"type":"ADDED","object":{"metadata":{"name":1}}}\n')
    kube.api.apply("endpointslices", endpoint_slice("web", ready=2))
    await kube.wait_for(lambda r: (s := shard(r, "web")) is not None and s.ready == 2)
    assert any("malformed_event resource=endpointslices" in m for m in caplog.messages)
    assert any("malformed_object resource=endpointslices" in m for m in caplog.messages)
    assert kube.last.reachable


async def test_paused_api_server_is_unreachable_until_resumed(kube: Harness) -> None:
    await kube.start()
    await kube.synced()
    kube.api.pause()
    down = await kube.wait_for(lambda r: not r.reachable)
    assert down.last_error and "API not answering" in down.last_error
    kube.api.resume()
    await kube.wait_for(lambda r: r.reachable)


@pytest.mark.parametrize(
    ("kubeconfig", "context", "expected"),
    [
        ("missing.yaml", "fed-a", "file not found"),
        (None, "nope", "context 'nope' not found (have: fed-bad)"),
    ],
)
async def test_wrong_kubeconfig_shows_clear_error_and_others_continue(
    tmp_path: object, kubeconfig: str | None, context: str, expected: str
) -> None:
    good = Harness(str(tmp_path), name="good")
    bad = Harness(str(tmp_path), name="bad")
    try:
        await good.start()
        path = f"{tmp_path}/{kubeconfig}" if kubeconfig else None
        await bad.start(context=context, **({"kubeconfig": path} if path else {}))
        report = await bad.wait_for(lambda r: r.last_error is not None)
        assert expected in (report.last_error or "")
        assert report.last_error and report.last_error.startswith("kubeconfig ")
        assert not report.synced and not report.reachable
        good.api.apply("services", service("web", lb_ips=["192.0.2.10"]))
        await good.wait_for(lambda r: shard(r, "web") is not None)
    finally:
        await good.close()
        await bad.close()


async def test_make_kube_source_builds_a_source() -> None:
    c = Cluster(name="x", region="r", zone="z", source="kubernetes", kubeconfig="/nonexistent")
    source = make_kube_source(c, CONFIG)
    assert isinstance(source, KubeSource) and source.cluster == "x"


async def test_stop_is_prompt_with_open_watches(kube: Harness) -> None:
    source = await kube.start(options=FAST)
    await kube.synced()
    start = time.monotonic()
    await source.stop()
    assert time.monotonic() - start < 3.0  # interrupts blocked watch reads (no 10 s wait)
    assert source.watchers == ()
    await kube.eventually(lambda: kube.api.open_watches() == 0)
