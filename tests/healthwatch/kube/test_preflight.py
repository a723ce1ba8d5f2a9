"""``fedns check --clusters``: the preflight of the member clusters, through the
real kubernetes client against simulated API servers on 127.0.0.1.

Each test starts its own simulated clusters (``FakeKubeAPI``), writes a
kubeconfig for them and runs ``preflight`` (or ``run_preflight``, the entry
the CLI calls) against a config naming them.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest

from config.model import Cluster, Config, Federation, Kubernetes, Region
from dnsserver.cli import EXIT_FAIL, EXIT_OK, EXIT_WARNINGS
from healthwatch.kube import preflight as preflight_module
from healthwatch.kube.preflight import ClusterCheck, PreflightError, Step, preflight
from healthwatch.kube.preflight_format import exit_code, format_text, run_preflight, to_json
from tests.fakekube import (
    FakeKubeAPI,
    KubeconfigEntry,
    endpoint_slice,
    gateway,
    httproute,
    ingress,
    node,
    service,
    service_export,
    write_kubeconfig,
)
from tests.fakekube.auth import write_exec_kubeconfig, write_exec_plugin
from tests.ports import free_port

GATEWAY_API = "gateway.networking.k8s.io"
REGION = Region("us-east1", (33.8, -84.4), ("us-east1-b",))
FAST = Kubernetes(connect_timeout=1.0, request_timeout=2.0)
SECRET = "s3cr3t-token-do-not-print"

Start = Callable[..., Awaitable[FakeKubeAPI]]


@pytest.fixture
async def sim() -> AsyncIterator[Start]:
    """Starts simulated clusters on 127.0.0.1; all are killed at the end."""
    started: list[FakeKubeAPI] = []

    async def start(name: str, **kw: Any) -> FakeKubeAPI:
        api = FakeKubeAPI(name=name, **kw)
        await api.start()
        started.append(api)
        return api

    yield start
    for api in started:
        api.resume()
        await api.kill()


def make_config(tmp: str, entries: list[KubeconfigEntry], *, placed: bool = True,
                knobs: Kubernetes = FAST, **cluster: Any) -> Config:
    """One ``source: kubernetes`` cluster per kubeconfig entry, named as its
    context; in us-east1/us-east1-b unless ``placed`` is False (then Nodes say)."""
    path = write_kubeconfig(os.path.join(tmp, "kubeconfig"), entries)
    where = {"region": "us-east1", "zone": "us-east1-b"} if placed else {
        "region": None, "zone": None}
    clusters = tuple(Cluster(name=e.context, source="kubernetes", kubeconfig=path,
                             context=e.context, **where, **cluster) for e in entries)
    return Config(zone="example.com.", federation="fed", regions=(REGION,),
                  clusters=clusters, kubernetes=knobs)


def step(check: ClusterCheck, name: str) -> Step:
    found = [s for s in check.steps if s.name == name]
    assert len(found) == 1, (name, check.steps)
    return found[0]


def names(check: ClusterCheck) -> list[str]:
    return [s.name for s in check.steps]


def publish_workloads(api: FakeKubeAPI) -> None:
    """Two federated LoadBalancer Services, one not federated, one federated
    ClusterIP (not published: not a LoadBalancer); a federated Ingress with a
    host in the zone and one that is not federated; a federated HTTPRoute on
    an accepted Gateway."""
    api.apply("services", service("web", lb_ips=["192.0.2.1"]))
    api.apply("services", service("api", lb_ips=["192.0.2.2"]))
    api.apply("services", service("plain", lb_ips=["192.0.2.3"], annotations=None))
    api.apply("services", service("internal", type="ClusterIP"))
    for name in ("web", "api", "plain"):
        api.apply("endpointslices", endpoint_slice(name, ready=2))
    api.apply("ingresses", ingress("shop", hosts=["shop.example.com"], backend="web",
                                   lb_ips=["192.0.2.9"]))
    api.apply("ingresses", ingress("other", hosts=["other.example.com"], annotations=None))
    api.apply("gateways", gateway("gw", addresses=["192.0.2.5"]))
    api.apply("httproutes", httproute("pay", hostnames=["pay.example.com"], backends=["web"]))


# -- a healthy cluster -------------------------------------------------------------


async def test_all_ok_cluster_lists_everything_and_counts_what_fedns_would_publish(
        sim: Start, tmp_path: Any) -> None:
    api = await sim("a")
    publish_workloads(api)
    # pages of 2: the Services take two pages, every one counted
    config = make_config(str(tmp_path), [api.kubeconfig_entry("a")],
                         knobs=replace(FAST, list_limit=2))
    [check] = await preflight(config)
    assert check.verdict == "ok", check.steps
    assert check.cluster == "a" and check.version == "v1.30.0-fedns-sim"
    assert names(check) == ["kubeconfig", "connect", "auth", "list services",
                            "list endpointslices", "list ingresses", "list gateways",
                            "list httproutes"]
    services = step(check, "list services")
    assert (services.listed, services.federated, services.at_least) == (4, 2, False)
    assert services.detail == "4 objects, 2 federated"
    ingresses = step(check, "list ingresses")
    assert (ingresses.listed, ingresses.federated) == (2, 1)
    routes = step(check, "list httproutes")
    assert (routes.listed, routes.federated) == (1, 1)
    assert step(check, "list gateways").listed == 1
    assert "v1.30.0-fedns-sim" in step(check, "connect").detail
    # one page of endpointslices is enough to prove the RBAC: 3 exist, 2 seen
    slices = step(check, "list endpointslices")
    assert (slices.listed, slices.at_least, slices.federated) == (2, True, None)
    assert slices.detail == "at least 2 objects"
    assert len(api.lists("endpointslices")) == 1
    assert len(api.lists("services")) == 2
    assert all(r.query.get("limit") == "2" for r in api.requests if not r.is_watch
               and r.resource != "version")
    assert not any(r.is_watch for r in api.requests)  # a preflight never watches


async def test_counting_stops_after_max_pages_and_says_at_least(
        sim: Start, tmp_path: Any) -> None:
    api = await sim("a")
    for i in range(5):
        api.apply("services", service(f"s{i}", lb_ips=[f"192.0.2.{i + 1}"]))
    config = make_config(str(tmp_path), [api.kubeconfig_entry("a")],
                         knobs=replace(FAST, list_limit=1))
    [check] = await preflight(config, max_pages=3)
    services = step(check, "list services")
    assert (services.listed, services.federated, services.at_least) == (3, 3, True)
    assert services.detail == ("at least 3 objects, at least 3 federated "
                               "(counting stopped after 3 pages)")
    assert services.verdict == "ok"
    assert len(api.lists("services")) == 3


async def test_serviceexport_mode_counts_exported_services(
        sim: Start, tmp_path: Any) -> None:
    api = await sim("a")
    publish_workloads(api)
    api.apply("serviceexports", service_export("api"))
    config = make_config(str(tmp_path), [api.kubeconfig_entry("a")],
                         federation=Federation(mode="serviceexport"))
    [check] = await preflight(config)
    assert check.verdict == "ok", check.steps
    assert "list serviceexports" in names(check)
    assert step(check, "list serviceexports").listed == 1
    assert step(check, "list services").federated == 1  # only the exported one


async def test_label_mode_counts_by_the_selector(sim: Start, tmp_path: Any) -> None:
    api = await sim("a")
    api.apply("services", service("web", lb_ips=["192.0.2.1"], annotations=None,
                                  labels={"tier": "front"}))
    api.apply("services", service("db", lb_ips=["192.0.2.2"], labels={"tier": "back"}))
    config = make_config(str(tmp_path), [api.kubeconfig_entry("a")],
                         federation=Federation(mode="label", label_selector="tier=front"))
    [check] = await preflight(config)
    assert step(check, "list services").federated == 1


# -- optional and refused resources -------------------------------------------------


async def test_serviceexports_not_served_fail_in_serviceexport_mode(
        sim: Start, tmp_path: Any) -> None:
    api = await sim("a")
    publish_workloads(api)
    api.unserve("multicluster.x-k8s.io")
    config = make_config(str(tmp_path), [api.kubeconfig_entry("a")],
                         federation=Federation(mode="serviceexport"))
    [check] = await preflight(config)
    assert check.verdict == "fail"
    exports = step(check, "list serviceexports")
    assert exports.verdict == "fail" and exports.detail.startswith("not installed (404): ")
    assert "multicluster.x-k8s.io" in exports.detail
    services = step(check, "list services")  # listed, but which are federated is unknown
    assert services.verdict == "ok" and services.federated is None
    assert services.detail == "4 objects, federated unknown (list serviceexports failed)"


async def test_gateway_api_not_served_is_fine(sim: Start, tmp_path: Any) -> None:
    api = await sim("a")
    api.unserve(GATEWAY_API)
    config = make_config(str(tmp_path), [api.kubeconfig_entry("a")])
    [check] = await preflight(config)
    assert check.verdict == "ok", check.steps
    for name in ("list gateways", "list httproutes"):
        s = step(check, name)
        assert s.verdict == "ok" and s.detail == "not installed (404)", s
        assert s.listed is None


async def test_forbidden_endpointslices_fail_with_the_servers_message(
        sim: Start, tmp_path: Any) -> None:
    api = await sim("a")
    publish_workloads(api)
    why = ('endpointslices.discovery.k8s.io is forbidden: User "system:serviceaccount:'
           'fedns-system:fedns" cannot list resource "endpointslices"')
    api.fail("endpointslices", 403, on="list", message=why)
    config = make_config(str(tmp_path), [api.kubeconfig_entry("a")])
    [check] = await preflight(config)
    assert check.verdict == "fail"
    slices = step(check, "list endpointslices")
    assert slices.verdict == "fail"
    assert slices.detail.startswith(f"forbidden (403): {why}"), slices.detail
    assert "discovery.k8s.io" in slices.detail
    # the rest is still checked
    assert step(check, "list services").verdict == "ok"
    assert step(check, "list services").federated == 2


async def test_forbidden_httproutes_only_warn(sim: Start, tmp_path: Any) -> None:
    api = await sim("a")
    api.fail("httproutes", 403, on="list")
    config = make_config(str(tmp_path), [api.kubeconfig_entry("a")])
    [check] = await preflight(config)
    assert check.verdict == "warn"
    routes = step(check, "list httproutes")
    assert routes.verdict == "warn" and routes.detail.startswith("forbidden (403): ")
    assert exit_code([check]) == EXIT_WARNINGS


async def test_server_error_on_a_list_fails_that_step(sim: Start, tmp_path: Any) -> None:
    api = await sim("a")
    api.fail("ingresses", 500, on="list", message="etcdserver: request timed out")
    config = make_config(str(tmp_path), [api.kubeconfig_entry("a")])
    [check] = await preflight(config)
    ing = step(check, "list ingresses")
    assert ing.verdict == "fail"
    assert ing.detail == "HTTP 500 Internal Server Error: etcdserver: request timed out"


async def test_garbage_and_malformed_objects_never_crash(sim: Start, tmp_path: Any) -> None:
    api = await sim("a")
    api.apply("services", service("web", lb_ips=["192.0.2.1"]))
    api.garbage("endpointslices", b"<html>proxy error</html>", content_type="text/html")
    good = ingress("shop", hosts=["shop.example.com"], lb_ips=["192.0.2.9"])
    good["metadata"]["namespace"] = "default"
    api.garbage("ingresses", {"kind": "IngressList", "metadata": {"resourceVersion": "1"},
                              "items": [good, {"metadata": {"name": "no-namespace"}}, 7]})
    # nothing usable at all: the watches refuse such a list, so does the preflight
    api.garbage("httproutes", {"metadata": {"resourceVersion": "1"}, "items": [7]})
    config = make_config(str(tmp_path), [api.kubeconfig_entry("a")])
    [check] = await preflight(config)
    slices = step(check, "list endpointslices")
    assert slices.verdict == "fail", slices
    assert slices.detail == "response is not JSON (text/html, 24 bytes)"
    ing = step(check, "list ingresses")
    assert ing.verdict == "warn", ing
    assert ing.detail == "3 objects, 1 federated, 2 malformed (skipped)"
    routes = step(check, "list httproutes")
    assert routes.verdict == "fail" and routes.detail.endswith("1 malformed (skipped)"), routes
    assert step(check, "list services").federated == 1


# -- clusters fedns cannot use ------------------------------------------------------


async def test_bad_token_fails_auth_and_is_never_printed(sim: Start, tmp_path: Any) -> None:
    api = await sim("a", token="the-right-one")
    config = make_config(str(tmp_path), [KubeconfigEntry("a", api.url, SECRET)])
    [check] = await preflight(config)
    assert check.verdict == "fail"
    assert names(check) == ["kubeconfig", "connect", "auth"]
    auth = step(check, "auth")
    assert auth.verdict == "fail" and auth.detail.startswith("HTTP 401 Unauthorized"), auth
    assert step(check, "connect").verdict == "ok"
    assert api.lists("services") == []  # nothing listed with refused credentials
    text, _ = await asyncio.to_thread(run_preflight, config, as_json=False)
    doc, _ = await asyncio.to_thread(run_preflight, config, as_json=True)
    assert SECRET not in text and SECRET not in json.dumps(doc)


async def test_good_token_is_accepted(sim: Start, tmp_path: Any) -> None:
    api = await sim("a", token=SECRET)
    config = make_config(str(tmp_path), [KubeconfigEntry("a", api.url, SECRET)])
    [check] = await preflight(config)
    assert check.verdict == "ok", check.steps
    assert step(check, "auth").detail == "credentials accepted"
    assert SECRET not in format_text([check]) + json.dumps(to_json([check]))


def exec_config(tmp: str, server: str, token: str) -> tuple[Config, Any]:
    """A config whose cluster ``a`` gets its token from an exec plugin."""
    plugin = write_exec_plugin(tmp, token)
    path = write_exec_kubeconfig(os.path.join(tmp, "exec.kubeconfig"), context="a",
                                 server=server, command=plugin.command)
    config = make_config(tmp, [KubeconfigEntry("a", server)])
    return replace(config, clusters=(replace(config.clusters[0], kubeconfig=path),)), plugin


async def test_exec_plugin_credentials_are_used(sim: Start, tmp_path: Any) -> None:
    api = await sim("a", token=SECRET)
    config, plugin = exec_config(str(tmp_path), api.url, SECRET)
    [check] = await preflight(config)
    assert check.verdict == "ok", check.steps
    assert step(check, "auth").detail == "credentials accepted"
    assert plugin.runs == 1


async def test_hanging_exec_plugin_fails_the_kubeconfig_within_the_timeout(
        sim: Start, tmp_path: Any) -> None:
    api = await sim("a", token=SECRET)
    config, plugin = exec_config(str(tmp_path), api.url, SECRET)
    plugin.hang()  # the config's exec_timeout is 30 s; the call timeout caps it
    [check] = await preflight(config, call_timeout=2.0)
    assert names(check) == ["kubeconfig"]
    kc = step(check, "kubeconfig")
    assert kc.verdict == "fail" and "did not finish within 2 s" in kc.detail, kc
    assert api.requests == []


async def test_unreachable_cluster_fails_to_connect(tmp_path: Any) -> None:
    port = free_port()  # nothing listens there
    config = make_config(str(tmp_path), [KubeconfigEntry("a", f"http://127.0.0.1:{port}")])
    [check] = await preflight(config, call_timeout=2.0)
    assert check.verdict == "fail"
    assert names(check) == ["kubeconfig", "connect"]
    connect = step(check, "connect")
    assert connect.verdict == "fail"
    assert connect.detail.startswith(f"cannot connect to 127.0.0.1:{port}"), connect.detail


async def test_hung_api_server_fails_within_the_timeout(sim: Start, tmp_path: Any) -> None:
    api = await sim("a")
    api.pause()  # accepts connections, never answers
    config = make_config(str(tmp_path), [api.kubeconfig_entry("a")])
    [check] = await preflight(config, call_timeout=0.5)
    connect = step(check, "connect")
    assert connect.verdict == "fail" and connect.detail == "no answer within 0.5s", connect


async def test_missing_context_fails_at_the_kubeconfig(sim: Start, tmp_path: Any) -> None:
    api = await sim("a")
    config = make_config(str(tmp_path), [api.kubeconfig_entry("a")])
    config = replace(config, clusters=(replace(config.clusters[0], context="nope"),))
    [check] = await preflight(config)
    assert names(check) == ["kubeconfig"]
    kc = step(check, "kubeconfig")
    assert kc.verdict == "fail" and "context 'nope' not found (have: a)" in kc.detail
    assert api.requests == []


# -- placement from Node labels -------------------------------------------------------


async def test_nodes_without_region_zone_labels_warn(sim: Start, tmp_path: Any) -> None:
    api = await sim("a")
    api.apply("nodes", node("n1"))
    api.apply("nodes", node("n2"))
    config = make_config(str(tmp_path), [api.kubeconfig_entry("a")], placed=False)
    [check] = await preflight(config)
    assert check.verdict == "warn", check.steps
    assert step(check, "list nodes").verdict == "ok"
    nodes = step(check, "nodes")
    assert nodes.verdict == "warn"
    assert "topology.kubernetes.io/region" in nodes.detail
    assert "topology.kubernetes.io/zone" in nodes.detail


async def test_nodes_with_labels_give_the_placement(sim: Start, tmp_path: Any) -> None:
    api = await sim("a")
    api.apply("nodes", node("n1", region="us-east1", zone="us-east1-b"))
    config = make_config(str(tmp_path), [api.kubeconfig_entry("a")], placed=False)
    [check] = await preflight(config)
    assert check.verdict == "ok", check.steps
    nodes = step(check, "nodes")
    assert nodes.detail == "region/zone labels found: us-east1/us-east1-b (1 node)"


async def test_node_region_not_in_the_config_warns(sim: Start, tmp_path: Any) -> None:
    api = await sim("a")
    api.apply("nodes", node("n1", region="mars-north1", zone="mars-north1-a"))
    config = make_config(str(tmp_path), [api.kubeconfig_entry("a")], placed=False)
    [check] = await preflight(config)
    nodes = step(check, "nodes")
    assert nodes.verdict == "warn" and "mars-north1" in nodes.detail, nodes


async def test_nodes_are_not_listed_when_the_config_places_the_cluster(
        sim: Start, tmp_path: Any) -> None:
    api = await sim("a")
    config = make_config(str(tmp_path), [api.kubeconfig_entry("a")])
    [check] = await preflight(config)
    assert "list nodes" not in names(check) and "nodes" not in names(check)
    assert api.lists("nodes") == []


# -- several clusters, selection, output, exit codes -------------------------------------


async def test_run_preflight_text_json_and_exit_codes(sim: Start, tmp_path: Any) -> None:
    good = await sim("good")
    publish_workloads(good)
    bare = await sim("bare")
    bare.apply("nodes", node("n1"))
    port = free_port()
    entries = [good.kubeconfig_entry("good"), bare.kubeconfig_entry("bare"),
               KubeconfigEntry("down", f"http://127.0.0.1:{port}")]
    config = make_config(str(tmp_path), entries, placed=False)
    good.apply("nodes", node("n1", region="us-east1", zone="us-east1-b"))

    text, rc = await asyncio.to_thread(run_preflight, config, clusters=["good"])
    assert rc == EXIT_OK
    assert text.splitlines()[0] == "cluster good (context good): ok"
    assert "list services" in text and "4 objects, 2 federated" in text

    text, rc = await asyncio.to_thread(run_preflight, config, clusters=["good", "bare"])
    assert rc == EXIT_WARNINGS
    assert "cluster bare (context bare): warn" in text
    assert text.rstrip().splitlines()[-1] == "preflight: 2 clusters: 1 ok, 1 warn, 0 fail"

    doc, rc = await asyncio.to_thread(run_preflight, config, as_json=True, timeout=2.0)
    assert rc == EXIT_FAIL
    json.dumps(doc)  # JSON data, as the CLI embeds it
    assert doc["verdict"] == "fail" and doc["exit_code"] == EXIT_FAIL
    assert [c["cluster"] for c in doc["clusters"]] == ["good", "bare", "down"]
    by_name = {c["cluster"]: c for c in doc["clusters"]}
    assert [by_name[n]["verdict"] for n in ("good", "bare", "down")] == ["ok", "warn", "fail"]
    services = next(s for s in by_name["good"]["steps"] if s["name"] == "list services")
    assert services == {"name": "list services", "verdict": "ok",
                        "detail": "4 objects, 2 federated", "listed": 4, "federated": 2,
                        "at_least": False}
    assert by_name["good"]["version"] == "v1.30.0-fedns-sim"
    assert by_name["down"]["version"] is None
    assert by_name["down"]["context"] == "down"
    assert by_name["down"]["kubeconfig"] == config.clusters[0].kubeconfig
    assert set(by_name["down"]["steps"][-1]) == {"name", "verdict", "detail"}


def test_exit_code_rule() -> None:
    ok = ClusterCheck("a", None, "k", (Step("connect", "ok", "x"),))
    warn = ClusterCheck("b", None, "k", (Step("connect", "ok", "x"), Step("nodes", "warn", "y")))
    fail = ClusterCheck("c", None, "k", (Step("connect", "fail", "x"),))
    assert exit_code([]) == EXIT_OK
    assert exit_code([ok]) == EXIT_OK
    assert exit_code([ok, warn]) == EXIT_WARNINGS
    assert exit_code([warn, fail, ok]) == EXIT_FAIL


async def test_no_kubernetes_clusters_means_nothing_to_check(tmp_path: Any) -> None:
    config = Config(zone="example.com.", federation="fed", regions=(REGION,),
                    clusters=(Cluster(name="s", region="us-east1", zone="us-east1-b"),))
    assert await preflight(config) == []
    text, rc = await asyncio.to_thread(run_preflight, config)
    assert rc == EXIT_OK and "no source: kubernetes clusters" in text


async def test_bad_arguments_are_clear_errors(tmp_path: Any) -> None:
    config = make_config(str(tmp_path), [KubeconfigEntry("a", "http://127.0.0.1:1")])
    config = replace(config, clusters=(
        *config.clusters, Cluster(name="s", region="us-east1", zone="us-east1-b")))
    with pytest.raises(PreflightError, match=r"unknown cluster 'x' \(kubernetes clusters: a\)"):
        await preflight(config, clusters=["x"])
    with pytest.raises(PreflightError, match="cluster 's' is source: static"):
        await preflight(config, clusters=["s"])
    with pytest.raises(PreflightError, match="timeout must be a positive"):
        await preflight(config, call_timeout=0)


async def test_clusters_run_in_parallel_bounded(sim: Start, tmp_path: Any) -> None:
    apis = [await sim(f"c{i}") for i in range(3)]
    for api in apis:
        api.apply("services", service("web", lb_ips=["192.0.2.1"]))
    config = make_config(str(tmp_path), [a.kubeconfig_entry(a.name) for a in apis])
    checks = await preflight(config, parallel=1)
    assert [c.cluster for c in checks] == ["c0", "c1", "c2"]  # the config's order
    assert all(c.verdict == "ok" and step(c, "list services").federated == 1 for c in checks)
    with pytest.raises(PreflightError, match="parallel"):
        await preflight(config, parallel=0)


async def test_a_bug_in_one_cluster_is_a_failed_check_not_a_crash(
        sim: Start, tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    api = await sim("a")
    config = make_config(str(tmp_path), [api.kubeconfig_entry("a")])

    def broken(*args: object) -> object:
        raise RuntimeError("boom")

    monkeypatch.setattr(preflight_module, "load_client", broken)
    [check] = await preflight(config)
    assert check.verdict == "fail"
    assert check.steps[-1] == Step("preflight", "fail", "crashed: RuntimeError: boom")
