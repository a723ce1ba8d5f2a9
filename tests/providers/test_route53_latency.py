"""Route53 latency routing of geo-aware names, against moto's server.

Snapshots come from the real planner (tests.healthwatch.helpers' four
regions), so "the answer fedns gives a client in region R" is the planner's
own ``geo_answer``.  moto accepts batches Route53 refuses (a plain set over
latency sets, two latency sets in one AWS region, a CREATE over an existing
set), so every ChangeBatch sent is also checked against Route53's rules by
``Rules`` below, on the client side, before moto sees it; and moto applies
routed changes unlike Route53 (see ``route53_set_semantics``).
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from collections.abc import Iterable
from typing import Any, Literal

import boto3
import moto.route53.exceptions as moto_errors
import moto.route53.models as moto_models
import pytest

from config.model import Config, Health, Provider
from healthwatch.drains import DrainSet
from healthwatch.model import ShardSpec
from healthwatch.planner import plan
from healthwatch.snapshot import Snapshot, region_locality
from providers import ownership
from providers.commands import run_once
from providers.errors import UnsafePlanError
from providers.factory import make_syncer
from providers.latency import route_by_latency
from providers.metrics import ProviderMetrics
from providers.route53 import Route53Backend, decode_name, parse_sets
from providers.rrset import normalized
from providers.syncer import Syncer
from tests.healthwatch.helpers import ADDR, ZONE, gname, ing, make_config, reports, rname, svc
from tests.providers.helpers import provider

NOW = 2000.0
MAP = {"europe-west1": "eu-west-1", "us-east1": "us-east-1", "us-west1": "us-west-2"}
SHOP = "shop." + ZONE  # an Ingress host: geo-aware like a global name
_ref = itertools.count()

SetKey = tuple[str, str, str | None]  # (name, type, SetIdentifier)


# -- Route53's rules, checked on every batch fedns sends ------------------------------

class Rules:
    """A model of the zone as Route53 validates a ChangeBatch: all or nothing,
    DELETE must repeat an existing set exactly, CREATE must not find one, a
    name/type holds one plain set or routed sets only (latency: SetIdentifier
    and Region, one per Region), a CNAME shares its name with nothing."""

    def __init__(self, sets: Iterable[dict[str, Any]]) -> None:
        self.state = {_skey(rs): rs for rs in sets}
        self.violations: list[str] = []
        self.batches: list[list[dict[str, Any]]] = []

    def __call__(self, params: dict[str, Any], **_: Any) -> None:
        changes = params["ChangeBatch"]["Changes"]
        self.batches.append(changes)
        state = dict(self.state)
        for ch in changes:  # Route53 validates the batch as a whole
            rs = ch["ResourceRecordSet"]
            k = _skey(rs)
            if ch["Action"] == "DELETE":
                if state.get(k) != _norm(rs):
                    self.violations.append(f"DELETE of a set not there as given: {k}")
                state.pop(k, None)
        for ch in changes:
            rs = ch["ResourceRecordSet"]
            k = _skey(rs)
            if ch["Action"] == "CREATE":
                if k in state:
                    self.violations.append(f"CREATE over an existing set: {k}")
                state[k] = _norm(rs)
            elif ch["Action"] != "DELETE":
                self.violations.append(f"unexpected action {ch['Action']}")
        self.violations.extend(_invalid(state))
        self.state = state


def _norm(rs: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in rs.items() if k != "ResourceRecords"}
    out["Name"] = decode_name(str(rs["Name"]))
    out["ResourceRecords"] = sorted(r["Value"] for r in rs.get("ResourceRecords", []))
    return out


def _skey(rs: dict[str, Any]) -> SetKey:
    return decode_name(str(rs["Name"])), str(rs["Type"]), rs.get("SetIdentifier")


def _invalid(state: dict[SetKey, dict[str, Any]]) -> list[str]:
    out = []
    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for (name, rtype, _), rs in state.items():
        by_key.setdefault((name, rtype), []).append(rs)
    for key, sets in by_key.items():
        routed = [rs for rs in sets if "SetIdentifier" in rs]
        if routed and len(routed) != len(sets):
            out.append(f"plain and routed sets at {key}")
        if len(sets) > 1 and not routed:
            out.append(f"two plain sets at {key}")
        lat = [rs for rs in routed if "Region" in rs]
        if lat and len(lat) != len(routed):
            out.append(f"mixed routing policies at {key}")
        if len({rs["Region"] for rs in lat}) != len(lat):
            out.append(f"two latency sets in one region at {key}")
    names = {n for n, _ in by_key}
    for n in names:
        types = {t for m, t in by_key if m == n}
        if "CNAME" in types and len(types) > 1:
            out.append(f"a CNAME with other types at {n}")
    return out


# -- fixtures and helpers --------------------------------------------------------------

@pytest.fixture(autouse=True)
def route53_set_semantics(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto 5.2.1 (in this process: ThreadedMotoServer) deletes a routed set by
    SetIdentifier across the whole zone, every name and type, and refuses a
    CREATE that repeats an earlier change of its journal; Route53 scopes a
    SetIdentifier to its name and type and judges a CREATE by what the zone
    holds.  Apply changes the Route53 way (in order, all or nothing); the
    rules Route53 validates are checked by ``Rules`` on the client side."""

    def change(self: Any, zoneid: str, change_list: list[dict[str, Any]]) -> None:
        zone = self.get_hosted_zone(zoneid)
        sets = list(zone.rrsets)
        for value in change_list:
            rs = dict(value["ResourceRecordSet"])
            rs["Name"] = rs["Name"] if rs["Name"].endswith(".") else rs["Name"] + "."
            key = (rs["Name"], rs["Type"], rs.get("SetIdentifier"))
            found = [r for r in sets if (r.name, r.type, r.set_identifier) == key]
            if value["Action"] == "DELETE":
                if not found:
                    raise moto_errors.InvalidInput(f"no record set {key} to delete")
                sets.remove(found[0])
            elif value["Action"] == "CREATE":
                if found:
                    raise moto_errors.ResourceRecordAlreadyExists(name=key[0], _type=key[1])
                rs["ResourceRecords"] = [r["Value"] for r in rs.get("ResourceRecords", [])]
                sets.append(moto_models.RecordSet(rs))  # type: ignore[abstract]
            else:
                raise moto_errors.InvalidActionValue(value["Action"])
        zone.rrsets = sets

    monkeypatch.setattr(moto_models.Route53Backend, "change_resource_record_sets", change)


