"""Client address -> locality (SPEC section 3.1). Owned by the geo work.

The query path calls ``Locator.locate`` once per query; implementations must
be a cache lookup for any prefix seen before.

``GeoLocator`` weighs the evidence in this order: the ``networks`` of member
clusters, ``geo.networks``, the GeoIP database, unknown. Network lists use
longest-prefix match (a ``geo.networks`` entry inside a cluster network can
never win and is dropped with a warning). GeoIP results are cached per
``/ipv4_cache_prefix`` and ``/ipv6_cache_prefix`` block in a bounded LRU;
blocks that a longer configured CIDR splits bypass that cache for the
network part, so every CIDR is matched exactly.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from config.model import Config, Network
from dnsserver.geoip import Address, GeoDatabase, GeoLookupError, GeoRecord, GeoSource
from dnsserver.prefixtable import PrefixTable
from healthwatch.geometry import nearest_region
from healthwatch.snapshot import UNKNOWN, cluster_locality, region_locality, zone_locality


class Locator(Protocol):
    def locate(self, address: bytes, source_prefix: int | None) -> tuple[str, int]:
        """Map a client to ``(locality, scope_prefix)``.

        ``address`` is the packed IPv4 (4 bytes) or IPv6 (16 bytes) client
        address: the ECS address when the query carried a usable ECS option,
        else the packet's source address. ``source_prefix`` is the ECS SOURCE
        PREFIX-LENGTH (None without ECS). ``scope_prefix`` is how many leading
        bits of the address the locality depended on (0 for unknown).
        """
        ...

    def locate_network(self, address: bytes, source_prefix: int) -> tuple[str, int] | None:
        """``locate`` by the configured networks alone (cluster ``networks``
        and ``geo.networks``; no GeoIP), or None when none matches: how a
        private ECS subnet is placed (a pod CIDR means something only here)."""
        ...


UNTAILORED: tuple[str, int] = (UNKNOWN, 0)
_V6_TAG = 1 << 128  # keeps IPv6 cache keys apart from IPv4 ones
_V4_MAPPED = bytes(10) + b"\xff\xff"
_LOOKUP_WARN_EVERY = 1000
_from_bytes = int.from_bytes  # big-endian by default (3.11+); bound once for the hot path


class NullLocator:
    """Every client is unknown: the untailored answer, scope 0."""

    def locate(self, address: bytes, source_prefix: int | None) -> tuple[str, int]:
        return UNTAILORED

    def locate_network(self, address: bytes, source_prefix: int) -> tuple[str, int] | None:
        return None

    def describe(self, address: bytes, source_prefix: int | None) -> Placement:
        return Placement(UNKNOWN, "unknown", "no locator: every client is unknown")


@dataclass(frozen=True, slots=True)
class Placement:
    """Why a client has its locality (``GeoLocator.describe``)."""

    locality: str
    by: str  # "network", "geoip" or "unknown"
    detail: str  # e.g. "127.0.1.0/24 (networks of cluster us)"


@dataclass(frozen=True, slots=True)
class LocatorCounts:
    hits: int = 0
    misses: int = 0
    geo_found: int = 0
    geo_missing: int = 0
    geo_errors: int = 0

    def __add__(self, other: LocatorCounts) -> LocatorCounts:
        return LocatorCounts(self.hits + other.hits, self.misses + other.misses,
                             self.geo_found + other.geo_found,
                             self.geo_missing + other.geo_missing,
                             self.geo_errors + other.geo_errors)


class _State:
    """Everything built from one Config; replaced whole on reload."""

    def __init__(self, config: Config, database: GeoSource | None,
                 discovered: Mapping[str, tuple[str | None, str | None]],
                 log: logging.Logger) -> None:
        self.log = log
        self.database = database
        self.v4_prefix = config.geo.ipv4_cache_prefix
        self.v6_prefix = config.geo.ipv6_cache_prefix
        self.v4_shift = 32 - self.v4_prefix
        self.v6_shift = 128 - self.v6_prefix
        self.v4, self.v6 = _tables(config, discovered, log)
        self.v4_split = self.v4.split_blocks(self.v4_prefix)
        self.v6_split = self.v6.split_blocks(self.v6_prefix)
        self.config = config
        self.countries, self.continents = _claims(config, log)
        self.geo_found = self.geo_missing = self.geo_errors = 0
        self.cached: functools._lru_cache_wrapper[tuple[str, int]] = functools.lru_cache(
            maxsize=max(1, config.geo.cache_size))(self._resolve)

    # -- cold path: one call per cache block ------------------------------------
    def _resolve(self, key: int) -> tuple[str, int]:
        """The locality of a cache block (``key`` as built by ``locate``)."""
        if key & _V6_TAG:
            table, shift, split, prefix = self.v6, self.v6_shift, self.v6_split, self.v6_prefix
            net = (key ^ _V6_TAG) << shift
            addr: Address = ipaddress.IPv6Address(net)
        else:
            table, shift, split, prefix = self.v4, self.v4_shift, self.v4_split, self.v4_prefix
            net = key << shift
            addr = ipaddress.IPv4Address(net)
        net_scope = 0
        if (key & ~_V6_TAG) not in split:
            found, net_scope = table.lookup(net)
            if found is not None:
                return found, net_scope
        # Split blocks: the caller matched the networks for the exact address;
        # only the GeoIP part (identical across the block) is cached here.
        if self.database is None:
            return UNKNOWN, net_scope
        return self._geoip(addr), prefix

    def _geoip(self, addr: Address) -> str:
        assert self.database is not None
        try:
            rec = self.database.lookup(addr)
        except GeoLookupError as exc:
            self.geo_errors += 1
            if self.geo_errors % _LOOKUP_WARN_EVERY == 1:
                self.log.warning("geoip_lookup_failed address=%s errors=%d reason=%r",
                                 addr, self.geo_errors, exc.reason)
            return UNKNOWN
        except Exception as exc:  # never let a database fault reach the query path
            self.geo_errors += 1
            if self.geo_errors % _LOOKUP_WARN_EVERY == 1:
                self.log.warning("geoip_lookup_failed address=%s errors=%d reason=%r",
                                 addr, self.geo_errors, repr(exc))
            return UNKNOWN
        if rec is None:
            self.geo_missing += 1
            return UNKNOWN
        self.geo_found += 1
        return self.region_of(rec)

    def region_of(self, rec: GeoRecord) -> str:
        """Country claim, then continent claim, then the nearest region."""
        region = self.claim(rec)[1]
        return UNKNOWN if region is None else region_locality(region)

    def claim(self, rec: GeoRecord) -> tuple[str, str | None]:
        """``region_of``'s rule and region: ("country"|"continent"|"nearest",
        region), or ("", None)."""
        if rec.country is not None:
            region = self.countries.get(rec.country)
            if region is not None:
                return "country", region
        if rec.continent is not None:
            region = self.continents.get(rec.continent)
            if region is not None:
                return "continent", region
        if rec.latitude is not None and rec.longitude is not None:
            region = nearest_region(self.config, rec.latitude, rec.longitude)
            if region is not None:
                return "nearest", region
        return "", None

    # -- split blocks: exact network match, cached GeoIP -------------------------
    def split_v4(self, address: int, key: int) -> tuple[str, int]:
        found, scope = self.v4.lookup(address)
        if found is not None:
            return found, scope
        loc, geo_scope = self.cached(key)
        return loc, max(scope, geo_scope)

    def split_v6(self, address: int, key: int) -> tuple[str, int]:
        found, scope = self.v6.lookup(address)
        if found is not None:
            return found, scope
        loc, geo_scope = self.cached(key)
        return loc, max(scope, geo_scope)

    def counts(self) -> LocatorCounts:
        info = self.cached.cache_info()
        return LocatorCounts(info.hits, info.misses, self.geo_found, self.geo_missing,
                             self.geo_errors)


class GeoLocator:
    """The ``Locator`` built from a Config: cluster networks, geo.networks, GeoIP.

    ``metrics`` (one ``LocatorMetrics`` per registry, shared by the locators
    that replace each other on reload) exports the counters. ``discovered``
    gives ``cluster -> (region, zone)`` for clusters whose config leaves them
    to Node labels (Kubernetes sources); clusters with neither known are
    skipped. ``database`` replaces opening
    ``config.geo.database`` (tests wrap the real reader). Raises
    ``GeoDatabaseError`` when the configured database cannot be used.
    """

    def __init__(self, config: Config, *, metrics: LocatorMetrics | None = None,
                 database: GeoSource | None = None,
                 discovered: Mapping[str, tuple[str | None, str | None]] | None = None,
                 name: str = "default") -> None:
        self.log = logging.getLogger(f"dnsserver.locality[{name}]")
        self._lock = threading.Lock()  # serialises reloads, not queries
        self._base = LocatorCounts()
        self._state = self._build(config, database, discovered or {})
        if metrics is not None:
            metrics.attach(self)

    def _build(self, config: Config, database: GeoSource | None,
               discovered: Mapping[str, tuple[str | None, str | None]]) -> _State:
        if database is None and config.geo.database:
            db = GeoDatabase(config.geo.database)
            self.log.info("geoip_opened path=%s type=%s build_epoch=%d ip_version=%d",
                          db.path, db.database_type, db.build_epoch, db.ip_version)
            database = db
        state = _State(config, database, discovered, self.log)
        self.log.info("locator_built networks_v4=%d networks_v6=%d geoip=%s cache_size=%d",
                      state.v4.size, state.v6.size, database is not None, config.geo.cache_size)
        return state

    def reload(self, config: Config, *, database: GeoSource | None = None,
               discovered: Mapping[str, tuple[str | None, str | None]] | None = None) -> None:
        """Rebuild from ``config`` (reopening the database). On error the old
        state stays in service and the error propagates."""
        with self._lock:
            new = self._build(config, database, discovered or {})
            old, self._state = self._state, new
            self._base = self._base + old.counts()
        # The old reader is not closed here: a query on another thread may still
        # hold the old state. It is unmapped when the last reference goes.

    def locate(self, address: bytes, source_prefix: int | None) -> tuple[str, int]:
        if source_prefix is not None and source_prefix <= 0:
            return UNTAILORED  # 0: the client opted out of tailoring (RFC 7871 7.1.2)
        st = self._state
        n = len(address)
        if n == 16 and source_prefix is None and address[:12] == _V4_MAPPED:
            address, n = address[12:], 4  # dual-stack socket: ::ffff:a.b.c.d
        if n == 4:
            a = _from_bytes(address)
            key = a >> st.v4_shift
            if st.v4_split and key in st.v4_split:
                loc, scope = st.split_v4(a, key)
            else:
                loc, scope = st.cached(key)
        elif n == 16:
            a = _from_bytes(address)
            key = a >> st.v6_shift
            if st.v6_split and key in st.v6_split:
                loc, scope = st.split_v6(a, key | _V6_TAG)
            else:
                loc, scope = st.cached(key | _V6_TAG)
        else:
            return UNTAILORED
        if source_prefix is not None and scope > source_prefix:
            scope = source_prefix
        return loc, scope

    def locate_network(self, address: bytes, source_prefix: int) -> tuple[str, int] | None:
        st = self._state
        if len(address) == 4:
            found, scope = st.v4.lookup(_from_bytes(address))
        elif len(address) == 16:
            found, scope = st.v6.lookup(_from_bytes(address))
        else:
            return None
        if found is None:
            return None
        return found, min(scope, source_prefix)

    # -- introspection -----------------------------------------------------------
    def describe(self, address: bytes, source_prefix: int | None) -> Placement:
        """What ``locate(address, source_prefix)`` rests on, in words, for an
        operator (``fedns explain``): the configured network that matched, or
        the GeoIP record and the rule applied to it, or why neither did.
        Read-only: no cache, no counter, not for the query path."""
        if source_prefix is not None and source_prefix <= 0:
            return Placement(UNKNOWN, "unknown", "ECS source prefix 0: the client opted out")
        st = self._state
        if len(address) == 16 and source_prefix is None and address[:12] == _V4_MAPPED:
            address = address[12:]
        if len(address) not in (4, 16):
            return Placement(UNKNOWN, "unknown", "not an IPv4 or IPv6 address")
        ip = ipaddress.ip_address(address)
        table = st.v4 if ip.version == 4 else st.v6
        found, _ = table.lookup(int(ip))
        if found is not None:
            return Placement(found, "network", _network_origin(st.config, ip, found))
        if st.database is None:
            return Placement(UNKNOWN, "unknown",
                             "no configured network matches and no GeoIP database is configured")
        prefix = st.v4_prefix if ip.version == 4 else st.v6_prefix  # as ``locate`` caches it
        block = ipaddress.ip_network((ip, prefix), strict=False)
        try:
            rec = st.database.lookup(block.network_address)
        except Exception as exc:
            return Placement(UNKNOWN, "unknown", f"GeoIP lookup of {block} failed: {exc!r}")
        if rec is None:
            return Placement(UNKNOWN, "unknown", f"{block} is not in the GeoIP database")
        how, region = st.claim(rec)
        seen = f"country {rec.country or '-'}, continent {rec.continent or '-'}"
        if region is None:
            return Placement(UNKNOWN, "unknown", f"GeoIP {block}: {seen}: no region claims it "
                             "and no coordinates")
        if how == "nearest":
            rule = f"nearest region to ({rec.latitude}, {rec.longitude}) [{seen}]: {region}"
        else:
            code = rec.country if how == "country" else rec.continent
            rule = f"{how} {code} claimed by {region}"
        return Placement(region_locality(region), "geoip", f"GeoIP {block}: {rule}")

    @property
    def cache_entries(self) -> int:
        return self._state.cached.cache_info().currsize

    @property
    def cache_limit(self) -> int:
        return self._state.cached.cache_info().maxsize or 0

    def counts(self) -> LocatorCounts:
        """Totals since construction, across reloads."""
        return self._base + self._state.counts()


class LocatorMetrics(Collector):
    """Prometheus view of the locator in service (create one per registry).

    Counters are read at scrape time, so nothing is counted per query. When a
    reload replaces the locator, the old one's totals carry over.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._lock = threading.Lock()
        self._retired = LocatorCounts()
        self._locator: GeoLocator | None = None
        registry.register(self)

    def attach(self, locator: GeoLocator) -> None:
        with self._lock:
            if self._locator is not None and self._locator is not locator:
                self._retired = self._retired + self._locator.counts()
            self._locator = locator

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            c, entries = self._retired, 0
            if self._locator is not None:
                c = c + self._locator.counts()
                entries = self._locator.cache_entries
        hits = CounterMetricFamily("fedns_geo_cache_hits", "Client locality cache hits.")
        hits.add_metric([], c.hits)
        misses = CounterMetricFamily("fedns_geo_cache_misses", "Client locality cache misses.")
        misses.add_metric([], c.misses)
        lookups = CounterMetricFamily("fedns_geoip_lookups", "GeoIP database lookups by result.",
                                      labels=["result"])
        lookups.add_metric(["found"], c.geo_found)
        lookups.add_metric(["not_found"], c.geo_missing)
        lookups.add_metric(["error"], c.geo_errors)
        size = GaugeMetricFamily("fedns_geo_cache_entries",
                                 "Client prefixes in the locality cache.")
        size.add_metric([], entries)
        yield from (hits, misses, lookups, size)


