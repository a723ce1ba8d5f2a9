"""Bench data shared by ``compare.py``: the federation, its config and the queries.

One topology (6 regions x 2 AZs, one static cluster per AZ, ``services`` services
spread over ~2/3 of the clusters each) is rendered three ways:

- ``fedns_config``: the YAML config ``fedns serve`` reads;
- the zone gdnsd serves: ``fedns records`` of that config (the static view, what
  an unknown client gets), so both servers hold the same names and data;
- query files in dnsperf's binary input format (``-B``: each message prefixed by
  its 2-byte length, RFC 1035 4.2.2 framing). That is the one way to give dnsperf
  a *different* EDNS Client Subnet option per query: ``-E code:value`` sets one
  option for the whole run and the text format has no field for it.

Client locality: a synthetic GeoIP2 City MMDB (built with ``tests/dnsserver/mmdb.py``)
that maps every public IPv4 /8 and some IPv6 /16s to one of twelve countries on
six continents; ECS prefixes are drawn only from those networks, so every
ECS query is located (nothing falls through to "unknown").
"""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

ZONE = "bench.example."
FED = "fed"
REGIONS: dict[str, dict[str, object]] = {
    "us-east1": {"location": [33.8, -84.4], "zones": ["us-east1-b", "us-east1-c"]},
    "us-west1": {"location": [45.6, -121.2], "zones": ["us-west1-a", "us-west1-b"]},
    "europe-west1": {"location": [50.4, 3.8], "zones": ["europe-west1-b", "europe-west1-c"]},
    "asia-east1": {"location": [24.0, 121.0], "zones": ["asia-east1-a", "asia-east1-b"]},
    "southamerica-east1": {"location": [-23.5, -46.6],
                           "zones": ["southamerica-east1-a", "southamerica-east1-b"]},
    "australia-southeast1": {"location": [-33.9, 151.2],
                             "zones": ["australia-southeast1-a", "australia-southeast1-b"]},
}
COUNTRIES = (
    ("GB", "EU", (51.5, -0.1)), ("DE", "EU", (52.5, 13.4)), ("FR", "EU", (48.9, 2.4)),
    ("US", "NA", (37.8, -97.8)), ("CA", "NA", (45.4, -75.7)), ("JP", "AS", (35.7, 139.7)),
    ("IN", "AS", (28.6, 77.2)), ("BR", "SA", (-23.5, -46.6)), ("AR", "SA", (-34.6, -58.4)),
    ("AU", "OC", (-33.9, 151.2)), ("ZA", "AF", (-26.2, 28.0)), ("SG", "AS", (1.35, 103.8)),
)
# /8s left out of the synthetic database: private, loopback, CGNAT, link-local, test nets
_SKIP_V4 = {0, 10, 100, 127, 169, 172, 192, 198, 203}
PUBLIC_V4 = tuple(o for o in range(1, 224) if o not in _SKIP_V4)
V6_BLOCKS = tuple(range(0x2400, 0x2440))  # 64 /16s under 2400::/10

T_A, T_NS, T_CNAME, T_SOA, T_MX, T_TXT, T_AAAA, T_SRV, T_OPT = 1, 2, 5, 6, 15, 16, 28, 33, 41


@dataclass(frozen=True, slots=True)
class Topology:
    services: int = 100
    chains: int = 20  # static CNAME chains into geo names (www0 -> alias0 -> global)

    def clusters(self) -> Iterator[tuple[int, str, str]]:
        n = 0
        for region, spec in REGIONS.items():
            for az in spec["zones"]:  # type: ignore[attr-defined]
                n += 1
                yield n, region, az

    def runs_in(self, service: int, cluster: int) -> bool:
        return (service + cluster) % 3 != 0


def fedns_config(topo: Topology, dns_port: int, http_port: int,
                 database: str | None, workers: int = 1) -> dict[str, object]:
    clusters = []
    for n, region, az in topo.clusters():
        clusters.append({
            "name": f"c{n}", "region": region, "zone": az, "source": "static",
            "networks": [f"10.{n}.0.0/16"],
            "services": [
                {"name": f"svc{i}", "namespace": "default",
                 "addresses": [f"198.18.{n}.{i + 1}", f"2001:db8:{n}::{i + 1:x}"], "ready": 1}
                for i in range(topo.services) if topo.runs_in(i, n)
            ],
        })
    records: list[dict[str, object]] = []
    for k in range(topo.chains):
        svc = k % topo.services
        records.append({"name": f"www{k}", "type": "CNAME", "value": f"alias{k}"})
        records.append({"name": f"alias{k}", "type": "CNAME",
                        "value": f"svc{svc}.default.{FED}.svc.{ZONE}"})
    records += [
        {"name": "static", "type": "A", "value": "192.0.2.80"},
        {"name": "static", "type": "AAAA", "value": "2001:db8::80"},
        {"name": "@", "type": "MX", "value": "10 mail"},
        {"name": "mail", "type": "A", "value": "192.0.2.25"},
        {"name": "@", "type": "TXT", "value": "v=spf1 mx -all"},
    ]
    cfg: dict[str, object] = {
        "zone": ZONE, "federation": FED, "ttl": 30,
        "nameservers": {f"ns1.{ZONE}": ["127.0.0.1"], f"ns2.{ZONE}": ["127.0.0.2"]},
        "listen": {"dns": [f"127.0.0.1:{dns_port}"], "http": f"127.0.0.1:{http_port}"},
        "regions": REGIONS,
        "clusters": clusters,
        "records": records,
        "server": {"workers": workers},
    }
    if database is not None:
        cfg["geo"] = {"database": database}
    return cfg


