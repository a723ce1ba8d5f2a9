"""Route53 latency routing of the geo-aware names (SPEC section 6, opt-in).

With ``routing: latency`` a Route53 provider publishes every geo-aware name of
the Snapshot (global service names, Ingress hosts) as one latency record set
per mapped fedns region instead of one plain set of all healthy shards
(``providers.regions``):

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
from collections.abc import Mapping

from config.model import Provider
from healthwatch.snapshot import Snapshot
from providers.regions import RegionMap, region_map, route_by_region
from providers.rrset import RRKey, RRSet

SET_ID_PREFIX = "fedns-"
POLICY = "latency"
_SET_ID = re.compile(r"^fedns-[a-z0-9_][a-z0-9_-]{0,62}$")


def set_identifier(region: str) -> str:
    return SET_ID_PREFIX + region.lower()


def is_set_identifier(text: str) -> bool:
    """Whether ``text`` has the shape of a SetIdentifier fedns writes."""
    return _SET_ID.match(text) is not None


def latency_regions(provider: Provider) -> RegionMap:
    """The provider's (fedns region, AWS region) pairs, or () when it does not
    route by latency (``routing`` absent or ``all``, or not Route53, or a
    delegating provider, which publishes NS records only)."""
    return region_map(provider, "route53", "latency", "latency_regions")


def route_by_latency(snapshot: Snapshot, sets: Mapping[RRKey, RRSet],
                     regions: RegionMap) -> dict[RRKey, RRSet]:
    """``sets`` (the static view, grouped) with each geo-aware name's plain
    sets replaced by latency sets, one member per mapped region."""
    return route_by_region(snapshot, sets, regions, set_identifier, POLICY)
