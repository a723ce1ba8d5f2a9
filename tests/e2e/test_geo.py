"""Issue 3 acceptance through a real ``fedns serve``: GeoIP, ECS, nearest healthy region.

A GeoLite2-City-shaped MMDB is built at test time (tests/dnsserver/mmdb.py:
GB, US, JP, AU, ... on several continents). Regions, in config (and
alphabetical) order: asia-east1 (Taiwan), europe-west1 (Belgium, two
clusters whose shards are TCP-probed against listeners this test owns),
us-east1 (Georgia, claims JP). From Belgium us-east1 (~7,000 km) is nearer
than asia-east1 (~9,600 km), so when Europe fails its clients must get the
US shard, not the alphabetically and configurationally first Asia one.

Clients are told apart by EDNS Client Subnet (dig ``+subnet=`` and dnspython
ECS options) or by their loopback source address (cluster ``networks``).
"""

from __future__ import annotations

import re
import socketserver
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import dns.edns
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

from tests.dnsserver.mmdb import build_mmdb
from tests.e2e.procs import DIG, Fedns, eventually, status, write

GLOBAL = "nginx.default.myfed.svc.example.com."
US, ASIA = "192.0.2.10", "192.0.2.30"
EUROPE = ["192.0.2.21", "192.0.2.22"]
ALL = sorted([US, ASIA, *EUROPE])
US6, ASIA6 = "2001:db8::10", "2001:db8::30"
EUROPE6 = ["2001:db8::21", "2001:db8::22"]

GB_NET, US_NET, JP_NET, AU_NET = "81.2.69.0", "8.8.8.0", "1.0.16.0", "1.128.0.0"
GB6_NET = "2a02:8010::"
US_SOURCE = "127.0.1.10"  # inside the us cluster's networks
UNKNOWN_SOURCE = "127.0.0.1"  # in no network and not in the database

CONFIG = """\
zone: example.com.
federation: myfed
ttl: 5
nameservers: {{ns1.example.com.: [127.0.0.1]}}
listen: {{dns: ["127.0.0.1:0", "[::1]:0"], http: "127.0.0.1:0"}}
state_dir: {state}
health: {{interval: 200ms, timeout: 150ms, rise: 1, fall: 1}}
geo:
  database: {mmdb}
regions:
  asia-east1: {{location: [24.0, 120.5], zones: [asia-east1-a]}}
  europe-west1: {{location: [50.4, 3.8], zones: [europe-west1-b, europe-west1-c]}}
  us-east1: {{location: [33.8, -84.4], zones: [us-east1-b], countries: [JP]}}
clusters:
  - name: asia
    region: asia-east1
    zone: asia-east1-a
    networks: [127.0.3.0/24, "::1/128"]
    services:
      - {{name: nginx, namespace: default, addresses: [{asia}, "{asia6}"]}}
  - name: eu-b
    region: europe-west1
    zone: europe-west1-b
    services:
      - {{name: nginx, namespace: default, addresses: [{eu_b}, "{eu_b6}"],
         probe: {{tcp: "127.0.0.1:{port_b}"}}}}
  - name: eu-c
    region: europe-west1
    zone: europe-west1-c
    services:
      - {{name: nginx, namespace: default, addresses: [{eu_c}, "{eu_c6}"],
         probe: {{tcp: "127.0.0.1:{port_c}"}}}}
  - name: us
    region: us-east1
    zone: us-east1-b
    networks: [127.0.1.0/24]
    services:
      - {{name: nginx, namespace: default, addresses: [{us}, "{us6}"]}}
records:
  - {{name: www, type: A, value: 192.0.2.80}}
"""


class _Quiet(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        pass


class Backend:
    """A TCP listener the Europe shards' probes connect to; ``stop`` fails them."""

    def __init__(self) -> None:
        self.server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Quiet)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self.running = True

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.server.shutdown()
            self.server.server_close()
            self._thread.join(timeout=5)


@dataclass
class Geo:
    srv: Fedns
    port6: int
    backends: list[Backend]


def _port6(srv: Fedns) -> int:
    m = re.search(r"\bstarted zone=\S+ dns=\S*?::1\]?:(\d+)", srv.output)
    assert m, srv.output
    return int(m.group(1))


