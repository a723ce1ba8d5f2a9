"""The incremental planner: re-plans only what changed since its last plan.

``Planner.plan`` takes the same arguments as ``planner.plan`` and returns the
same Snapshot (the full ``plan`` is a fresh ``Planner``), but keeps what it
computed last time: each shard's verdict and placement, each name group's
answers (``plan_groups``), and the sorted pieces the Snapshot's tuples are
concatenated from. A call diffs its inputs against the previous call's —
cluster reports (by identity, then by shard), probe verdicts (by identity),
drains, each cluster's reachability verdict and placement — and re-plans only
the shards and groups they touch. A new config (any other object) or a new set
of localities plans everything again.

Unchanged answers keep their tuples (``is``), and when ``previous`` is the
Snapshot this planner built last (or one equal to it apart from the SOA
serial), the result names what changed: ``Snapshot.changed`` relative to
``Snapshot.base_serial``.

Not thread-safe: one caller at a time (the engine holds a lock).
"""

from __future__ import annotations

import bisect
import operator
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from itertools import compress, pairwise
from typing import Any, Generic, TypeVar

from config.model import Cluster, Config
from healthwatch.drains import DrainSet
from healthwatch.heap import paused
from healthwatch.hysteresis import PENDING_REASON, cluster_unreachable_for, judge
from healthwatch.model import SHARD_KINDS, ClusterReport, ShardHealth, ShardSpec, split_service
from healthwatch.plan_groups import (
    Answer,
    GroupPlan,
    Placed,
    PlanContext,
    absolute,
    global_name,
    in_zone,
    ip_info,
    plan_group,
    record_key,
)
from healthwatch.snapshot import ClusterStatus, Record, ShardStatus, Snapshot

ShardKey = tuple[str, str, str, str]  # ShardSpec.key

SOA_REFRESH = 3600
SOA_RETRY = 600
SOA_EXPIRE = 86400

# (region, AZ, unreachable reason for its shards of each kind, in SHARD_KINDS order)
_ClusterInfo = tuple[str, str, tuple[str | None, ...]]