@pytest.fixture
def zone_id(moto_url: str, aws_env: None) -> str:
    c = boto3.client("route53", endpoint_url=moto_url)
    zid = c.create_hosted_zone(Name=ZONE, CallerReference=f"lat{next(_ref)}")["HostedZone"]["Id"]
    return str(zid).rsplit("/", 1)[-1]


def r53(moto_url: str, zone_id: str, routing: str = "latency", **kw: Any) -> Provider:
    extra: dict[str, Any] = {"routing": routing}
    if routing == "latency":
        extra["latency_regions"] = tuple(sorted(MAP.items()))
    return provider("route53", hosted_zone_id=zone_id, endpoint_url=moto_url,
                    requests_per_second=100.0, backoff=0.01, timeout=30.0, **extra, **kw)


def syncer_for(cfg: Config, p: Provider, rules: Rules | None = None) -> Syncer:
    backend = Route53Backend(p)
    if rules is not None:
        backend.client.meta.events.register(
            "before-parameter-build.route53.ChangeResourceRecordSets", rules)
    return make_syncer(cfg, p, ProviderMetrics(None), backend)


def all_sets(moto_url: str, zone_id: str) -> list[dict[str, Any]]:
    c = boto3.client("route53", endpoint_url=moto_url)
    out: list[dict[str, Any]] = []
    for page in c.get_paginator("list_resource_record_sets").paginate(
            HostedZoneId=zone_id, PaginationConfig={"PageSize": 300}):
        out.extend(page["ResourceRecordSets"])
    return out


def zone_state(moto_url: str, zone_id: str) -> dict[SetKey, dict[str, Any]]:
    return {_skey(rs): _norm(rs) for rs in all_sets(moto_url, zone_id)}


def latency_sets(moto_url: str, zone_id: str, name: str, rtype: str = "A"
                 ) -> dict[str, tuple[str, tuple[str, ...]]]:
    """SetIdentifier -> (Region, values) of the latency sets at name/type."""
    return {str(rs["SetIdentifier"]): (str(rs["Region"]),
                                       tuple(sorted(r["Value"] for r in rs["ResourceRecords"])))
            for rs in all_sets(moto_url, zone_id)
            if decode_name(rs["Name"]) == name and rs["Type"] == rtype and "Region" in rs}