@pytest.fixture(scope="module")
def geo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Geo]:
    tmp = tmp_path_factory.mktemp("geo")
    mmdb = build_mmdb(tmp / "city.mmdb")
    backends = [Backend(), Backend()]
    cfg = write(tmp / "fedns.yaml", CONFIG.format(
        state=tmp / "state", mmdb=mmdb, port_b=backends[0].port, port_c=backends[1].port,
        us=US, us6=US6, asia=ASIA, asia6=ASIA6, eu_b=EUROPE[0], eu_b6=EUROPE6[0],
        eu_c=EUROPE[1], eu_c6=EUROPE6[1]))
    srv = Fedns("serve", "-c", str(cfg))
    try:
        srv.wait_started()
        srv.wait_ready()
        srv.wait_healthy()
        yield Geo(srv, _port6(srv), backends)
    finally:
        for b in backends:
            b.stop()
        code = srv.stop()
        assert code == 0, srv.output
        assert "Traceback" not in srv.output, srv.output


# -- clients ------------------------------------------------------------------------


def ecs(address: str, source: int, scope: int = 0) -> dns.edns.ECSOption:
    return dns.edns.ECSOption(address, source, scope)


def raw_ecs(family: int, source: int, address: bytes, scope: int = 0) -> dns.edns.GenericOption:
    """An ECS option with exactly these bytes (dnspython refuses malformed ones)."""
    return dns.edns.GenericOption(dns.edns.OptionType.ECS,
                                  bytes((0, family, source, scope)) + address)


def ask(port: int, name: str = GLOBAL, rtype: str = "A", *,
        options: list[dns.edns.Option] | None = None, edns: bool = True,
        source: str | None = None, where: str = "127.0.0.1") -> dns.message.Message:
    q = dns.message.make_query(name, rtype, use_edns=0 if edns else False,
                               options=options if edns else None)
    assert (q.edns == 0) == edns
    return dns.query.udp(q, where, port=port, timeout=3, source=source)


def addresses(r: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rrset in r.answer for rd in rrset
                  if rd.rdtype in (dns.rdatatype.A, dns.rdatatype.AAAA))


def echoed(r: dns.message.Message) -> dns.edns.ECSOption | None:
    found = [o for o in r.options if o.otype == dns.edns.OptionType.ECS]
    assert len(found) <= 1
    if not found:
        return None
    assert isinstance(found[0], dns.edns.ECSOption)
    return found[0]


def dig_subnet(port: int, subnet: str, name: str = GLOBAL,
               rtype: str = "A") -> tuple[list[str], str | None, str]:
    """(answer addresses, CLIENT-SUBNET text, status) from ``dig +subnet=``."""
    if DIG is None:
        pytest.skip("dig is not installed (apt-get install dnsutils)")
    out = subprocess.run([DIG, "@127.0.0.1", "-p", str(port), "+tries=1", "+time=2",
                          f"+subnet={subnet}", name, rtype],
                         capture_output=True, text=True, timeout=10).stdout
    answers = sorted(m.group(1) for m in re.finditer(
        rf"^\S+\s+\d+\s+IN\s+{rtype}\s+(\S+)$", out, re.MULTILINE))
    cs = re.search(r"CLIENT-SUBNET: (\S+)", out)
    st = re.search(r"status: (\w+)", out)
    assert st, out
    return answers, cs.group(1) if cs else None, st.group(1)


# -- GeoIP + ECS ----------------------------------------------------------------------


def test_dig_subnet_gb_gets_europe_with_scope_24(geo: Geo) -> None:
    answers, subnet, rcode = dig_subnet(geo.srv.dns_port, f"{GB_NET}/24")
    assert rcode == "NOERROR"
    assert answers == EUROPE
    assert subnet == f"{GB_NET}/24/24"


def test_dig_subnet_us_gets_the_us_shard(geo: Geo) -> None:
    answers, subnet, _ = dig_subnet(geo.srv.dns_port, f"{US_NET}/24")
    assert answers == [US]
    assert subnet == f"{US_NET}/24/24"


def test_ecs_echo_copies_family_source_and_address(geo: Geo) -> None:
    opt = ecs(GB_NET, 24)
    r = ask(geo.srv.dns_port, options=[opt])
    assert r.rcode() == dns.rcode.NOERROR and addresses(r) == EUROPE
    back = echoed(r)
    assert back is not None
    assert (back.family, back.srclen, back.address) == (1, 24, GB_NET)
    assert back.scopelen == 24
    # byte for byte, apart from SCOPE PREFIX-LENGTH
    sent, got = opt.to_wire(), back.to_wire()
    assert sent[:3] == got[:3] and sent[4:] == got[4:]


def test_no_ecs_and_unknown_source_gets_every_healthy_shard(geo: Geo) -> None:
    r = ask(geo.srv.dns_port, source=UNKNOWN_SOURCE)
    assert addresses(r) == ALL
    assert echoed(r) is None  # a query without ECS never gets ECS back
    r = ask(geo.srv.dns_port, edns=False, source=UNKNOWN_SOURCE)
    assert addresses(r) == ALL and r.edns < 0 and not r.options