class Planner:
    """Plans Snapshots, reusing the previous call's work where inputs match."""

    def __init__(self) -> None:
        self._reset(None)

    def _reset(self, config: Config | None) -> None:
        self._config = config
        self._ranks: dict[str, int] = {}
        if config is not None:
            for i, c in enumerate(config.clusters):
                self._ranks.setdefault(c.name, i)
        self._ctx: PlanContext | None = None
        self._cinfo: dict[str, _ClusterInfo] = {}
        self._specs: dict[str, dict[ShardKey, ShardSpec]] = {}  # cluster -> key -> spec
        self._seen_shards: dict[str, tuple[ShardSpec, ...]] = {}  # last report.shards
        self._clean: set[str] = set()  # clusters whose report.shards has unique own keys
        self._health: Mapping[ShardKey, ShardHealth] = {}
        self._drains = DrainSet()
        self._placed: dict[ShardKey, Placed] = {}
        self._groups_of: dict[ShardKey, tuple[str, ...]] = {}
        self._members: dict[str, dict[ShardKey, Placed]] = {}
        self._plans: dict[str, GroupPlan] = {}
        self._pairs: Counter[tuple[str, str]] = Counter()
        self._status: dict[ShardKey, ShardStatus] = {}
        self._by_service: dict[str, dict[str, ShardStatus]] = {}  # service -> cluster -> status
        self._sblocks: _Blocks[str, ShardStatus] = _Blocks(_by_self)  # by service
        self._static: dict[str, list[Record]] = {}  # name -> static records
        # record blocks: (False, name) apex/static records at one name, (True, group)
        self._rblocks: _Blocks[tuple[bool, str], Record] = _Blocks(_by_first_record)
        self._overlap = False  # blocks interleave: sort every record (rare configs)
        self._geo: dict[str, Mapping[str, Answer]] = {}
        self._failed: set[str] = set()
        self._failovers: tuple[str, ...] = ()
        self._last: Snapshot | None = None

    # -- the plan ----------------------------------------------------------------

    def plan(self, config: Config, reports: Mapping[str, ClusterReport],
             health: Mapping[ShardKey, ShardHealth], drains: DrainSet, serial: int,
             now: float, *, previous: Snapshot | None = None) -> Snapshot:
        """The Snapshot ``planner.plan`` returns for these arguments.

        The cyclic garbage collector is paused meanwhile (``heap.paused``): a
        full plan creates about a million objects (none of them cyclic garbage)
        and the collections they trigger scan the growing heap again and again
        (2.5-4x slower, measured with bench/planner_bench.py).
        """
        with paused():
            try:
                return self._plan(config, reports, health, drains, serial, now, previous)
            except BaseException:
                self._reset(None)  # half-updated state: plan everything next time
                raise

    def _plan(self, config: Config, reports: Mapping[str, ClusterReport],
              health: Mapping[ShardKey, ShardHealth], drains: DrainSet, serial: int,
              now: float, previous: Snapshot | None) -> Snapshot:
        if config is not self._config:
            self._reset(config)
        last = self._last
        continues = (previous is not None and last is not None
                     and _continues(previous, last, config.zone.lower()))
        dirty, clusters = self._diff(config, reports, health, drains, now)
        if not continues:  # every status depends on ``previous``: judge them all
            dirty.update(k for specs in self._specs.values() for k in specs)
        prev_status: Mapping[tuple[str, str], ShardStatus] = {}
        if previous is not None and not continues:
            prev_status = {(s.cluster, s.service): s for s in previous.shards}

        groups: set[str] = set()
        services: set[str] = set()
        pairs_moved = False
        for key in dirty:
            moved = self._update_shard(config, key, reports, health, drains, now, previous,
                                       prev_status if not continues else None,
                                       groups, services)
            pairs_moved = pairs_moved or moved

        ctx = self._context(config, pairs_moved)
        new_ctx = ctx is not self._ctx
        if new_ctx:
            self._ctx = ctx
            self._plans.clear()
            self._rblocks = _Blocks(_by_first_record)
            self._static = _static_records(config)
            groups = set(self._members)
        changed, restructured = self._replan_groups(ctx, groups)

        zone = ctx.zone
        records = self._records(config, serial)
        # a group with no geo answers (nothing healthy, ``when_all_unhealthy:
        # nxdomain``) has no geo name: it answers NXDOMAIN until a shard is back
        if restructured or new_ctx:
            self._geo = {g: self._plans[g].geo for g in sorted(self._plans)
                         if self._plans[g].geo}
        else:
            geo = dict(self._geo)
            appeared = False
            for g in changed & groups:
                plan = self._plans.get(g)
                if plan is None:
                    continue
                if plan.geo:
                    appeared = appeared or g not in geo
                    geo[g] = plan.geo
                else:
                    geo.pop(g, None)
            self._geo = {g: geo[g] for g in sorted(geo)} if appeared else geo
        shards = self._shards(services)
        base = previous.serial if previous is not None and continues and not new_ctx else None
        snap = Snapshot(
            serial=serial, generated_at=now, zone=zone, ttl=config.ttl, records=records,
            geo=self._geo, localities=ctx.localities, shards=shards,
            clusters=tuple(clusters), stale=False, failovers=self._failovers,
            base_serial=base, changed=None if base is None else frozenset(changed | {zone}),
        )
        self._last = snap
        return snap

    # -- inputs -> dirty shards ----------------------------------------------------

    def _diff(self, config: Config, reports: Mapping[str, ClusterReport],
              health: Mapping[ShardKey, ShardHealth], drains: DrainSet,
              now: float) -> tuple[set[ShardKey], list[ClusterStatus]]:
        """The shards whose verdict inputs changed, and every cluster's status."""
        dirty: set[ShardKey] = set()
        clusters: list[ClusterStatus] = []
        grace = config.health.cluster_grace
        for cluster in config.clusters:
            name = cluster.name
            report = reports.get(name)
            c_region, c_zone = cluster_place(config, cluster, report)
            clusters.append(ClusterStatus(
                name=name, region=c_region, zone=c_zone, source=cluster.source,
                synced=bool(report and report.synced),
                reachable=bool(report and report.reachable),
                last_contact=report.last_contact if report else None,
                last_error=report.last_error if report else None,
                drained=name in drains.clusters,
            ))
            info = (c_region, c_zone, tuple(cluster_unreachable_for(report, grace, now, kind)
                                            for kind in SHARD_KINDS))
            old = self._specs.get(name, {})
            whole = self._cinfo.get(name) != info
            if whole:
                self._cinfo[name] = info
                dirty.update(old)
            shards = report.shards if report is not None else ()
            seen = self._seen_shards.get(name)
            if shards is seen:
                continue
            self._seen_shards[name] = shards
            if not whole and seen is not None and name in self._clean:
                same_keys = _aligned(name, old, seen, shards, dirty)
                if same_keys is not None:
                    self._specs[name] = same_keys
                    continue
            new: dict[ShardKey, ShardSpec] = {}
            for spec in shards:
                key = spec.key
                if spec.cluster == name and key not in new:
                    new[key] = spec
            self._specs[name] = new
            if len(new) == len(shards):
                self._clean.add(name)
            else:
                self._clean.discard(name)
            if whole:
                dirty.update(new)
                continue
            for key, spec in new.items():
                was = old.get(key)
                if was is not spec and was != spec:
                    dirty.add(key)
            dirty.update(k for k in old if k not in new)
        if health is not self._health:
            dirty.update(_changed_keys(self._health, health))
            self._health = dict(health)  # the caller may change its mapping later
        if drains != self._drains:
            old_drains = self._drains
            for c in old_drains.clusters ^ drains.clusters:
                dirty.update(self._specs.get(c, {}))
            for c, service in old_drains.shards ^ drains.shards:
                dirty.add(_key_of(c, service))
            self._drains = drains
        return dirty, clusters

    def _update_shard(self, config: Config, key: ShardKey,
                      reports: Mapping[str, ClusterReport],
                      health: Mapping[ShardKey, ShardHealth], drains: DrainSet, now: float,
                      previous: Snapshot | None,
                      prev_status: Mapping[tuple[str, str], ShardStatus] | None,
                      groups: set[str], services: set[str]) -> bool:
        """Re-judge one shard; collect the groups and services it touches.
        True when the set of (region, AZ) placements may have changed."""
        spec = self._specs.get(key[0], {}).get(key)
        old = self._placed.get(key)
        if spec is None:
            if key in self._status:
                service = self._status.pop(key).service
                self._by_service[service].pop(key[0], None)
                services.add(service)
            if old is None:
                return False
            del self._placed[key]
            for g in self._groups_of.pop(key, ()):
                self._members[g].pop(key, None)
                groups.add(g)
            return self._uncount(old)
        c_region, c_zone, _ = self._cinfo[key[0]]
        verdict = judge(spec, reports.get(key[0]), health.get(key), drains, config.health, now)
        az = (spec.zone or c_zone).lower()
        region = (spec.region or (config.region_of_zone(az) if spec.zone else None)
                  or c_region).lower()
        moved = False
        if old is None or old.spec is not spec or old.healthy != verdict.healthy \
                or old.region != region or old.zone != az \
                or old.pending != (verdict.reason == PENDING_REASON):
            placed = _placed(spec, region, az, verdict, self._rank(config, key[0]))
            if placed != old:
                self._placed[key] = placed
                if old is not None:
                    moved = self._uncount(old)
                    for g in self._groups_of.get(key, ()):
                        self._members[g].pop(key, None)
                        groups.add(g)
                self._pairs[(placed.region, placed.zone)] += 1
                moved = moved or self._pairs[(placed.region, placed.zone)] == 1
                mine = self._group_names(config, spec)
                self._groups_of[key] = mine
                for g in mine:
                    self._members.setdefault(g, {})[key] = placed
                    groups.add(g)

        service = spec.service
        before = self._status.get(key)
        prev = before if prev_status is None else prev_status.get((spec.cluster, service))
        if prev is not None and prev.healthy == verdict.healthy:
            changed_at = prev.changed_at
        elif verdict.changed_at and previous is None:
            changed_at = verdict.changed_at
        else:
            changed_at = now
        status = ShardStatus(
            service=service, cluster=spec.cluster, region=region, zone=az,
            addresses=spec.addresses, hostnames=spec.hostnames, ready=spec.ready,
            healthy=verdict.healthy, reason=verdict.reason,
            drained=drains.reason(spec.cluster, service) is not None,
            changed_at=changed_at, hosts=spec.hosts,  # the spec's tuple: no copy per plan
        )
        if status != before:
            self._status[key] = status
            self._by_service.setdefault(service, {})[spec.cluster] = status
            services.add(service)
        return moved

    def _uncount(self, p: Placed) -> bool:
        pair = (p.region, p.zone)
        self._pairs[pair] -= 1
        if self._pairs[pair] <= 0:
            del self._pairs[pair]
            return True
        return False

    def _rank(self, config: Config, cluster: str) -> int:
        return self._ranks.get(cluster, len(config.clusters))

    def _group_names(self, config: Config, spec: ShardSpec) -> tuple[str, ...]:
        if spec.kind == "service":
            return (global_name(config, spec.namespace, spec.name),)
        zone = config.zone.lower()
        hosts = (absolute(h) for h in spec.hosts)
        return tuple(dict.fromkeys(h for h in hosts if in_zone(h, zone)))

    # -- groups ----------------------------------------------------------------------

    def _context(self, config: Config, pairs_moved: bool) -> PlanContext:
        ctx = self._ctx
        if ctx is not None and not pairs_moved:
            return ctx
        regions, zones = localities(config, self._pairs)
        if ctx is not None and ctx.regions == tuple(regions) and ctx.zones == tuple(zones):
            return ctx
        return PlanContext(config, regions, zones)

    def _replan_groups(self, ctx: PlanContext, groups: Iterable[str]) -> tuple[set[str], bool]:
        """Re-plan ``groups``; the names whose answers changed, and whether the
        set of record blocks changed."""
        changed: set[str] = set()
        restructured = False
        failed_before = len(self._failed)
        failed_changed = False
        for g in groups:
            members = self._members.get(g)
            old = self._plans.get(g)
            if not members:
                self._members.pop(g, None)
                if g in self._failed:
                    self._failed.discard(g)
                    failed_changed = True
                if old is not None:
                    del self._plans[g]
                    self._rblocks.drop((True, g))
                    changed.update(_names(ctx, old))
                    restructured = True
                continue
            ordered = sorted(members.values(), key=_plan_order)
            svcs = [p for p in ordered if p.spec.kind == "service"]
            ings = [p for p in ordered if p.spec.kind != "service"]
            new = plan_group(ctx, g, svcs, ings, old)
            self._plans[g] = new
            if old is None or new.block is not old.block:
                if new.block:
                    self._rblocks.put((True, g), new.block)
                else:
                    self._rblocks.drop((True, g))
            if old is None or old.prefix != new.prefix:
                restructured = True
                changed.update(_names(ctx, new))
                if old is not None:
                    changed.update(_names(ctx, old))
            else:
                if new.geo is not old.geo:
                    changed.add(g)
                if new.block is not old.block:
                    # a slot's answer is reused whole or made anew: the names
                    # of the records only one of the blocks holds
                    kept = set(map(id, old.block)).intersection(map(id, new.block))
                    changed.update(r.name for r in old.block if id(r) not in kept)
                    changed.update(r.name for r in new.block if id(r) not in kept)
            if new.failed != (g in self._failed):
                failed_changed = True
                if new.failed:
                    self._failed.add(g)
                else:
                    self._failed.discard(g)
        if failed_changed or len(self._failed) != failed_before:
            self._failovers = tuple(sorted(self._failed))
        return changed, restructured

    # -- assembly ----------------------------------------------------------------------

    def _records(self, config: Config, serial: int) -> tuple[Record, ...]:
        """Every locality-free record, sorted by record key and unique."""
        fixed: dict[str, list[Record]] = {n: list(rs) for n, rs in self._static.items()}
        for r in apex_records(config, serial):
            fixed.setdefault(r.name, []).append(r)
        for n, rs in fixed.items():
            block = tuple(sorted(set(rs), key=record_key))
            if block != self._rblocks.get((False, n)):  # else keep the same Records
                self._rblocks.put((False, n), block)
        if self._rblocks.reorder():
            blocks = self._rblocks.blocks
            self._overlap = any(not a[-1].name < b[0].name for a, b in pairwise(blocks))
        if self._overlap:
            return tuple(sorted(set(self._rblocks.flat()), key=record_key))
        return self._rblocks.flat()

    def _shards(self, services: set[str]) -> tuple[ShardStatus, ...]:
        for service in services:
            per = self._by_service.get(service)
            if not per:
                self._by_service.pop(service, None)
                self._sblocks.drop(service)
            else:
                self._sblocks.put(service, tuple(per[c] for c in sorted(per)))
        if self._sblocks.reorder() or services or self._last is None:
            return self._sblocks.flat()
        return self._last.shards  # no status changed