def server_answer(snap: Snapshot, name: str, region: str, rtype: str = "A") -> tuple[str, ...]:
    """What fedns's own server answers a client in ``region`` (the planner's answer)."""
    ans = snap.geo_answer(name, region_locality(region)) or ()
    return normalized(rtype, [r.value for r in ans if r.rtype == rtype])


def shards(down: Iterable[str] = (), *, extra: Iterable[ShardSpec] = ()) -> list[ShardSpec]:
    """nginx in all four clusters, an Ingress host in eu and use; ``down``:
    clusters whose nginx has no ready endpoint."""
    dead = set(down)
    out = [svc(c, ADDR[c], ready=0 if c in dead else 1) for c in ("asia", "eu", "use", "usw")]
    out += [ing("eu", "192.0.2.20", hosts=(SHOP,)), ing("use", "192.0.2.30", hosts=(SHOP,))]
    out += list(extra)
    return out


def snapshot(cfg: Config, down: Iterable[str] = (), serial: int = 1,
             extra: Iterable[ShardSpec] = ()) -> Snapshot:
    return plan(cfg, reports(*shards(down, extra=extra)), {}, DrainSet(), serial, NOW)


# -- tests -----------------------------------------------------------------------------

async def test_latency_sets_carry_the_servers_answer_per_region(moto_url: str,
                                                               zone_id: str) -> None:
    p = r53(moto_url, zone_id)
    cfg = make_config(providers=(p,))
    snap = snapshot(cfg)
    rules = Rules(all_sets(moto_url, zone_id))
    syncer = syncer_for(cfg, p, rules)
    res = await syncer.sync_once(snap)
    assert not res.errors and res.residual == 0 and not rules.violations

    for name in (gname(), SHOP):
        got = latency_sets(moto_url, zone_id, name)
        assert got == {f"fedns-{r}": (aws, server_answer(snap, name, r))
                       for r, aws in MAP.items()}, name
    # by hand: each mapped region's own shard; the Ingress has none in us-west1,
    # whose clients fedns sends to us-east1 (the nearest region with one)
    assert latency_sets(moto_url, zone_id, gname()) == {
        "fedns-europe-west1": ("eu-west-1", ("192.0.2.2",)),
        "fedns-us-east1": ("us-east-1", ("192.0.2.3",)),
        "fedns-us-west1": ("us-west-2", ("192.0.2.4",)),
    }
    assert latency_sets(moto_url, zone_id, SHOP)["fedns-us-west1"] == ("us-west-2",
                                                                       ("192.0.2.30",))
    state = zone_state(moto_url, zone_id)
    # the ownership markers cover the routed names; other levels stay plain
    for name in (gname(), SHOP):
        assert (ownership.marker_name(name, "A"), "TXT", None) in state
        assert (name, "A", None) not in state
    assert state[(rname("us-east1"), "A", None)]["ResourceRecords"] == ["192.0.2.3"]
    assert all(k[2] is None for k in state if k[0] not in (gname(), SHOP))
    # idempotent: the read-back parses to exactly what is wanted
    again = await syncer.sync_once(snap)
    assert again.plan.empty and not again.plan.skipped
    assert len(rules.batches) == 1
    await syncer.stop()


