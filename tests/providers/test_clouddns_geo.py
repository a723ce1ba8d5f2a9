"""Cloud DNS geo routing of geo-aware names, over HTTP against the Cloud DNS
wire fake (which stores and lists ``routingPolicy`` like the API and refuses
geo policies Cloud DNS refuses).

Snapshots come from the real planner (tests.healthwatch.helpers' four
regions, the same shards as the Route53 latency tests), so "the answer fedns
gives a client in region R" is the planner's own ``geo_answer``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, Literal

import google.api_core.exceptions as gexc
import pytest
from google.auth.credentials import AnonymousCredentials

from config.model import Config, Health, Provider
from healthwatch.model import ShardSpec
from healthwatch.snapshot import Record, Snapshot
from providers import ownership
from providers.clouddns import CloudDnsBackend, rrdata_bytes
from providers.commands import run_once
from providers.errors import UnsafePlanError
from providers.factory import desired_sets, make_syncer
from providers.geo import parse_routed, route_by_geo, to_api
from providers.metrics import ProviderMetrics
from providers.rrset import group
from providers.syncer import Syncer
from tests.healthwatch.helpers import ADDR, ZONE, gname, make_config, rname, svc
from tests.providers.fake_clouddns import FakeCloudDns
from tests.providers.helpers import provider
from tests.providers.test_route53_latency import SHOP, server_answer, snapshot

# fedns region -> Google Cloud location (deliberately not always the same name)
MAP = {"europe-west1": "europe-west1", "us-east1": "us-east4", "us-west1": "us-west2"}
ITEM_KIND = "dns#rRSetRoutingPolicyGeoPolicyGeoPolicyItem"


@pytest.fixture
def fake() -> Iterator[FakeCloudDns]:
    f = FakeCloudDns("proj", "federation", ZONE)
    yield f
    f.close()


def gcp(fake: FakeCloudDns, routing: str = "geo", regions: dict[str, str] | None = None,
        **kw: Any) -> Provider:
    extra: dict[str, Any] = {"routing": routing}
    if routing == "geo":
        extra["geo_regions"] = tuple(sorted((regions or MAP).items()))
    return provider("clouddns", project="proj", managed_zone="federation",
                    endpoint_url=fake.url, timeout=5.0, backoff=0.01, **extra, **kw)


def syncer_for(cfg: Config, p: Provider) -> Syncer:
    backend = CloudDnsBackend(p, credentials=AnonymousCredentials())
    return make_syncer(cfg, p, ProviderMetrics(None), backend)


def items(fake: FakeCloudDns, name: str, rtype: str = "A") -> dict[str, tuple[str, ...]]:
    """location -> values of the geo policy at name/type ({} when there is none)."""
    rs = fake.rrsets.get((name, rtype))
    if rs is None or "routingPolicy" not in rs:
        return {}
    return {it["location"]: tuple(sorted(it["rrdatas"]))
            for it in rs["routingPolicy"]["geo"]["items"]}


def state(fake: FakeCloudDns) -> str:
    """Everything the zone holds, comparable."""
    return json.dumps(sorted(fake.rrsets.items()), sort_keys=True)


def names_in(change: dict[str, Any], part: str) -> list[tuple[str, bool]]:
    """(name, routed) of the sets in a change's ``additions`` or ``deletions``."""
    return sorted((rs["name"], "routingPolicy" in rs) for rs in change[part])


# -- publishing ------------------------------------------------------------------------

