"""A hand-built Snapshot and a static Locator shared by the DNS server tests."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

from config.model import Config, Listen, Server
from healthwatch.snapshot import Record, Snapshot

ZONE = "example.com."
SVC = "nginx.default.myfed.svc"
GLOBAL = f"{SVC}.example.com."
US_REGION = f"{SVC}.us-east1.example.com."
US_AZ = f"{SVC}.us-east1-b.us-east1.example.com."
EU_REGION = f"{SVC}.europe-west1.example.com."
EU_AZ = f"{SVC}.europe-west1-b.europe-west1.example.com."
ASIA_REGION = f"{SVC}.asia-east1.example.com."

US_IP = "192.0.2.10"
EU_IP = "192.0.2.20"
EU_IP6 = "2001:db8::20"
BIG_COUNT = 40

LOCALITIES = ("", "region:us-east1", "zone:us-east1-b", "region:europe-west1",
              "zone:europe-west1-b", "region:asia-east1")


def rec(name: str, rtype: str, value: str, ttl: int = 30) -> Record:
    return Record(name, rtype, ttl, value)


def snapshot(serial: int = 7) -> Snapshot:
    records = [
        rec(ZONE, "SOA", f"ns1.{ZONE} hostmaster.{ZONE} {serial} 3600 600 86400 60", 300),
        rec(ZONE, "NS", f"ns1.{ZONE}", 3600),
        rec(ZONE, "NS", f"ns2.{ZONE}", 3600),
        rec(ZONE, "MX", f"10 mail.{ZONE}"),
        rec(f"ns1.{ZONE}", "A", "127.0.0.1", 3600),
        rec(f"ns2.{ZONE}", "AAAA", "::1", 3600),
        rec(f"www.{ZONE}", "A", "192.0.2.1"),
        rec(f"www.{ZONE}", "AAAA", "2001:db8::1"),
        rec(f"txt.{ZONE}", "TXT", '"hello world" "second"'),
        rec(f"_sip._tcp.{ZONE}", "SRV", f"10 5 5060 www.{ZONE}"),
        rec(f"caa.{ZONE}", "CAA", '0 issue "letsencrypt.org"'),
        rec(f"eu.nginx.{ZONE}", "CNAME", EU_REGION),
        rec(f"alias.{ZONE}", "CNAME", f"www.{ZONE}"),
        rec(f"geoalias.{ZONE}", "CNAME", GLOBAL),
        rec(f"loop1.{ZONE}", "CNAME", f"loop2.{ZONE}"),
        rec(f"loop2.{ZONE}", "CNAME", f"loop1.{ZONE}"),
        rec(f"outside.{ZONE}", "CNAME", "www.example.net."),
        rec(f"dangling.{ZONE}", "CNAME", f"missing.{ZONE}"),
        rec(f"deep.ent.{ZONE}", "A", "192.0.2.99"),
        rec(US_AZ, "A", US_IP),
        rec(US_REGION, "A", US_IP),
        rec(EU_AZ, "CNAME", EU_REGION),
        rec(EU_REGION, "A", EU_IP),
        rec(EU_REGION, "AAAA", EU_IP6),
        rec(ASIA_REGION, "CNAME", GLOBAL),
        rec(f"bad.{ZONE}", "A", "not-an-address"),
    ]
    records += [rec(f"big.{ZONE}", "A", f"198.51.100.{i}") for i in range(1, BIG_COUNT + 1)]
    us = (rec(GLOBAL, "A", US_IP),)
    eu = (rec(GLOBAL, "A", EU_IP), rec(GLOBAL, "AAAA", EU_IP6))
    both = (rec(GLOBAL, "A", US_IP), rec(GLOBAL, "A", EU_IP), rec(GLOBAL, "AAAA", EU_IP6))
    same = (rec(f"same.{ZONE}", "A", "192.0.2.77"),)
    geo = {
        GLOBAL: {"": both, "region:us-east1": us, "zone:us-east1-b": us,
                 "region:europe-west1": eu, "zone:europe-west1-b": eu},
        f"same.{ZONE}": {loc: same for loc in LOCALITIES},
    }
    return Snapshot(serial=serial, generated_at=0.0, zone=ZONE, ttl=30,
                    records=tuple(sorted(records)), geo=geo, localities=LOCALITIES)


WILD = f"*.w.{ZONE}"  # a static wildcard (A and TXT) with an empty non-terminal b.w beside it
CUT = f"sub.{ZONE}"  # a zone cut: glue below it and elsewhere in the zone, occluded names
GEO_WILD = f"*.shop.{ZONE}"  # a geo-aware wildcard (an Ingress host)
# names that exercise them (wildcard synthesis, blocking, referrals, DS at the cut)
WILD_NAMES = [f"x.w.{ZONE}", f"y.z.w.{ZONE}", f"x.b.w.{ZONE}", f"b.w.{ZONE}", f"c.b.w.{ZONE}",
              WILD, f"w.{ZONE}", f"x.cw.{ZONE}", f"x.nx.{ZONE}", CUT, f"ns1.{CUT}",
              f"hidden.{CUT}", f"a.b.{CUT}", f"x.deeper.{CUT}", f"*.{CUT}", f"ns3.{ZONE}",
              f"foo.shop.{ZONE}", f"a.b.shop.{ZONE}", GEO_WILD, f"shop.{ZONE}", f"tw.{ZONE}",
              f"tw2.{ZONE}", f"tosub.{ZONE}", f"tshop.{ZONE}", f"twc.{ZONE}"]


def wild_snapshot(serial: int = 7) -> Snapshot:
    """``snapshot`` plus wildcards (static, CNAME, geo-aware), a zone cut with
    glue, names the cut occludes, and CNAMEs into all of them."""
    base = snapshot(serial)
    z = ZONE
    extra = [
        rec(WILD, "A", "192.0.2.40"), rec(WILD, "TXT", '"wild"'),
        rec(f"c.b.w.{z}", "A", "192.0.2.41"),
        rec(f"*.cw.{z}", "CNAME", f"www.{z}"),
        rec(f"*.nx.{z}", "CNAME", f"nothing.{z}"),
        rec(CUT, "NS", f"ns1.{CUT}", 3600), rec(CUT, "NS", f"ns3.{z}", 3600),
        rec(CUT, "NS", "ns.other.example.net.", 3600),
        rec(f"ns1.{CUT}", "A", "192.0.2.53", 3600), rec(f"ns1.{CUT}", "AAAA", "2001:db8::53", 3600),
        rec(f"ns3.{z}", "A", "192.0.2.54", 3600),
        rec(f"hidden.{CUT}", "TXT", '"occluded"'),
        rec(f"*.{CUT}", "A", "192.0.2.55"),
        rec(f"deeper.{CUT}", "NS", f"ns.deeper.{CUT}"),
        rec(f"tw.{z}", "CNAME", f"q.w.{z}"), rec(f"tw2.{z}", "CNAME", f"x.b.w.{z}"),
        rec(f"twc.{z}", "CNAME", f"q.cw.{z}"),
        rec(f"tosub.{z}", "CNAME", f"www.{CUT}"), rec(f"tshop.{z}", "CNAME", f"x.shop.{z}"),
    ]
    us = (rec(GEO_WILD, "A", US_IP),)
    eu = (rec(GEO_WILD, "A", EU_IP), rec(GEO_WILD, "AAAA", EU_IP6))
    both = (*us, *eu)
    geo = {**base.geo, GEO_WILD: {"": both, "region:us-east1": us, "zone:us-east1-b": us,
                                  "region:europe-west1": eu, "zone:europe-west1-b": eu}}
    return Snapshot(serial=serial, generated_at=0.0, zone=ZONE, ttl=30,
                    records=tuple(sorted((*base.records, *extra))), geo=geo,
                    localities=LOCALITIES)


class StaticLocator:
    """CIDR -> (locality, scope) by longest match; unknown otherwise."""

    def __init__(self, table: dict[str, str]) -> None:
        self.nets = sorted(((ipaddress.ip_network(k), v) for k, v in table.items()),
                           key=lambda kv: -kv[0].prefixlen)
        self.calls = 0

    def locate(self, address: bytes, source_prefix: int | None) -> tuple[str, int]:
        self.calls += 1
        ip = ipaddress.ip_address(address)
        for net, loc in self.nets:
            if net.version == ip.version and ip in net:
                return loc, net.prefixlen
        return "", 0

    def locate_network(self, address: bytes, source_prefix: int) -> tuple[str, int] | None:
        loc, scope = self.locate(address, source_prefix)
        return (loc, min(scope, source_prefix)) if loc else None


def locator() -> StaticLocator:
    return StaticLocator({
        "127.0.0.2/32": "zone:us-east1-b",
        "127.0.0.3/32": "region:europe-west1",
        "127.0.0.4/32": "region:asia-east1",
        "198.51.100.0/24": "zone:europe-west1-b",
        "203.0.113.0/24": "region:us-east1",
        "2001:db8:1::/48": "region:europe-west1",
    })


def config(**server: object) -> Config:
    return Config(zone=ZONE, federation="myfed",
                  listen=Listen(dns=(("127.0.0.1", 0),)),
                  server=replace(Server(), **server))  # type: ignore[arg-type]
