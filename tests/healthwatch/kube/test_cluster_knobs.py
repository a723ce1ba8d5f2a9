"""A cluster's own ``kubernetes`` block reaches that cluster only: YAML ->
Config -> Engine (the production source factory) -> KubeOptions -> the
requests on the wire of each simulated API server; a reload restarts only
the sources whose resolved knobs changed; the preflight lists each cluster
with its own knobs."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest

from config.loader import load_text
from config.model import Cluster, Config
from healthwatch.engine import Engine
from healthwatch.interfaces import Source
from healthwatch.kube.preflight import preflight
from healthwatch.snapshot import Snapshot
from healthwatch.sources import make_source
from tests.fakekube import FakeKubeAPI, endpoint_slice, service, write_kubeconfig
from tests.healthwatch.kube.test_engine_kube import _published

NAMES = ("a", "b")
WATCHED = ("services", "endpointslices", "ingresses")  # region and zone given: no Nodes

CONFIG = """\
zone: example.com.
federation: fed
regions:
  us-east1: {{location: [33.8, -84.4], zones: [us-east1-b]}}
clusters:
  - name: a
    region: us-east1
    zone: us-east1-b
    source: kubernetes
    kubeconfig: {kubeconfig}
    context: fed-a
    kubernetes:
      watch_timeout: {a_watch}
      list_limit: 2
  - {{name: b, region: us-east1, zone: us-east1-b, source: kubernetes,
     kubeconfig: {kubeconfig}, context: fed-b}}
kubernetes:
  watch_timeout: 30s
  heartbeat_interval: 100ms
  backoff_base: 50ms
  backoff_cap: 200ms
  list_limit: {top_limit}
"""


@dataclass
class Pair:
    """Two simulated member clusters, ``a`` and ``b``, and one kubeconfig for both."""

    apis: dict[str, FakeKubeAPI]
    kubeconfig: str

    def config(self, a_watch: str = "20s", top_limit: int = 3) -> Config:
        """CONFIG: ``a``'s own watch_timeout ``a_watch``, the top-level list_limit."""
        return load_text(CONFIG.format(kubeconfig=self.kubeconfig, a_watch=a_watch,
                                       top_limit=top_limit), "fedns.yaml")


@pytest.fixture
async def pair(tmp_path: object) -> AsyncIterator[Pair]:
    """``a`` and ``b``, each with three federated Services (more than one
    page of ``a``'s list_limit 2); killed on the way out."""
    apis = {name: FakeKubeAPI(name=name) for name in NAMES}
    try:
        for api in apis.values():
            await api.start()
            for i in range(3):
                api.apply("services", service(f"web{i}", lb_ips=[f"192.0.2.1{i}"]))
                api.apply("endpointslices", endpoint_slice(f"web{i}", ready=1))
        path = write_kubeconfig(os.path.join(str(tmp_path), "kubeconfig"),
                                [api.kubeconfig_entry(f"fed-{n}") for n, api in apis.items()])
        yield Pair(apis, path)
    finally:
        for api in apis.values():
            await api.kill()


def _limits(api: FakeKubeAPI) -> set[str | None]:
    return {r.query.get("limit") for r in api.lists("services")}


def _timeouts(api: FakeKubeAPI) -> list[str | None]:
    return [w.query.get("timeoutSeconds") for w in api.watches("services")]


def _all_open(api: FakeKubeAPI) -> bool:
    return all(api.open_watches(r) == 1 for r in WATCHED)


def _synced(snap: Snapshot) -> bool:
    return len(snap.clusters) == 2 and all(c.synced and c.reachable for c in snap.clusters)


async def _eventually(cond: Callable[[], bool], within: float = 5.0) -> None:
    """``cond()`` holds within ``within`` seconds (checked every 10 ms)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not cond():
        assert loop.time() < deadline, f"condition not met within {within}s"
        await asyncio.sleep(0.01)


async def test_each_cluster_lists_and_watches_with_its_own_knobs(pair: Pair) -> None:
    apis = pair.apis
    engine = Engine(pair.config())  # the production source factory
    await engine.start()
    try:
        await _published(engine, _synced, within=5.0)
        await _eventually(lambda: all(_all_open(api) for api in apis.values()))
        # a: its own list_limit (three objects: two pages) and watch_timeout
        assert [r.query.get("limit") for r in apis["a"].lists("services")] == ["2", "2"]
        assert set(_timeouts(apis["a"])) == {"20"}
        # b: the top-level block's
        assert _limits(apis["b"]) == {"3"}
        assert set(_timeouts(apis["b"])) == {"30"}
    finally:
        await engine.stop()


async def test_reload_restarts_only_the_clusters_whose_resolved_knobs_changed(
        pair: Pair) -> None:
    apis = pair.apis
    built: list[str] = []

    def factory(cluster: Cluster, config: Config) -> Source:
        built.append(cluster.name)
        return make_source(cluster, config)

    engine = Engine(pair.config(), source_factory=factory)
    seen: list[Snapshot] = []
    engine.subscribe(seen.append)
    await engine.start()
    try:
        await _published(engine, _synced, within=5.0)
        await _eventually(lambda: all(_all_open(api) for api in apis.values()))
        since = len(seen)
        # only a's own block changes: a restarts with it, b keeps running
        b_lists, b_watches = len(apis["b"].lists("services")), len(_timeouts(apis["b"]))
        await engine.reload(pair.config(a_watch="25s"))
        await _eventually(lambda: _timeouts(apis["a"])[-1:] == ["25"]
                          and _all_open(apis["a"]))
        assert built == ["a", "b", "a"]
        assert (len(apis["b"].lists("services")), len(_timeouts(apis["b"]))) == (
            b_lists, b_watches)
        # the top-level list_limit changes, which a overrides: only b restarts
        a_lists = len(apis["a"].lists("services"))
        await engine.reload(pair.config(a_watch="25s", top_limit=4))
        await _eventually(lambda: "4" in _limits(apis["b"]) and _all_open(apis["b"]))
        assert built == ["a", "b", "a", "b"]
        assert len(apis["a"].lists("services")) == a_lists
        await _published(engine, _synced, within=5.0)
        assert all(len(s.shards) == 6 for s in seen[since:])  # no flap while restarting
    finally:
        await engine.stop()


async def test_preflight_lists_each_cluster_with_its_own_knobs(pair: Pair) -> None:
    apis = pair.apis
    checks = await preflight(pair.config(), call_timeout=5.0)
    assert [(c.cluster, c.verdict) for c in checks] == [("a", "ok"), ("b", "ok")], checks
    assert _limits(apis["a"]) == {"2"}
    assert _limits(apis["b"]) == {"3"}
