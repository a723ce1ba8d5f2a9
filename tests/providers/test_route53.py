"""Route53 backend against moto's server, boto3 talking to it over loopback."""

from __future__ import annotations

import asyncio
import itertools
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.awsrequest import AWSResponse

from healthwatch.snapshot import Record, Snapshot
from providers import ownership
from providers.errors import ProviderError, UnsafePlanError
from providers.factory import desired_records
from providers.metrics import ProviderMetrics
from providers.route53 import MAX_CHARS, MAX_VALUES, Route53Backend, decode_name
from providers.rrset import group, publishable
from providers.syncer import Syncer
from tests.providers.helpers import ZONE, config, fed_snapshot, free_port, provider

NS = "{https://route53.amazonaws.com/doc/2013-04-01/}"
_ref = itertools.count()


@pytest.fixture
def zone_id(moto_url: str, aws_env: None) -> str:
    c = boto3.client("route53", endpoint_url=moto_url)
    zid = c.create_hosted_zone(Name=ZONE, CallerReference=f"t{next(_ref)}")["HostedZone"]["Id"]
    return str(zid).rsplit("/", 1)[-1]


def raw_client(moto_url: str) -> Any:
    return boto3.client("route53", endpoint_url=moto_url)


def make(moto_url: str, zone_id: str, **kw: Any) -> tuple[Syncer, Route53Backend, ProviderMetrics]:
    p = provider("route53", hosted_zone_id=zone_id, endpoint_url=moto_url,
                 requests_per_second=100.0, backoff=0.01, timeout=30.0, **kw)
    backend = Route53Backend(p)
    metrics = ProviderMetrics(None)
    return Syncer(backend, p, desired_records(config(p), p), metrics, backoff=0.01), backend, \
        metrics


def listing(moto_url: str, zone_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    c = raw_client(moto_url)
    out = {}
    for page in c.get_paginator("list_resource_record_sets").paginate(
            HostedZoneId=zone_id, PaginationConfig={"PageSize": 300}):
        for rs in page["ResourceRecordSets"]:
            out[(decode_name(rs["Name"]), rs["Type"])] = rs
    return out


def published(moto_url: str, zone_id: str) -> dict[tuple[str, str], Any]:
    """Record sets in the zone that carry fedns' marker, as normalised sets."""
    rows = listing(moto_url, zone_id)
    from providers.rrset import make_rrset
    sets = [make_rrset(k[0], k[1], rs["TTL"], [r["Value"] for r in rs["ResourceRecords"]])
            for k, rs in rows.items() if "ResourceRecords" in rs]
    return dict(ownership.split(sets, "fedns").owned)


def view(snap: Snapshot) -> dict[tuple[str, str], Any]:
    return group(publishable(snap.static_view(), snap.zone))


def test_wildcard_names_are_decoded() -> None:
    assert decode_name("\\052.apps.Fed.Example.") == "*.apps.fed.example."
    assert decode_name("a\\100b.z") == "a@b.z."


async def test_publish_idempotent_failover_and_refusal(moto_url: str, zone_id: str) -> None:
    syncer, _, metrics = make(moto_url, zone_id)
    snap = fed_snapshot()
    res = await syncer.sync_once(snap)
    assert not res.errors and res.residual == 0
    assert published(moto_url, zone_id) == view(snap)
    assert (await syncer.sync_once(snap)).plan.empty

    before = listing(moto_url, zone_id)
    fail = fed_snapshot(down=[("web", "c1")], serial=2)
    res = await syncer.sync_once(fail)
    assert {c.key[0] for c in res.plan.changes} == {
        "web.default.fed.svc." + ZONE, "web.default.fed.svc.eu-west1." + ZONE,
        "web.default.fed.svc.eu-west1a.eu-west1." + ZONE}
    after = listing(moto_url, zone_id)
    assert published(moto_url, zone_id) == view(fail)
    same = {k: v for k, v in before.items() if not k[0].startswith(("web.", "_fedns-a.web."))}
    assert {k: after[k] for k in same} == same

    with pytest.raises(UnsafePlanError, match=r"delete 12 of 15 owned record sets"):
        await syncer.sync_once(fed_snapshot(gone=True, serial=3))
    assert listing(moto_url, zone_id) == after
    assert metrics.errors.labels("route53", "unsafe")._value.get() == 1
    await syncer.sync_once(fed_snapshot(gone=True, serial=3), force=True)
    assert published(moto_url, zone_id) == view(fed_snapshot(gone=True))
    await syncer.stop()


async def test_foreign_records_never_touched(moto_url: str, zone_id: str) -> None:
    glob = "web.default.fed.svc." + ZONE
    foreign = [
        {"Name": glob, "Type": "TXT", "TTL": 77, "ResourceRecords": [{"Value": '"foreign"'}]},
        {"Name": "txt." + ZONE, "Type": "TXT", "TTL": 60,
         "ResourceRecords": [{"Value": '"theirs"'}]},
        {"Name": "legacy." + ZONE, "Type": "A", "TTL": 300,
         "ResourceRecords": [{"Value": "10.9.9.9"}]},
        {"Name": ownership.marker_name("legacy." + ZONE, "A"), "Type": "TXT", "TTL": 300,
         "ResourceRecords": [{"Value": ownership.marker_value("someone-else", "A")}]},
    ]
    raw_client(moto_url).change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={
        "Changes": [{"Action": "CREATE", "ResourceRecordSet": rs} for rs in foreign]})
    before = listing(moto_url, zone_id)
    syncer, _, _ = make(moto_url, zone_id)
    res = await syncer.sync_once(fed_snapshot())
    assert [(s.name, s.rtype) for s in res.plan.skipped] == [("txt." + ZONE, "TXT")]
    await syncer.sync_once(fed_snapshot(gone=True, serial=2), force=True)
    after = listing(moto_url, zone_id)
    for rs in foreign:
        key = (rs["Name"], rs["Type"])
        assert after[key] == before[key]
    await syncer.stop()