async def test_health_change_moves_the_regions_values(moto_url: str, zone_id: str) -> None:
    p = r53(moto_url, zone_id)
    cfg = make_config(providers=(p,))
    rules = Rules(all_sets(moto_url, zone_id))
    syncer = syncer_for(cfg, p, rules)
    await syncer.sync_once(snapshot(cfg))
    down = snapshot(cfg, down=["use"], serial=2)
    want = server_answer(down, gname(), "us-east1")
    assert want and want != ("192.0.2.3",)  # fedns sends us-east1's clients elsewhere
    res = await syncer.sync_once(down, limit_updates=False)
    assert not res.errors and res.residual == 0 and not rules.violations
    upd = [c for c in res.plan.changes if c.key == (gname(), "A")]
    assert len(upd) == 1 and upd[0].action == "update"
    # only the member whose values moved is rewritten (a minimal diff)
    sent = [(c["Action"], c["ResourceRecordSet"].get("SetIdentifier"))
            for b in rules.batches[1:] for c in b
            if decode_name(c["ResourceRecordSet"]["Name"]) == gname()]
    assert sent == [("DELETE", "fedns-us-east1"), ("CREATE", "fedns-us-east1")]
    got = latency_sets(moto_url, zone_id, gname())
    assert got["fedns-us-east1"] == ("us-east-1", want)
    assert got["fedns-europe-west1"] == ("eu-west-1", ("192.0.2.2",))  # untouched
    # back up: the region's own shard again
    res = await syncer.sync_once(snapshot(cfg, serial=3), limit_updates=False)
    assert latency_sets(moto_url, zone_id, gname())["fedns-us-east1"] == ("us-east-1",
                                                                         ("192.0.2.3",))
    assert not rules.violations
    await syncer.stop()


async def test_switch_all_to_latency_and_back_is_atomic_and_converges(
        moto_url: str, zone_id: str) -> None:
    plain_p = r53(moto_url, zone_id, routing="all")
    lat_p = r53(moto_url, zone_id)
    snap = snapshot(make_config(providers=(plain_p,)))
    rules = Rules(all_sets(moto_url, zone_id))

    first = syncer_for(make_config(providers=(plain_p,)), plain_p, rules)
    await first.sync_once(snap)
    plain_state = zone_state(moto_url, zone_id)
    assert plain_state[(gname(), "A", None)]["ResourceRecords"] == sorted(ADDR.values())

    to_lat = syncer_for(make_config(providers=(lat_p,)), lat_p, rules)
    res = await to_lat.sync_once(snap, force=True)
    assert not res.errors and res.residual == 0 and not rules.violations
    assert {(c.action, c.key) for c in res.plan.changes} == {
        ("update", (gname(), "A")), ("update", (SHOP, "A"))}
    # each name switched in one ChangeBatch: its plain DELETE with its latency CREATEs
    for name in (gname(), SHOP):
        batch = [b for b in rules.batches[1:]
                 if any(decode_name(c["ResourceRecordSet"]["Name"]) == name for c in b)]
        assert len(batch) == 1
        acts = sorted((c["Action"], c["ResourceRecordSet"].get("SetIdentifier", ""))
                      for c in batch[0] if decode_name(c["ResourceRecordSet"]["Name"]) == name)
        assert acts == [("CREATE", f"fedns-{r}") for r in sorted(MAP)] + [("DELETE", "")]
    assert (await to_lat.sync_once(snap)).plan.empty

    back = syncer_for(make_config(providers=(plain_p,)), plain_p, rules)
    res = await back.sync_once(snap, force=True)
    assert not res.errors and res.residual == 0 and not rules.violations
    assert zone_state(moto_url, zone_id) == plain_state
    assert (await back.sync_once(snap)).plan.empty
    for s in (first, to_lat, back):
        await s.stop()


async def test_the_switch_is_held_by_the_change_threshold(moto_url: str, zone_id: str) -> None:
    plain_p = r53(moto_url, zone_id, routing="all")
    lat_p = r53(moto_url, zone_id, max_change_fraction=0.05)
    snap = snapshot(make_config(providers=(plain_p,)))
    first = syncer_for(make_config(providers=(plain_p,)), plain_p)
    await first.sync_once(snap)
    before = zone_state(moto_url, zone_id)
    owned = len((await first.backend.read()).owned)
    to_lat = syncer_for(make_config(providers=(lat_p,)), lat_p)
    with pytest.raises(UnsafePlanError, match=rf"update 2 of {owned} owned record sets"):
        await to_lat.sync_once(snap)
    assert zone_state(moto_url, zone_id) == before  # nothing written
    res = await to_lat.sync_once(snap, force=True)
    assert res.residual == 0 and len(latency_sets(moto_url, zone_id, gname())) == 3
    await first.stop()
    await to_lat.stop()