async def test_geo_sets_carry_the_servers_answer_per_region(fake: FakeCloudDns) -> None:
    p = gcp(fake)
    cfg = make_config(providers=(p,))
    snap = snapshot(cfg)
    syncer = syncer_for(cfg, p)
    res = await syncer.sync_once(snap)
    assert not res.errors and res.residual == 0

    for name in (gname(), SHOP):
        assert items(fake, name) == {loc: server_answer(snap, name, r)
                                     for r, loc in MAP.items()}, name
        rs = fake.rrsets[(name, "A")]
        assert "rrdatas" not in rs and rs["ttl"] == 30  # one TTL, at the set level
        assert (ownership.marker_name(name, "A"), "TXT") in fake.rrsets
    # by hand: each mapped region's own shard; the Ingress has none in us-west1,
    # whose clients fedns sends to us-east1 (the nearest region with one)
    assert items(fake, gname()) == {"europe-west1": ("192.0.2.2",),
                                    "us-east4": ("192.0.2.3",), "us-west2": ("192.0.2.4",)}
    assert items(fake, SHOP)["us-west2"] == ("192.0.2.30",)
    # other levels stay plain
    assert fake.rrsets[(rname("us-east1"), "A")]["rrdatas"] == ["192.0.2.3"]
    assert [k for k, rs in fake.rrsets.items() if "routingPolicy" in rs] == [
        (gname(), "A"), (SHOP, "A")]
    # idempotent: the listing (kinds and all) parses to exactly what is wanted
    n = len(fake.changes)
    again = await syncer.sync_once(snap)
    assert again.plan.empty and not again.plan.skipped and len(fake.changes) == n
    await syncer.stop()


async def test_health_change_moves_the_regions_values(fake: FakeCloudDns) -> None:
    p = gcp(fake)
    cfg = make_config(providers=(p,))
    syncer = syncer_for(cfg, p)
    await syncer.sync_once(snapshot(cfg))
    down = snapshot(cfg, down=["use"], serial=2)
    want = server_answer(down, gname(), "us-east1")
    assert want and want != ("192.0.2.3",)  # fedns sends us-east1's clients elsewhere
    res = await syncer.sync_once(down, limit_updates=False)
    assert not res.errors and res.residual == 0
    assert [(c.action, c.key) for c in res.plan.changes if c.key[0] == gname()] == [
        ("update", (gname(), "A"))]
    got = items(fake, gname())
    assert got["us-east4"] == want
    assert got["europe-west1"] == ("192.0.2.2",) and got["us-west2"] == ("192.0.2.4",)
    # the set is replaced in one change: the old policy deleted as listed, the new added
    last = fake.changes[-1]
    assert (gname(), True) in names_in(last, "deletions")
    assert (gname(), True) in names_in(last, "additions")
    # back up: the region's own shard again
    await syncer.sync_once(snapshot(cfg, serial=3), limit_updates=False)
    assert items(fake, gname())["us-east4"] == ("192.0.2.3",)
    assert (await syncer.sync_once(snapshot(cfg, serial=3))).plan.empty
    await syncer.stop()


async def test_switch_all_to_geo_and_back_is_one_change_and_converges(
        fake: FakeCloudDns) -> None:
    plain_p = gcp(fake, routing="all")
    geo_p = gcp(fake)
    snap = snapshot(make_config(providers=(plain_p,)))

    first = syncer_for(make_config(providers=(plain_p,)), plain_p)
    await first.sync_once(snap)
    plain_state = state(fake)
    assert fake.rrsets[(gname(), "A")]["rrdatas"] == sorted(ADDR.values())

    to_geo = syncer_for(make_config(providers=(geo_p,)), geo_p)
    n = len(fake.changes)
    res = await to_geo.sync_once(snap, force=True)
    assert not res.errors and res.residual == 0
    assert {(c.action, c.key) for c in res.plan.changes} == {
        ("update", (gname(), "A")), ("update", (SHOP, "A"))}
    # one atomic change: each name's plain set deleted and its geo set added;
    # the markers stay as they are
    assert len(fake.changes) == n + 1
    last = fake.changes[-1]
    assert names_in(last, "deletions") == [(gname(), False), (SHOP, False)]
    assert names_in(last, "additions") == [(gname(), True), (SHOP, True)]
    assert (await to_geo.sync_once(snap)).plan.empty

    back = syncer_for(make_config(providers=(plain_p,)), plain_p)
    res = await back.sync_once(snap, force=True)
    assert not res.errors and res.residual == 0
    last = fake.changes[-1]
    assert names_in(last, "deletions") == [(gname(), True), (SHOP, True)]
    assert names_in(last, "additions") == [(gname(), False), (SHOP, False)]
    assert state(fake) == plain_state
    assert (await back.sync_once(snap)).plan.empty
    for s in (first, to_geo, back):
        await s.stop()


