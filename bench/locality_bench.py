"""Time GeoLocator.locate() for random client prefixes, cold vs warm cache.

    python bench/locality_bench.py [--prefixes 10000] [--database GeoLite2-City.mmdb]

Without ``--database`` a synthetic City MMDB is built in a temporary directory
(random /16 networks over a dozen countries, plus IPv6 /32s). Prints
nanoseconds per locate() for: the cold pass (every prefix a cache miss: network
match + GeoIP read + region choice), warm passes (cache hits), the same warm
addresses without ECS, and the NullLocator as the floor. Not a test: numbers
depend on the machine.
"""

from __future__ import annotations

import argparse
import ipaddress
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from config.model import Cluster, Config, Geo, GeoNetwork, Region
from dnsserver.locality import GeoLocator, NullLocator
from tests.dnsserver.mmdb import Place, build_mmdb

REGIONS = (
    Region("us-east1", (33.8, -84.4)),
    Region("us-west1", (45.6, -121.2)),
    Region("europe-west1", (50.4, 3.8), countries=("GB",)),
    Region("asia-east1", (24.0, 121.0)),
    Region("southamerica-east1", (-23.5, -46.6), continents=("SA",)),
    Region("australia-southeast1", (-33.9, 151.2)),
)
COUNTRIES = (
    ("GB", "EU", (51.5, -0.1)), ("DE", "EU", (52.5, 13.4)), ("FR", "EU", (48.9, 2.4)),
    ("US", "NA", (37.8, -97.8)), ("CA", "NA", (45.4, -75.7)), ("JP", "AS", (35.7, 139.7)),
    ("IN", "AS", (28.6, 77.2)), ("BR", "SA", (-23.5, -46.6)), ("AR", "SA", (-34.6, -58.4)),
    ("AU", "OC", (-33.9, 151.2)), ("ZA", "AF", (-26.2, 28.0)), ("SG", "AS", (1.35, 103.8)),
)


def synthetic_db(directory: Path, rng: random.Random) -> Path:
    nets: dict[int, list[str]] = {i: [] for i in range(len(COUNTRIES))}
    for first in range(1, 224):
        if first in (10, 127):
            continue
        for second in rng.sample(range(256), 96):
            nets[rng.randrange(len(COUNTRIES))].append(f"{first}.{second}.0.0/16")
    for i in range(4096):
        nets[rng.randrange(len(COUNTRIES))].append(f"2{i // 256:03x}:{(i % 256) << 8:x}::/24")
    places = [Place(tuple(nets[i]), c, cont, loc) for i, (c, cont, loc) in enumerate(COUNTRIES)]
    return build_mmdb(directory / "synthetic-city.mmdb", places)


def config(database: str, networks: int, rng: random.Random) -> Config:
    clusters = tuple(
        Cluster(f"c{i}", "us-east1", "us-east1-b",
                networks=(ipaddress.ip_network(f"10.{i}.0.0/16"),))
        for i in range(min(networks, 200))
    )
    geo_nets = tuple(
        GeoNetwork(ipaddress.ip_network(f"100.{rng.randrange(64, 128)}.{i % 256}.0/24"),
                   "us-west1")
        for i in range(networks)
    )
    return Config(zone="example.com.", federation="fed", regions=REGIONS, clusters=clusters,
                  geo=Geo(database=database, networks=geo_nets))


def prefixes(rng: random.Random, n: int) -> list[tuple[bytes, int]]:
    out: list[tuple[bytes, int]] = []
    seen: set[bytes] = set()
    while len(out) < n:
        if rng.random() < 0.8:
            addr = bytes((rng.randrange(1, 224), rng.randrange(256), rng.randrange(256), 0))
            item = (addr, 24)
        else:
            addr = rng.getrandbits(56).to_bytes(7, "big") + bytes(9)
            addr = bytes((0x20 | (addr[0] & 0x0F),)) + addr[1:]
            item = (addr, 56)
        if addr not in seen:
            seen.add(addr)
            out.append(item)
    return out


def timed(label: str, fn: Callable[[bytes, int | None], object],
          items: list[tuple[bytes, int | None]]) -> float:
    t0 = time.perf_counter()
    for addr, src in items:
        fn(addr, src)
    per = (time.perf_counter() - t0) / len(items) * 1e9
    print(f"{label:<44} {per:9.0f} ns/locate  ({len(items)} calls)")
    return per


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--prefixes", type=int, default=10_000)
    ap.add_argument("--networks", type=int, default=500, help="geo.networks entries")
    ap.add_argument("--database", help="a real GeoLite2/GeoIP2 City MMDB")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        db = args.database or str(synthetic_db(Path(tmp), rng))
        if not args.database:
            print(f"built synthetic MMDB in {time.perf_counter() - t0:.1f}s")
        cfg = config(db, args.networks, rng)
        t0 = time.perf_counter()
        loc = GeoLocator(cfg)
        print(f"GeoLocator built in {(time.perf_counter() - t0) * 1e3:.1f} ms "
              f"({args.networks} geo.networks, {len(cfg.clusters)} cluster networks)")
        items: list[tuple[bytes, int | None]] = list(prefixes(rng, args.prefixes))
        # the same clients spread over their /24 (/56): hits after the first
        spread: list[tuple[bytes, int | None]] = [
            (a[:-1] + bytes((rng.randrange(256),)), None) for a, _ in items
        ]

        cold = timed("cold (every prefix a miss)", loc.locate, items)
        warm = timed("warm (ECS, cache hits)", loc.locate, items)
        timed("warm again", loc.locate, items)
        timed("warm, no ECS (source addr in cached blocks)", loc.locate, spread)
        floor = timed("NullLocator (floor)", NullLocator().locate, items)
        c = loc.counts()
        print(f"cache entries={loc.cache_entries} hits={c.hits} misses={c.misses} "
              f"geoip found={c.geo_found} not_found={c.geo_missing} errors={c.geo_errors}")
        print(f"cold/warm = {cold / warm:.1f}x; warm - floor = {warm - floor:.0f} ns")

        small = GeoLocator(Config(zone=cfg.zone, federation=cfg.federation, regions=REGIONS,
                                  geo=Geo(database=db, cache_size=args.prefixes // 10)))
        timed("cache 10x smaller than the working set", small.locate, items)
        timed("  second pass (LRU thrash: all misses)", small.locate, items)


if __name__ == "__main__":
    main()
