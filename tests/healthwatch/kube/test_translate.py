"""Pure parts of the Kubernetes source: digest, selectors, probes, shards."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from config.model import Cluster, Config, Federation, HttpProbe, Region, TcpProbe
from healthwatch.kube.errors import ObjectError, ProbeSpecError, SelectorError
from healthwatch.kube.facts import (
    NodeFacts,
    ingress_facts,
    node_facts,
    service_facts,
    slice_facts,
)
from healthwatch.kube.probes import parse_probe
from healthwatch.kube.selector import parse_selector
from healthwatch.kube.translate import (
    Placement,
    ShardContext,
    ingress_shard,
    make_marker,
    placement,
    service_shard,
)
from tests.fakekube import endpoint_slice, ingress, node, service

LOG = logging.getLogger("test")
ANNOTATED = make_marker(Federation())


def ctx(**kw: Any) -> ShardContext:
    base: dict[str, Any] = {
        "cluster": "a",
        "zone_apex": "example.com.",
        "federation": "fed",
        "mode": "annotation",
        "default_probe": "none",
        "default_probe_path": "/healthz",
        "placement": Placement("us-east1", "us-east1-b"),
    }
    base.update(kw)
    return ShardContext(**base)


# -- selectors ---------------------------------------------------------------------

SELECTOR_CASES = [
    ("fedns.io/federate=true", {"fedns.io/federate": "true"}, True),
    ("fedns.io/federate=true", {"fedns.io/federate": "false"}, False),
    ("app==web,tier!=db", {"app": "web", "tier": "fe"}, True),
    ("app==web,tier!=db", {"app": "web", "tier": "db"}, False),
    ("tier!=db", {}, True),
    ("env in (prod, staging)", {"env": "staging"}, True),
    ("env in (prod, staging)", {"env": "dev"}, False),
    ("env notin (dev),federate", {"env": "prod", "federate": ""}, True),
    ("!canary", {"canary": "x"}, False),
    ("!canary", {}, True),
    ("", {"anything": "x"}, True),
]


@pytest.mark.parametrize(("text", "labels", "want"), SELECTOR_CASES)
def test_selector_matches(text: str, labels: dict[str, str], want: bool) -> None:
    assert parse_selector(text).matches(labels) is want


@pytest.mark.parametrize("text", ["a in ()", "a=b=c", "in (x)", "a in (b", "=x"])
def test_selector_rejects_garbage(text: str) -> None:
    with pytest.raises(SelectorError, match="label selector"):
        parse_selector(text)


# -- probes ------------------------------------------------------------------------

PROBE_CASES = [
    ("http:/healthz", "1.2.3.4", 8080, HttpProbe(url="http://1.2.3.4:8080/healthz")),
    ("http:/healthz", "1.2.3.4", 80, HttpProbe(url="http://1.2.3.4/healthz")),
    ("http://:9090/ready?x=1", "1.2.3.4", 80, HttpProbe(url="http://1.2.3.4:9090/ready?x=1")),
    ("https:/x", "2001:db8::1", None, HttpProbe(url="https://[2001:db8::1]/x")),
    ("http", "lb.example.net", 8080, HttpProbe(url="http://lb.example.net:8080/")),
    ("tcp", "1.2.3.4", 443, TcpProbe(host="1.2.3.4", port=443)),
    ("tcp:5432", "1.2.3.4", 80, TcpProbe(host="1.2.3.4", port=5432)),
    ("none", "1.2.3.4", 80, None),
]


@pytest.mark.parametrize(("spec", "target", "port", "want"), PROBE_CASES)
def test_parse_probe(spec: str, target: str, port: int | None, want: object) -> None:
    assert parse_probe(spec, target=target, default_port=port) == want


@pytest.mark.parametrize("spec", ["udp:53", "tcp:0", "tcp:x", "http://other:80/", "http:x"])
def test_parse_probe_rejects(spec: str) -> None:
    with pytest.raises(ProbeSpecError):
        parse_probe(spec, target="1.2.3.4", default_port=80)


def test_tcp_probe_without_any_port_is_an_error() -> None:
    with pytest.raises(ProbeSpecError, match="needs a port"):
        parse_probe("tcp", target="1.2.3.4", default_port=None)


# -- digest --------------------------------------------------------------------------


def test_service_facts_reads_lb_ipv4_ipv6_and_hostnames() -> None:
    raw = service(
        "web", lb_ips=["1.2.3.4", "2001:DB8:0::1", "bogus"], lb_hostnames=["LB.aws.com"],
        ports=(8080, 443),
    )
    f = service_facts(raw, ANNOTATED)
    assert f.addresses == ("1.2.3.4", "2001:db8::1")
    assert f.hostnames == ("lb.aws.com.",)
    assert (f.port, f.cluster_ip, f.marked, f.load_balancer) == (8080, "10.96.0.10", True, True)


def test_slice_ready_counts_addresses_and_absent_ready_counts_as_ready() -> None:
    raw = endpoint_slice("web", ready=2, not_ready=3, unknown=1)
    raw["endpoints"][0]["addresses"].append("10.9.9.9")  # two addresses, one endpoint
    f = slice_facts(raw)
    assert (f.service, f.ready) == ("web", 4)


@pytest.mark.parametrize(
    "raw",
    [
        "not an object",
        {"metadata": {"namespace": "default"}},
        {"metadata": {"name": "x"}},
        {"metadata": {"name": "x", "namespace": "d", "labels": {"a": 1}}},
        {"metadata": {"name": "x", "namespace": "d"}, "endpoints": {"oops": 1}},
        {"metadata": {"name": "x", "namespace": "d"}, "endpoints": ["oops"]},
    ],
)
def test_malformed_slices_raise_object_error(raw: Any) -> None:
    with pytest.raises(ObjectError):
        slice_facts(raw)


def test_node_facts_prefer_topology_labels_and_fall_back_to_legacy() -> None:
    assert node_facts(node("n1", region="r", zone="z")) == NodeFacts("", "n1", "r", "z")
    legacy = node("n2")
    legacy["metadata"]["labels"]["failure-domain.beta.kubernetes.io/zone"] = "old-z"
    assert node_facts(legacy).zone == "old-z"


# -- shards ---------------------------------------------------------------------------


def test_service_shard_carries_placement_ready_and_no_probe_by_default() -> None:
    f = service_facts(service("web", lb_ips=["1.2.3.4"]), ANNOTATED)
    shard = service_shard(f, ctx(), ready=3, exported=False, log=LOG)
    assert shard is not None
    assert shard.key == ("a", "service", "default", "web")
    assert (shard.addresses, shard.ready, shard.probe) == (("1.2.3.4",), 3, None)
    assert (shard.region, shard.zone) == ("us-east1", "us-east1-b")


@pytest.mark.parametrize(
    ("annotations", "svc_type", "mode", "exported", "present"),
    [
        ({"fedns.io/federate": "true"}, "LoadBalancer", "annotation", False, True),
        ({"fedns.io/federate": "True"}, "LoadBalancer", "annotation", False, True),
        ({"fedns.io/federate": "false"}, "LoadBalancer", "annotation", False, False),
        (None, "LoadBalancer", "annotation", True, False),
        ({"fedns.io/federate": "true"}, "ClusterIP", "annotation", False, False),
        (None, "LoadBalancer", "serviceexport", True, True),
        ({"fedns.io/federate": "true"}, "LoadBalancer", "serviceexport", False, False),
    ],
)
def test_which_services_are_federated(
    annotations: dict[str, str] | None, svc_type: str, mode: str, exported: bool, present: bool
) -> None:
    f = service_facts(service("web", type=svc_type, annotations=annotations), ANNOTATED)
    shard = service_shard(f, ctx(mode=mode), ready=1, exported=exported, log=LOG)
    assert (shard is not None) is present


def test_probe_annotation_targets_lb_address_and_service_port() -> None:
    raw = service("web", lb_ips=["1.2.3.4"], ports=(8443,),
                  annotations={"fedns.io/federate": "true", "fedns.io/probe": "tcp"})
    shard = service_shard(service_facts(raw, ANNOTATED), ctx(), ready=1, exported=False, log=LOG)
    assert shard is not None and shard.probe == TcpProbe(host="1.2.3.4", port=8443)


def test_default_probe_from_cluster_and_bad_annotation_falls_back_to_it() -> None:
    raw = service("web", lb_ips=["1.2.3.4"], ports=(8080,),
                  annotations={"fedns.io/federate": "true", "fedns.io/probe": "udp:1"})
    shard = service_shard(service_facts(raw, ANNOTATED), ctx(default_probe="http"), ready=1,
                          exported=False, log=LOG)
    assert shard is not None and shard.probe == HttpProbe(url="http://1.2.3.4:8080/healthz")


def test_ingress_shard_keeps_only_hosts_inside_zone() -> None:
    raw = ingress("shop", hosts=["Shop.Example.com", "other.org", "*.example.com", "example.com."],
                  backend="web", lb_ips=["5.6.7.8"])
    f = ingress_facts(raw, ANNOTATED)
    shard = ingress_shard(f, ctx(), ready=4, log=LOG)
    assert shard is not None
    assert shard.hosts == ("shop.example.com.", "example.com.")
    assert (shard.kind, shard.addresses, shard.ready) == ("ingress", ("5.6.7.8",), 4)
    outside = ingress_facts(ingress("x", hosts=["a.other.org"], lb_ips=["5.6.7.8"]), ANNOTATED)
    assert ingress_shard(outside, ctx(), ready=1, log=LOG) is None


def test_placement_config_wins_else_node_majority() -> None:
    config = Config(zone="example.com.", federation="f",
                    regions=(Region("eu", (50.0, 8.0), zones=("eu-a",)),))
    nodes = [NodeFacts("", f"n{i}", "us", z) for i, z in enumerate(["us-b", "us-b", "us-c"])]
    free = Cluster(name="a", region=None, zone=None, source="kubernetes")
    assert placement(free, config, nodes) == Placement("us", "us-b")
    fixed = Cluster(name="a", region="r1", zone="z1", source="kubernetes")
    assert placement(fixed, config, nodes) == Placement("r1", "z1")
    zone_only = Cluster(name="a", region=None, zone="eu-a", source="kubernetes")
    assert placement(zone_only, config, nodes) == Placement("eu", "eu-a")
    assert placement(free, config, []) == Placement(None, None)


def test_label_marker_uses_selector() -> None:
    marker = make_marker(Federation(mode="label", label_selector="team in (a,b),!skip"))
    assert marker({"team": "a"}, {})
    assert not marker({"team": "a", "skip": "1"}, {})
    assert not marker({}, {"fedns.io/federate": "true"})