def test_query_without_ecs_never_gets_ecs_back(geo: Geo) -> None:
    for name in (GLOBAL, "www.example.com.", "nothing.example.com."):
        for source in (US_SOURCE, UNKNOWN_SOURCE):
            r = ask(geo.srv.dns_port, name, source=source)
            assert r.edns == 0 and echoed(r) is None, (name, source)


def test_a_claimed_country_beats_distance(geo: Geo) -> None:
    # JP is ~2,100 km from asia-east1 but us-east1 claims it
    r = ask(geo.srv.dns_port, options=[ecs(JP_NET, 24)])
    assert addresses(r) == [US]
    # AU is claimed by nobody: nearest by distance is asia-east1
    r = ask(geo.srv.dns_port, options=[ecs(AU_NET, 24)])
    assert addresses(r) == [ASIA]


def test_source_prefix_zero_gets_the_untailored_answer(geo: Geo) -> None:
    r = ask(geo.srv.dns_port, options=[ecs("0.0.0.0", 0)], source=US_SOURCE)
    assert r.rcode() == dns.rcode.NOERROR
    assert addresses(r) == ALL  # not the source's (US) answer, not refused
    back = echoed(r)
    assert back is not None and back.srclen == 0 and back.scopelen == 0
    answers, subnet, rcode = dig_subnet(geo.srv.dns_port, "0/0")
    assert (answers, subnet, rcode) == (ALL, "0.0.0.0/0/0", "NOERROR")


@pytest.mark.parametrize("private", ["10.1.2.0", "192.168.7.0", "172.16.0.0"])
def test_private_ecs_is_ignored_for_the_source_address(geo: Geo, private: str) -> None:
    r = ask(geo.srv.dns_port, options=[ecs(private, 24)], source=US_SOURCE)
    assert r.rcode() == dns.rcode.NOERROR
    assert addresses(r) == [US]  # located by the source, 127.0.1.10
    r = ask(geo.srv.dns_port, options=[ecs(private, 24)], source=UNKNOWN_SOURCE)
    assert addresses(r) == ALL


def test_private_ecs_inside_a_configured_network_is_located_by_it(geo: Geo) -> None:
    """A private subnet means something where the config says so (a cluster's
    ``networks``, e.g. a pod CIDR behind a resolver that sends ECS): dig from
    an unknown source with the us cluster's 127.0.1.0/24 as ECS gets the us
    shard, scope /24; a private subnet in no network still falls back."""
    r = ask(geo.srv.dns_port, options=[ecs("127.0.1.0", 24)], source=UNKNOWN_SOURCE)
    assert addresses(r) == [US]
    back = echoed(r)
    assert back is not None and back.scopelen == 24
    answers, subnet, rcode = dig_subnet(geo.srv.dns_port, "127.0.1.0/24")
    assert (answers, subnet, rcode) == ([US], "127.0.1.0/24/24", "NOERROR")
    r = ask(geo.srv.dns_port, options=[ecs("127.0.9.0", 24)], source=US_SOURCE)
    assert addresses(r) == [US] and echoed(r) is not None
    assert echoed(r).scopelen == 0  # type: ignore[union-attr]  # by the source


MALFORMED = {
    "family 3": raw_ecs(3, 24, bytes((81, 2, 69))),
    "family 0": raw_ecs(0, 24, bytes((81, 2, 69))),
    "ipv4 prefix 33": raw_ecs(1, 33, bytes((81, 2, 69, 0, 0))),
    "ipv6 prefix 129": raw_ecs(2, 129, bytes(17)),
    "ipv4 bits beyond /20": raw_ecs(1, 20, bytes((81, 2, 79))),
    "ipv6 bits beyond /56": raw_ecs(2, 56, bytes.fromhex("2a028010000000ff")),
    "address longer than the prefix": raw_ecs(1, 24, bytes((81, 2, 69, 0))),
}