K = TypeVar("K")
T = TypeVar("T")


class _Blocks(Generic[K, T]):
    """Tuples kept in the order of their keys, concatenated by ``flat``.

    Replacing a block keeps the order (O(1)); adding or dropping one
    re-sorts the keys on the next ``reorder`` (O(blocks log blocks)).
    """

    __slots__ = ("_by", "_pos", "_sort_key", "blocks")

    def __init__(self, sort_key: Callable[[K, tuple[T, ...]], Any]) -> None:
        self._sort_key = sort_key
        self._by: dict[K, tuple[T, ...]] = {}
        self._pos: dict[K, int] | None = {}
        self.blocks: list[tuple[T, ...]] = []

    def put(self, key: K, block: tuple[T, ...]) -> None:
        pos = self._pos
        if pos is not None:
            i = pos.get(key)
            if i is None:
                self._pos = None
            else:
                self.blocks[i] = block
        self._by[key] = block

    def get(self, key: K) -> tuple[T, ...] | None:
        return self._by.get(key)

    def drop(self, key: K) -> None:
        if self._by.pop(key, None) is not None:
            self._pos = None

    def reorder(self) -> bool:
        """Re-sort after blocks came or went; True if it did."""
        if self._pos is not None:
            return False
        by = self._by
        order = sorted(by, key=lambda k: self._sort_key(k, by[k]))
        self._pos = {k: i for i, k in enumerate(order)}
        self.blocks = [by[k] for k in order]
        return True

    def flat(self) -> tuple[T, ...]:
        out: list[T] = []
        deque(map(out.extend, self.blocks), 0)
        return tuple(out)


