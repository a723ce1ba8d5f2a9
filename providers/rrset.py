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

_NAME_TYPES = frozenset({"CNAME", "NS", "PTR", "DNAME"})


@dataclass(frozen=True, slots=True, order=True)
class RRSet:
    name: str  # absolute, lower-case, trailing dot
    rtype: str
    ttl: int
    values: tuple[str, ...]  # normalised, sorted, unique

    @property
    def key(self) -> RRKey:
        return (self.name, self.rtype)

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "type": self.rtype, "ttl": self.ttl,
                "values": list(self.values)}


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
    return RRSet(absolute(name), rtype, int(ttl),
                 tuple(sorted({normalize(rtype, v) for v in values})))


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
