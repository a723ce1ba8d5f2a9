"""A Kubernetes API that fails: HTTP 500/503 on list and watch, 200 with a
garbage body, watch events of the wrong shape. The source backs off, says
what failed in ``last_error``, keeps the shards it knew (dropping them after
``cluster_grace`` is the engine's rule) and resumes without a relist.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from healthwatch.kube.client import load_client
from healthwatch.kube.errors import ObjectError
from healthwatch.kube.facts import (
    export_facts,
    ingress_facts,
    node_facts,
    service_facts,
    slice_facts,
)
from healthwatch.kube.resources import resources
from healthwatch.kube.translate import make_marker
from healthwatch.kube.watch import Watcher
from healthwatch.model import ClusterReport
from tests.fakekube import endpoint_slice, ingress, node, service, service_export
from tests.healthwatch.kube.harness import FAST, Federation, Harness, shard

WEB = ("192.0.2.10",)


def _web(report: ClusterReport, addresses: tuple[str, ...] = WEB, ready: int = 2) -> bool:
    s = shard(report, "web")
    return s is not None and s.addresses == addresses and s.ready == ready


async def _synced_with_web(kube: Harness, **start: Any) -> ClusterReport:
    kube.api.apply("services", service("web", lb_ips=list(WEB)))
    kube.api.apply("endpointslices", endpoint_slice("web", ready=2))
    source = await kube.start(**start)
    report = await kube.wait_for(lambda r: r.synced and r.reachable and _web(r))
    # faults below act on open watches: wait until every resource has one
    await kube.eventually(lambda: all(kube.api.open_watches(w.name) for w in source.watchers))
    return report


def _watcher(kube: Harness, resource: str) -> Watcher:
    assert kube.source is not None
    return next(w for w in kube.source.watchers if w.name == resource)


def _keeps_web(kube: Harness, since: int) -> bool:
    return all(_web(r) for r in kube.reports[since:])


# -- HTTP errors ---------------------------------------------------------------------


async def test_initial_list_500s_back_off_report_and_then_sync(kube: Harness) -> None:
    kube.api.apply("services", service("web", lb_ips=list(WEB)))
    kube.api.fail("services", 500, on="list", times=3, message="etcdserver: leader changed")
    await kube.start()
    down = await kube.wait_for(lambda r: r.last_error is not None)
    assert down.last_error == (
        "list services: HTTP 500 Internal Server Error: etcdserver: leader changed")
    assert not down.synced and not down.reachable
    up = await kube.wait_for(lambda r: r.synced and r.reachable and shard(r, "web") is not None)
    assert up.last_error is None
    assert [r.injected for r in kube.api.lists("services")] == [500, 500, 500, None]
    assert len(kube.api.lists("endpointslices")) == 1  # the other resources never failed


async def test_watch_500s_keep_shards_and_resume_without_relist(kube: Harness) -> None:
    await _synced_with_web(kube)
    rv = _watcher(kube, "services").resource_version
    seen = len(kube.reports)
    kube.api.fail("services", 500, on="watch")  # until cleared
    kube.api.drop_watches("services")
    down = await kube.wait_for(lambda r: not r.reachable)
    assert down.last_error is not None
    assert down.last_error.startswith("watch services: HTTP 500 Internal Server Error")
    assert _web(down)  # a 500 never wipes what the cluster was known to run
    await kube.eventually(lambda: len([w for w in kube.api.watches("services") if w.injected]) >= 3)
    kube.api.apply("services", service("web", lb_ips=["192.0.2.11"]))  # changes while failing
    assert _keeps_web(kube, seen)

    kube.api.clear_faults()
    up = await kube.wait_for(lambda r: r.reachable and _web(r, ("192.0.2.11",)))
    assert up.last_error is None
    retried = [w for w in kube.api.watches("services")[1:]]
    assert {w.resource_version for w in retried} == {rv}  # every retry resumed from rv
    assert len(kube.api.lists("services")) == 1


async def test_503_retry_after_is_honoured(kube: Harness) -> None:
    # FAST backs off at most 0.2 s; the server asks for 1 s
    kube.api.fail("services", 503, on="list", times=1, retry_after=1)
    await kube.start()
    down = await kube.wait_for(lambda r: r.last_error is not None)
    assert down.last_error == ("list services: HTTP 503 Service Unavailable: "
                               "injected fault: ServiceUnavailable (Retry-After 1s)")
    await kube.synced()
    first, second = kube.api.lists("services")[:2]
    assert first.injected == 503 and second.injected is None
    assert second.at - first.at >= 0.95


async def test_relist_after_gone_failing_keeps_shards(kube: Harness) -> None:
    await _synced_with_web(kube)
    seen = len(kube.reports)
    kube.api.fail("services", 500, on="list", times=2)
    kube.api.expire("services")
    down = await kube.wait_for(lambda r: r.last_error is not None)
    assert down.last_error and down.last_error.startswith("list services: HTTP 500")
    up = await kube.wait_for(lambda r: r.reachable and r.last_error is None)
    assert _web(up) and _keeps_web(kube, seen)
    assert [r.injected for r in kube.api.lists("services")] == [None, 500, 500, None]


async def test_http_410_on_watch_request_relists_once(kube: Harness) -> None:
    await _synced_with_web(kube)
    kube.api.fail("services", 410, on="watch", times=1)
    kube.api.drop_watches("services")
    await kube.eventually(lambda: _watcher(kube, "services").lists == 2)
    await kube.eventually(lambda: kube.api.open_watches("services") == 1)
    assert len(kube.api.lists("services")) == 2
    assert kube.last.reachable and _web(kube.last)


async def test_api_errors_are_counted(kube: Harness) -> None:
    registry = CollectorRegistry()
    kube.api.fail("endpointslices", 500, on="list", times=2)
    await kube.start(registry=registry)
    await kube.synced()

    def value(op: str) -> float | None:
        return registry.get_sample_value("fedns_kube_api_errors_total", {
            "cluster": "a", "resource": "endpointslices", "op": op})

    assert (value("list"), value("watch")) == (2.0, 0.0)


# -- garbage bodies ----------------------------------------------------------------------

LIST_META = {"resourceVersion": "5"}
GARBAGE: dict[str, tuple[bytes | Any, str, str]] = {
    # name: (body, content type, expected error after "list services: ")
    "html": (b"<html><body>502 Bad Gateway</body></html>", "text/html",
             "response is not JSON (text/html, 41 bytes)"),
    "truncated-json": (b'{"kind":"ServiceList","items":[{"metadata":', "application/json",
                       "response is not JSON (application/json, 43 bytes)"),
    "json-array": ([1, 2, 3], "application/json", "response is a JSON list, not an object"),
    "items-not-a-list": ({"items": 7, "metadata": LIST_META}, "application/json",
                         "items is a JSON int, not a list"),
    "no-metadata": ({"items": []}, "application/json", "metadata missing or not an object"),
    "no-resource-version": ({"items": [], "metadata": {}}, "application/json",
                            "no metadata.resourceVersion in the response"),
    "only-malformed-items": ({"items": [1, "x", {"metadata": "nope"}], "metadata": LIST_META},
                             "application/json", "none of the 3 items is a well-formed object"),
}


@pytest.mark.parametrize("kind", sorted(GARBAGE))
async def test_garbage_list_keeps_shards_and_recovers(kube: Harness, kind: str) -> None:
    body, content_type, expected = GARBAGE[kind]
    await _synced_with_web(kube)
    seen = len(kube.reports)
    kube.api.garbage("services", body, content_type=content_type)
    kube.api.expire("services")  # forces a relist, which now gets garbage
    down = await kube.wait_for(lambda r: r.last_error is not None)
    assert down.last_error == f"list services: {expected}"
    assert not down.reachable and _web(down)
    await kube.eventually(lambda: len(kube.api.lists("services")) >= 3)  # it keeps retrying
    kube.api.clear_faults()
    up = await kube.wait_for(lambda r: r.reachable and r.last_error is None)
    assert _web(up) and _keeps_web(kube, seen)


async def test_garbage_initial_list_is_not_synced_until_cleared(kube: Harness) -> None:
    kube.api.apply("services", service("web", lb_ips=list(WEB)))
    kube.api.garbage("services", b"\x00\xff not json")
    await kube.start()
    down = await kube.wait_for(lambda r: r.last_error is not None)
    assert not down.synced and down.shards == ()
    kube.api.clear_faults("services")
    await kube.wait_for(lambda r: r.synced and shard(r, "web") is not None)


async def test_a_few_malformed_items_are_skipped_not_fatal(
    kube: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    good = service("web", lb_ips=list(WEB))
    kube.api.garbage("services", {"items": [good, {"metadata": 5}], "metadata": LIST_META},
                     times=1)
    await kube.start()
    report = await kube.wait_for(lambda r: r.synced and r.reachable)
    assert [s.name for s in report.shards] == ["web"]
    assert any("malformed_object resource=services" in m for m in caplog.messages)


@pytest.mark.parametrize("body", [
    b"this is not a watch stream\n",
    b"<html>no newline at the end</html>",
    b'{"kind":"ServiceList","items":7}',
], ids=["text-line", "html-no-newline", "json-not-an-event"])
async def test_watch_stream_of_garbage_backs_off_and_reports(kube: Harness, body: bytes) -> None:
    await _synced_with_web(kube)
    kube.api.garbage("services", body, on="watch")
    kube.api.drop_watches("services")
    down = await kube.wait_for(lambda r: r.last_error is not None)
    assert down.last_error == "watch services: watch stream ended after 1 malformed line"
    assert _web(down)
    failing = kube.reports.index(down)
    await kube.eventually(lambda: len(kube.api.watches("services")) >= 4)
    # each retry is answered 200 and then garbage: that is no recovery (no flapping)
    assert not any(r.reachable for r in kube.reports[failing:])
    kube.api.clear_faults()
    await kube.wait_for(lambda r: r.reachable and r.last_error is None)
    # backed off between attempts (FAST: 25..200 ms), not a tight reconnect loop
    attempts = [w.at for w in kube.api.watches("services") if w.injected is not None]
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps and min(gaps) >= 0.02
    assert len(kube.api.lists("services")) == 1


# -- wrong-shape watch events ---------------------------------------------------------------


async def test_wrong_shape_watch_events_are_skipped(
    kube: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    registry = CollectorRegistry()
    await _synced_with_web(kube, registry=registry)
    seen = len(kube.reports)
    broken = copy.deepcopy(service("web", lb_ips=["192.0.2.99"]))
    broken["status"]["loadBalancer"]["ingress"] = "192.0.2.99"  # a string, not a list
    bad_events: list[tuple[str, Any]] = [
        ("MODIFIED", broken),
        ("MODIFIED", {"metadata": {"name": "web", "namespace": "default"}, "spec": "oops"}),
        ("DELETED", {"metadata": {"name": ["web"]}}),
        ("ADDED", {"metadata": 7}),
        ("SIDEWAYS", {"metadata": {"name": "web"}}),
    ]
    for type_, obj in bad_events:
        assert kube.api.inject_event("services", type_, obj) == 1
    kube.api.inject_raw("services", b'{"type":"ADDED","object":[1,2]}\n')
    kube.api.apply("services", service("web2", lb_ips=["192.0.2.12"]))
    report = await kube.wait_for(lambda r: shard(r, "web2") is not None)
    assert _web(report) and _keeps_web(kube, seen) and report.reachable
    assert report.last_error is None
    malformed = registry.get_sample_value("fedns_kube_events_total", {
        "cluster": "a", "resource": "services", "type": "malformed"})
    assert malformed == 5.0
    assert sum("malformed_" in m for m in caplog.messages) == 5
    assert not any("watch_crashed" in m for m in caplog.messages)
    assert len(kube.api.lists("services")) == 1


async def test_error_event_in_stream_reports_and_resumes(kube: Harness) -> None:
    await _synced_with_web(kube)
    rv = _watcher(kube, "services").resource_version
    kube.api.inject_event("services", "ERROR", {
        "kind": "Status", "code": 500, "message": "internal error", "status": "Failure"})
    down = await kube.wait_for(lambda r: r.last_error is not None)
    assert down.last_error == "watch services: ERROR event 500: internal error"
    assert _web(down)
    await kube.wait_for(lambda r: r.reachable and r.last_error is None)
    assert kube.api.watches("services")[-1].resource_version == rv
    assert len(kube.api.lists("services")) == 1


# -- the digest never fails other than with ObjectError ------------------------------------

JUNK: tuple[Any, ...] = (None, 0, -1, 1.5, True, "", "x", [], [1], {}, {"a": 1})


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield (*prefix, k)
            yield from _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield (*prefix, i)
            yield from _paths(v, (*prefix, i))


def _replaced(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    out = copy.deepcopy(obj)
    here = out
    for step in path[:-1]:
        here = here[step]
    here[path[-1]] = value
    return out


MARKER = make_marker(Federation())
DIGESTS: dict[str, tuple[Callable[[Any], Any], dict[str, Any]]] = {
    "service": (lambda o: service_facts(o, marker=MARKER),
                service("web", lb_ips=["192.0.2.1"], lb_hostnames=["lb.example"])),
    "endpointslice": (slice_facts, endpoint_slice("web", ready=1, not_ready=1, unknown=1)),
    "ingress": (lambda o: ingress_facts(o, marker=MARKER),
                ingress("web", hosts=["web.example.com"], backend="web", lb_ips=["192.0.2.2"],
                        tls=True)),
    "node": (node_facts, node("n1", region="r", zone="z")),
    "serviceexport": (export_facts, service_export("web")),
}


@pytest.mark.parametrize("kind", sorted(DIGESTS))
def test_every_field_of_the_wrong_type_is_an_object_error(kind: str) -> None:
    digest, good = DIGESTS[kind]
    digest(good)  # the unmutated object is fine
    failures = []
    for path in _paths(good):
        for junk in JUNK:
            try:
                digest(_replaced(good, path, junk))
            except ObjectError:
                pass
            except Exception as e:
                failures.append(f"{'.'.join(map(str, path))}={junk!r}: {type(e).__name__}: {e}")
    assert not failures, "\n".join(failures[:20])


class _RecordingSink:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def listed(self, resource: str, items: list[Any], resource_version: str) -> None:
        self.calls.append(("listed", resource))

    def changed(self, resource: str, event: Any, facts: Any) -> None:
        self.calls.append(("changed", resource))

    def contact(self, resource: str) -> None:
        self.calls.append(("contact", resource))

    def failed(self, resource: str, error: str, since: float) -> None:
        self.calls.append(("failed", error))


async def test_a_watch_answered_with_garbage_is_never_a_contact(kube: Harness) -> None:
    await kube.api.start()
    path = kube.api.write_kubeconfig(f"{kube.tmp}/direct.kubeconfig", "direct")
    api = load_client(path, "direct", FAST)
    services = resources(MARKER, mode="annotation", nodes=False)[0]
    sink = _RecordingSink()
    watcher = Watcher(services, api, sink, FAST, logging.getLogger("test.watch"))
    watcher.start()
    try:
        await kube.eventually(lambda: kube.api.open_watches("services") == 1)
        kube.api.garbage("services", b"<html>", on="watch")
        kube.api.drop_watches("services")
        await kube.eventually(lambda: sum(c[0] == "failed" for c in sink.calls) >= 3)
        first = next(i for i, c in enumerate(sink.calls) if c[0] == "failed")
        assert all(c[0] == "failed" for c in sink.calls[first:])
        kube.api.clear_faults()
        await kube.eventually(lambda: sink.calls[-1] == ("contact", "services"))
    finally:
        await asyncio.to_thread(watcher.stop, 2.0)
        await asyncio.to_thread(api.close)


# -- silent and quiet watch streams ------------------------------------------------------


async def test_hung_watch_is_noticed_and_reopened_without_relist(kube: Harness) -> None:
    """A watch whose connection went silent (dropped by a middlebox, no reset)
    misses every change; it is reopened after ``watch_idle_timeout``, not after
    the server's watch timeout, and the change arrives without a relist."""
    options = replace(FAST, watch_timeout=30, watch_idle_timeout=0.5)
    await _synced_with_web(kube, options=options)
    kube.api.hang("services", times=1)
    kube.api.drop_watches("services")
    await kube.eventually(lambda: any(w.injected == 200 for w in kube.api.watches("services")))
    hung_at = time.monotonic()
    kube.api.apply("services", service("web", lb_ips=["192.0.2.11"]))
    report = await kube.wait_for(lambda r: _web(r, ("192.0.2.11",)), within=3.0)
    assert time.monotonic() - hung_at < 0.5 + 1.0  # idle timeout + reconnect, not 30 s
    assert report.reachable  # the API answered all along (heartbeat)
    assert len(kube.api.lists("services")) == 1


async def test_quiet_watch_ended_by_the_server_is_reopened_without_backoff(kube: Harness) -> None:
    """A quiet resource whose watch the server ends at ``timeoutSeconds`` (no
    event, no bookmark) is watched again at once, not after a growing backoff
    that would delay its next change by up to ``backoff_cap``."""
    options = replace(FAST, watch_timeout=1, watch_settle=0.2, backoff_base=0.5, backoff_cap=4.0)
    await kube.start(options=options)
    await kube.synced()
    await kube.eventually(lambda: len(kube.api.watches("ingresses")) >= 4, within=8.0)
    starts = [w.at for w in kube.api.watches("ingresses")[:4]]
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # each stream lasts the server's 1 s; a backoff would add 0.25-0.5, 0.5-1, 1-2 s
    assert max(gaps) < 1.0 + 0.2, gaps
    assert len(kube.api.lists("ingresses")) == 1