def _by_self(key: str, block: tuple[ShardStatus, ...]) -> str:
    return key


def _by_first_record(key: tuple[bool, str], block: Answer) -> tuple[str, str, int, str]:
    return record_key(block[0])


# -- helpers -------------------------------------------------------------------------


def apex_records(config: Config, serial: int) -> list[Record]:
    """SOA, NS and in-zone glue at the apex."""
    zone = config.zone.lower()
    ttl = config.ttl
    mname = absolute(config.nameservers[0][0]) if config.nameservers else zone
    rname = soa_rname(config.admin_email, zone)
    out = [Record(zone, "SOA", ttl,
                  f"{mname} {rname} {serial} {SOA_REFRESH} {SOA_RETRY} {SOA_EXPIRE} {ttl}")]
    for ns, glue in config.nameservers:
        nsname = absolute(ns)
        out.append(Record(zone, "NS", ttl, nsname))
        if in_zone(nsname, zone):
            for addr in glue:
                info = ip_info(addr)
                if info is not None:
                    out.append(Record(nsname, "A" if info[0] == 4 else "AAAA", ttl, info[2]))
    return out


def soa_rname(admin_email: str, zone: str) -> str:
    """SOA RNAME from ``admin_email`` ("hostmaster", "ops@example.org", or absolute)."""
    if "@" in admin_email:
        local, domain = admin_email.split("@", 1)
        return absolute(local.replace(".", "\\.") + "." + domain)
    if admin_email.endswith("."):
        return admin_email.lower()
    return f"{admin_email}.{zone}".lower()


