"""Route53 latency routing of the geo-aware names (SPEC section 6, opt-in).

With ``routing: latency`` a Route53 provider publishes every geo-aware name of
the Snapshot (global service names, Ingress hosts) as one latency record set
per mapped fedns region instead of one plain set of all healthy shards:

- SetIdentifier ``fedns-<fedns region>`` (stable: it never depends on health);
- Region: the AWS region that ``latency_regions`` maps the fedns region to;
- values: exactly what fedns's own server answers a client located in that
  fedns region (``Snapshot.geo_answer(name, "region:<r>")``: fallback order
  and ``max_answers`` already applied by the planner), TTL as in the Snapshot.

A name whose regional answers mix a CNAME with other types cannot be held by
Route53 (a CNAME shares its name with nothing) and stays plain.  Every other
name (AZ/region levels, static records) is untouched.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from config.model import Provider
from healthwatch.snapshot import Snapshot, region_locality
from providers.rrset import Route, RRKey, RRSet, absolute, make_routed, normalized

SET_ID_PREFIX = "fedns-"
_SET_ID = re.compile(r"^fedns-[a-z0-9_][a-z0-9_-]{0,62}$")

RegionMap = tuple[tuple[str, str], ...]  # (fedns region, AWS region), sorted


def set_identifier(region: str) -> str:
    return SET_ID_PREFIX + region.lower()


def is_set_identifier(text: str) -> bool:
    """Whether ``text`` has the shape of a SetIdentifier fedns writes."""
    return _SET_ID.match(text) is not None


def latency_regions(provider: Provider) -> RegionMap:
    """The provider's (fedns region, AWS region) pairs, or () when it does not
    route by latency (``routing`` absent or ``all``, or not Route53, or a
    delegating provider, which publishes NS records only)."""
    if provider.type != "route53" or provider.delegate or provider.get("routing") != "latency":
        return ()
    raw = provider.get("latency_regions")
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


def route_by_latency(snapshot: Snapshot, sets: Mapping[RRKey, RRSet],
                     regions: RegionMap) -> dict[RRKey, RRSet]:
    """``sets`` (the static view, grouped) with each geo-aware name's plain
    sets replaced by latency sets, one member per mapped region."""
    out = dict(sets)
    if not regions:
        return out
    for name, per in snapshot.geo.items():
        rname = absolute(name)
        by_type: dict[str, list[Route]] = {}
        for region, aws in regions:
            answer = snapshot.geo_answer(name, region_locality(region)) or ()
            values: dict[str, list[str]] = {}
            ttls: dict[str, int] = {}
            for r in answer:
                t = r.rtype.upper()
                values.setdefault(t, []).append(r.value)
                ttls[t] = min(ttls.get(t, r.ttl), r.ttl)
            for t, vals in values.items():
                by_type.setdefault(t, []).append(
                    Route(set_identifier(region), aws, ttls[t], normalized(t, vals)))
        if "CNAME" in by_type and len(by_type) > 1:
            continue  # not representable: the plain answer stays
        geo_types = {r.rtype.upper() for ans in per.values() for r in ans}
        for t in geo_types:
            out.pop((rname, t), None)
        for t, routes in by_type.items():
            out[(rname, t)] = make_routed(rname, t, routes)
    return dict(sorted(out.items()))