async def test_the_switch_is_held_by_the_change_threshold(fake: FakeCloudDns) -> None:
    plain_p = gcp(fake, routing="all")
    geo_p = gcp(fake, max_change_fraction=0.05)
    snap = snapshot(make_config(providers=(plain_p,)))
    first = syncer_for(make_config(providers=(plain_p,)), plain_p)
    await first.sync_once(snap)
    before = state(fake)
    owned = len((await first.backend.read()).owned)
    to_geo = syncer_for(make_config(providers=(geo_p,)), geo_p)
    with pytest.raises(UnsafePlanError, match=rf"update 2 of {owned} owned record sets"):
        await to_geo.sync_once(snap)
    assert state(fake) == before  # nothing written
    res = await to_geo.sync_once(snap, force=True)
    assert res.residual == 0 and len(items(fake, gname())) == 3
    await first.stop()
    await to_geo.stop()


async def test_a_changed_map_converges(fake: FakeCloudDns) -> None:
    """A location dropped from geo_regions (and one added) is rewritten, not
    stranded: fedns' own sets stay fedns' whatever the current map."""
    p = gcp(fake)
    cfg = make_config(providers=(p,))
    snap = snapshot(cfg)
    s1 = syncer_for(cfg, p)
    await s1.sync_once(snap)
    remap = {"asia-east1": "asia-east1", "us-east1": "us-east1"}
    p2 = gcp(fake, regions=remap)
    s2 = syncer_for(make_config(providers=(p2,)), p2)
    res = await s2.sync_once(snap, force=True)
    assert not res.errors and res.residual == 0 and not res.plan.skipped
    assert items(fake, gname()) == {loc: server_answer(snap, gname(), r)
                                    for r, loc in remap.items()}
    assert (await s2.sync_once(snap)).plan.empty
    await s1.stop()
    await s2.stop()


@pytest.mark.parametrize("mode", ["serve_all", "nxdomain"])
async def test_when_all_unhealthy_follows_the_server(fake: FakeCloudDns,
                                                     mode: Literal["serve_all", "nxdomain"]
                                                     ) -> None:
    p = gcp(fake)
    cfg = make_config(providers=(p,), health=Health(when_all_unhealthy=mode))
    syncer = syncer_for(cfg, p)
    await syncer.sync_once(snapshot(cfg))
    dead = snapshot(cfg, down=["asia", "eu", "use", "usw"], serial=2)
    res = await syncer.sync_once(dead, force=True)
    assert res.residual == 0 and not res.errors
    got = items(fake, gname())
    if mode == "serve_all":  # fedns answers every shard with an address, in every region
        assert got == {loc: tuple(sorted(ADDR.values())) for loc in MAP.values()}
    else:  # fedns answers NXDOMAIN: the name is gone, marker included
        assert (gname(), "A") not in fake.rrsets and dead.geo_answer(gname(), "") is None
        assert (ownership.marker_name(gname(), "A"), "TXT") not in fake.rrsets
    await syncer.stop()


# -- foreign routed sets -----------------------------------------------------------------

async def test_foreign_routed_sets_are_never_touched(fake: FakeCloudDns) -> None:
    p = gcp(fake)
    cfg = make_config(providers=(p,))
    # a fedns-shaped geo set without fedns' marker: someone else's
    fake.add({"name": SHOP, "type": "A", "ttl": 60, "routingPolicy": {"geo": {"items": [
        {"location": "europe-west1", "rrdatas": ["198.51.100.7"]}]}}})
    syncer = syncer_for(cfg, p)
    res = await syncer.sync_once(snapshot(cfg))
    assert [(s.name, s.rtype) for s in res.plan.skipped] == [(SHOP, "A")]
    assert items(fake, SHOP) == {"europe-west1": ("198.51.100.7",)}
    assert (ownership.marker_name(SHOP, "A"), "TXT") not in fake.rrsets

    # fedns' own set, edited by someone into a shape fedns never writes
    # (fencing): foreign as a whole from then on, kept byte for byte
    edited = json.loads(json.dumps(fake.rrsets[(gname(), "A")]))
    edited["routingPolicy"]["geo"]["enableFencing"] = True
    fake.rrsets[(gname(), "A")] = edited
    theirs = json.loads(json.dumps(fake.rrsets[(SHOP, "A")]))
    res = await syncer.sync_once(snapshot(cfg, down=["use"], serial=2), limit_updates=False)
    assert not res.errors and res.residual == 0
    assert [(s.name, s.rtype) for s in res.plan.skipped] == [(gname(), "A"), (SHOP, "A")]
    assert (rname("us-east1"), "CNAME") in fake.rrsets  # the other names did move
    assert fake.rrsets[(gname(), "A")] == edited
    assert fake.rrsets[(SHOP, "A")] == theirs
    assert (ownership.marker_name(gname(), "A"), "TXT") in fake.rrsets  # marker kept too
    await syncer.stop()