class Wire:
    """Records ChangeResourceRecordSets bodies as sent; can inject error replies."""

    def __init__(self, inject: list[str] | None = None, reject: bytes | None = None) -> None:
        self.bodies: list[bytes] = []
        self.inject = list(inject or [])
        self.reject = reject  # batches containing this are refused (InvalidChangeBatch)

    def __call__(self, request: Any, **_: Any) -> AWSResponse | None:
        code = None
        if self.inject:
            code = self.inject.pop(0)
        elif self.reject is not None and self.reject in bytes(request.body):
            code = "InvalidChangeBatch"
        if code is not None:
            body = (f'<?xml version="1.0"?><ErrorResponse xmlns="{NS[1:-1]}"><Error>'
                    f"<Type>Sender</Type><Code>{code}</Code><Message>injected</Message></Error>"
                    "<RequestId>x</RequestId></ErrorResponse>").encode()
            return AWSResponse(request.url, 400, {"Content-Type": "text/xml"}, _Raw(body))
        self.bodies.append(bytes(request.body))
        return None


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, *_: Any, **__: Any) -> Iterator[bytes]:
        yield self.body


def batch_stats(body: bytes) -> tuple[int, int, set[str], set[str]]:
    """(values, chars) counted Route53's way, data names, marker names."""
    root = ET.fromstring(body)
    values = chars = 0
    names: set[str] = set()
    markers: set[str] = set()
    for ch in root.iter(NS + "Change"):
        k = 2 if ch.findtext(NS + "Action") == "UPSERT" else 1
        rrs = ch.find(NS + "ResourceRecordSet")
        assert rrs is not None
        name = str(rrs.findtext(NS + "Name"))
        (markers if name.startswith("_fedns-") else names).add(name)
        for v in rrs.iter(NS + "Value"):
            values += k
            chars += k * len(v.text or "")
    return values, chars, names, markers


