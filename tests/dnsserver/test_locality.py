"""GeoLocator: client address (+ ECS source prefix) -> (locality, scope)."""

from __future__ import annotations

import dataclasses
import ipaddress
import random
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from config.model import Cluster, Config, Geo, GeoNetwork, Region
from dnsserver.geoip import Address, GeoDatabase, GeoDatabaseError, GeoLookupError, GeoRecord
from dnsserver.locality import (
    GeoLocator,
    Locator,
    LocatorMetrics,
    NullLocator,
    build_locator,
)
from tests.dnsserver.mmdb import build_mmdb

US = Region("us-east1", (33.8, -84.4), zones=("us-east1-b", "us-east1-c"))
EU = Region("europe-west1", (50.4, 3.8), zones=("europe-west1-b", "europe-west1-c"))
ASIA = Region("asia-east1", (24.0, 121.0), zones=("asia-east1-a",))
SA = Region("southamerica-east1", (-23.5, -46.6), zones=("southamerica-east1-a",))
REGIONS = (US, EU, ASIA, SA)


@pytest.fixture(scope="module")
def db_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(build_mmdb(tmp_path_factory.mktemp("geo") / "city.mmdb"))


def _cfg(db: str | None, *, regions: tuple[Region, ...] = REGIONS,
         clusters: tuple[Cluster, ...] = (), **geo: object) -> Config:
    return Config(zone="example.com.", federation="fed", regions=regions, clusters=clusters,
                  geo=Geo(database=db, **geo))  # type: ignore[arg-type]


def _net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


def _b(text: str) -> bytes:
    return ipaddress.ip_address(text).packed


class CountingDatabase:
    """Wraps the real reader and counts reads."""

    def __init__(self, inner: GeoDatabase) -> None:
        self.inner = inner
        self.reads: list[str] = []

    def lookup(self, address: Address) -> GeoRecord | None:
        self.reads.append(str(address))
        return self.inner.lookup(address)


# -- GeoIP: nearest region, claims, IPv6, ECS -------------------------------------

GEOIP_CASES = [
    # (address, source_prefix, locality, scope)
    ("81.2.69.160", 24, "region:europe-west1", 24),  # GB
    ("81.2.69.0", 32, "region:europe-west1", 24),
    ("5.9.10.0", 24, "region:europe-west1", 24),  # DE
    ("2.0.1.0", 24, "region:europe-west1", 24),  # FR
    ("8.8.8.0", 24, "region:us-east1", 24),  # US
    ("8.8.0.0", 16, "region:us-east1", 16),  # scope capped at the source prefix
    ("1.0.16.0", 24, "region:asia-east1", 24),  # JP
    ("177.0.3.0", 24, "region:southamerica-east1", 24),  # BR
    ("1.128.5.0", 24, "region:asia-east1", 24),  # AU: Taiwan is nearest
    ("2a02:8010:1234::", 48, "region:europe-west1", 48),  # GB IPv6, capped at 48
    ("2a01:4f8:1:200::", 56, "region:europe-west1", 56),  # DE IPv6
    ("2001:4860:4860::8888", None, "region:us-east1", 56),  # no ECS: full address
    ("2001:268:1::", 64, "region:asia-east1", 56),  # JP IPv6
    ("81.2.69.160", None, "region:europe-west1", 24),  # packet source, no ECS
    ("::ffff:81.2.69.160", None, "region:europe-west1", 24),  # IPv4-mapped source
    ("41.0.0.0", 24, "", 24),  # ZA: country, no coordinates, unclaimed
    ("100.64.0.0", 24, "region:europe-west1", 24),  # (0, 0): nearest is Belgium
    ("203.0.113.0", 24, "", 24),  # not in the database
    ("2001:db8::", 56, "", 56),
    ("81.2.69.160", 0, "", 0),  # SOURCE PREFIX-LENGTH 0: untailored
    ("2a01:4f8::", 0, "", 0),
]


@pytest.mark.parametrize(("address", "source", "locality", "scope"), GEOIP_CASES)
def test_geoip(db_path: str, address: str, source: int | None, locality: str,
               scope: int) -> None:
    loc = GeoLocator(_cfg(db_path))
    assert loc.locate(_b(address), source) == (locality, scope)
    assert loc.locate(_b(address), source) == (locality, scope)  # cached: same answer


CLAIMS = (
    dataclasses.replace(US, countries=("AU",)),  # far from Sydney, but claims it
    dataclasses.replace(EU, continents=("AF",)),
    ASIA,
    dataclasses.replace(SA, countries=("GB",), continents=("AS",)),
)

