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
from healthwatch.kube.hosts import Refused
from healthwatch.kube.state import ClusterState
from healthwatch.kube.translate import (
    attachment,
    httproute_shard,
    ingress_shard,
    make_marker,
    route_hosts,
    wanted_hosts,
)
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
    *({"metadata": {"name": "g", "namespace": "d"},
       "spec": {"listeners": [{"name": "l", "protocol": "HTTP", "port": port}]}}
      for port in ("80", 0, 65536, -1, True, 80.5)),
])
def test_malformed_gateways_raise_object_error(raw: Any) -> None:
    with pytest.raises(ObjectError):
        gateway_facts(raw)


def test_listener_port_is_read() -> None:
    gw = gateway_facts(gateway("gw", listeners=[listener("a", port=8080),
                                                listener("b", protocol="HTTPS"),
                                                listener("c", port=65535)]))
    assert [ls.port for ls in gw.listeners] == [8080, 443, 65535]
    raw = gateway("gw", listeners=[listener("a")])
    del raw["spec"]["listeners"][0]["port"]  # required by the API's schema; not guessed
    assert [ls.port for ls in gateway_facts(raw).listeners] == [None]


def test_backends_referenced_only_with_weight_zero_get_no_traffic() -> None:
    raw = httproute("shop", backends=["web", "api", "idle"],
                    weights={"web": 0, "api": 3, "idle": 0})
    raw["spec"]["rules"].append({"backendRefs": [{"name": "web", "port": 80, "weight": 5}]})
    route = httproute_facts(raw, ANNOTATED)
    assert route.backends == (("default", "web"), ("default", "api"))  # not "idle"
    assert not route.all_weights_zero
    idle = httproute_facts(httproute("shop", backends=["web", "api"],
                                     weights={"web": 0, "api": 0}), ANNOTATED)
    assert idle.backends == () and idle.all_weights_zero
    none = httproute_facts(httproute("shop"), ANNOTATED)  # no backendRefs at all
    assert none.backends == () and not none.all_weights_zero
    unset = httproute("shop", backends=["web"])
    unset["spec"]["rules"][0]["backendRefs"][0]["weight"] = None  # as if absent: 1
    assert httproute_facts(unset, ANNOTATED).backends == (("default", "web"),)


def test_weight_zero_of_another_kind_of_backend_also_counts_as_no_traffic() -> None:
    raw = httproute("shop", backends=["web"], weights={"web": 0})
    raw["spec"]["rules"][0]["backendRefs"].append({"kind": "ServiceImport", "name": "imp",
                                                    "weight": 2})
    route = httproute_facts(raw, ANNOTATED)  # traffic goes to the ServiceImport
    assert route.backends == () and not route.all_weights_zero


@pytest.mark.parametrize("weight", [-1, 1000001, "5", True, 1.5])
def test_malformed_backend_weights_raise_object_error(weight: Any) -> None:
    raw = httproute("shop", backends=["web"])
    raw["spec"]["rules"][0]["backendRefs"][0]["weight"] = weight
    with pytest.raises(ObjectError):
        httproute_facts(raw, ANNOTATED)


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
    s = _shard(httproute("shop", hostnames=["a.shop.example.com", "shop.other.org"],
                         backends=["web"]))
    assert s is not None
    assert (s.kind, s.namespace, s.name) == ("httproute", "default", "shop")
    assert (s.hosts, s.addresses, s.ready) == (("a.shop.example.com.",), ("192.0.2.5",), 2)
    assert s.service == "httproute:default/shop" and s.probe is None


def test_route_without_hostnames_takes_those_of_the_listeners_it_attaches_to() -> None:
    every = _shard(httproute("shop", parents=["gw"]))
    assert every is not None and every.hosts == ("*.shop.example.com.", "pay.example.com.")
    one = _shard(httproute("shop", parents=[parent_ref("gw", section="https")]))
    assert one is not None and one.hosts == ("pay.example.com.",)


