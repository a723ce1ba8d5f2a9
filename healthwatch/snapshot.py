"""The immutable Snapshot: everything fedns publishes, at one serial.

The planner builds it; the DNS server and the providers only read it. It is
plain data and round-trips through JSON (``to_json``/``from_json``) so it can
be persisted as last-known-good state and shipped between worker processes.

Localities are strings:

- ``""``                 unknown client (the static view: every healthy shard)
- ``"region:<region>"``  a client located in a region
- ``"zone:<az>"``        a client located in an availability zone
- ``"cluster:<name>"``   a client inside a member cluster (``geo.cluster_local``)
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

UNKNOWN = ""


def region_locality(region: str) -> str:
    return f"region:{region}"


def zone_locality(az: str) -> str:
    return f"zone:{az}"


def cluster_locality(cluster: str) -> str:
    return f"cluster:{cluster}"


@dataclass(frozen=True, slots=True, order=True)
class Record:
    """One resource record; ``value`` is the rdata in zone-file presentation."""

    name: str  # absolute, lower-case, with trailing dot
    rtype: str  # "A", "AAAA", "CNAME", "TXT", "MX", "SRV", "CAA", "NS", "SOA", ...
    ttl: int
    value: str

    def zone_line(self) -> str:
        return f"{self.name}\t{self.ttl}\tIN\t{self.rtype}\t{self.value}"


@dataclass(frozen=True, slots=True)
class ShardStatus:
    service: str  # "namespace/name", else "<kind>:namespace/name" (ShardSpec.service)
    cluster: str
    region: str
    zone: str
    addresses: tuple[str, ...]
    hostnames: tuple[str, ...]
    ready: int
    healthy: bool
    reason: str
    drained: bool = False
    changed_at: float = 0.0
    # An Ingress shard's rule hosts (absolute, lower-case: its geo-aware
    # names, as ``ShardSpec.hosts``); () for a Service shard, and for an
    # Ingress shard of a Snapshot persisted before the field existed.
    hosts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ClusterStatus:
    name: str
    region: str
    zone: str
    source: str
    synced: bool
    reachable: bool
    last_contact: float | None
    last_error: str | None
    drained: bool = False


@dataclass(frozen=True, slots=True)
class Snapshot:
    serial: int
    generated_at: float
    zone: str
    ttl: int
    records: tuple[Record, ...]  # locality-free records (apex, static, AZ/region names)
    geo: Mapping[str, Mapping[str, tuple[Record, ...]]]  # name -> locality -> answer
    localities: tuple[str, ...]  # every locality a client can be mapped to, "" first
    shards: tuple[ShardStatus, ...] = ()
    clusters: tuple[ClusterStatus, ...] = ()
    stale: bool = False  # loaded from last-known-good state, not yet confirmed live
    failovers: tuple[str, ...] = field(default=())  # geo names answered outside home
    # Delta hint for consumers that rebuild incrementally (not serialised, not
    # compared: two Snapshots with the same content are equal whatever the hint):
    # ``changed`` holds every name whose records or geo answers differ from the
    # Snapshot at serial ``base_serial`` (the apex is always in it: the SOA
    # serial moves). None: unknown, treat every name as changed.
    base_serial: int | None = field(default=None, compare=False)
    changed: frozenset[str] | None = field(default=None, compare=False)

    def geo_answer(self, name: str, locality: str) -> tuple[Record, ...] | None:
        """The answer for a geo-aware ``name`` and a client ``locality``, or None."""
        per = self.geo.get(name)
        if per is None:
            return None
        ans = per.get(locality)
        if ans is None:
            ans = per.get(UNKNOWN, ())
        return ans

    def view(self, locality: str = UNKNOWN) -> list[Record]:
        """Every record as a client in ``locality`` is answered, sorted."""
        out = list(self.records)
        for name in self.geo:
            ans = self.geo_answer(name, locality)
            if ans:
                out.extend(ans)
        out.sort()
        return out

    def static_view(self) -> list[Record]:
        """The locality-free view that providers publish."""
        return self.view(UNKNOWN)

    def names(self) -> Iterator[str]:
        seen: set[str] = set()
        for r in self.records:
            if r.name not in seen:
                seen.add(r.name)
                yield r.name
        for n in self.geo:
            if n not in seen:
                seen.add(n)
                yield n

    # -- serialisation -------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "serial": self.serial,
            "generated_at": self.generated_at,
            "zone": self.zone,
            "ttl": self.ttl,
            "records": [_rec(r) for r in self.records],
            "geo": {
                name: {loc: [_rec(r) for r in ans] for loc, ans in per.items()}
                for name, per in self.geo.items()
            },
            "localities": list(self.localities),
            "shards": [_shard(s) for s in self.shards],
            "clusters": [_cluster(c) for c in self.clusters],
            "stale": self.stale,
            "failovers": list(self.failovers),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Snapshot:
        return cls(
            serial=int(d["serial"]),
            generated_at=float(d["generated_at"]),
            zone=str(d["zone"]),
            ttl=int(d["ttl"]),
            records=_recs(d["records"]),
            geo={
                str(name): {str(loc): _recs(ans) for loc, ans in per.items()}
                for name, per in d["geo"].items()
            },
            localities=tuple(str(x) for x in d["localities"]),
            shards=tuple(_shard_status(s) for s in d.get("shards", ())),
            clusters=tuple(ClusterStatus(**c) for c in d.get("clusters", ())),
            stale=bool(d.get("stale", False)),
            failovers=tuple(d.get("failovers", ())),
        )

    @classmethod
    def from_json(cls, text: str) -> Snapshot:
        return cls.from_dict(json.loads(text))


def _rec(r: Record) -> list[Any]:
    return [r.name, r.rtype, r.ttl, r.value]


def _recs(items: Iterable[Any]) -> tuple[Record, ...]:
    return tuple(Record(str(n), str(t), int(ttl), str(v)) for n, t, ttl, v in items)


def _shard(s: ShardStatus) -> dict[str, Any]:
    return {
        "service": s.service, "cluster": s.cluster, "region": s.region, "zone": s.zone,
        "addresses": list(s.addresses), "hostnames": list(s.hostnames), "ready": s.ready,
        "healthy": s.healthy, "reason": s.reason, "drained": s.drained,
        "changed_at": s.changed_at, "hosts": list(s.hosts),
    }


def _shard_status(d: Mapping[str, Any]) -> ShardStatus:
    """A shard from ``_shard``'s dict; one without ``hosts`` (written before
    the field existed) has none."""
    return ShardStatus(**{**d, "addresses": _strs(d, "addresses", d["addresses"]),
                          "hostnames": _strs(d, "hostnames", d["hostnames"]),
                          "hosts": _strs(d, "hosts", d.get("hosts", ()))})


def _strs(d: Mapping[str, Any], key: str, items: Any) -> tuple[str, ...]:
    if not isinstance(items, list | tuple) or not all(isinstance(x, str) for x in items):
        raise ValueError(f"shard {d.get('cluster')}/{d.get('service')}: {key} must be a "
                         f"list of strings, not {items!r}")
    return tuple(items)


def _cluster(c: ClusterStatus) -> dict[str, Any]:
    return {
        "name": c.name, "region": c.region, "zone": c.zone, "source": c.source,
        "synced": c.synced, "reachable": c.reachable, "last_contact": c.last_contact,
        "last_error": c.last_error, "drained": c.drained,
    }
