"""Source for ``source: static`` clusters: the shards written in the config."""

from __future__ import annotations

import logging
import time

from config.model import Cluster, Config, HttpProbe, Probe, TcpProbe
from healthwatch.interfaces import ReportSink
from healthwatch.model import ClusterReport, ShardSpec

DEFAULT_PROBE_PORT = 80


def default_probe(cluster: Cluster, addresses: tuple[str, ...]) -> Probe | None:
    """The cluster's ``default_probe`` aimed at the first address (port 80)."""
    if cluster.default_probe == "none" or not addresses:
        return None
    addr = addresses[0]
    if cluster.default_probe == "tcp":
        return TcpProbe(addr, DEFAULT_PROBE_PORT)
    host = f"[{addr}]" if ":" in addr else addr
    path = cluster.default_probe_path
    if not path.startswith("/"):
        path = "/" + path
    return HttpProbe(f"http://{host}{path}")


def static_shards(cluster: Cluster) -> tuple[ShardSpec, ...]:
    out: list[ShardSpec] = []
    for s in cluster.services:
        out.append(ShardSpec(
            cluster=cluster.name, kind="service", namespace=s.namespace, name=s.name,
            addresses=s.addresses, hostnames=tuple(h.lower() for h in s.hostnames),
            ready=s.ready, cluster_ip=s.cluster_ip,
            probe=s.probe if s.probe is not None else default_probe(cluster, s.addresses),
            weight=s.weight,
        ))
    for i in cluster.ingresses:
        out.append(ShardSpec(
            cluster=cluster.name, kind="ingress", namespace=i.namespace, name=i.name,
            addresses=i.addresses, hostnames=tuple(h.lower() for h in i.hostnames),
            ready=i.ready, hosts=tuple(h.lower() for h in i.hosts),
            probe=i.probe if i.probe is not None else default_probe(cluster, i.addresses),
        ))
    return tuple(out)


class StaticSource:
    """Reports the configured shards once: synced and reachable."""

    def __init__(self, cluster: Cluster, config: Config) -> None:
        self.cluster = cluster.name
        self._spec = cluster
        self._log = logging.getLogger(f"healthwatch.static[{cluster.name}]")

    async def start(self, emit: ReportSink) -> None:
        shards = static_shards(self._spec)
        self._log.info("source_started shards=%d", len(shards))
        emit(ClusterReport(
            cluster=self.cluster, shards=shards, synced=True, reachable=True,
            last_contact=time.time(), region=self._spec.region, zone=self._spec.zone,
        ))

    async def stop(self) -> None:
        return None