def test_route_shard_needs_marker_acceptance_and_an_in_zone_host() -> None:
    assert _shard(httproute("shop", hostnames=["a.shop.example.com"])) is not None
    assert _shard(httproute("shop", hostnames=["a.shop.example.com"], annotations=None)) is None
    assert _shard(httproute("shop", hostnames=["a.shop.example.com"], accepted=False)) is None
    assert _shard(httproute("shop", hostnames=["shop.other.org"])) is None


def test_route_on_a_missing_gateway_is_a_shard_without_addresses() -> None:
    s = _shard(httproute("shop", hostnames=["shop.example.com"], parents=["gone"]))
    assert s is not None and s.addresses == () and s.hostnames == ()


def test_route_probe_like_ingress_host_header_and_port_of_the_listener() -> None:
    s = _shard(httproute("shop", hostnames=["*.a.shop.example.com", "b.shop.example.com"]),
               default_probe="http")
    assert s is not None
    assert s.probe == HttpProbe(url="http://192.0.2.5/healthz", host="b.shop.example.com")
    https_only = httproute("pay", hostnames=["pay.example.com"],
                           parents=[parent_ref("gw", section="https")],
                           annotations={"fedns.io/federate": "true", "fedns.io/probe": "tcp"})
    s = _shard(https_only)
    assert s is not None and s.probe == TcpProbe(host="192.0.2.5", port=443)
    both = httproute("shop", hostnames=["*.example.com"],  # on both listeners: 80 and 443
                     annotations={"fedns.io/federate": "true", "fedns.io/probe": "tcp"})
    s = _shard(both)
    assert s is not None and s.hosts == ("*.shop.example.com.", "pay.example.com.")
    assert s.probe == TcpProbe(host="192.0.2.5", port=80)


def _wanted(hostnames: list[str], listeners: list[dict[str, Any]],
            section: str | None = None) -> tuple[str, ...]:
    gw = gateway_facts(gateway("gw", addresses=["192.0.2.5"], listeners=listeners))
    route = httproute_facts(httproute("r", hostnames=hostnames,
                                      parents=[parent_ref("gw", section=section)]), ANNOTATED)
    return wanted_hosts(route, attachment(route, {("default", "gw"): gw}))


TWO_LISTENERS = [listener("http", hostname="*.shop.example.com"),
                 listener("https", protocol="HTTPS", hostname="pay.example.com")]


@pytest.mark.parametrize(("hostnames", "listeners", "section", "wanted"), [
    pytest.param(["pay.example.com", "shop.example.com"],
                 [listener(hostname="pay.example.com")], None, ("pay.example.com.",),
                 id="exact"),
    pytest.param(["Pay.Example.com."], [listener(hostname="PAY.example.com")], None,
                 ("pay.example.com.",), id="exact-any-case"),
    pytest.param(["a.shop.example.com", "x.y.shop.example.com", "shop.example.com",
                  "ashop.example.com"], [listener(hostname="*.shop.example.com")], None,
                 ("a.shop.example.com.", "x.y.shop.example.com."), id="wildcard-listener"),
    pytest.param(["*.example.com"], [listener(hostname="pay.example.com")], None,
                 ("pay.example.com.",), id="wildcard-route-precise-listener"),
    pytest.param(["*.pay.example.com"], [listener(hostname="pay.example.com")], None, (),
                 id="wildcard-route-not-covering-listener"),
    pytest.param(["*.example.com"], [listener(hostname="*.shop.example.com")], None,
                 ("*.shop.example.com.",), id="wildcards-narrower-listener"),
    pytest.param(["*.a.shop.example.com"], [listener(hostname="*.shop.example.com")], None,
                 ("*.a.shop.example.com.",), id="wildcards-narrower-route"),
    pytest.param(["pay.example.com", "*.shop.example.com"], [listener()], None,
                 ("pay.example.com.", "*.shop.example.com."), id="listener-without-hostname"),
    pytest.param(["other.example.com"], TWO_LISTENERS, None, (), id="no-match"),
    pytest.param(["*.example.com"], TWO_LISTENERS, None,
                 ("*.shop.example.com.", "pay.example.com."), id="union-over-listeners"),
    pytest.param(["pay.example.com", "a.shop.example.com"], TWO_LISTENERS, "https",
                 ("pay.example.com.",), id="section-name"),
    pytest.param(["pay.example.com"], TWO_LISTENERS, "gone", (), id="section-not-there"),
    pytest.param([], TWO_LISTENERS, None, ("*.shop.example.com.", "pay.example.com."),
                 id="route-without-hostnames"),
])
def test_route_hostnames_are_narrowed_to_the_attached_listeners(
        hostnames: list[str], listeners: list[dict[str, Any]], section: str | None,
        wanted: tuple[str, ...]) -> None:
    assert _wanted(hostnames, listeners, section) == wanted


