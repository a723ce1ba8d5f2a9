"""``when_all_unhealthy``: with ``nxdomain`` a service with nothing healthy
anywhere is not published, so its global name answers NXDOMAIN and the AZ and
region names' CNAME chains end in NXDOMAIN (RFC 6604); with ``serve_all`` every
shard with an address answers. Planned incrementally (one ``Planner``) and
served incrementally (``DnsServer.submit``), each step byte-identical to a
fresh full build."""

from __future__ import annotations

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest

from config.model import Health
from dnsserver.locality import build_locator
from dnsserver.server import DnsServer
from healthwatch.drains import DrainSet
from healthwatch.planner import Planner
from healthwatch.snapshot import Snapshot
from tests.healthwatch.helpers import ADDR, gname, make_config, rname, zname
from tests.healthwatch.test_planner import everyone, probed

QUESTIONS = [(gname(), "A"), (gname(), "AAAA"), (rname("us-west1"), "A"),
             (zname("us-west1-a", "us-west1"), "A"), (gname("other"), "A")]


def ask(server: DnsServer, name: str, qtype: str) -> dns.message.Message:
    query = dns.message.make_query(name, qtype)
    query.id = 4242
    reply = server.handler.handle(query.to_wire(), "192.0.2.200", False)
    assert reply is not None
    return dns.message.from_wire(reply)


def addresses(msg: dns.message.Message) -> set[str]:
    return {rd.to_text() for rrset in msg.answer if rrset.rdtype == dns.rdatatype.A
            for rd in rrset}


@pytest.mark.parametrize("mode", ["nxdomain", "serve_all"])
async def test_nothing_healthy_anywhere(mode: str) -> None:
    config = make_config(health=Health(when_all_unhealthy=mode))
    planner = Planner()
    down_reports, down_health = probed("asia", "eu", "use", "usw")
    up_reports, up_health = probed()
    steps = [(everyone(), {}), (down_reports, down_health), (up_reports, up_health),
             (down_reports, down_health)]
    server = DnsServer(config, build_locator(config), registry=None)
    for serial, (reps, health) in enumerate(steps, start=1):
        snap: Snapshot = planner.plan(config, reps, health, DrainSet(), serial, 2000.0)
        server.submit(snap)  # a small change: derived at once
        assert server.serial == serial
        fresh = DnsServer(config, build_locator(config), registry=None)
        assert fresh.update(snap)
        for name, qtype in QUESTIONS:
            assert ask(server, name, qtype) == ask(fresh, name, qtype), (serial, name)
        down = serial in (2, 4)
        glob = ask(server, gname(), "A")
        region = ask(server, rname("us-west1"), "A")
        if down and mode == "nxdomain":
            assert glob.rcode() == dns.rcode.NXDOMAIN
            assert not glob.answer and glob.authority[0].rdtype == dns.rdatatype.SOA
            assert region.rcode() == dns.rcode.NXDOMAIN  # the chain's end decides
            assert [r.rdtype for r in region.answer] == [dns.rdatatype.CNAME]
            assert region.flags & dns.flags.AA
        else:  # healthy, or serve_all: every shard (an unknown client)
            assert glob.rcode() == dns.rcode.NOERROR
            assert addresses(glob) == set(ADDR.values())
            assert region.rcode() == dns.rcode.NOERROR
            assert addresses(region) == (set(ADDR.values()) if down else {ADDR["usw"]})
        # a name that never existed stays NXDOMAIN either way
        assert ask(server, gname("other"), "A").rcode() == dns.rcode.NXDOMAIN