def soa_index(records: tuple[Record, ...], zone: str) -> int | None:
    """Where the apex SOA sits in sorted ``records``, or None."""
    i = bisect.bisect_left(records, (zone, "SOA"), key=lambda r: (r.name, r.rtype))
    if i < len(records) and records[i].name == zone and records[i].rtype == "SOA":
        return i
    return None


def cluster_place(config: Config, cluster: Cluster,
                  report: ClusterReport | None) -> tuple[str, str]:
    """A cluster's (region, AZ): config first, then what its source discovered."""
    az = cluster.zone or (report.zone if report else None) or ""
    region = (cluster.region or (report.region if report else None)
              or (config.region_of_zone(az) if az else None) or "")
    return region.lower(), az.lower()


def localities(config: Config,
               pairs: Iterable[tuple[str, str]]) -> tuple[list[str], list[tuple[str, str]]]:
    """Every region, and every (AZ, region): configured ones first, then the
    ones shards were placed in (``pairs`` of (region, AZ)), in order."""
    regions = [r.name.lower() for r in config.regions]
    zones = [(az.lower(), r.name.lower()) for r in config.regions for az in r.zones]
    known_r = set(regions)
    known_z = {az for az, _ in zones}
    for region, az in sorted(pairs):
        if region and region not in known_r:
            known_r.add(region)
            regions.append(region)
        if az and region and az not in known_z:
            known_z.add(az)
            zones.append((az, region))
    return regions, zones


