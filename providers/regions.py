"""Routing geo-aware names by region, for providers with a native policy
(SPEC section 6: Route53 latency sets, Cloud DNS geo routing policies).

Each geo-aware name of the Snapshot (global service names, Ingress hosts) is
published as one routed record set per (name, type) whose members
(``Route``) are valued exactly as fedns's own server answers a client located
in a mapped fedns region (``Snapshot.geo_answer(name, "region:<r>")``:
fallback order and ``max_answers`` already applied by the planner).  The
service then picks a member by its own notion of the client's nearest region.

A name whose regional answers mix a CNAME with other types cannot be held
(a CNAME shares its name with nothing) and stays plain.  Every other name
(AZ/region levels, static records) is untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from config.model import Provider
from healthwatch.snapshot import Snapshot, region_locality
from providers.rrset import Route, RRKey, RRSet, absolute, make_routed, normalized

RegionMap = tuple[tuple[str, str], ...]  # (fedns region, the service's region), sorted


def region_map(provider: Provider, ptype: str, routing: str, key: str) -> RegionMap:
    """The provider's (fedns region, service region) pairs under ``key``, or ()
    unless it is a ``ptype`` provider with ``routing: <routing>`` (a delegating
    provider publishes NS records only: never routed)."""
    if provider.type != ptype or provider.delegate or provider.get("routing") != routing:
        return ()
    raw = provider.get(key)
    items: Iterable[object]
    if isinstance(raw, Mapping):
        items = raw.items()
    elif isinstance(raw, tuple | list):
        items = raw
    else:
        return ()
    pairs = []
    for item in items:
        if isinstance(item, tuple | list) and len(item) == 2:
            pairs.append((str(item[0]).lower(), str(item[1])))
    return tuple(sorted(dict(pairs).items()))


def route_by_region(snapshot: Snapshot, sets: Mapping[RRKey, RRSet], regions: RegionMap,
                    set_id: Callable[[str], str], policy: str) -> dict[RRKey, RRSet]:
    """``sets`` (the static view, grouped) with each geo-aware name's plain
    sets replaced by routed sets: one ``Route(set_id(r), service region, ttl,
    values)`` per mapped fedns region ``r`` that has an answer of that type."""
    out = dict(sets)
    if not regions:
        return out
    for name, per in snapshot.geo.items():
        rname = absolute(name)
        by_type: dict[str, list[Route]] = {}
        for region, theirs in regions:
            answer = snapshot.geo_answer(name, region_locality(region)) or ()
            values: dict[str, list[str]] = {}
            ttls: dict[str, int] = {}
            for r in answer:
                t = r.rtype.upper()
                values.setdefault(t, []).append(r.value)
                ttls[t] = min(ttls.get(t, r.ttl), r.ttl)
            for t, vals in values.items():
                by_type.setdefault(t, []).append(
                    Route(set_id(region), theirs, ttls[t], normalized(t, vals)))
        if "CNAME" in by_type and len(by_type) > 1:
            continue  # not representable: the plain answer stays
        geo_types = {r.rtype.upper() for ans in per.values() for r in ans}
        for t in geo_types:
            out.pop((rname, t), None)
        for t, routes in by_type.items():
            out[(rname, t)] = make_routed(rname, t, routes, policy)
    return dict(sorted(out.items()))