CLAIM_CASES = [
    ("1.128.5.0", "region:us-east1"),  # country claim beats distance
    ("41.0.0.0", "region:europe-west1"),  # continent claim, record without coordinates
    ("81.2.69.0", "region:southamerica-east1"),  # country claim beats distance
    ("5.9.0.0", "region:europe-west1"),  # DE: unclaimed, by distance
    ("1.0.16.0", "region:southamerica-east1"),  # JP: continent claim beats distance
    ("196.0.0.0", ""),  # registered country KE, unclaimed, no coordinates
]


@pytest.mark.parametrize(("address", "locality"), CLAIM_CASES)
def test_claims(db_path: str, address: str, locality: str) -> None:
    loc = GeoLocator(_cfg(db_path, regions=CLAIMS))
    assert loc.locate(_b(address), 24) == (locality, 24)


def test_country_claim_beats_continent_claim(db_path: str) -> None:
    regions = (dataclasses.replace(US, countries=("GB",)),
               dataclasses.replace(EU, continents=("EU",)), ASIA)
    loc = GeoLocator(_cfg(db_path, regions=regions))
    assert loc.locate(_b("81.2.69.0"), 24)[0] == "region:us-east1"
    assert loc.locate(_b("5.9.0.0"), 24)[0] == "region:europe-west1"


# -- networks: cluster networks, geo.networks, precedence, scope ------------------

CLUSTERS = (
    Cluster("eu-b", "europe-west1", "europe-west1-b",
            networks=(_net("10.0.0.0/8"), _net("81.2.69.128/25"), _net("fd00:1::/48"))),
    Cluster("us-c", "us-east1", "us-east1-c", networks=(_net("172.16.0.0/12"),)),
)
GEO_NETWORKS = (
    GeoNetwork(_net("10.1.0.0/16"), "asia-east1"),  # inside a cluster network: shadowed
    GeoNetwork(_net("8.8.0.0/16"), "asia-east1"),  # beats GeoIP (US)
    GeoNetwork(_net("172.0.0.0/8"), "southamerica-east1", "southamerica-east1-a"),
    GeoNetwork(_net("2a01:4f8:ab00::/40"), "us-east1", "us-east1-b"),
)

NETWORK_CASES = [
    ("10.1.2.3", None, "zone:europe-west1-b", 8),  # cluster beats the shadowed geo.network
    ("10.200.0.0", 24, "zone:europe-west1-b", 8),
    ("172.16.5.0", 24, "zone:us-east1-c", 12),  # cluster /12 inside geo.networks /8
    ("172.99.0.0", 24, "zone:southamerica-east1-a", 10),  # 99 = 01100011 vs 16 = 0001...
    ("172.15.0.0", 24, "zone:southamerica-east1-a", 12),  # 15 = 00001111 vs 16 = 0001...
    ("8.8.8.0", 24, "region:asia-east1", 16),  # geo.networks beats GeoIP
    ("8.8.8.0", 8, "region:asia-east1", 8),  # capped at the source prefix
    ("8.9.0.0", 24, "region:us-east1", 24),  # outside 8.8/16: GeoIP again
    ("81.2.69.200", 32, "zone:europe-west1-b", 25),  # /25 inside the GB /24
    ("81.2.69.10", 32, "region:europe-west1", 25),  # other half: GeoIP, scope /25
    ("fd00:1:0:5::", 64, "zone:europe-west1-b", 48),
    ("2a01:4f8:ab12::", 56, "zone:us-east1-b", 40),
    ("2a01:4f8:1::", 56, "region:europe-west1", 56),
]


@pytest.mark.parametrize(("address", "source", "locality", "scope"), NETWORK_CASES)
def test_networks(db_path: str, address: str, source: int | None, locality: str,
                  scope: int) -> None:
    loc = GeoLocator(_cfg(db_path, clusters=CLUSTERS, networks=GEO_NETWORKS))
    assert loc.locate(_b(address), source) == (locality, scope)


def test_network_cases_hold_in_any_query_order(db_path: str) -> None:
    """The per-/24 cache never hides a longer CIDR, whichever address comes first."""
    cfg = _cfg(db_path, clusters=CLUSTERS, networks=GEO_NETWORKS)
    for order in (NETWORK_CASES, NETWORK_CASES[::-1]):
        loc = GeoLocator(cfg)
        for address, source, locality, scope in order:
            assert loc.locate(_b(address), source) == (locality, scope), address