def build_locator(config: Config, *, metrics: LocatorMetrics | None = None,
                  discovered: Mapping[str, tuple[str | None, str | None]] | None = None,
                  ) -> GeoLocator:
    """The locator for ``config``; raises ``GeoDatabaseError`` (a config-time
    error) when ``geo.database`` is missing, corrupt or of the wrong type."""
    return GeoLocator(config, metrics=metrics, discovered=discovered)


# -- building the tables ---------------------------------------------------------


def _tables(config: Config, discovered: Mapping[str, tuple[str | None, str | None]],
            log: logging.Logger) -> tuple[PrefixTable, PrefixTable]:
    """IPv4 and IPv6 tables: cluster networks, then the geo.networks they leave."""
    cluster_entries: list[tuple[Network, str, str]] = []
    for cl in config.clusters:
        region, zone = cl.region, cl.zone
        if region is None or zone is None:
            d_region, d_zone = discovered.get(cl.name, (None, None))
            region, zone = region or d_region, zone or d_zone
        if config.geo.cluster_local:
            loc = cluster_locality(cl.name)
        elif zone is not None:
            loc = zone_locality(zone)
        elif region is not None:
            loc = region_locality(region)
        else:
            if cl.networks:
                log.warning("cluster_networks_skipped cluster=%s reason=%s", cl.name,
                            "region_and_zone_unknown")
            continue
        cluster_entries.extend((net, loc, f"cluster:{cl.name}") for net in cl.networks)
    geo_entries = [
        (g.network, zone_locality(g.zone) if g.zone else region_locality(g.region),
         f"geo.networks:{g.network}")
        for g in config.geo.networks
    ]
    tables: list[PrefixTable] = []
    for version, bits in ((4, 32), (6, 128)):
        clusters = [(int(n.network_address), n.prefixlen, loc)
                    for n, loc, _ in cluster_entries if n.version == version]
        first = PrefixTable(bits, clusters)
        kept = list(clusters)
        for net, loc, _origin in geo_entries:
            if net.version != version:
                continue
            shadow = first.covering(int(net.network_address), net.prefixlen)
            if shadow is not None:
                log.warning("geo_network_shadowed network=%s locality=%s by=%s", net, loc, shadow)
                continue
            kept.append((int(net.network_address), net.prefixlen, loc))
        table = PrefixTable(bits, kept)
        for c in table.conflicts:
            net_s = (ipaddress.IPv4Network((c.network, c.length)) if bits == 32
                     else ipaddress.IPv6Network((c.network, c.length)))
            log.warning("network_conflict network=%s kept=%s dropped=%s", net_s, c.kept, c.dropped)
        tables.append(table)
    return tables[0], tables[1]


