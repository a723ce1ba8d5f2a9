"""The planner: (config, reports, health, drains) -> immutable Snapshot.

``plan`` is a pure function: no I/O and no clock reads (``now`` and the
``serial`` are passed in), so the same inputs always give the same Snapshot.
It decides every answer ahead of time, keyed by (name, locality); the DNS
server only looks answers up. ``Planner`` (``plan_state``) gives the same
result incrementally: it re-plans only what changed since its last call.

Names (SPEC section 2), for Service ``S`` in namespace ``N``:

- ``S.N.F.svc.AZ.REGION.Z``: A/AAAA of healthy shards in the AZ, else
  CNAME to the region name;
- ``S.N.F.svc.REGION.Z``: A/AAAA of healthy shards in the region, else
  CNAME to the global name;
- ``S.N.F.svc.Z`` and every Ingress host inside ``Z``: geo-aware, one answer
  per locality (see ``Snapshot``), in ``Snapshot.geo``.

A region "has a failover" for a geo name when the name has shards in that
region but none of them is healthy and the region's clients are sent
elsewhere; ``Snapshot.failovers`` lists such names. Shards whose probe has
not reported yet (start-up) do not count as failed over.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from config.model import Config
from healthwatch.drains import DrainSet
from healthwatch.model import ClusterReport, ShardHealth
from healthwatch.plan_groups import global_name, in_zone, region_name, zone_name
from healthwatch.plan_state import (
    SOA_EXPIRE,
    SOA_REFRESH,
    SOA_RETRY,
    Planner,
    ShardKey,
    apex_records,
    same_but_soa,
    soa_index,
    soa_rname,
)
from healthwatch.snapshot import Record, Snapshot

__all__ = [
    "SOA_EXPIRE", "SOA_REFRESH", "SOA_RETRY", "Planner", "ShardKey", "apex_records",
    "global_name", "in_zone", "plan", "region_name", "same_but_soa", "soa_rname", "with_serial",
    "zone_name",
]


def plan(
    config: Config,
    reports: Mapping[str, ClusterReport],
    health: Mapping[ShardKey, ShardHealth],
    drains: DrainSet,
    serial: int,
    now: float,
    *,
    previous: Snapshot | None = None,
) -> Snapshot:
    """Build the Snapshot for ``serial`` at time ``now``.

    ``health`` holds the probe verdict of probed shards (``ProbeState.health``);
    shards without a probe need no entry. ``previous`` (optional) carries
    each shard's ``changed_at`` over while its verdict stays the same.
    """
    return Planner().plan(config, reports, health, drains, serial, now, previous=previous)


def with_serial(snapshot: Snapshot, serial: int, generated_at: float | None = None) -> Snapshot:
    """The same Snapshot at another serial (the SOA record is rewritten)."""
    records = snapshot.records
    i = soa_index(records, snapshot.zone)
    if i is not None:
        records = records[:i] + (_soa_at(records[i], serial),) + records[i + 1:]  # noqa: RUF005
    else:  # not sorted (hand-made): look everywhere
        records = tuple(_soa_at(r, serial) if r.rtype == "SOA" and r.name == snapshot.zone
                        else r for r in records)
    return replace(snapshot, serial=serial, records=records,
                   generated_at=snapshot.generated_at if generated_at is None else generated_at)


def _soa_at(r: Record, serial: int) -> Record:
    f = r.value.split()
    if len(f) != 7:
        return r
    f[2] = str(serial)
    return Record(r.name, r.rtype, r.ttl, " ".join(f))