def test_hostnames_no_listener_accepts_are_refused_inside_the_zone_only() -> None:
    route = httproute_facts(httproute("r", hostnames=[
        "pay.example.com", "other.example.com", "shop.other.org"]), ANNOTATED)
    att = attachment(route, GATEWAYS)
    hosts, refused = route_hosts(route, att, ctx())
    assert hosts == ("pay.example.com.",)
    assert refused == (Refused("other.example.com.", "no_matching_listener"),)


def test_route_whose_hostnames_match_no_listener_is_no_shard() -> None:
    assert _shard(httproute("shop", hostnames=["shop.example.com"])) is None


@pytest.mark.parametrize(("listeners", "section", "port"), [
    pytest.param([listener("a", port=8080)], None, 8080, id="one-listener"),
    pytest.param([listener("a", protocol="HTTPS", port=8443),
                  listener("b", protocol="HTTPS", port=8443, hostname="pay.example.com")],
                 None, 8443, id="shared-port"),
    pytest.param([listener("a", protocol="HTTPS", port=443),
                  listener("b", protocol="HTTPS", port=8443)], None, 443,
                 id="ports-differ-all-https"),
    pytest.param([listener("a", port=8080), listener("b", protocol="HTTPS", port=8443)],
                 None, 80, id="ports-differ-mixed"),
    pytest.param([listener("a", port=8080), listener("b", protocol="HTTPS", port=8443)],
                 "b", 8443, id="section-picks-one"),
    pytest.param([listener("a", port=8080, hostname="*.shop.example.com"),
                  listener("b", protocol="HTTPS", port=8443, hostname="pay.example.com")],
                 None, 8443, id="hostname-picks-one"),
])
def test_tcp_probe_goes_to_the_port_the_attached_listeners_share(
        listeners: list[dict[str, Any]], section: str | None, port: int) -> None:
    gw = gateway_facts(gateway("gw", addresses=["192.0.2.5"], listeners=listeners))
    route = httproute_facts(httproute(
        "pay", hostnames=["pay.example.com"], parents=[parent_ref("gw", section=section)],
        annotations={"fedns.io/federate": "true", "fedns.io/probe": "tcp"}), ANNOTATED)
    s = httproute_shard(route, attachment(route, {("default", "gw"): gw}), ctx(), ready=1,
                        log=LOG)
    assert s is not None and s.probe == TcpProbe(host="192.0.2.5", port=port)
    by_default = httproute_shard(route, attachment(route, {("default", "gw"): gw}),
                                 ctx(default_probe="tcp"), ready=1, log=LOG)
    assert by_default is not None and by_default.probe == s.probe



def _route_probe(listeners: list[dict[str, Any]], probe: str | None = None,
                 default: str = "none", section: str | None = None,
                 path: str = "/healthz") -> HttpProbe | TcpProbe:
    """The probe of the route ``pay`` (``pay.example.com``) on a Gateway
    (192.0.2.5) with ``listeners``: from the annotation ``probe``, else the
    cluster's ``default``."""
    annotations = {"fedns.io/federate": "true"}
    if probe is not None:
        annotations["fedns.io/probe"] = probe
    gw = gateway_facts(gateway("gw", addresses=["192.0.2.5"], listeners=listeners))
    route = httproute_facts(httproute(
        "pay", hostnames=["pay.example.com"], parents=[parent_ref("gw", section=section)],
        annotations=annotations), ANNOTATED)
    s = httproute_shard(route, attachment(route, {("default", "gw"): gw}),
                        ctx(default_probe=default, default_probe_path=path), ready=1, log=LOG)
    assert s is not None and s.probe is not None
    return s.probe


