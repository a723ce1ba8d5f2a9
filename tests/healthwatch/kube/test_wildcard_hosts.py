"""Wildcard rule hosts of federated Ingresses, learned through the real
kubernetes client from the simulated API server."""

from __future__ import annotations

import logging

import pytest

from config.model import HttpProbe
from tests.fakekube import endpoint_slice, ingress, service
from tests.healthwatch.kube.harness import Harness, shard

# CONFIG of the harness: zone example.com., federation "fed"
GOOD = ["*.Shop.Example.com", "a.shop.example.com",
        "web.default.fed.svc.example.com"]  # a global name: merges with the Service
REFUSED = {
    "*foo.shop.example.com.": "invalid_name",
    "a.*.shop.example.com.": "invalid_name",
    "**.shop.example.com.": "invalid_name",
    "*.example.com.": "wildcard_at_apex",
    "*.default.fed.svc.example.com.": "inside_generated_names",
    "*.web.default.fed.svc.us-east1.example.com.": "inside_generated_names",
    "web.default.fed.svc.us-east1.example.com.": "inside_generated_names",
    "web.default.fed.svc.us-east1-b.us-east1.example.com.": "inside_generated_names",
    "x.web.default.fed.svc.example.com.": "inside_generated_names",
}


def _ignored(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str]]:
    out = []
    for rec in caplog.records:
        msg = rec.getMessage()
        if msg.startswith("ingress_host_ignored "):
            fields = dict(f.split("=", 1) for f in msg.split() if "=" in f)
            out.append((fields["host"].strip("'"), fields["reason"]))
    return out


async def test_wildcard_host_is_kept_beside_a_concrete_host_under_it(kube: Harness) -> None:
    kube.api.apply("services", service("web", type="ClusterIP", annotations=None))
    kube.api.apply("endpointslices", endpoint_slice("web", ready=2))
    kube.api.apply("ingresses", ingress("shop", hosts=["*.Shop.Example.com", "a.shop.example.com",
                                                        "*.shop.other.org"],
                                        backend="web", lb_ips=["198.51.100.7"]))
    await kube.start()
    report = await kube.wait_for(lambda r: r.synced and shard(r, "shop", "ingress") is not None)
    ing = shard(report, "shop", "ingress")
    assert ing is not None
    assert (ing.hosts, ing.addresses, ing.ready) == (
        ("*.shop.example.com.", "a.shop.example.com."), ("198.51.100.7",), 2)
    # an Ingress whose only in-zone host is a wildcard gives a shard too
    kube.api.apply("ingresses", ingress("catch", hosts=["*.catch.example.com"],
                                        lb_ips=["198.51.100.8"]))
    report = await kube.wait_for(lambda r: shard(r, "catch", "ingress") is not None)
    catch = shard(report, "catch", "ingress")
    assert catch is not None and catch.hosts == ("*.catch.example.com.",)


async def test_malformed_and_refused_hosts_are_ignored_with_a_logged_reason(
        kube: Harness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="healthwatch.kube")
    kube.api.apply("services", service("web", type="ClusterIP", annotations=None))
    kube.api.apply("endpointslices", endpoint_slice("web", ready=1))
    kube.api.apply("ingresses", ingress("mixed", hosts=[*REFUSED, *GOOD, "shop.other.org"],
                                        backend="web", lb_ips=["198.51.100.7"]))
    kube.api.apply("ingresses", ingress("bad", hosts=list(REFUSED), lb_ips=["198.51.100.9"]))
    await kube.start()
    report = await kube.wait_for(lambda r: r.synced and shard(r, "mixed", "ingress") is not None)
    mixed = shard(report, "mixed", "ingress")
    assert mixed is not None
    assert mixed.hosts == ("*.shop.example.com.", "a.shop.example.com.",
                           "web.default.fed.svc.example.com.")
    assert shard(report, "bad", "ingress") is None  # no acceptable host: no shard
    ignored = _ignored(caplog)
    assert sorted(ignored) == sorted(list(REFUSED.items()) * 2)  # once per Ingress, outside: none
    # a backend's ready count changes: re-translated, not logged again
    kube.api.apply("endpointslices", endpoint_slice("web", ready=3))
    await kube.wait_for(lambda r: (s := shard(r, "mixed", "ingress")) is not None
                        and s.ready == 3)
    assert len(_ignored(caplog)) == len(ignored)


async def test_http_probe_of_a_wildcard_only_ingress_sends_a_covered_host(kube: Harness) -> None:
    kube.api.apply("ingresses", ingress(
        "shop", hosts=["*.shop.example.com"], lb_ips=["198.51.100.7"],
        annotations={"fedns.io/federate": "true", "fedns.io/probe": "http:/healthz"}))
    await kube.start()
    report = await kube.wait_for(lambda r: r.synced and shard(r, "shop", "ingress") is not None)
    ing = shard(report, "shop", "ingress")
    assert ing is not None
    assert ing.probe == HttpProbe(url="http://198.51.100.7/healthz",
                                  host="fedns-probe.shop.example.com")