async def test_foreign_latency_sets_are_never_touched(moto_url: str, zone_id: str) -> None:
    p = r53(moto_url, zone_id)
    cfg = make_config(providers=(p,))
    client = boto3.client("route53", endpoint_url=moto_url)
    theirs = {"Name": SHOP, "Type": "A", "SetIdentifier": "fedns-europe-west1",
              "Region": "eu-west-1", "TTL": 60, "ResourceRecords": [{"Value": "198.51.100.7"}]}
    client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [
        {"Action": "CREATE", "ResourceRecordSet": theirs}]})
    rules = Rules(all_sets(moto_url, zone_id))
    syncer = syncer_for(cfg, p, rules)
    res = await syncer.sync_once(snapshot(cfg))
    # no marker: the set (even with a fedns-shaped SetIdentifier) is foreign
    assert [(s.name, s.rtype) for s in res.plan.skipped] == [(SHOP, "A")]
    assert latency_sets(moto_url, zone_id, SHOP) == {
        "fedns-europe-west1": ("eu-west-1", ("198.51.100.7",))}

    # someone adds a member of their own to fedns' latency group at the global name
    mine = {"Name": gname(), "Type": "A", "SetIdentifier": "manual-tokyo",
            "Region": "ap-northeast-1", "TTL": 60, "ResourceRecords": [{"Value": "203.0.113.9"}]}
    client.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [
        {"Action": "CREATE", "ResourceRecordSet": mine}]})
    rules.state = zone_state(moto_url, zone_id)
    before = zone_state(moto_url, zone_id)
    res = await syncer.sync_once(snapshot(cfg, down=["use"], serial=2), limit_updates=False)
    assert not rules.violations
    assert [(s.name, s.rtype) for s in res.plan.skipped] == [(gname(), "A"), (SHOP, "A")]
    after = zone_state(moto_url, zone_id)
    for k, v in before.items():
        if k[0] in (gname(), SHOP):
            assert after[k] == v, k  # the whole group is left alone
    await syncer.stop()


async def test_dry_run_plan_shows_latency_sets_and_writes_nothing(moto_url: str,
                                                                  zone_id: str) -> None:
    p = r53(moto_url, zone_id)
    cfg = make_config(providers=(p,))
    snap = snapshot(cfg)
    before = zone_state(moto_url, zone_id)
    lines: list[str] = []
    code = await run_once(cfg, snap, dry_run=True, force=False, out=lines.append,
                          err=lines.append)
    assert code == 0, lines
    text = "\n".join(lines)
    assert (f"  + {gname()} 30 A latency[fedns-europe-west1@eu-west-1: 192.0.2.2; "
            "fedns-us-east1@us-east-1: 192.0.2.3; fedns-us-west1@us-west-2: 192.0.2.4]") in text
    assert zone_state(moto_url, zone_id) == before
    lines.clear()
    assert await run_once(cfg, snap, dry_run=True, force=False, out=lines.append,
                          err=lines.append, as_json=True) == 0
    change = next(c for c in json.loads(lines[0])[0]["changes"] if c["name"] == gname())
    assert change["after"]["routes"][0] == {"set_identifier": "fedns-europe-west1",
                                            "region": "eu-west-1", "ttl": 30,
                                            "values": ["192.0.2.2"]}


@pytest.mark.parametrize("mode", ["serve_all", "nxdomain"])
async def test_when_all_unhealthy_follows_the_server(moto_url: str, zone_id: str,
                                                     mode: Literal["serve_all", "nxdomain"]
                                                     ) -> None:
    p = r53(moto_url, zone_id)
    cfg = make_config(providers=(p,), health=Health(when_all_unhealthy=mode))
    syncer = syncer_for(cfg, p, Rules(all_sets(moto_url, zone_id)))
    await syncer.sync_once(snapshot(cfg))
    dead = snapshot(cfg, down=["asia", "eu", "use", "usw"], serial=2)
    res = await syncer.sync_once(dead, force=True)
    assert res.residual == 0
    got = latency_sets(moto_url, zone_id, gname())
    if mode == "serve_all":  # fedns answers every shard with an address, in every region
        assert got == {f"fedns-{r}": (aws, tuple(sorted(ADDR.values())))
                       for r, aws in MAP.items()}
        assert all(server_answer(dead, gname(), r) == tuple(sorted(ADDR.values())) for r in MAP)
    else:  # fedns answers NXDOMAIN: the name is gone, marker included
        assert got == {} and dead.geo_answer(gname(), "") is None
        assert (ownership.marker_name(gname(), "A"), "TXT", None) not in zone_state(
            moto_url, zone_id)
    await syncer.stop()


