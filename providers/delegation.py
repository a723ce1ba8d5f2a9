"""Zone delegation: NS and glue for fedns' nameservers in the parent zone.

A provider with ``delegate: true`` publishes these records (into a parent
zone it hosts) instead of the static view, so resolvers find fedns as the
authoritative server of the federation zone.
"""

from __future__ import annotations

import ipaddress

from config.model import Config
from healthwatch.snapshot import Record
from providers.rrset import absolute, in_zone


def delegation_records(config: Config) -> list[Record]:
    zone = absolute(config.zone)
    out: list[Record] = []
    for ns, glue in config.nameservers:
        target = absolute(ns)
        out.append(Record(zone, "NS", config.ttl, target))
        if not in_zone(target, zone):
            continue  # out-of-zone nameservers need (and may get) no glue here
        for addr in glue:
            ip = ipaddress.ip_address(addr)
            out.append(Record(target, "A" if ip.version == 4 else "AAAA", config.ttl, str(ip)))
    return sorted(out)