HTTP_8080 = [listener("a", port=8080)]
HTTPS_8443 = [listener("a", protocol="HTTPS", port=8443)]


@pytest.mark.parametrize(("listeners", "probe", "section", "url"), [
    pytest.param(HTTP_8080, None, None, "http://192.0.2.5:8080/healthz",
                 id="default-http-listener-port"),
    pytest.param([listener("a")], None, None, "http://192.0.2.5/healthz",
                 id="default-http-80"),
    pytest.param(HTTPS_8443, None, None, "https://192.0.2.5:8443/healthz",
                 id="default-https-only-listener-port"),
    pytest.param([listener("a", protocol="HTTPS")], None, None, "https://192.0.2.5/healthz",
                 id="default-https-only-443"),
    pytest.param([listener("a", protocol="HTTPS", port=8443),
                  listener("b", protocol="HTTPS", port=9443)], None, None,
                 "https://192.0.2.5/healthz", id="default-https-ports-differ"),
    pytest.param([listener("a", port=8080), listener("b", port=8081)], None, None,
                 "http://192.0.2.5/healthz", id="default-http-ports-differ"),
    pytest.param([listener("a", port=8080), listener("b", protocol="HTTPS", port=8080)],
                 None, None, "http://192.0.2.5/healthz", id="default-mixed-protocols"),
    pytest.param([listener("a", port=8080), listener("b", protocol="HTTPS", port=8443)],
                 None, "b", "https://192.0.2.5:8443/healthz", id="default-section-picks-https"),
    pytest.param([listener("a", port=8080, hostname="*.shop.example.com"),
                  listener("b", protocol="HTTPS", port=8443, hostname="pay.example.com")],
                 None, None, "https://192.0.2.5:8443/healthz",
                 id="default-hostname-picks-https"),
    pytest.param(HTTP_8080, "http:/ready", None, "http://192.0.2.5:8080/ready",
                 id="annotation-http-listener-port"),
    pytest.param(HTTPS_8443, "https:/ready", None, "https://192.0.2.5:8443/ready",
                 id="annotation-https-listener-port"),
    pytest.param(HTTP_8080, "https:/ready", None, "https://192.0.2.5/ready",
                 id="annotation-https-on-http-listeners"),
    pytest.param(HTTPS_8443, "http:/ready", None, "http://192.0.2.5/ready",
                 id="annotation-http-on-https-listeners"),
    pytest.param(HTTP_8080, "http://:9000/ready", None, "http://192.0.2.5:9000/ready",
                 id="annotation-explicit-port"),
    pytest.param(HTTP_8080, "http://:80/ready", None, "http://192.0.2.5/ready",
                 id="annotation-explicit-default-port"),
    pytest.param(HTTPS_8443, "https://:443/ready", None, "https://192.0.2.5/ready",
                 id="annotation-explicit-https-default-port"),
    pytest.param(HTTPS_8443, "tcp:bad", None, "https://192.0.2.5:8443/healthz",
                 id="bad-annotation-falls-back-to-the-default"),
])
def test_http_probe_goes_to_the_port_the_attached_listeners_share(
        listeners: list[dict[str, Any]], probe: str | None, section: str | None,
        url: str) -> None:
    got = _route_probe(listeners, probe, default="http", section=section)
    assert got == HttpProbe(url=url, host="pay.example.com")


def test_default_https_probe_of_a_route_keeps_the_cluster_path_and_the_host() -> None:
    got = _route_probe(HTTPS_8443, default="http", path="/livez?full=1")
    assert got == HttpProbe(url="https://192.0.2.5:8443/livez?full=1", host="pay.example.com")
    assert _route_probe(HTTPS_8443, default="tcp") == TcpProbe(host="192.0.2.5", port=8443)


