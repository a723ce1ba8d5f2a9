"""``GET /v1/explain`` for Ingress hosts: the shards behind a host come from
the hosts in their status, so an unhealthy or drained Ingress is explained at
its level instead of vanishing (it has no address in the answers).

Three regions of static clusters with loopback networks (127.0.N.0/24: a client
there is in that cluster's AZ); every explained answer is compared with what
dnspython gets from the same server from the same source address.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import aiohttp
import pytest
from prometheus_client import CollectorRegistry

from config.loader import load_text
from dnsserver.app import App
from dnsserver.explain import _geo_shards
from healthwatch.snapshot import Record, ShardStatus, Snapshot
from tests.dnsserver.test_explain import _ask, _explain, _lines, _rrs, _served, _until

SHOP = "shop.example.com."
GLOBAL = "nginx.default.myfed.svc.example.com."

CONFIG = """\
zone: example.com.
federation: myfed
ttl: 5
nameservers: {{ns1.example.com.: [127.0.0.1]}}
listen: {{dns: ["127.0.0.1:0"], http: "127.0.0.1:0"}}
health: {{when_all_unhealthy: {when}}}
regions:
  us-east1: {{location: [33.8, -84.4], zones: [us-east1-b]}}
  europe-west1: {{location: [50.4, 3.8], zones: [europe-west1-b]}}
  asia-east1: {{location: [25.0, 121.5], zones: [asia-east1-a]}}
clusters:
  - name: us
    region: us-east1
    zone: us-east1-b
    networks: [127.0.1.0/24]
    services:
      - {{name: nginx, namespace: default, addresses: [192.0.2.10], ready: 1}}
    ingresses:
      # the same host in both regions; this one has no ready endpoint
      - {{name: shop, namespace: web, hosts: [shop], addresses: [192.0.2.30], ready: 0}}
      - {{name: apps, namespace: web, hosts: ["*.apps"], addresses: [192.0.2.40], ready: 1}}
  - name: eu
    region: europe-west1
    zone: europe-west1-b
    networks: [127.0.2.0/24]
    ingresses:
      - {{name: shop, namespace: web, hosts: [shop.example.com.], addresses: [192.0.2.31],
          ready: 1}}
      - {{name: a, namespace: web, hosts: [a.apps], addresses: [192.0.2.41], ready: 0}}
      # an Ingress host equal to a Service's global name merges with it
      - {{name: gw, namespace: web, hosts: [nginx.default.myfed.svc], addresses: [192.0.2.50],
          ready: 0}}
  - name: asia
    region: asia-east1
    zone: asia-east1-a
    networks: [127.0.3.0/24]
    ingresses:
      - {{name: shop, namespace: web, hosts: [shop], addresses: [192.0.2.32], ready: 1}}
