"""Reloading the config restarts a changed cluster's source; what it published
must not flap or vanish meanwhile, even when its kubeconfig context is gone."""

from __future__ import annotations

from dataclasses import replace

from config.model import Config
from healthwatch.engine import Engine
from healthwatch.kube import KubeSource
from healthwatch.snapshot import Snapshot
from tests.fakekube import FakeKubeAPI, endpoint_slice, service
from tests.healthwatch.kube.harness import FAST, one_cluster
from tests.healthwatch.kube.test_engine_kube import _published

WEB = "default/web"


def _web_healthy(snap: Snapshot) -> bool:
    return any(s.service == WEB and s.healthy for s in snap.shards)


async def _setup(tmp: str, grace: float) -> tuple[FakeKubeAPI, Config, Engine, list[Snapshot]]:
    api = FakeKubeAPI(name="a")
    await api.start()
    api.apply("services", service("web", lb_ips=["192.0.2.10"]))
    api.apply("endpointslices", endpoint_slice("web", ready=2))
    config = one_cluster(api, tmp, grace, ("fed-a", "fed-a2"))
    engine = Engine(config, source_factory=lambda c, cfg: KubeSource(c, cfg, FAST))
    seen: list[Snapshot] = []
    engine.subscribe(seen.append)
    await engine.start()
    await _published(engine, _web_healthy, within=5.0)
    return api, config, engine, seen


async def test_reload_to_a_vanished_context_keeps_the_shards(tmp_path: object) -> None:
    api, config, engine, seen = await _setup(str(tmp_path), grace=0.3)
    try:
        since = len(seen)
        gone = replace(config.clusters[0], context="gone")
        snap = await engine.reload(replace(config, clusters=(gone,)))
        assert _web_healthy(snap)  # within the grace, from the old source's last contact
        # past the grace the shard is judged unreachable, but it is not removed
        late = await _published(engine, lambda s: any(
            sh.service == WEB and not sh.healthy for sh in s.shards), within=5.0)
        web = next(sh for sh in late.shards if sh.service == WEB)
        assert web.reason.startswith("cluster unreachable"), web.reason
        assert web.addresses == ("192.0.2.10",)
        assert "context 'gone' not found" in (late.clusters[0].last_error or "")
        assert all(any(sh.service == WEB for sh in s.shards) for s in seen[since:])
    finally:
        await engine.stop()
        await api.kill()


async def test_reload_that_restarts_a_source_does_not_flap(tmp_path: object) -> None:
    api, config, engine, seen = await _setup(str(tmp_path), grace=3.0)
    try:
        since = len(seen)
        moved = replace(config.clusters[0], context="fed-a2")  # same cluster, new source
        await engine.reload(replace(config, clusters=(moved,)))
        await _published(engine, lambda s: s.clusters[0].synced and s.clusters[0].reachable,
                         within=5.0)
        assert all(_web_healthy(s) for s in seen[since:])
    finally:
        await engine.stop()
        await api.kill()