def _static_records(config: Config) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = {}
    for r in config.records:
        rec = Record(absolute(r.name), r.rtype.upper(),
                     r.ttl if r.ttl is not None else config.ttl, r.value)
        out.setdefault(rec.name, []).append(rec)
    return out


def _continues(previous: Snapshot, last: Snapshot, zone: str) -> bool:
    """``previous`` equals ``last`` apart from serial, time and contact times."""
    if previous is last:
        return True
    return (previous.shards == last.shards and previous.geo == last.geo
            and previous.failovers == last.failovers and previous.localities == last.localities
            and same_but_soa(previous.records, last.records, zone))


def same_but_soa(a: tuple[Record, ...], b: tuple[Record, ...], zone: str) -> bool:
    """Sorted records equal apart from the apex SOA (its serial)."""
    if len(a) != len(b):
        return False
    i, j = soa_index(a, zone), soa_index(b, zone)
    if i is None or i != j:
        return a == b
    return a[:i] == b[:i] and a[i + 1:] == b[i + 1:]


def _aligned(cluster: str, specs: dict[ShardKey, ShardSpec], old: tuple[ShardSpec, ...],
             new: tuple[ShardSpec, ...], dirty: set[ShardKey]) -> dict[ShardKey, ShardSpec] | None:
    """The fast diff of a report whose shards kept their places (a watch
    event changed a few of them): the new key -> spec map, the changed keys
    added to ``dirty``; None when the shards moved (diff by key instead).
    ``old`` must have held unique keys of ``cluster`` only."""
    if len(old) != len(new):
        return None
    moved = list(compress(range(len(new)), map(operator.is_not, old, new)))
    if not moved:
        return specs
    out = dict(specs)
    for i in moved:
        a, b = old[i], new[i]
        key = a.key
        if b.cluster != cluster or b.key != key:
            return None
        out[key] = b
        if a != b:
            dirty.add(key)
    return out


def _changed_keys(old: Mapping[ShardKey, ShardHealth],
                  new: Mapping[ShardKey, ShardHealth]) -> Iterable[ShardKey]:
    """Keys whose value is another object (or that one side lacks)."""
    keys = list(new)
    if len(keys) == len(old) and keys == list(old):  # the usual case: same keys, same order
        return compress(keys, map(operator.is_not, old.values(), new.values()))
    out = {k for k, v in new.items() if old.get(k) is not v}
    out.update(k for k in old if k not in new)
    return out


def _key_of(cluster: str, service: str) -> ShardKey:
    try:
        kind, ns, name = split_service(service)
    except ValueError:  # a malformed drain target (a persisted file) names no shard
        return (cluster, "service", service, "")
    return (cluster, kind, ns, name)


def _placed(spec: ShardSpec, region: str, az: str, verdict: ShardHealth, rank: int) -> Placed:
    v4: list[str] = []
    v6: list[str] = []
    for a in spec.addresses:
        info = ip_info(a)
        if info is not None:
            (v4 if info[0] == 4 else v6).append(info[2])
    return Placed(spec, region, az, verdict.healthy, verdict.reason == PENDING_REASON,
                  tuple(dict.fromkeys(v4)), tuple(dict.fromkeys(v6)), rank)


def _plan_order(p: Placed) -> tuple[int, ShardKey]:
    return (p.rank, p.spec.key)


def _names(ctx: PlanContext, plan: GroupPlan) -> list[str]:
    out = [plan.name]
    if plan.prefix is not None:
        out.extend(plan.prefix + s.suffix for s in ctx.slots)
    return out