@pytest.mark.slow  # moto needs ~20 s for 5,000 record sets; the code under test does not
async def test_2500_records_respect_both_batch_limits(moto_url: str, zone_id: str) -> None:
    recs = tuple(Record(f"h{i}.bulk.{ZONE}", "A", 30, f"10.{i // 250}.{i % 250}.1")
                 for i in range(2500))
    snap = Snapshot(1, 0.0, ZONE, 30, recs, {}, ("",))
    syncer, backend, _ = make(moto_url, zone_id)
    wire = Wire()
    backend.client.meta.events.register("before-send.route-53.ChangeResourceRecordSets", wire)
    res = await syncer.sync_once(snap, force=True)
    assert res.applied == 2500 and not res.errors and res.residual == 0
    assert len(wire.bodies) >= 2
    seen: set[str] = set()
    for body in wire.bodies:
        values, chars, names, markers = batch_stats(body)
        assert values <= MAX_VALUES and chars <= MAX_CHARS
        # every name travels with its marker, in the same batch
        assert {m.split(".", 1)[1] for m in markers} == names
        assert not names & seen
        seen |= names
    assert len(seen) == 2500
    assert len((await backend.read()).owned) == 2500
    await syncer.stop()


async def test_throttling_and_prior_request_are_retried(moto_url: str, zone_id: str) -> None:
    syncer, backend, metrics = make(moto_url, zone_id)
    wire = Wire(inject=["Throttling", "PriorRequestNotComplete"])
    backend.client.meta.events.register("before-send.route-53.ChangeResourceRecordSets", wire)
    res = await syncer.sync_once(fed_snapshot())
    assert not res.errors and res.residual == 0 and not wire.inject
    assert len(wire.bodies) == 1
    assert metrics.errors.labels("route53", "throttled")._value.get() == 2
    assert published(moto_url, zone_id) == view(fed_snapshot())
    await syncer.stop()


async def test_rejected_record_reported_rest_proceeds(moto_url: str, zone_id: str) -> None:
    syncer, backend, metrics = make(moto_url, zone_id)
    wire = Wire(reject=b"bad.fed.example.")  # moto does not validate rdata: Route53 would
    backend.client.meta.events.register("before-send.route-53.ChangeResourceRecordSets", wire)
    base = fed_snapshot()
    bad = Record("bad." + ZONE, "A", 30, "192.0.2.1")
    snap = Snapshot(1, 0.0, ZONE, 30, (*base.records, bad), base.geo, base.localities)
    res = await syncer.sync_once(snap)
    assert [(e.name, e.rtype) for e in res.errors] == [("bad." + ZONE, "A")]
    assert published(moto_url, zone_id) == view(base)
    assert syncer.status()["state"] == "partial"
    assert metrics.errors.labels("route53", "record")._value.get() == 1
    await syncer.stop()


async def test_endpoint_down_loop_reports_and_never_raises(aws_env: None) -> None:
    p = provider("route53", hosted_zone_id="Z1", debounce=0.0, timeout=0.5, attempts=2,
                 backoff=0.01, endpoint_url=f"http://127.0.0.1:{free_port()}")
    metrics = ProviderMetrics(None)
    syncer = Syncer(Route53Backend(p), p, desired_records(config(p), p), metrics,
                    retries=1, backoff=0.01)
    await syncer.start()
    syncer.publish(fed_snapshot())
    for _ in range(100):
        if syncer.status()["errors"]:
            break
        await asyncio.sleep(0.05)
    status = syncer.status()
    assert status["state"] == "error" and "transient" in status["last_error"]
    assert metrics.up.labels("route53")._value.get() == 0
    assert metrics.errors.labels("route53", "transient")._value.get() >= 2
    await syncer.stop()


async def test_foreign_txt_at_a_marker_name_is_never_overwritten(moto_url: str,
                                                                 zone_id: str) -> None:
    """A foreign TXT where fedns would put a record's marker: the record is
    skipped and the TXT kept (was: CREATE of the marker, which moto applies
    over the foreign set and Route53 rejects)."""
    name = "ns1." + ZONE
    mk = ownership.marker_name(name, "A")
    raw_client(moto_url).change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={
        "Changes": [{"Action": "CREATE", "ResourceRecordSet": {
            "Name": mk, "Type": "TXT", "TTL": 60,
            "ResourceRecords": [{"Value": '"site-verification=abc"'}]}}]})
    kept = listing(moto_url, zone_id)[(mk, "TXT")]
    syncer, _, _ = make(moto_url, zone_id)
    snap = fed_snapshot()
    res = await syncer.sync_once(snap)
    assert [(s.name, s.rtype) for s in res.plan.skipped] == [(name, "A")]
    assert not res.errors and res.residual == 0
    assert listing(moto_url, zone_id)[(mk, "TXT")] == kept
    want = view(snap)
    del want[(name, "A")]
    assert published(moto_url, zone_id) == want
    await syncer.stop()