"""


def _running(when: str) -> AbstractAsyncContextManager[App]:
    @asynccontextmanager
    async def run() -> AsyncIterator[App]:
        a = App(load_text(CONFIG.format(when=when)), registry=CollectorRegistry(),
                publishers=False)
        await a.start()
        try:
            await _until(lambda: _served(a))
            yield a
        finally:
            await a.stop()
    return run()


@pytest.fixture
async def app() -> AsyncIterator[App]:
    async with _running("serve_all") as a:
        yield a


async def _explained(app: App, name: str, client: str) -> dict[str, Any]:
    """The explanation, after checking its answer is what the server sends."""
    status, doc = await _explain(app, name=name, client=client)
    assert status == 200, doc
    got = await _ask(app, name, "A", client, None)
    assert _lines(doc["answer"]["answer"]) == _rrs(got.answer)
    return doc


def _chain(geo: dict[str, Any]) -> list[tuple[str, bool, list[tuple[str, str, bool]]]]:
    """(level, answered, its shards sorted) down the chain."""
    return [(lv["level"], lv["answered"],
             sorted((s["cluster"], s["service"], s["healthy"]) for s in lv["shards"]))
            for lv in geo["chain"]]


async def test_the_unhealthy_ingress_is_explained_at_its_level(app: App) -> None:
    doc = await _explained(app, SHOP, "127.0.1.10")
    assert {x.split("\t")[-1] for x in doc["answer"]["answer"]} == {"192.0.2.31"}
    geo = doc["names"][0]["geo"]
    assert geo["service"] == "ingress:web/shop"
    us = ("us", "ingress:web/shop", False)
    eu = ("eu", "ingress:web/shop", True)
    asia = ("asia", "ingress:web/shop", True)
    assert _chain(geo) == [
        ("zone:us-east1-b", False, [us]),
        ("region:us-east1", False, [us]),
        ("region:europe-west1", True, [eu]),  # nearer to us-east1 than asia-east1
        ("region:asia-east1", False, [asia]),
        ("any healthy shard", False, [asia, eu, us]),
    ]
    home = geo["chain"][0]["shards"][0]
    assert home["reason"] == "ready endpoints 0 < min_ready 1"
    assert home["hosts"] == [SHOP] and home["drained"] is False
    assert geo["answered_by"] == "region:europe-west1"
    assert "region:europe-west1" in doc["summary"]


async def test_a_drained_ingress_is_explained_and_marked_drained(app: App) -> None:
    await app.drain("eu", "ingress:web/shop")
    await _until(lambda: _served(app) and any(
        s.drained for s in app.engine.snapshot.shards if s.cluster == "eu"))
    doc = await _explained(app, SHOP, "127.0.2.10")
    assert {x.split("\t")[-1] for x in doc["answer"]["answer"]} == {"192.0.2.32"}
    geo = doc["names"][0]["geo"]
    home = geo["chain"][0]
    assert home["level"] == "zone:europe-west1-b" and home["answered"] is False
    [shard] = home["shards"]
    assert shard["cluster"] == "eu" and shard["drained"] is True
    assert shard["healthy"] is False and "drain" in shard["reason"]
    assert shard["hosts"] == [SHOP]
    eu = ("eu", "ingress:web/shop", False)
    us = ("us", "ingress:web/shop", False)
    asia = ("asia", "ingress:web/shop", True)
    assert _chain(geo) == [
        ("zone:europe-west1-b", False, [eu]),
        ("region:europe-west1", False, [eu]),
        ("region:us-east1", False, [us]),  # nearer to europe-west1 than asia-east1
        ("region:asia-east1", True, [asia]),
        ("any healthy shard", False, [asia, eu, us]),
    ]
    assert geo["answered_by"] == "region:asia-east1"


async def test_an_ingress_host_equal_to_a_global_name_merges_with_the_service(
        app: App) -> None:
    doc = await _explained(app, GLOBAL, "127.0.2.10")
    geo = doc["names"][0]["geo"]
    assert geo["service"] == "default/nginx"
    gw = ("eu", "ingress:web/gw", False)
    nginx = ("us", "default/nginx", True)
    assert _chain(geo) == [
        ("zone:europe-west1-b", False, [gw]),
        ("region:europe-west1", False, [gw]),
        ("region:us-east1", True, [nginx]),
        ("region:asia-east1", False, []),
        ("any healthy shard", False, [gw, nginx]),
    ]


async def test_a_wildcard_host_explains_the_names_it_covers_and_no_others(app: App) -> None:
    doc = await _explained(app, "x.apps.example.com.", "127.0.1.10")
    name = doc["names"][0]
    assert name["kind"] == "wildcard" and name["wildcard"] == "*.apps.example.com."
    assert [s["service"] for s in name["geo"]["chain"][0]["shards"]] == ["ingress:web/apps"]
    assert name["geo"]["answered_by"] == "zone:us-east1-b"
    # a.apps exists (its own Ingress, not ready): the wildcard does not cover it
    doc = await _explained(app, "a.apps.example.com.", "127.0.1.10")
    geo = doc["names"][0]["geo"]
    assert doc["names"][0]["kind"] == "geo" and geo["service"] == "ingress:web/a"
    assert [(lv["level"], [s["cluster"] for s in lv["shards"]]) for lv in geo["chain"]] == [
        ("zone:us-east1-b", []), ("region:us-east1", []), ("region:europe-west1", ["eu"]),
        ("region:asia-east1", []), ("any healthy shard", ["eu"])]


async def test_an_unpublished_ingress_host_is_explained_under_nxdomain() -> None:
    async with _running("nxdomain") as app:
        for cluster, ingress in (("eu", "web/shop"), ("asia", "web/shop"), ("us", "web/apps")):
            await app.drain(cluster, f"ingress:{ingress}")
        await _until(lambda: _served(app) and SHOP not in app.engine.snapshot.geo
                     and "*.apps.example.com." not in app.engine.snapshot.geo)
        for name, hosted, drained in (
                (SHOP, "ingress:web/shop", {"us": False, "eu": True, "asia": True}),
                ("x.apps.example.com.", "ingress:web/apps", {"us": True})):
            status, doc = await _explain(app, name=name, client="127.0.1.10")
            assert status == 200 and doc["answer"]["rcode"] == "NXDOMAIN"
            first = doc["names"][0]
            assert first["kind"] == "nxdomain" and first["service"] == hosted
            assert "every shard of the Ingress is unhealthy" in first["detail"]
            assert {s["cluster"]: s["drained"] for s in first["shards"]} == drained
            assert not any(s["healthy"] for s in first["shards"])
        # below the wildcard's base only: other missing names stay a plain NXDOMAIN
        for name in ("nope.example.com", "apps.example.com", "x.shop.example.com"):
            _, doc = await _explain(app, name=name)
            assert doc["names"][0]["detail"] == "no such name in the zone", name


async def test_status_shards_carry_their_hosts(app: App) -> None:
    url = f"http://127.0.0.1:{app.http.port}/v1/status"
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        assert r.status == 200
        doc = await r.json()
    hosts = {(x["cluster"], x["service"]): x["hosts"] for x in doc["shards"]}
    assert hosts == {
        ("us", "default/nginx"): [],
        ("us", "ingress:web/shop"): [SHOP],
        ("us", "ingress:web/apps"): ["*.apps.example.com."],
        ("eu", "ingress:web/shop"): [SHOP],
        ("eu", "ingress:web/a"): ["a.apps.example.com."],
        ("eu", "ingress:web/gw"): [GLOBAL],
        ("asia", "ingress:web/shop"): [SHOP],
    }



def test_shards_of_a_snapshot_without_hosts_are_matched_by_address() -> None:
    """A last-known-good Snapshot from the version before ``ShardStatus.hosts``:
    its Ingress shards are matched, as that version did, by their addresses
    in the name's answers; with hosts, by the hosts (the unhealthy one too)."""
    config = load_text(CONFIG.format(when="serve_all"))

    def shard(cluster: str, address: str, healthy: bool) -> ShardStatus:
        return ShardStatus("ingress:web/shop", cluster, "r", "z", (address,), (), 1, healthy,
                           "ok" if healthy else "down", hosts=(SHOP,))

    new = Snapshot(1, 1000.0, "example.com.", 5, (), {SHOP: {"": (
        Record(SHOP, "A", 5, "192.0.2.31"),)}}, ("",),
        shards=(shard("us", "192.0.2.30", False), shard("eu", "192.0.2.31", True)))
    old = new.to_dict()
    for s in old["shards"]:
        del s["hosts"]
    assert [s.cluster for s in _geo_shards(new, config, SHOP)[1]] == ["us", "eu"]
    assert [s.cluster for s in _geo_shards(Snapshot.from_dict(old), config, SHOP)[1]] == ["eu"]
    assert _geo_shards(Snapshot.from_dict(old), config, "a.apps.example.com.")[1] == []