@pytest.mark.parametrize("option", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_ecs_gets_formerr_and_the_server_keeps_answering(
        geo: Geo, option: dns.edns.GenericOption) -> None:
    r = ask(geo.srv.dns_port, options=[option])
    assert r.rcode() == dns.rcode.FORMERR
    assert not r.answer
    # a well-formed option with the same prefix is fine: the check is the bytes
    assert ask(geo.srv.dns_port, options=[ecs("81.2.64.0", 20)]).rcode() == dns.rcode.NOERROR
    assert addresses(ask(geo.srv.dns_port, source=US_SOURCE)) == [US]


def test_static_and_negative_answers_have_scope_zero(geo: Geo) -> None:
    r = ask(geo.srv.dns_port, "www.example.com.", options=[ecs(GB_NET, 24)])
    assert addresses(r) == ["192.0.2.80"]
    back = echoed(r)
    assert back is not None and back.scopelen == 0 and back.address == GB_NET
    r = ask(geo.srv.dns_port, "nothing.example.com.", options=[ecs(GB_NET, 24)])
    assert r.rcode() == dns.rcode.NXDOMAIN
    back = echoed(r)
    assert back is not None and back.scopelen == 0
    answers, subnet, _ = dig_subnet(geo.srv.dns_port, f"{GB_NET}/24", "www.example.com.")
    assert answers == ["192.0.2.80"] and subnet == f"{GB_NET}/24/0"


# -- IPv6 -----------------------------------------------------------------------------


def test_ipv6_ecs_gets_europe_aaaa_with_the_ipv6_cache_scope(geo: Geo) -> None:
    r = ask(geo.srv.dns_port, rtype="AAAA", options=[ecs(GB6_NET, 48)])
    assert addresses(r) == EUROPE6
    back = echoed(r)
    assert back is not None and (back.family, back.srclen) == (2, 48)
    assert back.scopelen == 48  # the /56 cache block, capped at SOURCE PREFIX-LENGTH
    r = ask(geo.srv.dns_port, rtype="AAAA", options=[ecs(GB6_NET, 64)])
    back = echoed(r)
    assert addresses(r) == EUROPE6 and back is not None and back.scopelen == 56
    answers, subnet, _ = dig_subnet(geo.srv.dns_port, "2001:4860::/56", rtype="AAAA")
    assert answers == [US6] and subnet == "2001:4860::/56/56"


def test_ipv6_source_is_located_by_its_network(geo: Geo) -> None:
    # ::1 is in the asia cluster's networks
    r = ask(geo.port6, rtype="AAAA", where="::1")
    assert addresses(r) == [ASIA6]
    assert addresses(ask(geo.port6, where="::1")) == [ASIA]
    # private IPv6 ECS (RFC 4193) is ignored in favour of that source
    r = ask(geo.port6, rtype="AAAA", where="::1", options=[ecs("fd00:1::", 48)])
    assert addresses(r) == [ASIA6]
    # a public IPv6 ECS over an IPv6 transport wins over the source
    r = ask(geo.port6, rtype="AAAA", where="::1", options=[ecs(GB6_NET, 56)])
    assert addresses(r) == EUROPE6
    # unknown IPv4 source asking AAAA: every IPv6 shard
    assert addresses(ask(geo.srv.dns_port, rtype="AAAA", source=UNKNOWN_SOURCE)) == \
        sorted([US6, ASIA6, *EUROPE6])


# -- failover (last: it fails Europe for good) ------------------------------------------


def test_zz_europe_down_sends_europe_to_the_nearest_healthy_region(geo: Geo) -> None:
    port = geo.srv.dns_port
    assert addresses(ask(port, options=[ecs(GB_NET, 24)])) == EUROPE
    geo.backends[0].stop()
    # one Europe shard left: Europe clients still stay in Europe
    eventually(lambda: addresses(ask(port, options=[ecs(GB_NET, 24)])),
               lambda a: a == [EUROPE[1]], timeout=10)
    geo.backends[1].stop()
    # none left: the nearest healthy region (us-east1), not asia-east1, which comes
    # first alphabetically and in the config
    eventually(lambda: addresses(ask(port, options=[ecs(GB_NET, 24)])),
               lambda a: a == [US], timeout=10)
    r = ask(port, rtype="AAAA", options=[ecs(GB6_NET, 56)])
    assert addresses(r) == [US6]
    back = echoed(r)
    assert back is not None and back.scopelen == 56
    answers, subnet, _ = dig_subnet(port, f"{GB_NET}/24")
    assert answers == [US] and subnet == f"{GB_NET}/24/24"
    # the others are unaffected; unknown clients get every healthy shard
    assert addresses(ask(port, options=[ecs(AU_NET, 24)])) == [ASIA]
    assert addresses(ask(port, source=UNKNOWN_SOURCE)) == sorted([US, ASIA])
    shards = {s["cluster"]: s for s in status(geo.srv.api)["shards"]}
    assert not shards["eu-b"]["healthy"] and not shards["eu-c"]["healthy"]
    assert shards["us"]["healthy"] and shards["asia"]["healthy"]