SHAPE: dict[str, Any] = {"name": "w.example.com.", "type": "A", "ttl": 30,
                         "routingPolicy": {"geo": {"items": [
                             {"location": "us-east4", "rrdatas": ["10.0.0.1"]},
                             {"location": "europe-west1", "rrdatas": ["10.0.0.2"]}]}}}


def _with(path: str, value: Any) -> dict[str, Any]:
    rs: dict[str, Any] = json.loads(json.dumps(SHAPE))
    *parents, last = path.split(".")
    node = rs
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return rs


@pytest.mark.parametrize("rs, ours", [
    (SHAPE, True),
    (_with("kind", "dns#resourceRecordSet"), True),
    (_with("routingPolicy.kind", "dns#rRSetRoutingPolicy"), True),
    (_with("routingPolicy.geo.items.0.kind", ITEM_KIND), True),
    (_with("routingPolicy.geo.enableFencing", False), True),
    (_with("routingPolicy.geo.enableFencing", True), False),
    (_with("routingPolicy.healthCheck", "projects/p/global/healthChecks/h"), False),
    (_with("routingPolicy.geo.items.0.healthCheckedTargets", {"externalEndpoints": ["1.2.3.4"]}),
     False),
    (_with("routingPolicy.geo.items.1.location", "us-east4"), False),
    (_with("routingPolicy.geo.items.1.location", "eu-west-1"), False),
    (_with("routingPolicy.geo.items.1.rrdatas", []), False),
    (_with("routingPolicy.geo.items", []), False),
    (_with("rrdatas", ["10.0.0.9"]), False),
    (_with("signatureRrdatas", ["A 8 2 30 ..."]), False),
    (_with("routingPolicy", {"wrr": {"items": [{"weight": 1, "rrdatas": ["10.0.0.1"]}]}}),
     False),
    (_with("routingPolicy", "geo"), False),
], ids=["fedns-geo", "kind", "policy-kind", "item-kind", "fencing-off", "fencing-on",
        "health-check", "health-checked-targets", "location-twice", "aws-location",
        "empty-item", "no-items", "rrdatas-beside", "signed", "wrr", "malformed"])
def test_only_fedns_shaped_geo_sets_parse(rs: dict[str, Any], ours: bool) -> None:
    parsed = parse_routed(("w.example.com.", "A"), rs, {"us-east4": "us-east1"})
    assert (parsed is not None) == ours
    if parsed is not None:
        assert parsed.policy == "geo" and parsed.ttl == 30
        assert [(r.set_id, r.region, r.ttl, r.values) for r in parsed.routes] == [
            ("europe-west1", "europe-west1", 30, ("10.0.0.2",)),  # unmapped: its own id
            ("us-east1", "us-east4", 30, ("10.0.0.1",))]


# -- dry run, limits, the fake's rules ----------------------------------------------------

