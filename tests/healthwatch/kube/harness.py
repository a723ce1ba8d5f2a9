"""A fake member cluster plus a KubeSource watching it, for tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

from prometheus_client import CollectorRegistry

from config.model import Cluster, Config, Federation, Health, Region
from healthwatch.engine import Engine
from healthwatch.kube import KubeOptions, KubeSource
from healthwatch.model import ClusterReport, ShardSpec
from tests.fakekube import FakeKubeAPI, write_kubeconfig

FAST = KubeOptions(
    connect_timeout=1.0,
    request_timeout=2.0,
    watch_timeout=10,
    watch_read_margin=1.0,
    backoff_base=0.05,
    backoff_cap=0.2,
    heartbeat_interval=0.1,
    heartbeat_timeout=1.0,
    coalesce=0.002,
)

CONFIG = Config(zone="example.com.", federation="fed")


def one_cluster(api: FakeKubeAPI, tmp: str, grace: float,
                contexts: tuple[str, ...] = ("fed-a",)) -> Config:
    """A config with one Kubernetes cluster ``a`` (us-east1-b) watched through
    ``api``'s ``contexts[0]`` (the kubeconfig in ``tmp`` holds them all)."""
    path = write_kubeconfig(os.path.join(tmp, "kubeconfig"),
                            [api.kubeconfig_entry(c) for c in contexts])
    cluster = Cluster(name="a", region="us-east1", zone="us-east1-b", source="kubernetes",
                      kubeconfig=path, context=contexts[0])
    return Config(zone="example.com.", federation="fed",
                  regions=(Region("us-east1", (33.8, -84.4), ("us-east1-b",)),),
                  clusters=(cluster,), health=Health(cluster_grace=grace))


@dataclass
class One:
    """A fake member cluster and the engine watching it (``watched``)."""

    api: FakeKubeAPI
    engine: Engine


@contextlib.asynccontextmanager
async def watched(api: FakeKubeAPI, config: Config) -> AsyncIterator[One]:
    """An engine watching ``config``'s clusters through KubeSources with FAST
    options, started; stopped, and ``api`` killed, on the way out."""
    engine = Engine(config, source_factory=lambda c, cfg: KubeSource(c, cfg, FAST))
    await engine.start()
    try:
        yield One(api, engine)
    finally:
        await engine.stop()
        await api.kill()


class Harness:
    def __init__(self, tmp: str, name: str = "a", **cluster: Any) -> None:
        self.api = FakeKubeAPI(name=name)
        self.tmp = tmp
        self.name = name
        self.cluster_kw = cluster
        self.reports: list[ClusterReport] = []
        self.source: KubeSource | None = None
        self._changed = asyncio.Event()

    async def start(self, *, options: KubeOptions = FAST,
                    registry: CollectorRegistry | None = None, **overrides: Any) -> KubeSource:
        await self.api.start()
        path = self.api.write_kubeconfig(os.path.join(self.tmp, f"{self.name}.kubeconfig"),
                                         f"fed-{self.name}")
        kw: dict[str, Any] = {
            "name": self.name,
            "region": "us-east1",
            "zone": "us-east1-b",
            "source": "kubernetes",
            "kubeconfig": path,
            "context": f"fed-{self.name}",
        }
        kw.update(self.cluster_kw)
        kw.update(overrides)
        cluster = Cluster(**kw)
        self.source = KubeSource(cluster, replace(CONFIG, clusters=(cluster,)), options,
                                 registry=registry)
        await self.source.start(self._emit)
        return self.source

    def _emit(self, report: ClusterReport) -> None:
        self.reports.append(report)
        self._changed.set()

    @property
    def last(self) -> ClusterReport:
        return self.reports[-1]

    async def wait_for(
        self, pred: Callable[[ClusterReport], bool], within: float = 5.0
    ) -> ClusterReport:
        async def loop() -> ClusterReport:
            while True:
                if self.reports and pred(self.reports[-1]):
                    return self.reports[-1]
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(loop(), within)

    async def eventually(self, cond: Callable[[], bool], within: float = 5.0) -> None:
        deadline = asyncio.get_running_loop().time() + within
        while not cond():
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("condition not met")
            await asyncio.sleep(0.01)

    async def synced(self) -> ClusterReport:
        return await self.wait_for(lambda r: r.synced and r.reachable)

    async def close(self) -> None:
        if self.source is not None:
            await self.source.stop()
        await self.api.kill()


def shard(report: ClusterReport, name: str, kind: str = "service") -> ShardSpec | None:
    for s in report.shards:
        if s.name == name and s.kind == kind:
            return s
    return None


__all__ = ["CONFIG", "FAST", "Federation", "Harness", "One", "shard", "watched"]
