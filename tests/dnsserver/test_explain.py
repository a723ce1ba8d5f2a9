"""``GET /v1/explain`` and ``fedns explain`` against a live in-process server.

Three regions of static clusters, each with a loopback network (127.0.N.0/24:
a client there is in that cluster's AZ), a ``geo.networks`` entry, and a
GeoIP database built at test time. The explained answer is compared with what
dnspython gets from the same server, from the same source address and with
the same ECS option; the localities and fallback levels are checked against
values worked out by hand from the config (so a wrong placement or a chain in
another order fails).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import dns.asyncquery
import dns.edns
import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import pytest
from prometheus_client import CollectorRegistry

from config.loader import load_text
from dnsserver.app import App
from tests.dnsserver.mmdb import build_mmdb
from tests.e2e.procs import run_fedns

GLOBAL = "nginx.default.myfed.svc.example.com."
API = "api.default.myfed.svc.example.com."

CONFIG = """\
zone: example.com.
federation: myfed
ttl: 5
nameservers: {{ns1.example.com.: [127.0.0.1]}}
listen: {{dns: ["127.0.0.1:0"], http: "127.0.0.1:0"}}
regions:
  # us-east1 falls back to asia-east1 first, though europe-west1 is nearer
  us-east1: {{location: [33.8, -84.4], zones: [us-east1-b], fallback: [asia-east1]}}
  europe-west1: {{location: [50.4, 3.8], zones: [europe-west1-b], countries: [GB]}}
  asia-east1: {{location: [25.0, 121.5], zones: [asia-east1-a]}}
geo:
  database: {db}
  networks:
    - {{network: 198.51.100.0/24, region: europe-west1}}
clusters:
  - name: us
    region: us-east1
    zone: us-east1-b
    networks: [127.0.1.0/24]
    services:
      - {{name: nginx, namespace: default, addresses: [192.0.2.10], ready: 1}}
      - {{name: api, namespace: default, addresses: [192.0.2.20], ready: 0}}
  - name: eu
    region: europe-west1
    zone: europe-west1-b
    networks: [127.0.2.0/24]
    services:
      - {{name: nginx, namespace: default, addresses: [192.0.2.11], ready: 1}}
      - {{name: api, namespace: default, addresses: [192.0.2.21], ready: 1}}
  - name: asia
    region: asia-east1
    zone: asia-east1-a
    networks: [127.0.3.0/24]
    services:
      - {{name: nginx, namespace: default, addresses: [192.0.2.12], ready: 1}}
records:
  - {{name: www, type: A, value: 192.0.2.99}}
  - {{name: eu.nginx, type: CNAME, value: nginx.default.myfed.svc.europe-west1.example.com.}}
  - {{name: go, type: CNAME, value: nginx.default.myfed.svc.example.com.}}
  - {{name: "*.apps", type: A, value: 192.0.2.77}}
  - {{name: team, type: NS, value: ns1.team}}
  - {{name: ns1.team, type: A, value: 192.0.2.53}}
