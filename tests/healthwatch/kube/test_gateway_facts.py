"""Pure parts of the Gateway API source: digesting Gateways and HTTPRoutes,
translating a route into a shard, and the per-cluster state that joins them."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from config.model import Cluster, Config, Federation, HttpProbe, TcpProbe
from healthwatch.kube.errors import ObjectError
from healthwatch.kube.facts import (
    gateway_facts,
    httproute_facts,
    ingress_facts,
    service_facts,
    slice_facts,
)
from healthwatch.kube.state import ClusterState
from healthwatch.kube.translate import attachment, httproute_shard, make_marker
from healthwatch.model import ShardSpec, kind_of, split_service
from tests.fakekube import (
    endpoint_slice,
    gateway,
    httproute,
    ingress,
    listener,
    parent_ref,
    service,
)
from tests.healthwatch.kube.test_translate import ctx

LOG = logging.getLogger("test")
ANNOTATED = make_marker(Federation())


# -- digest ------------------------------------------------------------------------

def test_gateway_facts_reads_typed_addresses_and_listeners() -> None:
    raw = gateway("gw", "infra", addresses=["2001:DB8::1", "192.0.2.5", "not-an-ip"],
                  hostnames=["LB.Example.NET"],
                  listeners=[listener("web", hostname="*.Shop.example.com"),
                             listener("tls", protocol="HTTPS", port=443)])
    raw["status"]["addresses"].append({"type": "example.com/custom", "value": "x"})
    gw = gateway_facts(raw)
    assert (gw.namespace, gw.name) == ("infra", "gw")
    assert gw.addresses == ("2001:db8::1", "192.0.2.5")  # type defaults to IPAddress
    assert gw.hostnames == ("lb.example.net.",)
    assert [(ls.name, ls.hostname, ls.https) for ls in gw.listeners] == [
        ("web", "*.shop.example.com.", False), ("tls", None, True)]


def test_httproute_facts_defaults_parent_and_backend_namespaces_and_reads_acceptance() -> None:
    raw = httproute("shop", "apps", hostnames=["Shop.Example.com."],
                    parents=["gw", parent_ref("edge", "infra", section="https")],
                    backends=["web", "other/api"], accepted=True)
    raw["spec"]["parentRefs"].append({"group": "", "kind": "Service", "name": "mesh"})
    raw["spec"]["rules"][0]["backendRefs"].append({"kind": "ServiceImport", "name": "imp"})
    route = httproute_facts(raw, ANNOTATED)
    assert route.marked and route.hostnames == ("shop.example.com.",)
    assert [(p.gateway, p.section, p.accepted) for p in route.parents] == [
        (("apps", "gw"), None, True), (("infra", "edge"), "https", True)]  # not the Service
    assert route.backends == (("apps", "web"), ("other", "api"))


def test_a_parent_is_accepted_only_by_its_own_status_entry() -> None:
    raw = httproute("shop", parents=["a", "b"], accepted=False)
    raw["status"]["parents"][1]["conditions"][0]["status"] = "True"  # only "b" accepted
    route = httproute_facts(raw, ANNOTATED)
    assert [(p.gateway[1], p.accepted) for p in route.parents] == [("a", False), ("b", True)]


@pytest.mark.parametrize("raw", [
    {"metadata": {"name": "r", "namespace": "d"}, "spec": {"hostnames": "x.example.com"}},
    {"metadata": {"name": "r", "namespace": "d"}, "spec": {"rules": ["x"]}},
    {"metadata": {"name": "r", "namespace": "d"}, "spec": {"parentRefs": {"name": "gw"}}},
    {"metadata": {"name": "r", "namespace": "d"}, "status": {"parents": [1]}},
    {"metadata": {"name": "r"}},
])
def test_malformed_httproutes_raise_object_error(raw: Any) -> None:
    with pytest.raises(ObjectError):
        httproute_facts(raw, ANNOTATED)


@pytest.mark.parametrize("raw", [
    {"metadata": {"name": "g", "namespace": "d"}, "spec": {"listeners": [3]}},
    {"metadata": {"name": "g", "namespace": "d"}, "status": {"addresses": {"value": "x"}}},
])
def test_malformed_gateways_raise_object_error(raw: Any) -> None:
    with pytest.raises(ObjectError):
        gateway_facts(raw)


# -- translate -------------------------------------------------------------------

GW = gateway_facts(gateway("gw", addresses=["192.0.2.5"],
                           listeners=[listener("http", hostname="*.shop.example.com"),
                                      listener("https", protocol="HTTPS", port=443,
                                               hostname="pay.example.com")]))
GATEWAYS = {("default", "gw"): GW}


def _shard(raw: dict[str, Any], **kw: Any) -> ShardSpec | None:
    route = httproute_facts(raw, ANNOTATED)
    context = ctx(**kw)
    return httproute_shard(route, attachment(route, GATEWAYS), context, ready=2, log=LOG)


def test_route_shard_has_in_zone_hostnames_and_the_gateway_addresses() -> None:
    s = _shard(httproute("shop", hostnames=["shop.example.com", "shop.other.org"],
                         backends=["web"]))
    assert s is not None
    assert (s.kind, s.namespace, s.name) == ("httproute", "default", "shop")
    assert (s.hosts, s.addresses, s.ready) == (("shop.example.com.",), ("192.0.2.5",), 2)
    assert s.service == "httproute:default/shop" and s.probe is None


def test_route_without_hostnames_takes_those_of_the_listeners_it_attaches_to() -> None:
    every = _shard(httproute("shop", parents=["gw"]))
    assert every is not None and every.hosts == ("*.shop.example.com.", "pay.example.com.")
    one = _shard(httproute("shop", parents=[parent_ref("gw", section="https")]))
    assert one is not None and one.hosts == ("pay.example.com.",)


def test_route_shard_needs_marker_acceptance_and_an_in_zone_host() -> None:
    assert _shard(httproute("shop", hostnames=["shop.example.com"], annotations=None)) is None
    assert _shard(httproute("shop", hostnames=["shop.example.com"], accepted=False)) is None
    assert _shard(httproute("shop", hostnames=["shop.other.org"])) is None


def test_route_on_a_missing_gateway_is_a_shard_without_addresses() -> None:
    s = _shard(httproute("shop", hostnames=["shop.example.com"], parents=["gone"]))
    assert s is not None and s.addresses == () and s.hostnames == ()


def test_route_probe_like_ingress_host_header_and_port_of_the_listener() -> None:
    s = _shard(httproute("shop", hostnames=["*.a.example.com", "b.example.com"]),
               default_probe="http")
    assert s is not None
    assert s.probe == HttpProbe(url="http://192.0.2.5/healthz", host="b.example.com")
    https_only = httproute("pay", hostnames=["pay.example.com"],
                           parents=[parent_ref("gw", section="https")],
                           annotations={"fedns.io/federate": "true", "fedns.io/probe": "tcp"})
    s = _shard(https_only)
    assert s is not None and s.probe == TcpProbe(host="192.0.2.5", port=443)
    both = httproute("shop", hostnames=["shop.example.com"],
                     annotations={"fedns.io/federate": "true", "fedns.io/probe": "tcp"})
    s = _shard(both)
    assert s is not None and s.probe == TcpProbe(host="192.0.2.5", port=80)


# -- ShardSpec.service and its inverse --------------------------------------------

def test_service_text_names_the_kind_and_parses_back() -> None:
    for kind in ("service", "ingress", "httproute"):
        spec = ShardSpec(cluster="a", kind=kind, namespace="ns", name="web")  # type: ignore[arg-type]
        assert split_service(spec.service) == (kind, "ns", "web")
        assert kind_of(spec.service) == kind
    assert kind_of("gateway:ns/web") == "service"  # an unknown prefix names no route
    for bad in ("web", "ns/", "/web", "ns/a/b", "gateway:ns/web", "httproute:web"):
        with pytest.raises(ValueError):
            split_service(bad)


# -- state: joins of routes, Gateways and Services --------------------------------

def _state() -> ClusterState:
    cluster = Cluster(name="a", region="us-east1", zone="us-east1-b", source="kubernetes")
    config = Config(zone="example.com.", federation="fed", clusters=(cluster,))
    return ClusterState(cluster, config, LOG)


def _kinds(state: ClusterState) -> dict[tuple[str, str], ShardSpec]:
    return {(s.kind, s.name): s for s in state.shards}


def test_state_follows_gateway_address_changes_and_deletion() -> None:
    state = _state()
    state.upsert(service_facts(service("web", type="ClusterIP", annotations=None), ANNOTATED))
    state.upsert(slice_facts(endpoint_slice("web", ready=3)))
    state.upsert(httproute_facts(httproute("shop", hostnames=["shop.example.com"],
                                           backends=["web"]), ANNOTATED))
    assert state.refresh()
    route = _kinds(state)[("httproute", "shop")]
    assert (route.addresses, route.ready) == ((), 3)  # the Gateway is not known yet
    state.upsert(gateway_facts(gateway("gw", addresses=["192.0.2.5"])))
    assert state.refresh() and _kinds(state)[("httproute", "shop")].addresses == ("192.0.2.5",)
    state.upsert(gateway_facts(gateway("gw", addresses=["192.0.2.6"])))
    assert state.refresh() and _kinds(state)[("httproute", "shop")].addresses == ("192.0.2.6",)
    state.upsert(slice_facts(endpoint_slice("web", ready=0)))
    assert state.refresh() and _kinds(state)[("httproute", "shop")].ready == 0
    state.delete("gateways", ("default", "gw"))
    assert state.refresh() and _kinds(state)[("httproute", "shop")].addresses == ()
    state.replace_all("httproutes", [])
    assert state.refresh() and ("httproute", "shop") not in _kinds(state)


def test_state_keeps_an_ingress_and_a_route_of_the_same_name_apart() -> None:
    state = _state()
    state.upsert(gateway_facts(gateway("gw", addresses=["192.0.2.5"])))
    state.upsert(httproute_facts(httproute("shop", hostnames=["shop.example.com"]), ANNOTATED))
    state.upsert(ingress_facts(ingress("shop", hosts=["shop.example.com"],
                                       lb_ips=["198.51.100.7"]), ANNOTATED))
    state.refresh()
    kinds = _kinds(state)
    assert kinds[("httproute", "shop")].addresses == ("192.0.2.5",)
    assert kinds[("ingress", "shop")].addresses == ("198.51.100.7",)
    state.delete("ingresses", ("default", "shop"))
    state.refresh()
    assert set(_kinds(state)) == {("httproute", "shop")}
