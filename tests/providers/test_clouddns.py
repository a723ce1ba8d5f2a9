"""Cloud DNS backend: the real google-cloud-dns client against a fake REST server."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from google.auth.credentials import AnonymousCredentials

from healthwatch.snapshot import Record, Snapshot
from providers import ownership
from providers.clouddns import CloudDnsBackend
from providers.errors import ProviderError, UnsafePlanError
from providers.factory import desired_records
from providers.metrics import ProviderMetrics
from providers.rrset import group, make_rrset, publishable
from providers.syncer import Syncer
from tests.providers.fake_clouddns import FakeCloudDns
from tests.providers.helpers import ZONE, config, fed_snapshot, free_port, provider


@pytest.fixture
def fake() -> Iterator[FakeCloudDns]:
    f = FakeCloudDns("proj", "federation", ZONE)
    yield f
    f.close()


def make(url: str, **kw: Any) -> tuple[Syncer, CloudDnsBackend, ProviderMetrics]:
    p = provider("clouddns", project="proj", managed_zone="federation", endpoint_url=url,
                 timeout=2.0, backoff=0.01, **kw)
    backend = CloudDnsBackend(p, credentials=AnonymousCredentials())
    metrics = ProviderMetrics(None)
    return Syncer(backend, p, desired_records(config(p), p), metrics, backoff=0.01), backend, \
        metrics


def published(fake: FakeCloudDns) -> dict[Any, Any]:
    sets = [make_rrset(k[0], k[1], rs["ttl"], rs["rrdatas"])
            for k, rs in fake.rrsets.items() if "rrdatas" in rs]
    return dict(ownership.split(sets, "fedns").owned)


def view(snap: Snapshot) -> dict[Any, Any]:
    return group(publishable(snap.static_view(), snap.zone))


async def test_publish_idempotent_failover_and_refusal(fake: FakeCloudDns) -> None:
    syncer, _, metrics = make(fake.url)
    snap = fed_snapshot()
    res = await syncer.sync_once(snap)
    assert not res.errors and res.residual == 0
    assert published(fake) == view(snap)
    assert fake.list_calls == 1 + -(-len(fake.rrsets) // fake.page_size)  # re-read paged
    n = len(fake.changes)
    assert (await syncer.sync_once(snap)).plan.empty
    assert len(fake.changes) == n

    fail = fed_snapshot(down=[("web", "c1")], serial=2)
    res = await syncer.sync_once(fail)
    assert {c.key[0] for c in res.plan.changes} == {
        "web.default.fed.svc." + ZONE, "web.default.fed.svc.eu-west1." + ZONE,
        "web.default.fed.svc.eu-west1a.eu-west1." + ZONE}
    assert published(fake) == view(fail)
    last = fake.changes[-1]
    deleted = {d["name"].split(".", 1)[1] if d["name"].startswith("_fedns-") else d["name"]
               for d in last["deletions"]}
    assert deleted <= {c.key[0] for c in res.plan.changes}

    before = dict(fake.rrsets)
    with pytest.raises(UnsafePlanError, match="delete 12 of 15 owned record sets"):
        await syncer.sync_once(fed_snapshot(gone=True, serial=3))
    assert fake.rrsets == before
    assert metrics.errors.labels("clouddns", "unsafe")._value.get() == 1
    await syncer.sync_once(fed_snapshot(gone=True, serial=3), force=True)
    assert published(fake) == view(fed_snapshot(gone=True))
    await syncer.stop()


async def test_foreign_records_never_touched(fake: FakeCloudDns) -> None:
    glob = "web.default.fed.svc." + ZONE
    foreign = [
        {"name": glob, "type": "TXT", "ttl": 77, "rrdatas": ['"foreign"']},
        {"name": "txt." + ZONE, "type": "TXT", "ttl": 60, "rrdatas": ['"theirs"']},
        {"name": "geo." + ZONE, "type": "A", "ttl": 30,  # the library cannot parse this one
         "routingPolicy": {"geo": {"items": [{"location": "eu", "rrdatas": ["10.7.7.7"]}]}}},
        {"name": ownership.marker_name("legacy." + ZONE, "A"), "type": "TXT", "ttl": 300,
         "rrdatas": ['"heritage=fedns,unparsable"']},
        {"name": "legacy." + ZONE, "type": "A", "ttl": 300, "rrdatas": ["10.9.9.9"]},
    ]
    for rs in foreign:
        fake.add(rs)
    snapshot_of = {(rs["name"], rs["type"]): dict(fake.rrsets[(rs["name"], rs["type"])])
                   for rs in foreign}
    syncer, _, _ = make(fake.url)
    res = await syncer.sync_once(fed_snapshot())
    assert [(s.name, s.rtype) for s in res.plan.skipped] == [("txt." + ZONE, "TXT")]
    await syncer.sync_once(fed_snapshot(gone=True, serial=2), force=True)
    for key, rs in snapshot_of.items():
        assert fake.rrsets[key] == rs
    await syncer.stop()


async def test_stale_delete_412_relists_and_replans(fake: FakeCloudDns) -> None:
    syncer, _, metrics = make(fake.url)
    await syncer.sync_once(fed_snapshot())
    key = ("web.default.fed.svc." + ZONE, "A")

    def meddle() -> None:  # someone edits an owned set between our read and our change
        fake.rrsets[key] = {**fake.rrsets[key], "rrdatas": ["10.0.9.9"]}

    fake.before_change = meddle
    fail = fed_snapshot(down=[("web", "c1")], serial=2)
    lists = fake.list_calls
    res = await syncer.sync_once(fail)
    assert res.residual == 0 and not res.errors
    assert metrics.errors.labels("clouddns", "conflict")._value.get() == 1
    assert fake.list_calls >= lists + 2  # re-listed after the 412
    assert published(fake) == view(fail)
    await syncer.stop()


async def test_429_and_5xx_retried_and_batches_bounded(fake: FakeCloudDns) -> None:
    fake.page_size = 500
    recs = tuple(Record(f"h{i}.bulk.{ZONE}", "A", 30, f"10.{i // 250}.{i % 250}.1")
                 for i in range(1200))
    snap = Snapshot(1, 0.0, ZONE, 30, recs, {}, ("",))
    syncer, _, metrics = make(fake.url)
    fake.fail_next = [429, 503]
    res = await syncer.sync_once(snap)
    assert res.applied == 1200 and res.residual == 0
    assert metrics.errors.labels("clouddns", "throttled")._value.get() == 1
    assert metrics.errors.labels("clouddns", "transient")._value.get() == 1
    assert len(fake.changes) >= 3
    for ch in fake.changes:
        assert len(ch["additions"]) <= 1000 and len(ch["deletions"]) <= 1000
        names = {a["name"] for a in ch["additions"] if not a["name"].startswith("_fedns-")}
        markers = {a["name"].split(".", 1)[1] for a in ch["additions"]
                   if a["name"].startswith("_fedns-")}
        assert names == markers
    await syncer.stop()


async def test_rejected_record_reported_rest_proceeds(fake: FakeCloudDns) -> None:
    base = fed_snapshot()
    snap = Snapshot(1, 0.0, ZONE, 30, (*base.records, Record("bad." + ZONE, "A", 30, "x::y")),
                    base.geo, base.localities)
    syncer, _, _ = make(fake.url)
    res = await syncer.sync_once(snap)
    assert [(e.name, e.rtype) for e in res.errors] == [("bad." + ZONE, "A")]
    assert published(fake) == view(base)
    await syncer.stop()


async def test_endpoint_down_loop_reports_and_never_raises() -> None:
    syncer, _, metrics = make(f"http://127.0.0.1:{free_port()}", attempts=1, debounce=0.0)
    await syncer.start()
    syncer.publish(fed_snapshot())
    for _ in range(100):
        if syncer.status()["errors"]:
            break
        await asyncio.sleep(0.05)
    assert syncer.status()["state"] == "error"
    assert metrics.up.labels("clouddns")._value.get() == 0
    await syncer.stop()


async def test_foreign_txt_at_a_marker_name_is_skipped_and_blocks_nothing(
        fake: FakeCloudDns) -> None:
    """A foreign TXT where fedns would put a record's marker (a verification
    token, or another owner's orphan marker): that record is skipped, the TXT
    kept, and the rest is published (was: 409 on every attempt, nothing
    published)."""
    name = "ns1." + ZONE
    mk = ownership.marker_name(name, "A")
    fake.add({"name": mk, "type": "TXT", "ttl": 60, "rrdatas": ['"site-verification=abc"']})
    kept = dict(fake.rrsets[(mk, "TXT")])
    syncer, _, _ = make(fake.url)
    snap = fed_snapshot()
    res = await syncer.sync_once(snap)
    assert [(s.name, s.rtype) for s in res.plan.skipped] == [(name, "A")]
    assert "marker" in res.plan.skipped[0].reason
    assert not res.errors and res.residual == 0
    assert fake.rrsets[(mk, "TXT")] == kept
    want = view(snap)
    del want[(name, "A")]
    assert published(fake) == want
    assert (await syncer.sync_once(snap)).plan.empty
    await syncer.stop()


async def test_changes_stay_within_the_rrdata_size_limit(fake: FakeCloudDns) -> None:
    """Cloud DNS limits the record data of one change to 100,000 bytes (was:
    only the 1,000 additions/deletions were counted: 128,000 bytes here)."""
    fake.page_size = 500
    recs = tuple(Record(f"dkim{i}._domainkey.{ZONE}", "TXT", 300,
                        '"v=DKIM1; k=rsa; p=' + "A" * 180 + f'{i:05d}"') for i in range(600))
    snap = Snapshot(1, 0.0, ZONE, 30, recs, {}, ("",))
    syncer, _, _ = make(fake.url)
    res = await syncer.sync_once(snap, force=True)
    assert res.applied == 600 and not res.errors and res.residual == 0
    for ch in fake.changes:
        size = sum(len(v.encode()) for part in ("additions", "deletions")
                   for rs in ch[part] for v in rs["rrdatas"])
        assert size <= 100_000
    await syncer.stop()


@pytest.mark.parametrize("answer", [
    (200, '{"rrsets": [{"type": "A", "rrdatas": ["10.1.1.1"]}]}'),  # no name
    (200, '{"rrsets": null}'),
    (200, "[]"),
    (200, '{"rrsets": [{"name": "x.fed.example.", "type": "A", "ttl": "x", "rrdatas": []}]}'),
    (400, '{"error": {"code": 400, "message": "bad request"}}'),
], ids=["set-without-name", "rrsets-null", "not-an-object", "ttl-not-a-number", "400"])
async def test_a_bad_listing_is_a_provider_error_and_changes_nothing(
        fake: FakeCloudDns, answer: tuple[int, str]) -> None:
    """Malformed or unexpected answers surface as ProviderError (a clear CLI
    message, the next provider still runs), never as a raw KeyError/TypeError
    or google exception."""
    syncer, _, _ = make(fake.url, attempts=1)
    syncer._retries = 1
    await syncer.sync_once(fed_snapshot())
    before = dict(fake.rrsets)
    fake.fail_next = [answer]
    with pytest.raises(ProviderError):
        await syncer.sync_once(fed_snapshot(down=[("web", "c1")], serial=2))
    assert fake.rrsets == before
    assert syncer.status()["state"] == "error"
    await syncer.stop()
