"""Record sets: the unit every provider plans and applies.

A ``Record`` of the Snapshot is one value; providers publish *record sets*
(name, type) with one TTL and a sorted tuple of normalised values, so that
values read back from an API compare equal to the ones fedns wants.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from healthwatch.snapshot import Record

RRKey = tuple[str, str]  # (absolute lower-case name, TYPE)


@dataclass(frozen=True, slots=True, order=True)
class Route:
    """One member of a routed record set (Route53 latency set, Cloud DNS geo
    policy item): the values answered to clients nearest ``region``, under a
    stable ``set_id`` (Route53: its SetIdentifier; Cloud DNS: the fedns region)."""

    set_id: str
    region: str  # the service's routing region (AWS region, Google Cloud region)
    ttl: int
    values: tuple[str, ...]  # normalised, sorted, unique

_NAME_TYPES = frozenset({"CNAME", "NS", "PTR", "DNAME"})


@dataclass(frozen=True, slots=True, order=True)
class RRSet:
    name: str  # absolute, lower-case, trailing dot
    rtype: str
    ttl: int
    values: tuple[str, ...]  # normalised, sorted, unique; () when routed
    routes: tuple[Route, ...] = ()  # sorted by set_id; non-empty: a routed set
    policy: str = ""  # routed sets: the service's policy ("latency", "geo")

    @property
    def key(self) -> RRKey:
        return (self.name, self.rtype)

    @property
    def routed(self) -> bool:
        return bool(self.routes)

    def show(self) -> str:
        """The values in one line: ``v1 v2`` or ``<policy>[id@region: v1 v2; ...]``."""
        if not self.routes:
            return " ".join(self.values)
        return f"{self.policy}[" + "; ".join(
            f"{r.set_id}@{r.region}: {' '.join(r.values)}" for r in self.routes) + "]"

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {"name": self.name, "type": self.rtype, "ttl": self.ttl,
                                  "values": list(self.values)}
        if self.routes:
            out["routing"] = self.policy
            out["routes"] = [route_json(r) for r in self.routes]
        return out


def route_json(r: Route) -> dict[str, object]:
    return {"set_identifier": r.set_id, "region": r.region, "ttl": r.ttl,
            "values": list(r.values)}


def absolute(name: str) -> str:
    name = name.strip().lower()
    return name if name.endswith(".") else name + "."


def in_zone(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone) or zone == "."


def _quote_txt(value: str) -> str:
    v = value.strip()
    if v.startswith('"'):
        return v
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def normalize(rtype: str, value: str) -> str:
    """Canonical presentation of one rdata so API read-backs compare equal."""
    v = value.strip()
    try:
        if rtype == "A":
            return str(ipaddress.IPv4Address(v))
        if rtype == "AAAA":
            return str(ipaddress.IPv6Address(v))
    except ValueError:
        return v
    if rtype in _NAME_TYPES:
        return absolute(v)
    if rtype == "MX":
        parts = v.split()
        if len(parts) == 2:
            return f"{int(parts[0])} {absolute(parts[1])}"
    if rtype == "SRV":
        parts = v.split()
        if len(parts) == 4:
            return f"{int(parts[0])} {int(parts[1])} {int(parts[2])} {absolute(parts[3])}"
    if rtype in ("TXT", "SPF"):
        return _quote_txt(v)
    return " ".join(v.split())


def make_rrset(name: str, rtype: str, ttl: int, values: Iterable[str]) -> RRSet:
    rtype = rtype.upper()
    return RRSet(absolute(name), rtype, int(ttl), normalized(rtype, values))


def normalized(rtype: str, values: Iterable[str]) -> tuple[str, ...]:
    return tuple(sorted({normalize(rtype, v) for v in values}))


def make_routed(name: str, rtype: str, routes: Iterable[Route],
                policy: str = "latency") -> RRSet:
    """A routed record set; its ``ttl`` is the lowest of its routes'."""
    rs = tuple(sorted(routes))
    return RRSet(absolute(name), rtype.upper(), min((r.ttl for r in rs), default=0), (), rs,
                 policy)


def group(records: Iterable[Record]) -> dict[RRKey, RRSet]:
    """Group records into record sets; the set's TTL is the lowest of its records."""
    values: dict[RRKey, list[str]] = {}
    ttls: dict[RRKey, int] = {}
    for r in records:
        key = (absolute(r.name), r.rtype.upper())
        values.setdefault(key, []).append(r.value)
        ttls[key] = min(ttls.get(key, r.ttl), r.ttl)
    return {k: make_rrset(k[0], k[1], ttls[k], v) for k, v in sorted(values.items())}


def publishable(records: Iterable[Record], zone: str) -> list[Record]:
    """The static view minus what a hosting service owns itself (SOA, apex NS)."""
    apex = absolute(zone)
    out = []
    for r in records:
        if r.rtype == "SOA":
            continue
        if r.rtype == "NS" and absolute(r.name) == apex:
            continue
        out.append(r)
    return out