def build_database(path: Path) -> Path:
    """The synthetic City MMDB described in the module docstring."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.dnsserver.mmdb import Place, build_mmdb

    nets: dict[int, list[str]] = {i: [] for i in range(len(COUNTRIES))}
    for k, first in enumerate(PUBLIC_V4):
        nets[k % len(COUNTRIES)].append(f"{first}.0.0.0/8")
    for k, block in enumerate(V6_BLOCKS):
        nets[k % len(COUNTRIES)].append(f"{block:x}::/16")
    places = [Place(tuple(nets[i]), c, cont, loc) for i, (c, cont, loc) in enumerate(COUNTRIES)]
    return build_mmdb(path, places)


# -- queries --------------------------------------------------------------------------------


def ecs_prefixes(rng: random.Random, n: int, v6_share: float = 0.1) -> list[bytes]:
    """``n`` distinct ECS option bodies: /24s in public IPv4, /56s in ``V6_BLOCKS``."""
    seen: set[bytes] = set()
    out: list[bytes] = []
    while len(out) < n:
        if rng.random() >= v6_share:
            addr = bytes((rng.choice(PUBLIC_V4), rng.randrange(256), rng.randrange(256)))
            body = struct.pack("!HBB", 1, 24, 0) + addr
        else:
            block = rng.choice(V6_BLOCKS)
            addr = struct.pack("!H", block) + rng.getrandbits(40).to_bytes(5, "big")
            body = struct.pack("!HBB", 2, 56, 0) + addr
        if body not in seen:
            seen.add(body)
            out.append(body)
    return out


def random_case(name: str, rng: random.Random) -> str:
    return "".join(c.upper() if c.isalpha() and rng.random() < 0.5 else c for c in name)


def encode_query(qid: int, name: str, qtype: int, *, edns: bool = True,
                 ecs: bytes | None = None, do: bool = False, udp_size: int = 1232) -> bytes:
    """A query message (RD=0, as a resolver asks an authoritative server)."""
    labels = [lab for lab in name.rstrip(".").split(".") if lab]
    qname = b"".join(bytes((len(lab),)) + lab.encode("ascii") for lab in labels) + b"\x00"
    arcount = 1 if edns else 0
    msg = struct.pack("!HHHHHH", qid, 0, 1, 0, 0, arcount) + qname + struct.pack("!HH", qtype, 1)
    if edns:
        opts = b"" if ecs is None else struct.pack("!HH", 8, len(ecs)) + ecs
        msg += b"\x00" + struct.pack("!HHIH", T_OPT, udp_size, 0x8000 if do else 0, len(opts))
        msg += opts
    return msg


@dataclass(frozen=True, slots=True)
class Query:
    name: str
    qtype: int
    ecs: bytes | None = None
    edns: bool = True


def global_names(topo: Topology) -> list[str]:
    return [f"svc{i}.default.{FED}.svc.{ZONE}" for i in range(topo.services)]


def static_names(topo: Topology) -> list[tuple[str, int]]:
    """Locality-free names: apex, static records, AZ- and region-level names."""
    out: list[tuple[str, int]] = [(ZONE, T_SOA), (ZONE, T_NS), (ZONE, T_MX), (ZONE, T_TXT),
                                  (f"ns1.{ZONE}", T_A), (f"static.{ZONE}", T_A),
                                  (f"static.{ZONE}", T_AAAA), (f"mail.{ZONE}", T_A)]
    for i in range(topo.services):
        base = f"svc{i}.default.{FED}.svc"
        for region, spec in REGIONS.items():
            out.append((f"{base}.{region}.{ZONE}", T_A))
            for az in spec["zones"]:  # type: ignore[attr-defined]
                out.append((f"{base}.{az}.{region}.{ZONE}", T_A))
    return out


def mix_static(topo: Topology, rng: random.Random, count: int) -> list[Query]:
    """Locality-free names (apex, static, AZ/region level), random case, 3 % NXDOMAIN."""
    names = static_names(topo)
    out = []
    for _ in range(count):
        if rng.random() < 0.03:
            out.append(Query(random_case(f"nope{rng.randrange(1000)}.{ZONE}", rng), T_A))
            continue
        name, qtype = rng.choice(names)
        out.append(Query(random_case(name, rng), qtype))
    return out


def mix_geo(topo: Topology, rng: random.Random, count: int,
            prefixes: Sequence[bytes] | None) -> list[Query]:
    """Geo-aware names: 85 % global names (A 70 %, AAAA 15 %), 10 % CNAME chains
    (www -> alias -> global), 5 % static/NXDOMAIN; random case; ECS from
    ``prefixes`` on every query when given."""
    gnames = global_names(topo)
    snames = static_names(topo)
    out = []
    for _ in range(count):
        r = rng.random()
        if r < 0.70:
            name, qtype = rng.choice(gnames), T_A
        elif r < 0.85:
            name, qtype = rng.choice(gnames), T_AAAA
        elif r < 0.95:
            name, qtype = f"www{rng.randrange(topo.chains)}.{ZONE}", T_A
        elif r < 0.97:
            name, qtype = f"nope{rng.randrange(1000)}.{ZONE}", T_A
        else:
            name, qtype = rng.choice(snames)
        ecs = rng.choice(prefixes) if prefixes else None
        out.append(Query(random_case(name, rng), qtype, ecs))
    return out


def write_binary(path: Path, queries: Sequence[Query]) -> Path:
    """dnsperf ``-B`` input: 2-byte length + message, one after another."""
    with path.open("wb") as f:
        for k, q in enumerate(queries):
            msg = encode_query(k & 0xFFFF, q.name, q.qtype, edns=q.edns, ecs=q.ecs)
            f.write(struct.pack("!H", len(msg)) + msg)
    return path