"""


async def _until(pred: Callable[[], bool], within: float = 10.0) -> None:
    for _ in range(int(within / 0.02)):
        if pred():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


def _served(app: App) -> bool:
    return app.ready and app.dns.serial == app.engine.snapshot.serial


@pytest.fixture(scope="module")
def city_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_mmdb(tmp_path_factory.mktemp("geo") / "city.mmdb")


@pytest.fixture
async def app(city_db: Path) -> AsyncIterator[App]:
    a = App(load_text(CONFIG.format(db=city_db)), registry=CollectorRegistry(),
            publishers=False)
    await a.start()
    try:
        await _until(lambda: _served(a))
        yield a
    finally:
        await a.stop()


async def _explain(app: App, **params: str) -> tuple[int, dict[str, Any]]:
    url = f"http://127.0.0.1:{app.http.port}/v1/explain"
    async with aiohttp.ClientSession() as s, s.get(url, params=params) as r:
        return r.status, await r.json()


async def _ask(app: App, name: str, qtype: str, source: str,
               subnet: str | None) -> dns.message.Message:
    """What a resolver at ``source`` gets (dnspython over UDP, ECS if ``subnet``)."""
    options = []
    if subnet is not None:
        addr, _, plen = subnet.partition("/")
        options.append(dns.edns.ECSOption(addr, int(plen)))
    q = dns.message.make_query(name, qtype, use_edns=0, payload=1232, options=options)
    port = app.dns.addresses[0][1]
    return await dns.asyncquery.udp(q, "127.0.0.1", port=port, timeout=2, source=source)


def _rrs(sections: list[Any]) -> set[tuple[str, str, int, str]]:
    return {(rrset.name.to_text().lower(), dns.rdatatype.to_text(rrset.rdtype), rrset.ttl,
             rd.to_text().lower()) for rrset in sections for rd in rrset}


def _lines(lines: list[str]) -> set[tuple[str, str, int, str]]:
    out = set()
    for line in lines:
        name, ttl, _cls, rtype, value = line.split("\t")
        out.add((name.lower(), rtype, int(ttl), value.lower()))
    return out


def _scope(msg: dns.message.Message) -> int | None:
    for opt in msg.options:
        if isinstance(opt, dns.edns.ECSOption):
            return int(opt.scopelen)
    return None


# (name, type, source address, ECS subnet, locality, evidence, level that answers)
CASES = [
    (GLOBAL, "A", "127.0.1.10", None, "zone:us-east1-b", "network", "zone:us-east1-b"),
    (GLOBAL, "A", "127.0.0.1", "198.51.100.0/24", "region:europe-west1", "network",
     "region:europe-west1"),
    (GLOBAL, "A", "127.0.0.1", "81.2.69.0/24", "region:europe-west1", "geoip",
     "region:europe-west1"),
    (GLOBAL, "A", "127.0.0.1", "8.8.8.0/24", "region:us-east1", "geoip", "region:us-east1"),
    # a private subnet in no configured network: located by the source address
    (GLOBAL, "A", "127.0.3.10", "10.9.0.0/16", "zone:asia-east1-a", "network",
     "zone:asia-east1-a"),
    (GLOBAL, "A", "127.0.0.1", "192.0.2.0/24", "", "unknown", "any healthy shard"),
    (GLOBAL, "AAAA", "127.0.2.10", None, "zone:europe-west1-b", "network",
     "zone:europe-west1-b"),  # NODATA: no IPv6 shard anywhere
    ("go.example.com.", "A", "127.0.2.10", "5.9.0.0/16", "region:europe-west1", "geoip",
     "region:europe-west1"),  # Germany: nearest region by coordinates
]


@pytest.mark.parametrize(("name", "qtype", "source", "subnet", "locality", "evidence", "level"),
                         CASES)
async def test_explained_answer_is_what_the_server_sends(
        app: App, name: str, qtype: str, source: str, subnet: str | None, locality: str,
        evidence: str, level: str) -> None:
    params = {"name": name, "type": qtype, "client": source}
    if subnet is not None:
        params["subnet"] = subnet
    status, doc = await _explain(app, **params)
    assert status == 200, doc
    got = await _ask(app, name, qtype, source, subnet)
    ans = doc["answer"]
    assert ans["rcode"] == dns.rcode.to_text(got.rcode())
    assert ans["aa"] == bool(got.flags & dns.flags.AA)
    assert _lines(ans["answer"]) == _rrs(got.answer)
    assert _lines(ans["authority"]) == _rrs(got.authority)
    assert ans["ecs_scope"] == _scope(got)
    assert doc["client"]["locality"] == locality
    assert doc["client"]["evidence"] == evidence
    assert doc["serial"] == app.dns.serial and doc["stale"] is False
    geo = doc["names"][-1]["geo"]
    assert geo["locality"] == locality
    assert geo["answered_by"] == level
    assert [lv["level"] for lv in geo["chain"] if lv["answered"]] == [level]


async def test_every_locality_gets_the_chain_the_planner_walks(app: App) -> None:
    _, doc = await _explain(app, name=GLOBAL, client="127.0.1.10")
    chain = [lv["level"] for lv in doc["names"][0]["geo"]["chain"]]
    # zone, its region, the configured fallback, then by distance, then everything
    assert chain == ["zone:us-east1-b", "region:us-east1", "region:asia-east1",
                     "region:europe-west1", "any healthy shard"]
    _, doc = await _explain(app, name=GLOBAL, client="127.0.2.10")
    chain = [lv["level"] for lv in doc["names"][0]["geo"]["chain"]]
    # europe-west1 has no configured fallback: us-east1 is nearer than asia-east1
    assert chain == ["zone:europe-west1-b", "region:europe-west1", "region:us-east1",
                     "region:asia-east1", "any healthy shard"]


async def test_drained_home_is_explained_and_the_fallback_answers(app: App) -> None:
    await app.drain("us", "default/nginx")
    await _until(lambda: _served(app) and any(
        s.drained for s in app.engine.snapshot.shards if s.cluster == "us"))
    status, doc = await _explain(app, name=GLOBAL, client="127.0.1.10")
    assert status == 200
    got = await _ask(app, GLOBAL, "A", "127.0.1.10", None)
    assert _lines(doc["answer"]["answer"]) == _rrs(got.answer)
    assert {r[3] for r in _rrs(got.answer)} == {"192.0.2.12"}  # asia: the configured fallback
    chain = doc["names"][0]["geo"]["chain"]
    home = chain[0]
    assert home["level"] == "zone:us-east1-b" and home["answered"] is False
    assert home["healthy"] == 0
    [shard] = home["shards"]
    assert shard["cluster"] == "us" and shard["drained"] is True
    assert shard["healthy"] is False and "drain" in shard["reason"]
    assert chain[1]["level"] == "region:us-east1" and chain[1]["answered"] is False
    assert chain[2]["level"] == "region:asia-east1" and chain[2]["answered"] is True
    assert doc["names"][0]["geo"]["answered_by"] == "region:asia-east1"


async def test_unhealthy_home_shows_its_reason(app: App) -> None:
    status, doc = await _explain(app, name=API, client="127.0.1.10")
    assert status == 200
    got = await _ask(app, API, "A", "127.0.1.10", None)
    assert _lines(doc["answer"]["answer"]) == _rrs(got.answer)
    geo = doc["names"][0]["geo"]
    assert geo["service"] == "default/api"
    home = geo["chain"][0]
    assert home["level"] == "zone:us-east1-b" and not home["answered"]
    [shard] = home["shards"]
    assert shard["healthy"] is False and shard["drained"] is False
    assert "ready" in shard["reason"]
    # asia-east1 (the configured fallback) has no api shard; europe-west1 answers
    assert [(lv["level"], lv["healthy"], lv["answered"]) for lv in geo["chain"][2:4]] == [
        ("region:asia-east1", 0, False), ("region:europe-west1", 1, True)]
    assert "region:europe-west1" in doc["summary"]


async def test_static_cname_nxdomain_wildcard_and_referral(app: App) -> None:
    _, doc = await _explain(app, name="www.example.com")
    assert doc["kind"] == "static" and doc["names"][0]["kind"] == "static"
    assert [x.split("\t")[-1] for x in doc["answer"]["answer"]] == ["192.0.2.99"]
    assert "geo" not in doc["names"][0]

    _, doc = await _explain(app, name="eu.nginx.example.com", client="127.0.1.10")
    assert doc["kind"] == "cname"
    assert [n["name"] for n in doc["names"]] == [
        "eu.nginx.example.com.", "nginx.default.myfed.svc.europe-west1.example.com."]
    level = doc["names"][1]["service_level"]
    assert level["service"] == "default/nginx" and level["level"] == "region:europe-west1"
    assert [s["cluster"] for s in level["shards"]] == ["eu"]

    _, doc = await _explain(app, name="go.example.com", client="127.0.1.10")
    assert doc["kind"] == "cname" and doc["names"][1]["kind"] == "geo"
    assert doc["names"][1]["geo"]["answered_by"] == "zone:us-east1-b"

    _, doc = await _explain(app, name="nope.example.com")
    assert doc["kind"] == "nxdomain" and doc["answer"]["rcode"] == "NXDOMAIN"
    assert [x.split("\t")[3] for x in doc["answer"]["authority"]] == ["SOA"]

    _, doc = await _explain(app, name="x.apps.example.com")
    assert doc["names"][0]["kind"] == "wildcard"
    assert doc["names"][0]["wildcard"] == "*.apps.example.com."
    assert [x.split("\t")[-1] for x in doc["answer"]["answer"]] == ["192.0.2.77"]

    _, doc = await _explain(app, name="host.team.example.com")
    assert doc["kind"] == "referral" and doc["answer"]["aa"] is False
    assert "team.example.com." in doc["summary"]


@pytest.mark.parametrize(("params", "field"), [
    ({}, "name"),
    ({"name": "a..example.com"}, "name"),
    ({"name": "x" * 64 + ".example.com"}, "name"),
    ({"name": "www.example.org"}, "outside the zone"),
    ({"name": "www.example.com", "type": "BOGUS"}, "type"),
    ({"name": "www.example.com", "type": "AXFR"}, "type"),
    ({"name": "www.example.com", "client": "1.2.3"}, "client"),
    ({"name": "www.example.com", "subnet": "10.0.0.0/33"}, "subnet"),
    ({"name": "www.example.com", "subnet": "nonsense"}, "subnet"),
])
async def test_bad_input_is_a_400_with_a_clear_error(app: App, params: dict[str, str],
                                                     field: str) -> None:
    status, doc = await _explain(app, **params)
    assert status == 400
    assert field in doc["error"]


async def test_explain_is_not_counted_as_dns_queries(app: App) -> None:
    def answered() -> float:
        return sum(s.value for m in app.registry.collect() if m.name == "fedns_dns_requests"
                   for s in m.samples if s.name.endswith("_total"))

    await _ask(app, "nope.example.com.", "A", "127.0.0.1", None)  # a negative entry cached
    before = answered()
    for name in (GLOBAL, "nope.example.com", "www.example.com"):
        status, _ = await _explain(app, name=name, client="127.0.1.10")
        assert status == 200
    assert answered() == before
    await _ask(app, "nope.example.com.", "A", "127.0.0.1", None)
    await _ask(app, GLOBAL, "A", "127.0.1.10", None)
    assert answered() == before + 2  # the live handler's counters still count


async def test_cli_prints_the_explanation(app: App) -> None:
    await app.drain("us", "default/nginx")
    await _until(lambda: _served(app) and any(
        s.drained for s in app.engine.snapshot.shards if s.cluster == "us"))
    api = f"http://127.0.0.1:{app.http.port}"
    res = await asyncio.to_thread(run_fedns, "explain", GLOBAL.rstrip("."), "--client",
                                  "127.0.1.10", "--api", api, timeout=60)
    assert res.returncode == 0, res.stderr
    out = res.stdout
    assert "client placed in: zone:us-east1-b" in out
    assert "127.0.1.0/24 (networks of cluster us)" in out
    assert "192.0.2.12" in out.splitlines()[2]  # the answer line
    rows = {line.split()[1]: line for line in out.splitlines()
            if line.strip().startswith(("yes ", "no "))}
    assert list(rows)[:3] == ["zone:us-east1-b", "region:us-east1", "region:asia-east1"]
    assert rows["region:asia-east1"].split()[0] == "yes"
    assert rows["zone:us-east1-b"].split()[0] == "no"
    assert "drained" in rows["zone:us-east1-b"]

    res = await asyncio.to_thread(run_fedns, "explain", GLOBAL, "--subnet", "198.51.100.0/24",
                                  "--json", "--api", api, timeout=60)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["client"]["locality"] == "region:europe-west1"
    assert doc["answer"]["ecs_scope"] == 24

    res = await asyncio.to_thread(run_fedns, "explain", "www.example.org", "--api", api,
                                  timeout=60)
    assert res.returncode == 1
    assert "HTTP 400" in res.stderr and "outside the zone" in res.stderr


@pytest.mark.parametrize(("subnet", "detail"), [
    ("81.2.69.0/24", "GeoIP 81.2.69.0/24: country GB claimed by europe-west1"),
    ("8.8.8.0/24", "nearest region to (37.75, -97.82) [country US, continent NA]: us-east1"),
    ("198.51.100.0/24", "198.51.100.0/24 (geo.networks) -> region:europe-west1"),
    ("192.0.2.0/24", "192.0.2.0/24 is not in the GeoIP database"),
])
async def test_the_evidence_for_a_placement_is_named(app: App, subnet: str, detail: str) -> None:
    _, doc = await _explain(app, name=GLOBAL, subnet=subnet)
    assert doc["client"]["by"] == f"ECS subnet {subnet}"
    assert detail in doc["client"]["detail"]