@pytest.mark.parametrize(("tls", "probe", "want"), [
    pytest.param(False, None, HttpProbe(url="http://198.51.100.7/healthz", host="shop.example.com"),
                 id="default"),
    pytest.param(True, None, HttpProbe(url="http://198.51.100.7/healthz", host="shop.example.com"),
                 id="default-tls"),
    pytest.param(True, "https:/ready",
                 HttpProbe(url="https://198.51.100.7/ready", host="shop.example.com"),
                 id="annotation-https"),
    pytest.param(True, "tcp", TcpProbe(host="198.51.100.7", port=443), id="tcp-tls"),
    pytest.param(False, "tcp", TcpProbe(host="198.51.100.7", port=80), id="tcp"),
    pytest.param(True, "tcp:bad",
                 HttpProbe(url="http://198.51.100.7/healthz", host="shop.example.com"),
                 id="bad-annotation-falls-back-to-the-default"),
])
def test_ingress_probes_keep_the_ports_of_its_controller(
        tls: bool, probe: str | None, want: HttpProbe | TcpProbe) -> None:
    annotations = {"fedns.io/federate": "true"}
    if probe is not None:
        annotations["fedns.io/probe"] = probe
    ing = ingress_facts(ingress("shop", hosts=["shop.example.com"], lb_ips=["198.51.100.7"],
                                tls=tls, annotations=annotations), ANNOTATED)
    s = ingress_shard(ing, ctx(default_probe="http"), ready=1, log=LOG)
    assert s is not None and s.probe == want


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


def _route_ready(state: ClusterState, raw: dict[str, Any]) -> int:
    state.upsert(httproute_facts(raw, ANNOTATED))
    state.refresh()
    return _kinds(state)[("httproute", "shop")].ready


def test_state_counts_only_the_backends_that_get_traffic() -> None:
    state = _state()
    state.upsert(gateway_facts(gateway("gw", addresses=["192.0.2.5"])))
    state.upsert(slice_facts(endpoint_slice("web", ready=3)))
    state.upsert(slice_facts(endpoint_slice("api", ready=2)))
    both = {"hostnames": ["shop.example.com"], "backends": ["web", "api"]}
    assert _route_ready(state, httproute("shop", **both)) == 5
    assert _route_ready(state, httproute("shop", **both, weights={"web": 0})) == 2
    twice = httproute("shop", **both, weights={"web": 0, "api": 0})
    twice["spec"]["rules"].append({"backendRefs": [{"name": "web", "weight": 5}]})
    assert _route_ready(state, twice) == 3  # web gets traffic through the second rule
    assert _route_ready(state, httproute("shop", **both, weights={"web": 0, "api": 0})) == 0
    # a weight-0 backend's endpoints do not touch the route
    state.upsert(slice_facts(endpoint_slice("web", ready=7)))
    state.refresh()
    assert _kinds(state)[("httproute", "shop")].ready == 0
    # no backends at all: counts as one, as before
    assert _route_ready(state, httproute("shop", hostnames=["shop.example.com"])) == 1


def test_state_logs_a_hostname_no_listener_accepts_once(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="test")
    state = _state()
    state.upsert(gateway_facts(gateway("gw", addresses=["192.0.2.5"],
                                       listeners=[listener(hostname="pay.example.com")])))
    state.upsert(slice_facts(endpoint_slice("web", ready=1)))
    state.upsert(httproute_facts(httproute("shop", hostnames=[
        "pay.example.com", "other.example.com"], backends=["web"]), ANNOTATED))
    state.refresh()
    state.upsert(slice_facts(endpoint_slice("web", ready=2)))  # re-translated, same hosts
    state.refresh()
    route = _kinds(state)[("httproute", "shop")]
    assert (route.hosts, route.ready) == (("pay.example.com.",), 2)
    ignored = [r.getMessage() for r in caplog.records
               if r.getMessage().startswith("ingress_host_ignored")]
    assert ignored == ["ingress_host_ignored object=httproute/default/shop "
                       "host='other.example.com.' reason=no_matching_listener"]
    # the listener widens: both hosts are names, nothing more is logged
    state.upsert(gateway_facts(gateway("gw", addresses=["192.0.2.5"],
                                       listeners=[listener(hostname="*.example.com")])))
    state.refresh()
    assert _kinds(state)[("httproute", "shop")].hosts == ("pay.example.com.",
                                                         "other.example.com.")
    assert len([r for r in caplog.records
                if r.getMessage().startswith("ingress_host_ignored")]) == 1
