"""fedns_kube_* metrics, counted by real watches against the simulated API server."""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry

from healthwatch.kube import kube_metrics
from tests.fakekube import endpoint_slice, service
from tests.healthwatch.kube.harness import Harness, shard


def value(reg: CollectorRegistry, name: str, **labels: str) -> float | None:
    return reg.get_sample_value(name, labels)


def events(reg: CollectorRegistry, resource: str, kind: str, cluster: str = "a") -> float:
    got = value(reg, "fedns_kube_events_total", cluster=cluster, resource=resource, type=kind)
    return got or 0.0


async def test_events_by_type_and_last_contact(kube: Harness) -> None:
    reg = CollectorRegistry()
    before = time.time()
    await kube.start(registry=reg)
    await kube.synced()
    # every watched resource has its restart/relist series from the start, at 0
    for res in ("services", "endpointslices", "ingresses"):
        assert value(reg, "fedns_kube_watch_restarts_total", cluster="a", resource=res) == 0
        assert value(reg, "fedns_kube_relists_total", cluster="a", resource=res) == 0
    contact = value(reg, "fedns_kube_last_contact_timestamp_seconds", cluster="a")
    assert contact is not None and before <= contact <= time.time()

    kube.api.apply("services", service("web", lb_ips=["192.0.2.10"]))
    kube.api.apply("endpointslices", endpoint_slice("web", ready=2))
    await kube.wait_for(lambda r: (s := shard(r, "web")) is not None and s.ready == 2)
    kube.api.apply("services", service("web", lb_ips=["192.0.2.11"]))
    await kube.wait_for(lambda r: (s := shard(r, "web")) is not None
                        and s.addresses == ("192.0.2.11",))
    kube.api.delete("services", "default", "web")
    await kube.wait_for(lambda r: shard(r, "web") is None)
    assert events(reg, "services", "ADDED") == 1
    assert events(reg, "services", "MODIFIED") == 1
    assert events(reg, "services", "DELETED") == 1
    assert events(reg, "endpointslices", "ADDED") == 1
    assert events(reg, "ingresses", "ADDED") == 0
    later = value(reg, "fedns_kube_last_contact_timestamp_seconds", cluster="a")
    assert later is not None and later >= contact
    # nothing broke: no restarts, no relists
    assert value(reg, "fedns_kube_watch_restarts_total", cluster="a", resource="services") == 0
    assert value(reg, "fedns_kube_relists_total", cluster="a", resource="services") == 0


async def test_broken_stream_counts_a_restart_and_gone_a_relist(kube: Harness) -> None:
    reg = CollectorRegistry()
    source = await kube.start(registry=reg)
    await kube.synced()
    kube.api.cut_next_event("services")
    kube.api.apply("services", service("web", lb_ips=["192.0.2.10"]))
    await kube.wait_for(lambda r: shard(r, "web") is not None)
    restarts = value(reg, "fedns_kube_watch_restarts_total", cluster="a", resource="services")
    assert restarts == 1
    assert value(reg, "fedns_kube_relists_total", cluster="a", resource="services") == 0

    kube.api.expire("services")
    watcher = next(w for w in source.watchers if w.name == "services")
    await kube.eventually(lambda: watcher.lists == 2 and watcher.watches == 3)
    assert value(reg, "fedns_kube_relists_total", cluster="a", resource="services") == 1
    assert value(reg, "fedns_kube_watch_restarts_total", cluster="a", resource="services") == 2
    assert events(reg, "services", "ERROR") == 1  # the 410 Gone event itself
    assert value(reg, "fedns_kube_relists_total", cluster="a", resource="endpointslices") == 0


async def test_malformed_events_are_counted(kube: Harness) -> None:
    reg = CollectorRegistry()
    await kube.start(registry=reg)
    await kube.synced()
    await kube.eventually(lambda: kube.api.open_watches("endpointslices") > 0)
    kube.api.inject_raw("endpointslices", b"{not json\n")
    kube.api.inject_raw("endpointslices", b'{"type":"ADDED","object":{"metadata":{"name":1}}}\n')
    kube.api.apply("services", service("web", lb_ips=["192.0.2.10"]))
    kube.api.apply("endpointslices", endpoint_slice("web", ready=1))
    await kube.wait_for(lambda r: (s := shard(r, "web")) is not None and s.ready == 1)
    assert events(reg, "endpointslices", "malformed") == 2
    assert events(reg, "endpointslices", "ADDED") == 2  # the broken object and the good one


async def test_clusters_share_a_registry_and_stop_removes_only_their_series(
        tmp_path: object) -> None:
    reg = CollectorRegistry()
    a, b = Harness(str(tmp_path), name="a"), Harness(str(tmp_path), name="b")
    try:
        await a.start(registry=reg)
        await b.start(registry=reg)
        await a.synced()
        await b.synced()
        assert kube_metrics(reg) is kube_metrics(reg)
        b.api.apply("services", service("web", lb_ips=["192.0.2.20"]))
        await b.wait_for(lambda r: shard(r, "web") is not None)
        assert events(reg, "services", "ADDED", cluster="b") == 1
        assert events(reg, "services", "ADDED", cluster="a") == 0
        await b.close()
        b.source = None
        assert value(reg, "fedns_kube_last_contact_timestamp_seconds", cluster="b") is None
        assert value(reg, "fedns_kube_events_total", cluster="b", resource="services",
                     type="ADDED") is None
        assert value(reg, "fedns_kube_last_contact_timestamp_seconds", cluster="a") is not None
    finally:
        await a.close()
        if b.source is not None:
            await b.close()