def test_longer_cidr_inside_cached_block(db_path: str) -> None:
    cfg = _cfg(db_path, clusters=(Cluster("gb", "europe-west1", "europe-west1-c",
                                          networks=(_net("81.2.69.64/28"),)),))
    db = CountingDatabase(GeoDatabase(db_path))
    loc = GeoLocator(cfg, database=db)
    assert loc.locate(_b("81.2.69.1"), None) == ("region:europe-west1", 26)
    assert loc.locate(_b("81.2.69.70"), None) == ("zone:europe-west1-c", 28)
    assert loc.locate(_b("81.2.69.250"), None) == ("region:europe-west1", 25)
    assert loc.locate(_b("81.2.69.79"), None) == ("zone:europe-west1-c", 28)
    assert loc.locate(_b("81.2.69.80"), None) == ("region:europe-west1", 28)
    assert db.reads == ["81.2.69.0"]  # the GeoIP part of the split /24 is still cached


def test_networks_without_database(db_path: str) -> None:
    loc = GeoLocator(_cfg(None, clusters=CLUSTERS))
    assert loc.locate(_b("10.3.0.1"), None) == ("zone:europe-west1-b", 8)
    # unknown; two bits rule out every network (203 = 11..., 172 = 10..., 10 = 00...)
    assert loc.locate(_b("203.0.113.0"), 24) == ("", 2)
    assert loc.locate(_b("2001:db8::"), 56) == ("", 1)  # fd00:: = 1111...


def test_no_evidence_is_untailored() -> None:
    loc = GeoLocator(_cfg(None))
    for address in ("203.0.113.7", "81.2.69.160", "2001:db8::1"):
        assert loc.locate(_b(address), None) == ("", 0)
        assert loc.locate(_b(address), 24) == ("", 0)
    assert NullLocator().locate(_b("81.2.69.1"), 24) == ("", 0)


def test_malformed_address_length(db_path: str) -> None:
    loc = GeoLocator(_cfg(db_path))
    assert loc.locate(b"\x01\x02\x03", None) == ("", 0)
    assert loc.locate(b"", 24) == ("", 0)


def test_never_raises_on_arbitrary_input(db_path: str) -> None:
    rng = random.Random(3)
    loc = GeoLocator(_cfg(db_path, clusters=CLUSTERS, networks=GEO_NETWORKS, cache_size=64))
    for _ in range(3000):
        address = rng.randbytes(rng.choice([0, 1, 4, 4, 4, 15, 16, 16, 16, 17]))
        source = rng.choice([None, -1, 0, 1, 8, 24, 32, 56, 64, 128, 200])
        locality, scope = loc.locate(address, source)
        assert isinstance(locality, str)
        assert 0 <= scope <= 8 * len(address)
        if source is not None:
            assert scope <= max(source, 0)


def test_cluster_local_and_discovered_topology(db_path: str) -> None:
    clusters = (
        Cluster("k1", None, None, source="kubernetes", networks=(_net("10.10.0.0/16"),)),
        Cluster("k2", None, None, source="kubernetes", networks=(_net("10.20.0.0/16"),)),
        Cluster("k3", "asia-east1", None, networks=(_net("10.30.0.0/16"),)),
    )
    loc = GeoLocator(_cfg(db_path, clusters=clusters),
                     discovered={"k1": ("us-east1", "us-east1-b")})
    assert loc.locate(_b("10.10.1.1"), None) == ("zone:us-east1-b", 16)
    assert loc.locate(_b("10.20.1.1"), None) == ("", 24)  # k2 unknown yet: skipped
    assert loc.locate(_b("10.30.1.1"), None) == ("region:asia-east1", 16)
    local = GeoLocator(_cfg(db_path, clusters=clusters, cluster_local=True))
    assert local.locate(_b("10.20.1.1"), None) == ("cluster:k2", 16)


def test_duplicate_cluster_cidr_first_wins(db_path: str,
                                           caplog: pytest.LogCaptureFixture) -> None:
    clusters = (Cluster("a", "us-east1", "us-east1-b", networks=(_net("10.244.0.0/16"),)),
                Cluster("b", "europe-west1", "europe-west1-b",
                        networks=(_net("10.244.0.0/16"),)))
    loc = GeoLocator(_cfg(db_path, clusters=clusters))
    assert loc.locate(_b("10.244.3.4"), None) == ("zone:us-east1-b", 16)
    assert "network_conflict network=10.244.0.0/16" in caplog.text


# -- cache ------------------------------------------------------------------------