class LandThenFail:
    """Sends the first ChangeBatch for real, then answers 500 InternalError:
    a write whose fate is unknown to the caller."""

    def __init__(self) -> None:
        self.sent = 0

    def __call__(self, request: Any, **_: Any) -> AWSResponse | None:
        self.sent += 1
        if self.sent > 1:
            return None
        headers = {k: v.decode() if isinstance(v, bytes) else v
                   for k, v in request.headers.items()}
        headers.setdefault("Content-Type", "text/xml")  # else urllib says form-encoded
        req = urllib.request.Request(request.url, data=bytes(request.body), method="POST",
                                     headers=headers)
        with urllib.request.urlopen(req, timeout=10) as r:
            r.read()
        body = (f'<?xml version="1.0"?><ErrorResponse xmlns="{NS[1:-1]}"><Error>'
                "<Type>Receiver</Type><Code>InternalError</Code><Message>injected</Message>"
                "</Error><RequestId>x</RequestId></ErrorResponse>").encode()
        return AWSResponse(request.url, 500, {"Content-Type": "text/xml"}, _Raw(body))


async def test_a_write_whose_fate_is_unknown_is_not_resent(moto_url: str,
                                                           zone_id: str) -> None:
    """5xx on ChangeResourceRecordSets: re-read and re-plan, never resend the
    batch blindly (was: resent at once; Route53 rejects the repeated CREATEs
    of a batch that landed, and every name was reported as rejected)."""
    syncer, backend, _ = make(moto_url, zone_id)
    hook = LandThenFail()
    backend.client.meta.events.register("before-send.route-53.ChangeResourceRecordSets", hook)
    res = await syncer.sync_once(fed_snapshot())
    assert hook.sent == 1  # the re-read found the batch landed: nothing left to send
    assert not res.errors and res.residual == 0
    assert published(moto_url, zone_id) == view(fed_snapshot())
    await syncer.stop()


_LIST = ('<?xml version="1.0"?><ListResourceRecordSetsResponse xmlns="{ns}">'
         "<ResourceRecordSets>{sets}</ResourceRecordSets><IsTruncated>{trunc}</IsTruncated>"
         "<MaxItems>300</MaxItems></ListResourceRecordSetsResponse>")


@pytest.mark.parametrize("body", [
    b"<html>not xml",
    _LIST.format(ns=NS[1:-1], trunc="false", sets=(
        "<ResourceRecordSet><Type>A</Type><TTL>30</TTL><ResourceRecords><ResourceRecord>"
        "<Value>10.1.1.1</Value></ResourceRecord></ResourceRecords></ResourceRecordSet>"
    )).encode(),  # a set without Name
    _LIST.format(ns=NS[1:-1], trunc="true", sets="").encode(),  # truncated, no NextRecordName
], ids=["not-xml", "set-without-name", "truncated-without-next"])
async def test_a_bad_listing_is_a_provider_error_and_changes_nothing(
        moto_url: str, zone_id: str, body: bytes) -> None:
    """Malformed listings surface as ProviderError (a clear CLI message, the
    next provider still runs), never as a raw parser error or KeyError."""
    syncer, backend, _ = make(moto_url, zone_id, attempts=1)
    syncer._retries = 1
    await syncer.sync_once(fed_snapshot())
    before = listing(moto_url, zone_id)

    def bad(request: Any, **_: Any) -> AWSResponse:
        return AWSResponse(request.url, 200, {"Content-Type": "text/xml"}, _Raw(body))

    backend.client.meta.events.register("before-send.route-53.ListResourceRecordSets", bad)
    with pytest.raises(ProviderError):
        await syncer.sync_once(fed_snapshot(down=[("web", "c1")], serial=2))
    assert listing(moto_url, zone_id) == before
    assert syncer.status()["state"] == "error"
    await syncer.stop()
