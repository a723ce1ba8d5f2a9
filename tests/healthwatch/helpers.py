"""Builders shared by the healthwatch tests: configs and reports as plain values."""

from __future__ import annotations

from config.model import Cluster, Config, Health, Probe, Region, Server, StaticRecord
from healthwatch.model import ClusterReport, ShardSpec

ZONE = "example.com."
FED = "myfed"

# Four regions where name order and distance order differ: from us-west1 the
# alphabetical order starts with asia-east1, the distance order with us-east1.
REGIONS = (
    Region("asia-east1", (24.0, 121.0), ("asia-east1-a",)),
    Region("europe-west1", (50.4, 3.8), ("europe-west1-b",), fallback=("asia-east1",)),
    Region("us-east1", (33.8, -84.4), ("us-east1-b", "us-east1-c")),
    Region("us-west1", (45.6, -121.2), ("us-west1-a",)),
)

CLUSTERS = (
    Cluster("asia", "asia-east1", "asia-east1-a"),
    Cluster("eu", "europe-west1", "europe-west1-b"),
    Cluster("use", "us-east1", "us-east1-b"),
    Cluster("usw", "us-west1", "us-west1-a"),
)

ADDR = {"asia": "192.0.2.1", "eu": "192.0.2.2", "use": "192.0.2.3", "usw": "192.0.2.4"}


def make_config(**kw: object) -> Config:
    base: dict[str, object] = dict(
        zone=ZONE, federation=FED, ttl=30,
        nameservers=(("ns1.example.com.", ("127.0.0.1", "::1")),
                     ("ns.other.net.", ("198.51.100.1",))),
        regions=REGIONS, clusters=CLUSTERS,
        records=(StaticRecord("eu.nginx.example.com.", "CNAME",
                              "nginx.default.myfed.svc.europe-west1.example.com."),
                 StaticRecord("txt.example.com.", "TXT", '"hello"', ttl=300)),
        health=Health(), server=Server(),
    )
    base.update(kw)
    return Config(**base)  # type: ignore[arg-type]


def svc(cluster: str, *addresses: str, name: str = "nginx", namespace: str = "default",
        ready: int = 1, hostnames: tuple[str, ...] = (), cluster_ip: str | None = None,
        probe: Probe | None = None) -> ShardSpec:
    return ShardSpec(cluster=cluster, kind="service", namespace=namespace, name=name,
                     addresses=addresses, hostnames=hostnames, ready=ready,
                     cluster_ip=cluster_ip, probe=probe)


def ing(cluster: str, *addresses: str, hosts: tuple[str, ...],
        name: str = "web", namespace: str = "default") -> ShardSpec:
    return ShardSpec(cluster=cluster, kind="ingress", namespace=namespace, name=name,
                     addresses=addresses, ready=1, hosts=hosts)


def reports(*shards: ShardSpec, unreachable: dict[str, float | None] | None = None,
            clusters: tuple[str, ...] = ("asia", "eu", "use", "usw"),
            ) -> dict[str, ClusterReport]:
    """One report per cluster; ``unreachable`` maps cluster -> last_contact."""
    out: dict[str, ClusterReport] = {}
    unreachable = unreachable or {}
    for c in clusters:
        mine = tuple(s for s in shards if s.cluster == c)
        if c in unreachable:
            out[c] = ClusterReport(c, mine, reachable=False, last_contact=unreachable[c],
                                   last_error="watch failed")
        else:
            out[c] = ClusterReport(c, mine, last_contact=1000.0)
    return out


def gname(name: str = "nginx", ns: str = "default") -> str:
    return f"{name}.{ns}.{FED}.svc.{ZONE}"


def rname(region: str, name: str = "nginx", ns: str = "default") -> str:
    return f"{name}.{ns}.{FED}.svc.{region}.{ZONE}"


def zname(az: str, region: str, name: str = "nginx", ns: str = "default") -> str:
    return f"{name}.{ns}.{FED}.svc.{az}.{region}.{ZONE}"