def test_cache_hit_does_no_database_read(db_path: str) -> None:
    db = CountingDatabase(GeoDatabase(db_path))
    loc = GeoLocator(_cfg(db_path), database=db)
    for host in (1, 77, 200, 1):
        assert loc.locate(_b(f"81.2.69.{host}"), None) == ("region:europe-west1", 24)
    assert db.reads == ["81.2.69.0"]
    for host in (0, 1, 2):
        assert loc.locate(_b(f"2a01:4f8:1:2{host}::9"), None)[0] == "region:europe-west1"
    assert db.reads == ["81.2.69.0", "2a01:4f8:1::"]  # one /56
    counts = loc.counts()
    assert (counts.hits, counts.misses, counts.geo_found) == (5, 2, 2)


def test_cache_is_bounded(db_path: str) -> None:
    db = CountingDatabase(GeoDatabase(db_path))
    loc = GeoLocator(_cfg(db_path, cache_size=8), database=db)
    assert loc.cache_limit == 8
    for i in range(100):
        loc.locate(bytes((5, 9, i, 1)), None)
        assert loc.cache_entries <= 8
    assert loc.cache_entries == 8
    assert len(db.reads) == 100
    loc.locate(bytes((5, 9, 99, 7)), None)  # most recent block: still cached
    loc.locate(bytes((5, 9, 0, 7)), None)  # evicted long ago: read again
    assert len(db.reads) == 101


def test_cache_prefix_configurable(db_path: str) -> None:
    db = CountingDatabase(GeoDatabase(db_path))
    loc = GeoLocator(_cfg(db_path, ipv4_cache_prefix=16, ipv6_cache_prefix=32), database=db)
    assert loc.locate(_b("5.9.1.1"), None) == ("region:europe-west1", 16)
    assert loc.locate(_b("5.9.200.1"), 24) == ("region:europe-west1", 16)
    assert loc.locate(_b("2a01:4f8:ff::"), 56) == ("region:europe-west1", 32)
    assert db.reads == ["5.9.0.0", "2a01:4f8::"]


# -- failure handling, reload, metrics --------------------------------------------


class BrokenDatabase:
    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def lookup(self, address: Address) -> GeoRecord | None:
        raise self.exc


@pytest.mark.parametrize("exc", [GeoLookupError(address="x", reason="bad pointer"),
                                 RuntimeError("boom"), MemoryError()])
def test_lookup_errors_never_reach_the_query(exc: Exception) -> None:
    loc = GeoLocator(_cfg(None), database=BrokenDatabase(exc))
    assert loc.locate(_b("81.2.69.1"), 24) == ("", 24)
    assert loc.counts().geo_errors == 1


@pytest.mark.parametrize("bad", ["missing", "garbage"])
def test_bad_database_is_a_construction_error(tmp_path: Path, bad: str) -> None:
    path = tmp_path / "geo.mmdb"
    if bad == "garbage":
        path.write_bytes(b"\x00" * 4096)
    with pytest.raises(GeoDatabaseError):
        build_locator(_cfg(str(path)))


def test_reload_switches_config_and_keeps_old_state_on_error(
        db_path: str, tmp_path: Path) -> None:
    loc = GeoLocator(_cfg(db_path))
    assert loc.locate(_b("1.128.0.0"), 24)[0] == "region:asia-east1"
    loc.reload(_cfg(db_path, regions=CLAIMS))
    assert loc.locate(_b("1.128.0.0"), 24)[0] == "region:us-east1"
    with pytest.raises(GeoDatabaseError):
        loc.reload(_cfg(str(tmp_path / "absent.mmdb")))
    assert loc.locate(_b("1.128.0.0"), 24)[0] == "region:us-east1"
    assert loc.counts().misses == 2


def test_metrics_survive_locator_replacement(db_path: str) -> None:
    registry = CollectorRegistry()
    metrics = LocatorMetrics(registry)
    first = build_locator(_cfg(db_path), metrics=metrics)
    first.locate(_b("81.2.69.1"), None)
    first.locate(_b("81.2.69.2"), None)
    second = build_locator(_cfg(db_path), metrics=metrics)  # a reload
    second.locate(_b("203.0.113.1"), None)

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert sample("fedns_geo_cache_hits_total") == 1
    assert sample("fedns_geo_cache_misses_total") == 2
    assert sample("fedns_geoip_lookups_total", result="found") == 1
    assert sample("fedns_geoip_lookups_total", result="not_found") == 1
    assert sample("fedns_geo_cache_entries") == 1


def test_satisfies_protocol(db_path: str) -> None:
    locators: list[Locator] = [GeoLocator(_cfg(db_path)), NullLocator()]
    assert all(isinstance(x.locate(_b("8.8.8.8"), None), tuple) for x in locators)
