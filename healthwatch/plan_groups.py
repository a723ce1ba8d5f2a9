"""Planning one name group: the answers behind one geo-aware name.

A *group* is everything published for one geo name: a Service's global name
(with its AZ- and region-level names) and/or an Ingress host inside the zone
(an Ingress host equal to a Service's global name merges with it). A group's
answers are a pure function of a ``PlanContext`` (what the config and the set
of localities fix) and the group's placed shards, so the incremental planner
(``plan_state``) re-plans only the groups whose shards changed.

``plan_group`` reuses the previous plan's Record tuples for every answer
whose value did not change, so unchanged answers stay identical (``is``)
across Snapshots and consumers can skip them. A plan keeps nothing but the
answers it publishes (the values to compare are read off the Records), and
a CNAME's target is the very string its target's Records are named with:
a large federation keeps millions of these objects.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from config.model import Config
from healthwatch.geometry import fallback_order
from healthwatch.model import ShardSpec
from healthwatch.snapshot import UNKNOWN, Record, cluster_locality, region_locality, zone_locality

Values = tuple[tuple[str, str], ...]  # ((rtype, rdata), ...) of one answer
Answer = tuple[Record, ...]
# one step of a client locality's fallback chain (``PlanContext.levels``):
# ("cluster", C) (the ClusterIPs of C's own shards, ``geo.cluster_local``),
# ("zone", AZ), ("region", R), ("any", "") (every healthy shard)
Level = tuple[str, str]
ANY_LEVEL: Level = ("any", "")


# -- names ---------------------------------------------------------------------


def global_name(config: Config, namespace: str, name: str) -> str:
    return f"{name}.{namespace}.{config.federation}.svc.{config.zone}".lower()


def region_name(config: Config, namespace: str, name: str, region: str) -> str:
    return f"{name}.{namespace}.{config.federation}.svc.{region}.{config.zone}".lower()


def zone_name(config: Config, namespace: str, name: str, region: str, az: str) -> str:
    return f"{name}.{namespace}.{config.federation}.svc.{az}.{region}.{config.zone}".lower()


def service_prefix(config: Config, namespace: str, name: str) -> str:
    """What every name of a service starts with: ``S.N.F.svc.``."""
    return f"{name}.{namespace}.{config.federation}.svc.".lower()


def in_zone(name: str, zone: str) -> bool:
    name, zone = name.lower(), zone.lower()
    return name == zone or name.endswith("." + zone)


def absolute(name: str) -> str:
    name = name.lower()
    return name if name.endswith(".") else name + "."


def record_key(r: Record) -> tuple[str, str, int, str]:
    return (r.name, r.rtype, r.ttl, r.value)


def parse_ip(addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(addr.strip())
    except ValueError:
        return None


@functools.lru_cache(maxsize=1 << 16)
def ip_info(addr: str) -> tuple[int, int, str] | None:
    """``(version, integer value, canonical text)`` of an address literal, or None."""
    ip = parse_ip(addr)
    return None if ip is None else (ip.version, int(ip), str(ip))


def _ip_key(addr: str) -> tuple[int, int, str]:
    return ip_info(addr) or (0, 0, addr)


# -- inputs --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Placed:
    """A shard with its placement and verdict, as the planner sees it."""

    spec: ShardSpec
    region: str
    zone: str
    healthy: bool
    pending: bool  # probe configured, no result yet: no verdict to fail over on
    v4: tuple[str, ...]
    v6: tuple[str, ...]
    rank: int  # index of its cluster in the config: fixes the order within a group


@dataclass(frozen=True, slots=True)
class Slot:
    """One locality-free name of every service: ``prefix + suffix``."""

    suffix: str  # "REGION.Z" or "AZ.REGION.Z"
    region: str
    az: str  # "" for a region-level name
    target: str  # CNAME target suffix when nothing is healthy there ("" = the global name)


class PlanContext:
    """What one config and one set of localities fix, computed once."""

    def __init__(self, config: Config, regions: Sequence[str],
                 zones: Sequence[tuple[str, str]]) -> None:
        self.config = config
        self.zone = config.zone.lower()
        self.ttl = config.ttl
        self.max_answers = max(1, config.server.max_answers)
        self.nxdomain_when_down = config.health.when_all_unhealthy == "nxdomain"
        self.regions = tuple(regions)
        self.zones = tuple(zones)
        self.zone_region = dict(zones)
        localities: list[str] = [UNKNOWN]
        localities.extend(region_locality(r) for r in regions)
        localities.extend(zone_locality(az) for az, _ in zones)
        if config.geo.cluster_local:
            localities.extend(cluster_locality(c.name) for c in config.clusters)
        self.localities = tuple(localities)
        # (locality, kind, value, region of the AZ)
        self.parsed: tuple[tuple[str, str, str, str], ...] = tuple(
            (loc, *_split(loc), self.zone_region.get(loc.partition(":")[2], ""))
            for loc in localities)
        self.chains = {r: self._chain(r) for r in regions}
        self._region_levels: dict[str, tuple[Level, ...]] = {}
        # locality -> its fallback chain (cluster localities: per group, see ``levels``)
        self.loc_levels: dict[str, tuple[Level, ...]] = {
            loc: self.levels(loc) for loc, kind, _, _ in self.parsed if kind != "cluster"}
        slots = [Slot(f"{r}.{self.zone}", r, "", "") for r in regions]
        slots += [Slot(f"{az}.{r}.{self.zone}", r, az, f"{r}.{self.zone}") for az, r in zones]
        slots.sort(key=lambda s: s.suffix)  # the order of a service's names in the zone
        self.slots = tuple(slots)
        self.homes: dict[str, tuple[str, str]] = {}
        for c in config.clusters:
            az = (c.zone or "").lower()
            self.homes.setdefault(c.name, (az, (c.region or self.zone_region.get(az)
                                                or "").lower()))

    def _chain(self, region: str) -> tuple[str, ...]:
        """``region`` then its fallback order (configured, then by distance)."""
        rest = fallback_order(self.config, region)
        extra = sorted(r for r in self.regions if r != region and r not in rest)
        return (region, *rest, *extra)

    def chain(self, region: str) -> tuple[str, ...]:
        c = self.chains.get(region)
        return c if c is not None else self._chain(region)

    def region_levels(self, region: str) -> tuple[Level, ...]:
        """``region``'s fallback chain: the regions of ``chain(region)``, then
        any healthy shard."""
        levels = self._region_levels.get(region)
        if levels is None:
            levels = (*(("region", r) for r in self.chain(region)), ANY_LEVEL)
            if region in self.chains:  # bounded: the known regions only
                self._region_levels[region] = levels
        return levels

    def levels(self, locality: str, home: tuple[str, str] | None = None) -> tuple[Level, ...]:
        """The fallback chain of a client ``locality`` (SPEC section 3.2): the
        levels in the order ``_geo_answers`` tries them; the first with a
        healthy shard (for a cluster level: one with a ClusterIP) answers.
        Unknown client: ``(ANY_LEVEL,)``. AZ: the AZ, then its region's
        ``region_levels`` (an AZ of no known region: any healthy shard).
        ``cluster:C``: C's ClusterIPs, then the chain of C's ``home`` (AZ,
        region): the placement of C's shards of the name, else the config's
        (``_cluster_home``). From the first region level on, a chain is
        always ``region_levels`` of that region (``_geo_answers`` relies on
        it to answer each region once per name)."""
        kind, value = _split(locality)
        if kind == "region":
            return self.region_levels(value)
        if kind == "zone":
            return self._zone_levels(value, self.zone_region.get(value, ""))
        if kind == "cluster":
            az, region = home if home is not None else self.homes.get(value, ("", ""))
            if az:
                tail = self._zone_levels(az, region)
            else:
                tail = self.region_levels(region) if region else (ANY_LEVEL,)
            return (("cluster", value), *tail)
        return (ANY_LEVEL,)

    def _zone_levels(self, az: str, region: str) -> tuple[Level, ...]:
        return (("zone", az), *(self.region_levels(region) if region else (ANY_LEVEL,)))


def _split(loc: str) -> tuple[str, str]:
    kind, _, value = loc.partition(":")
    return kind, value


# -- one group -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GroupPlan:
    """Everything published for one geo name, and what ``plan_group`` reuses."""

    name: str
    prefix: str | None  # service prefix when a Service belongs to the group
    # every locality-free record (services only), sorted by record key: the
    # answers of ``PlanContext.slots`` in slot order, ``runs`` records each
    # (``local_answers``; bytes: a fraction of a tuple's size)
    block: Answer
    geo: Mapping[str, Answer]  # locality -> answer
    failed: bool
    runs: bytes | tuple[int, ...] = b""


class _Pool:
    """The shards behind one name, grouped once for every lookup."""

    __slots__ = ("all", "by_region", "by_zone", "healthy")

    def __init__(self, shards: list[Placed]) -> None:
        self.all = shards
        self.healthy = [p for p in shards if p.healthy]
        self.by_region: dict[str, list[Placed]] = {}
        self.by_zone: dict[str, list[Placed]] = {}
        for p in self.healthy:
            self.by_region.setdefault(p.region, []).append(p)
            self.by_zone.setdefault(p.zone, []).append(p)

    def failed(self) -> bool:
        """Some region with shards of this name has none healthy (probe-pending aside)."""
        if not self.healthy:
            return False
        return any(p.region not in self.by_region for p in self.all
                   if p.region and not p.pending)


class _Selector:
    """Values of answers for one seed, memoised per distinct shard list."""

    __slots__ = ("ctx", "memo", "seed")

    def __init__(self, ctx: PlanContext, seed: str) -> None:
        self.ctx = ctx
        self.seed = seed
        self.memo: dict[tuple[int, ...], Values] = {}

    def values(self, shards: list[Placed]) -> Values:
        key = tuple(map(id, shards))
        vals = self.memo.get(key)
        if vals is None:
            vals = self.memo[key] = self._select(shards)
        return vals

    def _select(self, shards: list[Placed]) -> Values:
        """A/AAAA of the shards' addresses (at most max_answers per type), or a
        CNAME to a load-balancer hostname when no shard has an IP."""
        v4: dict[str, None] = {}
        v6: dict[str, None] = {}
        for s in shards:
            v4.update(dict.fromkeys(s.v4))
            v6.update(dict.fromkeys(s.v6))
        if v4 or v6:
            return (tuple(("A", a) for a in self._choose(list(v4)))
                    + tuple(("AAAA", a) for a in self._choose(list(v6))))
        hostnames = {absolute(h) for s in shards for h in s.spec.hostnames}
        return (("CNAME", min(hostnames)),) if hostnames else ()

    def _choose(self, addrs: list[str]) -> list[str]:
        """A stable choice of at most max_answers addresses: rendezvous hashing
        on (seed, address), so one more or one less shard moves few answers."""
        if len(addrs) > self.ctx.max_answers:
            seed = self.seed
            addrs = sorted(addrs, key=lambda a: hashlib.blake2b(
                f"{seed}|{a}".encode(), digest_size=8).digest())[: self.ctx.max_answers]
        return sorted(addrs, key=_ip_key)


def plan_group(ctx: PlanContext, name: str, services: list[Placed], ingresses: list[Placed],
               prev: GroupPlan | None) -> GroupPlan:
    """Plan the geo name ``name``: ``services`` are the shards of the Service
    whose global name it is (if any), ``ingresses`` the Ingress shards with
    ``name`` as a rule host. Both lists are in plan order (see ``Placed.rank``).
    ``prev`` is this group's previous plan under the same ``ctx`` (or None):
    answers with unchanged values reuse its tuples."""
    sel = _Selector(ctx, name)
    prefix: str | None = None
    block: Answer = ()
    runs: bytes | tuple[int, ...] = b""
    failed = False
    if prev is not None and prev.name != name:
        prev = None
    if services:
        spec = services[0].spec
        prefix = service_prefix(ctx.config, spec.namespace, spec.name)
        pool = _Pool(services)
        names = {"": name}  # slot suffix -> the group's name there (made when needed)
        old = None
        if prev is not None and prev.prefix == prefix:
            old = local_answers(ctx, prev)
            for slot, ans in zip(ctx.slots, old, strict=True):
                if ans:  # the name string its records (and CNAMEs to it) hold
                    names[slot.suffix] = ans[0].name
        local = _local_answers(ctx, prefix, names,
                               _local_values(ctx, sel, pool, prefix, names), old)
        block = tuple(r for ans in local for r in ans)
        if prev is not None and old is not None and len(block) == len(prev.block) \
                and all(map(operator.is_, block, prev.block)):
            block, runs = prev.block, prev.runs
        else:
            lengths = [len(ans) for ans in local]
            runs = bytes(lengths) if max(lengths, default=0) < 256 else tuple(lengths)
        failed = pool.failed()
    if ingresses:  # an Ingress host equal to a Service's global name: merged
        pool = _Pool(ingresses + services)
        failed = failed or pool.failed()
    elif not services:
        pool = _Pool([])
    geo = _geo_answers(ctx, sel, name, pool, prev)
    if prev is not None and prev.geo == geo:
        geo = prev.geo  # identical answers: keep the mapping too
    return GroupPlan(name, prefix, block, geo, failed, runs)


def local_answers(ctx: PlanContext, plan: GroupPlan) -> list[Answer]:
    """Per ``ctx.slots``: the records of ``plan.block`` at that slot's name
    (empty for an Ingress-only group). ``plan`` was made under ``ctx``."""
    if not plan.runs:
        return [()] * len(ctx.slots)
    out: list[Answer] = []
    block = plan.block
    i = 0
    for n in plan.runs:
        out.append(block[i:i + n])
        i += n
    return out


def _local_values(ctx: PlanContext, sel: _Selector, pool: _Pool, prefix: str,
                  names: dict[str, str]) -> list[Values]:
    """Per slot: the values of the healthy shards there, or a CNAME to the
    slot's fallback name (``names``: suffix -> the group's name there, added
    to when missing)."""
    out: list[Values] = []
    by_region, by_zone = pool.by_region, pool.by_zone
    for slot in ctx.slots:
        healthy = by_zone.get(slot.az) if slot.az else by_region.get(slot.region)
        if healthy:
            out.append(sel.values(healthy))
        else:
            out.append((("CNAME", _name_at(names, prefix, slot.target)),))
    return out


def _name_at(names: dict[str, str], prefix: str, suffix: str) -> str:
    """The group's name at ``suffix`` (one string per name: made once, kept
    in ``names``)."""
    name = names.get(suffix)
    if name is None:
        name = names[suffix] = prefix + suffix
    return name


def _same_values(ans: Answer, vals: Values) -> bool:
    """Does ``ans`` (records of one name and TTL) hold exactly ``vals``?
    (``vals`` holds no duplicates.)"""
    if len(ans) != len(vals):
        return False
    if len(ans) == 1:
        r, v = ans[0], vals[0]
        return r.value == v[1] and r.rtype == v[0]
    return {(r.rtype, r.value) for r in ans} == set(vals)


def _values_of(ans: Answer) -> Values:
    return tuple((r.rtype, r.value) for r in ans)


def _local_answers(ctx: PlanContext, prefix: str, names: dict[str, str], vals: list[Values],
                   old: list[Answer] | None) -> list[Answer]:
    """Per slot, the records of ``vals`` (``old``'s where the values are the same)."""
    ttl = ctx.ttl
    out: list[Answer] = []
    for i, v in enumerate(vals):
        if old is not None and _same_values(old[i], v):
            out.append(old[i])
            continue
        name = _name_at(names, prefix, ctx.slots[i].suffix)
        if len(v) == 1:
            out.append((Record(name, v[0][0], ttl, v[0][1]),))
        else:
            out.append(tuple(sorted((Record(name, t, ttl, value) for t, value in v),
                                    key=record_key)))
    return out


def _geo_answers(ctx: PlanContext, sel: _Selector, name: str, pool: _Pool,
                 prev: GroupPlan | None) -> dict[str, Answer]:
    """One answer per locality for a geo-aware name (``prev``'s tuples for
    values it had)."""
    answers: dict[Values, Answer] = {}
    reuse: dict[Values, Answer] = {}
    if prev is not None:
        for ans in {id(a): a for a in prev.geo.values()}.values():
            reuse[_values_of(ans)] = ans
    ttl = ctx.ttl

    def records(vals: Values) -> Answer:
        got = answers.get(vals)
        if got is None:
            got = reuse.get(vals)
            if got is None:
                got = tuple(Record(name, t, ttl, v) for t, v in vals)
            answers[vals] = got
        return got

    if not pool.healthy:
        if ctx.nxdomain_when_down:
            return {}  # the name is not published at all: NXDOMAIN (Snapshot.geo skips it)
        return dict.fromkeys(ctx.localities, records(sel.values(pool.all)))

    by_region, by_zone = pool.by_region, pool.by_zone
    everyone = records(sel.values(pool.healthy))
    region_answers: dict[str, Answer] = {}

    def for_region(region: str) -> Answer:
        ans = region_answers.get(region)
        if ans is None:
            ans = everyone
            for kind, r in ctx.region_levels(region):
                shards = by_region.get(r) if kind == "region" else None
                if shards:
                    ans = records(sel.values(shards))
                    break
            region_answers[region] = ans
        return ans

    def walk(levels: tuple[Level, ...]) -> Answer:
        """The answer of the first level of ``levels`` that has one."""
        for kind, value in levels:
            if kind == "region":  # the rest is ``ctx.region_levels(value)``
                return for_region(value)
            if kind == "zone":
                shards = by_zone.get(value)
                if shards:
                    return records(sel.values(shards))
            elif kind == "cluster":
                mine = [p for p in pool.healthy if p.spec.cluster == value and p.spec.cluster_ip]
                infos = sorted(filter(None, (ip_info(p.spec.cluster_ip or "") for p in mine)))
                if infos:
                    return records(tuple(("A" if i[0] == 4 else "AAAA", i[2]) for i in infos))
            else:
                return everyone
        return everyone

    out: dict[str, Answer] = {}
    loc_levels = ctx.loc_levels
    for loc, kind, value, _ in ctx.parsed:
        if kind == "cluster":
            out[loc] = walk(ctx.levels(loc, _cluster_home(ctx, value, pool.all)))
        else:
            out[loc] = walk(loc_levels[loc])
    return out


def _cluster_home(ctx: PlanContext, cluster: str, shards: list[Placed]) -> tuple[str, str]:
    for p in shards:
        if p.spec.cluster == cluster:
            return p.zone, p.region
    return ctx.homes.get(cluster, ("", ""))
