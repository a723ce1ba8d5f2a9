"""The planner: (config, reports, health, drains) -> immutable Snapshot.

``plan`` is a pure function: no I/O and no clock reads (``now`` and the
``serial`` are passed in), so the same inputs always give the same Snapshot.
It decides every answer ahead of time, keyed by (name, locality); the DNS
server only looks answers up.

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

import functools
import hashlib
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from config.model import Cluster, Config
from healthwatch.drains import DrainSet
from healthwatch.geometry import fallback_order
from healthwatch.hysteresis import PENDING_REASON, judge
from healthwatch.model import ClusterReport, ShardHealth, ShardSpec
from healthwatch.snapshot import (
    UNKNOWN,
    ClusterStatus,
    Record,
    ShardStatus,
    Snapshot,
    cluster_locality,
    region_locality,
    zone_locality,
)

ShardKey = tuple[str, str, str, str]  # ShardSpec.key

SOA_REFRESH = 3600
SOA_RETRY = 600
SOA_EXPIRE = 86400


@dataclass(frozen=True, slots=True)
class _Placed:
    """A shard with its placement and verdict, as the planner sees it."""

    spec: ShardSpec
    region: str
    zone: str
    healthy: bool
    pending: bool  # probe configured, no result yet: no verdict to fail over on
    v4: tuple[str, ...]
    v6: tuple[str, ...]


# -- names ---------------------------------------------------------------------


def global_name(config: Config, namespace: str, name: str) -> str:
    return f"{name}.{namespace}.{config.federation}.svc.{config.zone}".lower()


def region_name(config: Config, namespace: str, name: str, region: str) -> str:
    return f"{name}.{namespace}.{config.federation}.svc.{region}.{config.zone}".lower()


def zone_name(config: Config, namespace: str, name: str, region: str, az: str) -> str:
    return f"{name}.{namespace}.{config.federation}.svc.{az}.{region}.{config.zone}".lower()


def in_zone(name: str, zone: str) -> bool:
    name, zone = name.lower(), zone.lower()
    return name == zone or name.endswith("." + zone)


def _absolute(name: str) -> str:
    name = name.lower()
    return name if name.endswith(".") else name + "."


def soa_rname(admin_email: str, zone: str) -> str:
    """SOA RNAME from ``admin_email`` ("hostmaster", "ops@example.org", or absolute)."""
    if "@" in admin_email:
        local, domain = admin_email.split("@", 1)
        return _absolute(local.replace(".", "\\.") + "." + domain)
    if admin_email.endswith("."):
        return admin_email.lower()
    return f"{admin_email}.{zone}".lower()


# -- the plan ------------------------------------------------------------------


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
    zone = config.zone.lower()
    ttl = config.ttl
    placed, shard_status, cluster_status = _place(config, reports, health, drains, now, previous)

    records: list[Record] = list(apex_records(config, serial))
    records.extend(
        Record(_absolute(r.name), r.rtype.upper(), r.ttl if r.ttl is not None else ttl, r.value)
        for r in config.records
    )

    regions, zones = _localities(config, placed)
    localities: list[str] = [UNKNOWN]
    localities.extend(region_locality(r) for r in regions)
    localities.extend(zone_locality(az) for az, _ in zones)
    if config.geo.cluster_local:
        localities.extend(cluster_locality(c.name) for c in config.clusters)

    builder = _Builder(config, regions, zones)
    services: dict[tuple[str, str], list[_Placed]] = {}
    hosts: dict[str, list[_Placed]] = {}
    for p in placed:
        if p.spec.kind == "service":
            services.setdefault((p.spec.namespace, p.spec.name), []).append(p)
        else:
            for h in p.spec.hosts:
                host = _absolute(h)
                if in_zone(host, zone):
                    hosts.setdefault(host, []).append(p)

    geo: dict[str, dict[str, tuple[Record, ...]]] = {}
    failovers: set[str] = set()
    for (ns, name), shards in sorted(services.items()):
        gname = global_name(config, ns, name)
        pool = _Pool(gname, shards)
        records.extend(builder.local_records(ns, name, pool, gname))
        geo[gname], failed = builder.geo_answers(gname, pool, localities)
        if failed:
            failovers.add(gname)
    for host, shards in sorted(hosts.items()):
        if host in geo:  # an Ingress host equal to a service's global name: merge
            shards = shards + [p for (ns, n), ps in services.items()
                               if global_name(config, ns, n) == host for p in ps]
        geo[host], failed = builder.geo_answers(host, _Pool(host, shards), localities)
        if failed:
            failovers.add(host)

    return Snapshot(
        serial=serial,
        generated_at=now,
        zone=zone,
        ttl=ttl,
        records=tuple(sorted(set(records), key=_record_key)),
        geo=geo,
        localities=tuple(localities),
        shards=shard_status,
        clusters=cluster_status,
        stale=False,
        failovers=tuple(sorted(failovers)),
    )


def apex_records(config: Config, serial: int) -> list[Record]:
    """SOA, NS and in-zone glue at the apex."""
    zone = config.zone.lower()
    ttl = config.ttl
    mname = _absolute(config.nameservers[0][0]) if config.nameservers else zone
    rname = soa_rname(config.admin_email, zone)
    out = [Record(zone, "SOA", ttl,
                  f"{mname} {rname} {serial} {SOA_REFRESH} {SOA_RETRY} {SOA_EXPIRE} {ttl}")]
    for ns, glue in config.nameservers:
        nsname = _absolute(ns)
        out.append(Record(zone, "NS", ttl, nsname))
        if in_zone(nsname, zone):
            for addr in glue:
                ip = _parse_ip(addr)
                if ip is not None:
                    out.append(Record(nsname, "A" if ip.version == 4 else "AAAA", ttl, str(ip)))
    return out


def with_serial(snapshot: Snapshot, serial: int, generated_at: float | None = None) -> Snapshot:
    """The same Snapshot at another serial (the SOA record is rewritten)."""
    recs = []
    for r in snapshot.records:
        if r.rtype == "SOA" and r.name == snapshot.zone:
            f = r.value.split()
            if len(f) == 7:
                f[2] = str(serial)
                r = Record(r.name, r.rtype, r.ttl, " ".join(f))
        recs.append(r)
    return replace(snapshot, serial=serial, records=tuple(recs),
                   generated_at=snapshot.generated_at if generated_at is None else generated_at)


def _record_key(r: Record) -> tuple[str, str, int, str]:
    return (r.name, r.rtype, r.ttl, r.value)


def _parse_ip(addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(addr.strip())
    except ValueError:
        return None


@functools.lru_cache(maxsize=1 << 16)
def _ip_info(addr: str) -> tuple[int, int, str] | None:
    """``(version, integer value, canonical text)`` of an address literal, or None.

    Cached: the same addresses are parsed on every plan.
    """
    ip = _parse_ip(addr)
    return None if ip is None else (ip.version, int(ip), str(ip))


def _ip_key(addr: str) -> tuple[int, int, str]:
    return _ip_info(addr) or (0, 0, addr)


def _place(
    config: Config,
    reports: Mapping[str, ClusterReport],
    health: Mapping[ShardKey, ShardHealth],
    drains: DrainSet,
    now: float,
    previous: Snapshot | None,
) -> tuple[list[_Placed], tuple[ShardStatus, ...], tuple[ClusterStatus, ...]]:
    prev_status: dict[tuple[str, str], ShardStatus] = {}
    if previous is not None:
        prev_status = {(s.cluster, s.service): s for s in previous.shards}
    placed: list[_Placed] = []
    shards: list[ShardStatus] = []
    clusters: list[ClusterStatus] = []
    for cluster in config.clusters:
        report = reports.get(cluster.name)
        c_region, c_zone = _cluster_place(config, cluster, report)
        clusters.append(ClusterStatus(
            name=cluster.name, region=c_region, zone=c_zone, source=cluster.source,
            synced=bool(report and report.synced),
            reachable=bool(report and report.reachable),
            last_contact=report.last_contact if report else None,
            last_error=report.last_error if report else None,
            drained=cluster.name in drains.clusters,
        ))
        if report is None:
            continue
        seen: set[ShardKey] = set()
        for spec in report.shards:
            if spec.cluster != cluster.name or spec.key in seen:
                continue
            seen.add(spec.key)
            verdict = judge(spec, report, health.get(spec.key), drains, config.health, now)
            az = (spec.zone or c_zone).lower()
            region = (spec.region or (config.region_of_zone(az) if spec.zone else None)
                      or c_region).lower()
            v4: list[str] = []
            v6: list[str] = []
            for a in spec.addresses:
                info = _ip_info(a)
                if info is not None:
                    (v4 if info[0] == 4 else v6).append(info[2])
            placed.append(_Placed(spec, region, az, verdict.healthy,
                                  verdict.reason == PENDING_REASON,
                                  tuple(dict.fromkeys(v4)), tuple(dict.fromkeys(v6))))
            prev = prev_status.get((spec.cluster, spec.service))
            if prev is not None and prev.healthy == verdict.healthy:
                changed_at = prev.changed_at
            elif verdict.changed_at and previous is None:
                changed_at = verdict.changed_at
            else:
                changed_at = now
            shards.append(ShardStatus(
                service=spec.service, cluster=spec.cluster, region=region, zone=az,
                addresses=spec.addresses, hostnames=spec.hostnames, ready=spec.ready,
                healthy=verdict.healthy, reason=verdict.reason,
                drained=drains.reason(spec.cluster, spec.service) is not None,
                changed_at=changed_at,
            ))
    shards.sort(key=lambda s: (s.service, s.cluster))
    return placed, tuple(shards), tuple(clusters)


def _cluster_place(config: Config, cluster: Cluster,
                   report: ClusterReport | None) -> tuple[str, str]:
    az = cluster.zone or (report.zone if report else None) or ""
    region = (cluster.region or (report.region if report else None)
              or (config.region_of_zone(az) if az else None) or "")
    return region.lower(), az.lower()


def _localities(config: Config,
                placed: Sequence[_Placed]) -> tuple[list[str], list[tuple[str, str]]]:
    """Every region, and every (AZ, region): configured ones first, then discovered."""
    regions = [r.name.lower() for r in config.regions]
    zones = [(az.lower(), r.name.lower()) for r in config.regions for az in r.zones]
    known_r = set(regions)
    known_z = {az for az, _ in zones}
    for p in sorted(placed, key=lambda p: (p.region, p.zone)):
        if p.region and p.region not in known_r:
            known_r.add(p.region)
            regions.append(p.region)
        if p.zone and p.region and p.zone not in known_z:
            known_z.add(p.zone)
            zones.append((p.zone, p.region))
    return regions, zones


Values = tuple[tuple[str, str], ...]  # ((rtype, rdata), ...) of one answer


class _Pool:
    """The shards behind one name, grouped once for every lookup."""

    __slots__ = ("all", "by_region", "by_zone", "healthy", "seed")

    def __init__(self, seed: str, shards: list[_Placed]) -> None:
        self.seed = seed  # rendezvous-hash seed: one per service, so its names agree
        self.all = shards
        self.healthy = [p for p in shards if p.healthy]
        self.by_region: dict[str, list[_Placed]] = {}
        self.by_zone: dict[str, list[_Placed]] = {}
        for p in self.healthy:
            self.by_region.setdefault(p.region, []).append(p)
            self.by_zone.setdefault(p.zone, []).append(p)


class _Builder:
    """Builds answers for one plan; identical answers for one name share a tuple."""

    def __init__(self, config: Config, regions: list[str],
                 zones: list[tuple[str, str]]) -> None:
        self.config = config
        self.ttl = config.ttl
        self.max_answers = max(1, config.server.max_answers)
        self.regions = regions
        self.zones = zones
        self.zone_region = dict(zones)
        self._chains: dict[str, tuple[str, ...]] = {}
        self._values: dict[tuple[str, tuple[int, ...]], Values] = {}
        self._answers: dict[tuple[str, Values], tuple[Record, ...]] = {}

    def chain(self, region: str) -> tuple[str, ...]:
        """``region`` then its fallback order (configured, then by distance)."""
        c = self._chains.get(region)
        if c is None:
            rest = fallback_order(self.config, region)
            extra = sorted(r for r in self.regions if r != region and r not in rest)
            c = (region, *rest, *extra)
            self._chains[region] = c
        return c

    def answer(self, name: str, seed: str, shards: list[_Placed]) -> tuple[Record, ...]:
        """A/AAAA of the shards' addresses (at most max_answers per type), or
        a CNAME to a load-balancer hostname when no shard has an IP."""
        key = (seed, tuple(id(s) for s in shards))
        vals = self._values.get(key)
        if vals is None:
            vals = self._select(seed, shards)
            self._values[key] = vals
        return self.records(name, vals)

    def records(self, name: str, vals: Values) -> tuple[Record, ...]:
        key = (name, vals)
        got = self._answers.get(key)
        if got is None:
            got = tuple(Record(name, t, self.ttl, v) for t, v in vals)
            self._answers[key] = got
        return got

    def _select(self, seed: str, shards: list[_Placed]) -> Values:
        v4: dict[str, None] = {}
        v6: dict[str, None] = {}
        for s in shards:
            v4.update(dict.fromkeys(s.v4))
            v6.update(dict.fromkeys(s.v6))
        if v4 or v6:
            return (tuple(("A", a) for a in self._choose(seed, list(v4)))
                    + tuple(("AAAA", a) for a in self._choose(seed, list(v6))))
        hostnames = {_absolute(h) for s in shards for h in s.spec.hostnames}
        return (("CNAME", min(hostnames)),) if hostnames else ()

    def _choose(self, seed: str, addrs: list[str]) -> list[str]:
        """A stable choice of at most max_answers addresses: rendezvous hashing
        on (seed, address), so one more or one less shard moves few answers."""
        if len(addrs) > self.max_answers:
            addrs = sorted(addrs, key=lambda a: hashlib.blake2b(
                f"{seed}|{a}".encode(), digest_size=8).digest())[: self.max_answers]
        return sorted(addrs, key=_ip_key)

    # -- per service -----------------------------------------------------------

    def local_records(self, ns: str, name: str, pool: _Pool, gname: str) -> list[Record]:
        """The AZ-level and region-level names of one service."""
        out: list[Record] = []
        for region in self.regions:
            rname = region_name(self.config, ns, name, region)
            healthy = pool.by_region.get(region)
            out.extend(self.answer(rname, pool.seed, healthy) if healthy
                       else self.records(rname, (("CNAME", gname),)))
        for az, region in self.zones:
            zname = zone_name(self.config, ns, name, region, az)
            healthy = pool.by_zone.get(az)
            target = region_name(self.config, ns, name, region)
            out.extend(self.answer(zname, pool.seed, healthy) if healthy
                       else self.records(zname, (("CNAME", target),)))
        return out

    def geo_answers(self, name: str, pool: _Pool,
                    localities: Sequence[str]) -> tuple[dict[str, tuple[Record, ...]], bool]:
        """One answer per locality for a geo-aware name, and whether some
        region with shards of this name is failed over elsewhere."""
        seed = pool.seed
        if not pool.healthy:
            if self.config.health.when_all_unhealthy == "nxdomain":
                fixed: tuple[Record, ...] = ()
            else:
                fixed = self.answer(name, seed, pool.all)
            return dict.fromkeys(localities, fixed), False

        by_region, by_zone = pool.by_region, pool.by_zone
        everyone = self.answer(name, seed, pool.healthy)
        region_answers: dict[str, tuple[Record, ...]] = {}

        def for_region(region: str) -> tuple[Record, ...]:
            ans = region_answers.get(region)
            if ans is None:
                ans = everyone
                for r in self.chain(region):
                    if r in by_region:
                        ans = self.answer(name, seed, by_region[r])
                        break
                region_answers[region] = ans
            return ans

        def for_zone(az: str, region: str) -> tuple[Record, ...]:
            if az in by_zone:
                return self.answer(name, seed, by_zone[az])
            return for_region(region) if region else everyone

        out: dict[str, tuple[Record, ...]] = {}
        for loc in localities:
            kind, _, value = loc.partition(":")
            if loc == UNKNOWN:
                out[loc] = everyone
            elif kind == "region":
                out[loc] = for_region(value)
            elif kind == "zone":
                out[loc] = for_zone(value, self.zone_region.get(value, ""))
            elif kind == "cluster":
                mine = [p for p in pool.healthy if p.spec.cluster == value and p.spec.cluster_ip]
                infos = sorted(filter(None, (_ip_info(p.spec.cluster_ip or "") for p in mine)))
                if infos:
                    out[loc] = self.records(name, tuple(
                        ("A" if i[0] == 4 else "AAAA", i[2]) for i in infos))
                else:
                    az, region = self._cluster_home(value, pool.all)
                    out[loc] = for_zone(az, region) if az else (
                        for_region(region) if region else everyone)
            else:
                out[loc] = everyone
        homes = {p.region for p in pool.all if p.region and not p.pending}
        failed = any(r not in by_region for r in homes)
        return out, failed

    def _cluster_home(self, cluster: str, shards: list[_Placed]) -> tuple[str, str]:
        for p in shards:
            if p.spec.cluster == cluster:
                return p.zone, p.region
        for c in self.config.clusters:
            if c.name == cluster:
                az = (c.zone or "").lower()
                region = (c.region or self.zone_region.get(az) or "").lower()
                return az, region
        return "", ""
