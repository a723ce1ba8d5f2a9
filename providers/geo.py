"""Cloud DNS geo routing of the geo-aware names (SPEC section 6, opt-in).

With ``routing: geo`` a Cloud DNS provider publishes every geo-aware name of
the Snapshot (global service names, Ingress hosts) as one resource record set
per (name, type) carrying a routing policy ``routingPolicy.geo.items[]``
(``providers.regions``): one item per mapped fedns region, its ``location`` the
Google Cloud region that ``geo_regions`` maps the fedns region to, its
``rrdatas`` exactly what fedns's own server answers a client in that fedns
region.  Cloud DNS answers a query from the item whose location is nearest to
the client.  The TTL is the set's (Cloud DNS has no TTL per item): the lowest
of the regional answers'.

This module also holds the wire shape of such a set (the google-cloud-dns
library can neither parse nor emit ``routingPolicy``): ``to_api`` writes it,
``parse_routed`` recognises exactly what fedns writes.  A set is fedns-shaped
when its policy is a geo policy and nothing else (no ``rrdatas`` beside it, no
health check, no fencing, no health-checked targets, no DNSSEC signatures),
every item has a well-formed location, used once, and non-empty ``rrdatas``.
Ownership is then decided by the TXT marker like for plain sets; items whose
location is no longer mapped still parse (so a changed ``geo_regions``
converges instead of stranding the set).  Any other shape is foreign.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from config.model import Provider
from healthwatch.snapshot import Snapshot
from providers.regions import RegionMap, region_map, route_by_region
from providers.rrset import Route, RRKey, RRSet, absolute, make_routed, normalized

POLICY = "geo"
LOCATION = re.compile(r"^[a-z]+-[a-z]+[0-9]{1,2}$")  # Google Cloud region; = schema gcp_region
_TOP = frozenset({"name", "type", "ttl", "routingPolicy", "kind"})
_ITEM = frozenset({"location", "rrdatas", "kind"})

Rrset = dict[str, Any]


def geo_regions(provider: Provider) -> RegionMap:
    """The provider's (fedns region, Google Cloud region) pairs, or () when it
    does not route by geo (``routing`` absent or ``all``, not Cloud DNS, or a
    delegating provider, which publishes NS records only)."""
    return region_map(provider, "clouddns", POLICY, "geo_regions")


def route_by_geo(snapshot: Snapshot, sets: Mapping[RRKey, RRSet],
                 regions: RegionMap) -> dict[RRKey, RRSet]:
    """``sets`` with each geo-aware name's plain sets replaced by geo-routed
    sets (set_id: the fedns region; region: its Google Cloud location), every
    item at the set's TTL, as Cloud DNS holds one TTL per set."""
    out = route_by_region(snapshot, sets, regions, lambda r: r, POLICY)
    for key, rr in out.items():
        if rr.routes:
            out[key] = make_routed(rr.name, rr.rtype,
                                   [Route(r.set_id, r.region, rr.ttl, r.values)
                                    for r in rr.routes], POLICY)
    return out


def to_api(rr: RRSet) -> Rrset:
    """The Cloud DNS ResourceRecordSet JSON of ``rr`` (plain or geo-routed)."""
    if not rr.routes:
        return {"name": rr.name, "type": rr.rtype, "ttl": rr.ttl, "rrdatas": list(rr.values)}
    items = [{"location": r.region, "rrdatas": list(r.values)}
             for r in sorted(rr.routes, key=lambda r: r.region)]
    return {"name": rr.name, "type": rr.rtype, "ttl": rr.ttl,
            "routingPolicy": {"geo": {"items": items}}}


def _items(rs: Rrset) -> list[dict[str, Any]] | None:
    """The geo items of a fedns-shaped routed set ``rs``, or None."""
    if set(rs) - _TOP:
        return None
    policy = rs.get("routingPolicy")
    if not isinstance(policy, dict) or set(policy) - {"geo", "kind"}:
        return None
    geo = policy.get("geo")
    if not isinstance(geo, dict) or set(geo) - {"items", "kind", "enableFencing"} \
            or geo.get("enableFencing", False) is not False:
        return None
    items = geo.get("items")
    if not isinstance(items, list) or not items:
        return None
    seen: set[str] = set()
    for item in items:
        if not isinstance(item, dict) or set(item) - _ITEM:
            return None
        loc, datas = item.get("location"), item.get("rrdatas")
        if not isinstance(loc, str) or LOCATION.match(loc) is None or loc in seen:
            return None
        if not isinstance(datas, list) or not datas \
                or not all(isinstance(v, str) for v in datas):
            return None
        seen.add(loc)
    return items


def parse_routed(key: RRKey, rs: Rrset, locations: Mapping[str, str]) -> RRSet | None:
    """The RRSet fedns would have written as the listed routed set ``rs``, or
    None when it has a shape fedns never writes.  ``locations``: Google Cloud
    region -> fedns region (the set_id); an unmapped location is its own id."""
    items = _items(rs)
    if items is None:
        return None
    try:
        ttl = int(rs.get("ttl", 0))
    except (TypeError, ValueError):
        return None
    routes = [Route(locations.get(it["location"], it["location"]), it["location"], ttl,
                    normalized(key[1], it["rrdatas"])) for it in items]
    return make_routed(absolute(key[0]), key[1], routes, POLICY)


def exact(rs: Rrset) -> Rrset:
    """A listed set as a deletion repeats it: its data exactly as listed
    (values and item order untouched), without the output-only ``kind``s."""
    out: Rrset = {"name": rs["name"], "type": rs["type"], "ttl": rs.get("ttl", 0)}
    if "routingPolicy" not in rs:
        out["rrdatas"] = list(rs.get("rrdatas", []))
        return out
    items = [{"location": it["location"], "rrdatas": list(it["rrdatas"])}
             for it in rs["routingPolicy"]["geo"]["items"]]
    out["routingPolicy"] = {"geo": {"items": items}}
    return out


def rrdatas(rs: Rrset) -> list[str]:
    """Every value of a set as sent: its own ``rrdatas`` or its items'."""
    out = [str(v) for v in rs.get("rrdatas", [])]
    policy = rs.get("routingPolicy")
    if isinstance(policy, dict) and isinstance(policy.get("geo"), dict):
        for it in policy["geo"].get("items", []):
            out += [str(v) for v in it.get("rrdatas", [])]
    return out
