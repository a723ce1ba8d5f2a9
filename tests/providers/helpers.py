"""Shared helpers for provider tests: a federation Snapshot and Provider configs."""

from __future__ import annotations

from collections.abc import Iterable

from config.model import Config, Provider
from healthwatch.snapshot import Record, Snapshot
from tests.ports import free_port as free_port  # (re-exported to the provider tests)

ZONE = "fed.example."
TTL = 30
CLUSTERS = {  # cluster -> (region, az, ip)
    "c1": ("eu-west1", "eu-west1a", "10.0.1.1"),
    "c2": ("eu-west1", "eu-west1b", "10.0.2.1"),
    "c3": ("us-east1", "us-east1a", "10.0.3.1"),
}
SERVICES = ("web", "api")
STATIC = (
    Record("www." + ZONE, "CNAME", TTL, "web.default.fed.svc." + ZONE),
    Record("txt." + ZONE, "TXT", 60, '"hello world"'),
    Record("ns1." + ZONE, "A", TTL, "192.0.2.53"),
    Record(ZONE, "NS", 3600, "ns1." + ZONE),
    Record(ZONE, "SOA", 3600, f"ns1.{ZONE} hostmaster.{ZONE} 1 3600 600 86400 30"),
)


def fed_snapshot(down: Iterable[tuple[str, str]] = (), *, serial: int = 1,
                 gone: bool = False, services: Iterable[str] = SERVICES) -> Snapshot:
    """A Snapshot like the planner builds: ``down`` = (service, cluster) pairs failing."""
    dead = set(down)
    records: list[Record] = list(STATIC)
    geo: dict[str, dict[str, tuple[Record, ...]]] = {}
    if not gone:
        for svc in services:
            base = f"{svc}.default.fed.svc."
            glob = base + ZONE
            healthy = {c: v for c, v in CLUSTERS.items() if (svc, c) not in dead}
            geo[glob] = {"": tuple(Record(glob, "A", TTL, v[2])
                                   for v in sorted(healthy.values()))}
            for region in sorted({v[0] for v in CLUSTERS.values()}):
                rname = f"{base}{region}.{ZONE}"
                ips = sorted(v[2] for v in healthy.values() if v[0] == region)
                records += ([Record(rname, "A", TTL, ip) for ip in ips] if ips
                            else [Record(rname, "CNAME", TTL, glob)])
            for region, az, _ in CLUSTERS.values():
                zname = f"{base}{az}.{region}.{ZONE}"
                ips = sorted(v[2] for v in healthy.values() if v[1] == az)
                records += ([Record(zname, "A", TTL, ip) for ip in ips] if ips
                            else [Record(zname, "CNAME", TTL, f"{base}{region}.{ZONE}")])
    return Snapshot(serial=serial, generated_at=0.0, zone=ZONE, ttl=TTL,
                    records=tuple(records), geo=geo, localities=("",))


def provider(ptype: str, name: str | None = None, **settings: object) -> Provider:
    extra = {k: settings.pop(k) for k in ("debounce", "max_change_fraction", "owner_id",
                                          "delegate") if k in settings}
    return Provider(type=ptype, name=name or ptype,  # type: ignore[arg-type]
                    settings=tuple(settings.items()), **extra)  # type: ignore[arg-type]


def config(*providers: Provider) -> Config:
    return Config(zone=ZONE, federation="fed", ttl=TTL,
                  nameservers=(("ns1." + ZONE, ("192.0.2.53",)),), providers=providers)