async def test_dry_run_plan_shows_geo_items_and_writes_nothing(fake: FakeCloudDns) -> None:
    p = gcp(fake)
    cfg = make_config(providers=(p,))
    snap = snapshot(cfg)
    before = state(fake)
    lines: list[str] = []
    code = await run_once(cfg, snap, dry_run=True, force=False, out=lines.append,
                          err=lines.append)
    assert code == 0, lines
    text = "\n".join(lines)
    assert (f"  + {gname()} 30 A geo[europe-west1@europe-west1: 192.0.2.2; "
            "us-east1@us-east4: 192.0.2.3; us-west1@us-west2: 192.0.2.4]") in text
    assert state(fake) == before and not fake.changes
    lines.clear()
    assert await run_once(cfg, snap, dry_run=True, force=False, out=lines.append,
                          err=lines.append, as_json=True) == 0
    change = next(c for c in json.loads(lines[0])[0]["changes"] if c["name"] == gname())
    assert change["after"]["routing"] == "geo"
    assert change["after"]["routes"][1] == {"set_identifier": "us-east1", "region": "us-east4",
                                            "ttl": 30, "values": ["192.0.2.3"]}


def test_one_ttl_per_set_and_item_values_count_toward_the_size_limit() -> None:
    """Regional answers with different TTLs: Cloud DNS holds one TTL per set,
    so every item carries the lowest (a read-back then compares equal)."""
    name = "svc." + ZONE
    eu = (Record(name, "A", 60, "192.0.2.2"),)
    us = (Record(name, "A", 20, "192.0.2.3"), Record(name, "A", 20, "192.0.2.4"))
    snap = Snapshot(serial=1, generated_at=0.0, zone=ZONE, ttl=30, records=(),
                    geo={name: {"region:europe-west1": eu, "region:us-east1": us, "": eu + us}},
                    localities=("",))
    rr = route_by_geo(snap, group([]), (("europe-west1", "europe-west1"),
                                        ("us-east1", "us-east4")))[(name, "A")]
    assert rr.ttl == 20 and {r.ttl for r in rr.routes} == {20}
    api = to_api(rr)
    assert api["ttl"] == 20 and "rrdatas" not in api
    assert parse_routed((name, "A"), api, {"europe-west1": "europe-west1",
                                           "us-east4": "us-east1"}) == rr
    assert rrdata_bytes([api]) == len("192.0.2.2192.0.2.3192.0.2.4")


def test_a_name_cloud_dns_cannot_hold_by_geo_stays_plain() -> None:
    """A region answered with a CNAME and the others with A records: one name
    cannot hold both, so it stays plain (as for Route53)."""
    p = provider("clouddns", project="p", managed_zone="m", routing="geo",
                 geo_regions=tuple(MAP.items()))
    cfg = make_config(providers=(p,))
    lb = "lb-1.example.net."
    extra = [ShardSpec("usw", "service", "default", "mixed", hostnames=(lb,), ready=1),
             svc("eu", "192.0.2.40", name="mixed")]
    snap = snapshot(cfg, extra=extra)
    want = desired_sets(cfg, p)(snap)
    assert not want[(gname("mixed"), "A")].routed
    assert want[(gname(), "A")].routed and want[(gname(), "A")].policy == "geo"


@pytest.mark.parametrize("addition, why", [
    ({**SHAPE, "rrdatas": ["10.0.0.9"]}, "rrdatas and a routingPolicy"),
    (_with("routingPolicy.geo.items.1.location", "us-east4"), "same location"),
    (_with("routingPolicy.geo.items", []), "without items"),
    (_with("routingPolicy.geo.items.1.rrdatas", []), "without rrdatas"),
    (_with("routingPolicy.geo.items.1.location", "eu-west-1"), "bad location"),
], ids=["rrdatas-beside", "location-twice", "no-items", "empty-item", "aws-location"])
async def test_cloud_dns_rules_on_geo_policies_are_enforced(
        fake: FakeCloudDns, addition: dict[str, Any], why: str) -> None:
    """The fake refuses what Cloud DNS refuses (so the tests above would catch
    a backend writing it), through the real client and backend error path."""
    p = gcp(fake)
    backend = CloudDnsBackend(p, credentials=AnonymousCredentials())
    body = {"additions": [{**addition, "name": "w." + ZONE}], "deletions": []}
    with pytest.raises(gexc.BadRequest, match=why):
        await backend._call("change", "POST", backend.base + "/changes", data=body)
    assert ("w." + ZONE, "A") not in fake.rrsets
    await backend.close()
