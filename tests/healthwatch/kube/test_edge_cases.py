"""Changes an SRE makes to live objects, seen through KubeSource."""

from __future__ import annotations

from tests.fakekube import endpoint_slice, node, service
from tests.healthwatch.kube.harness import Harness, shard


def _ready(name: str, want: int):  # type: ignore[no-untyped-def]
    return lambda r: (s := shard(r, name)) is not None and s.ready == want


async def test_endpoint_slice_moving_to_another_service(kube: Harness) -> None:
    kube.api.apply("services", service("web", lb_ips=["192.0.2.10"]))
    kube.api.apply("services", service("api", lb_ips=["192.0.2.11"]))
    kube.api.apply("endpointslices", endpoint_slice("web", ready=2, name="shared"))
    await kube.start()
    await kube.wait_for(lambda r: _ready("web", 2)(r) and _ready("api", 0)(r))
    # the same slice object is relabelled kubernetes.io/service-name=api
    kube.api.apply("endpointslices", endpoint_slice("api", ready=3, name="shared"))
    await kube.wait_for(lambda r: _ready("web", 0)(r) and _ready("api", 3)(r))
    kube.api.delete("endpointslices", "default", "shared")
    await kube.wait_for(lambda r: _ready("web", 0)(r) and _ready("api", 0)(r))


async def test_service_changing_type_away_from_load_balancer_leaves(kube: Harness) -> None:
    kube.api.apply("services", service("web", lb_ips=["192.0.2.10"]))
    await kube.start()
    await kube.wait_for(lambda r: shard(r, "web") is not None)
    kube.api.apply("services", service("web", type="ClusterIP"))
    await kube.wait_for(lambda r: shard(r, "web") is None)
    kube.api.apply("services", service("web", lb_ips=["192.0.2.12"]))
    report = await kube.wait_for(lambda r: shard(r, "web") is not None)
    web = shard(report, "web")
    assert web is not None and web.addresses == ("192.0.2.12",)


async def test_node_losing_its_zone_label_keeps_the_placement(kube: Harness) -> None:
    kube.api.apply("nodes", node("n1", region="eu-west1", zone="eu-west1-c"))
    kube.api.apply("services", service("web", lb_ips=["192.0.2.10"]))
    await kube.start(region=None, zone=None)
    await kube.wait_for(lambda r: r.synced and r.zone == "eu-west1-c")
    kube.api.apply("nodes", node("n1", region="eu-west1"))  # zone label removed
    kube.api.apply("services", service("web", lb_ips=["192.0.2.11"]))  # a later change
    report = await kube.wait_for(
        lambda r: (s := shard(r, "web")) is not None and s.addresses == ("192.0.2.11",))
    web = shard(report, "web")
    assert web is not None
    assert (report.region, report.zone) == ("eu-west1", "eu-west1-c")
    assert (web.region, web.zone) == ("eu-west1", "eu-west1-c")
    # a labelled majority still moves it
    kube.api.apply("nodes", node("n2", region="eu-west1", zone="eu-west1-d"))
    await kube.wait_for(lambda r: r.zone == "eu-west1-d")