def _network_origin(config: Config, ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
                    locality: str) -> str:
    """The configured network that placed ``ip`` in ``locality`` (the longest
    one holding it), in words."""
    best: tuple[int, str] | None = None
    for cl in config.clusters:
        for net in cl.networks:
            if ip in net and (best is None or net.prefixlen > best[0]):
                best = (net.prefixlen, f"{net} (networks of cluster {cl.name})")
    clusters = [net for cl in config.clusters for net in cl.networks]
    for g in config.geo.networks:
        shadowed = any(net.version == g.network.version and g.network.subnet_of(net)  # type: ignore[arg-type]
                       for net in clusters)  # dropped by ``_tables``
        if (ip in g.network and not shadowed
                and (best is None or g.network.prefixlen > best[0])):
            best = (g.network.prefixlen, f"{g.network} (geo.networks)")
    return f"{best[1] if best else 'a configured network'} -> {locality}"


def _claims(config: Config, log: logging.Logger) -> tuple[dict[str, str], dict[str, str]]:
    countries: dict[str, str] = {}
    continents: dict[str, str] = {}
    for region in config.regions:
        for mapping, codes, what in ((countries, region.countries, "country"),
                                     (continents, region.continents, "continent")):
            for code in codes:
                kept = mapping.setdefault(code.upper(), region.name)
                if kept != region.name:
                    log.warning("geo_claim_conflict %s=%s kept=%s dropped=%s",
                                what, code, kept, region.name)
    return countries, continents

