"""The config's ``kubernetes`` block reaches the running Kubernetes sources:
YAML -> Config -> Engine (the production source factory) -> KubeOptions ->
requests on the wire of the simulated API server; a reload that changes a
knob restarts the sources with the new values, without a flap."""

from __future__ import annotations

import dataclasses
import os
import time

from config.build_kubernetes import WATCH_SETTLE
from config.loader import load_text
from config.model import Cluster, Config, Kubernetes
from healthwatch.engine import Engine
from healthwatch.interfaces import Source
from healthwatch.kube import KubeOptions
from healthwatch.snapshot import Snapshot
from healthwatch.sources import make_source
from tests.fakekube import endpoint_slice, service
from tests.healthwatch.kube.harness import Harness
from tests.healthwatch.kube.test_engine_kube import _published

WEB = "default/web"
WATCHED = ("services", "endpointslices", "ingresses")  # region and zone given: no Nodes

CONFIG = """\
zone: example.com.
federation: fed
regions:
  us-east1: {{location: [33.8, -84.4], zones: [us-east1-b]}}
clusters:
  - {{name: a, region: us-east1, zone: us-east1-b, source: kubernetes,
     kubeconfig: {kubeconfig}, context: fed-a}}
kubernetes:
  watch_timeout: {watch_timeout}
  watch_idle_timeout: 1500ms
  heartbeat_interval: 100ms
  backoff_base: 50ms
  backoff_cap: 200ms
  list_limit: 2
"""


def _web(snap: Snapshot, address: str = "192.0.2.10") -> bool:
    return any(s.service == WEB and s.healthy and s.addresses == (address,)
               for s in snap.shards)


async def _config(kube: Harness, watch_timeout: str = "30s") -> Config:
    await kube.api.start()
    path = kube.api.write_kubeconfig(os.path.join(kube.tmp, "kubeconfig"), "fed-a")
    return load_text(CONFIG.format(kubeconfig=path, watch_timeout=watch_timeout), "fedns.yaml")


def _timeouts(kube: Harness, resource: str) -> list[str | None]:
    return [w.query.get("timeoutSeconds") for w in kube.api.watches(resource)]


def test_the_config_defaults_are_the_kube_options_defaults() -> None:
    assert KubeOptions.from_config(Kubernetes()) == KubeOptions()
    assert KubeOptions().watch_settle == WATCH_SETTLE  # config checks watch_idle_timeout by it


def test_every_knob_of_the_block_is_passed_on() -> None:
    knobs = Kubernetes(**{f.name: (i + 2) * 7 for i, f in enumerate(
        dataclasses.fields(Kubernetes))})
    options = KubeOptions.from_config(knobs)
    for f in dataclasses.fields(Kubernetes):
        assert getattr(options, f.name) == getattr(knobs, f.name), f.name


async def test_watch_idle_timeout_from_yaml_reopens_a_hung_watch(kube: Harness) -> None:
    """Behind a proxy that drops idle streams silently, a watch would miss every
    change until the default 75 s idle timeout: the config's 1.5 s applies."""
    kube.api.apply("services", service("web", lb_ips=["192.0.2.10"]))
    kube.api.apply("endpointslices", endpoint_slice("web", ready=2))
    for i in range(3):  # more than one page of list_limit 2
        kube.api.apply("services", service(f"other{i}", lb_ips=[f"192.0.2.2{i}"]))
    engine = Engine(await _config(kube))  # the production source factory
    await engine.start()
    try:
        await _published(engine, _web, within=5.0)
        await kube.eventually(lambda: all(kube.api.open_watches(r) for r in WATCHED))
        kube.api.hang("services", times=1)
        kube.api.drop_watches("services")
        await kube.eventually(lambda: any(w.injected == 200 for w in kube.api.watches("services")))
        hung_at = time.monotonic()
        kube.api.apply("services", service("web", lb_ips=["192.0.2.11"]))
        await _published(engine, lambda s: _web(s, "192.0.2.11"), within=4.0)
        assert time.monotonic() - hung_at < 1.5 + 1.0  # idle timeout + reconnect, not 75 s
        # resumed, no relist: one list of two pages of list_limit, at the start
        assert [r.query.get("limit") for r in kube.api.lists("services")] == ["2", "2"]
        assert set(_timeouts(kube, "services")) == {"30"}  # watch_timeout, on every watch
    finally:
        await engine.stop()


async def test_reload_with_a_changed_knob_restarts_the_source_without_a_flap(
        kube: Harness) -> None:
    kube.api.apply("services", service("web", lb_ips=["192.0.2.10"]))
    kube.api.apply("endpointslices", endpoint_slice("web", ready=2))
    built: list[Config] = []

    def factory(cluster: Cluster, config: Config) -> Source:
        built.append(config)
        return make_source(cluster, config)

    config = await _config(kube)
    engine = Engine(config, source_factory=factory)
    seen: list[Snapshot] = []
    engine.subscribe(seen.append)
    await engine.start()
    try:
        await _published(engine, lambda s: _web(s) and s.clusters[0].synced, within=5.0)
        await kube.eventually(lambda: all(kube.api.open_watches(r) for r in WATCHED))
        # the same knobs (another ttl): the source keeps running
        await engine.reload(dataclasses.replace(config, ttl=10))
        assert len(built) == 1
        since = len(seen)
        new = load_text(CONFIG.format(kubeconfig=config.clusters[0].kubeconfig,
                                      watch_timeout="20s"), "fedns.yaml")
        await engine.reload(new)
        assert [c.kubernetes.watch_timeout for c in built] == [30, 20]
        await kube.eventually(lambda: all(
            _timeouts(kube, r)[-1:] == ["20"] and kube.api.open_watches(r) == 1
            for r in WATCHED))
        assert len(kube.api.lists("services")) == 2  # the new source listed once
        await _published(engine, lambda s: s.clusters[0].synced and s.clusters[0].reachable,
                         within=5.0)
        assert all(_web(s) for s in seen[since:])  # carried over while it restarted
    finally:
        await engine.stop()
