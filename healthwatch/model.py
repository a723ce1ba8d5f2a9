"""Values that flow from sources through health checking into the planner.

A source reports what a member cluster runs (``ClusterReport`` holding
``ShardSpec``s); the engine adds health (``ShardHealth``); the planner turns
all of it into a ``Snapshot`` (see ``snapshot.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from config.model import (
    HOST_KINDS,
    SHARD_KINDS,
    Probe,
    ShardKind,
    kind_of,
    split_service,
)

# The annotation that drains a federated object's shard (``ShardSpec.drain``);
# Kubernetes sources read it (healthwatch/kube/facts.py), the drain API's
# answers name it.
DRAIN_ANNOTATION = "fedns.io/drain"


@dataclass(frozen=True, slots=True)
class ShardSpec:
    """One federated Service, Ingress or HTTPRoute in one member cluster, as observed."""

    cluster: str
    kind: ShardKind
    namespace: str
    name: str
    addresses: tuple[str, ...] = ()  # IPv4/IPv6 literals of the load balancer
    hostnames: tuple[str, ...] = ()  # LB hostnames not (yet) resolved
    ready: int = 0  # ready endpoints
    cluster_ip: str | None = None
    hosts: tuple[str, ...] = ()  # Ingress rule hosts, HTTPRoute hostnames (absolute, lower-case)
    probe: Probe | None = None
    weight: int | None = None
    region: str | None = None  # overrides the cluster's region/zone (from Node labels)
    zone: str | None = None
    # drained by its object's DRAIN_ANNOTATION: the reason ("" when it gives
    # none); None: not drained that way. The engine turns it into a drain.
    drain: str | None = None

    @property
    def key(self) -> tuple[str, str, str, str]:
        return (self.cluster, self.kind, self.namespace, self.name)

    @property
    def service(self) -> str:
        """``namespace/name`` (services), else ``<kind>:namespace/name``
        (``ingress:ns/name``, ``httproute:ns/name``): how drains, status and
        metrics name the shard. ``split_service`` reads it back."""
        base = f"{self.namespace}/{self.name}"
        return base if self.kind == "service" else f"{self.kind}:{base}"


@dataclass(frozen=True, slots=True)
class ClusterReport:
    """Everything one source knows about its cluster right now."""

    cluster: str
    shards: tuple[ShardSpec, ...]
    synced: bool = True  # has listed everything at least once
    reachable: bool = True  # watch alive / API answering
    # unix time of the last successful API contact (any list, event, settled
    # watch or heartbeat), whether or not ``reachable``
    last_contact: float | None = None
    last_error: str | None = None
    region: str | None = None  # discovered (Node labels) when config leaves it out
    zone: str | None = None
    # When not ``reachable``: the shard kinds whose inputs cannot be read (a
    # 403 on Ingresses alone leaves Service shards alone; a failing Node watch
    # only freezes placement). None: every kind.
    unreachable_kinds: frozenset[ShardKind] | None = None
    # When not ``reachable``: unix time of the onset of the failure, i.e. when
    # what fails now stopped working (a watch stream failed, a failing call or
    # heartbeat was sent). ``cluster_grace`` runs from here. None: from
    # ``last_contact`` (a source that never reached the API, or gave no onset).
    unreachable_since: float | None = None

    @property
    def grace_from(self) -> float | None:
        """When the grace of an unreachable cluster started (None: never contacted)."""
        return self.last_contact if self.unreachable_since is None else self.unreachable_since

    def affects(self, kind: ShardKind | None) -> bool:
        """Whether this report's unreachability applies to shards of ``kind``
        (None: to the cluster as a whole)."""
        if self.reachable:
            return False
        return kind is None or self.unreachable_kinds is None or kind in self.unreachable_kinds


@dataclass(frozen=True, slots=True)
class ShardHealth:
    """The verdict for one shard and why."""

    healthy: bool
    reason: str  # e.g. "ok", "probe failed: connection refused x2", "drained"
    probe_up: bool | None = None  # None: no probe configured
    changed_at: float = 0.0


# The shard kinds and the target syntax live in config (its ``drains`` reads
# targets too); they are healthwatch's vocabulary as well, so they stay
# importable from here.
__all__ = [
    "DRAIN_ANNOTATION",
    "HOST_KINDS",
    "SHARD_KINDS",
    "ClusterReport",
    "ShardHealth",
    "ShardKind",
    "ShardSpec",
    "kind_of",
    "split_service",
]