def test_a_name_route53_cannot_hold_by_latency_stays_plain() -> None:
    """us-west1's only shard has a hostname: fedns answers that region with a
    CNAME and the others with A records, which one Route53 name cannot hold."""
    p = provider("route53", hosted_zone_id="Z1", routing="latency",
                 latency_regions=tuple(MAP.items()))
    cfg = make_config(providers=(p,))
    lb = "lb-1.us-west-2.elb.example.net."
    extra = [ShardSpec("usw", "service", "default", "mixed", hostnames=(lb,), ready=1),
             svc("eu", "192.0.2.40", name="mixed")]
    snap = snapshot(cfg, extra=extra)
    mixed = gname("mixed")
    assert server_answer(snap, mixed, "us-west1", "CNAME") == (lb,)
    from providers.factory import desired_sets
    want = desired_sets(cfg, p)(snap)
    assert not want[(mixed, "A")].routed and want[(mixed, "A")].values == ("192.0.2.40",)
    assert (mixed, "CNAME") not in want
    assert want[(gname(), "A")].routed  # the others are still routed


def test_unmapped_provider_publishes_the_plain_view() -> None:
    snap = snapshot(make_config())
    from providers.rrset import group, publishable
    sets = group(publishable(snap.static_view(), snap.zone))
    assert route_by_latency(snap, sets, ()) == sets


@pytest.mark.parametrize("sets, ours", [
    ([{"SetIdentifier": "fedns-eu", "Region": "eu-west-1"},
      {"SetIdentifier": "fedns-us", "Region": "us-east-1"}], True),
    ([{"SetIdentifier": "fedns-eu", "Region": "eu-west-1"},
      {"SetIdentifier": "manual", "Region": "us-east-1"}], False),
    ([{"SetIdentifier": "fedns-eu", "Region": "eu-west-1", "HealthCheckId": "h"}], False),
    ([{"SetIdentifier": "fedns-eu", "Weight": 10}], False),
    ([{"SetIdentifier": "fedns-eu", "Region": "eu-west-1"},
      {"SetIdentifier": "fedns-us", "Region": "eu-west-1"}], False),
    ([{}, {"SetIdentifier": "fedns-us", "Region": "us-east-1"}], False),
], ids=["fedns-latency", "foreign-member", "health-check", "weighted", "one-region-twice",
        "plain-and-latency"])
def test_only_fedns_shaped_latency_groups_parse(sets: list[dict[str, Any]], ours: bool) -> None:
    base = {"Name": "w.example.com.", "Type": "A", "TTL": 30,
            "ResourceRecords": [{"Value": "10.0.0.1"}]}
    parsed = parse_sets(("w.example.com.", "A"), [{**base, **s} for s in sets])
    assert (parsed is not None) == ours
    if parsed is not None:
        assert [(r.set_id, r.region, r.values) for r in parsed.routes] == [
            ("fedns-eu", "eu-west-1", ("10.0.0.1",)), ("fedns-us", "us-east-1", ("10.0.0.1",))]


def test_loaded_settings_reach_the_desired_view() -> None:
    """The loader's ``latency_regions`` (sorted pairs) drive the routing."""
    from config.loader import load_text
    cfg = load_text(f"""\
zone: {ZONE}
federation: myfed
regions:
  europe-west1: {{location: [50.4, 3.8], zones: [europe-west1-b]}}
  us-east1: {{location: [33.8, -84.4], zones: [us-east1-b]}}
providers:
  - {{type: route53, hosted_zone_id: Z1, routing: latency,
     latency_regions: {{us-east1: us-east-1, Europe-West1: eu-west-1}}}}
""")
    p = cfg.providers[0]
    assert p.get("latency_regions") == (("europe-west1", "eu-west-1"), ("us-east1", "us-east-1"))
    snap = snapshot(dataclasses.replace(make_config(), providers=(p,)))
    from providers.factory import desired_sets
    rr = desired_sets(cfg, p)(snap)[(gname(), "A")]
    assert [(r.set_id, r.region) for r in rr.routes] == [
        ("fedns-europe-west1", "eu-west-1"), ("fedns-us-east1", "us-east-1")]
