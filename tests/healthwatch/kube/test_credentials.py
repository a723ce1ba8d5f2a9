"""Member-cluster credentials that expire or rotate under a running fedns.

The simulated API server requires a bearer token from a set the test rotates
(``TokenAuthAPI``, HTTP wire level, real ``kubernetes`` client):

- a kubeconfig mounted from a Secret is swapped on disk (``os.replace``): the
  new credentials are picked up before the old token stops working, and also
  when the swap and the revocation happen at once, within ``cluster_grace``;
- an exec plugin that reports no expiry is run again after a 401;
- a 401 that lasts reloads the credentials at most once per
  ``credential_reload_interval``, says so in the cluster's error, and
  recovers as soon as valid credentials appear.

Tokens are distinctive strings, so that the tests can check none is logged.

The machine may be busy (other tests, benchmarks): every wait is an upper
bound with a generous deadline (``WITHIN``) that only a failure reaches, and
what a test asserts about timing is stated against the mechanism (reload
interval, backoff, grace), not against how fast the machine is.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry

from config.model import Cluster, Config, Health, Region
from healthwatch.engine import Engine
from healthwatch.kube import KubeconfigError, KubeOptions, KubeSource
from healthwatch.kube.client import load_client
from healthwatch.snapshot import Snapshot
from tests.fakekube import endpoint_slice, service
from tests.fakekube.auth import (
    ExecPlugin,
    TokenAuthAPI,
    replace_file,
    write_exec_kubeconfig,
    write_exec_plugin,
    write_token_kubeconfig,
)
from tests.healthwatch.kube.harness import FAST, Harness, shard
from tests.healthwatch.kube.test_engine_kube import _published

OLD, NEW, NEWER = "tok-old-4d1f9a", "tok-new-8c2e7b", "tok-newer-31a6f0"
TOKENS = (OLD, NEW, NEWER)
WEB = "default/web"
RELOAD_EVERY = 1.0  # credential_reload_interval of these tests
# FAST, with call timeouts that a slow answer on a busy machine does not hit:
# these tests are about credentials, and one timed-out heartbeat would make
# the cluster unreachable for a moment.
OPTIONS = replace(FAST, credential_reload_interval=RELOAD_EVERY, connect_timeout=5.0,
                  request_timeout=10.0, heartbeat_timeout=5.0)
WITHIN = 30.0  # the deadline of every wait for a condition (an upper bound)


async def _auth_api(token: str) -> TokenAuthAPI:
    api = TokenAuthAPI(name="a", accepted={token})
    await api.start()
    api.apply("services", service("web", lb_ips=["192.0.2.10"]))
    api.apply("endpointslices", endpoint_slice("web", ready=2))
    return api


async def _start(kube: Harness, api: TokenAuthAPI, kubeconfig: str,
                 options: KubeOptions = OPTIONS,
                 registry: CollectorRegistry | None = None, within: float = WITHIN) -> None:
    kube.api = api  # the harness kills it at the end
    await kube.start(options=options, registry=registry, kubeconfig=kubeconfig, context="fed-a")
    await kube.wait_for(lambda r: r.synced and r.reachable and shard(r, "web") is not None,
                        within=within)


async def _token_source(kube: Harness, options: KubeOptions = OPTIONS
                        ) -> tuple[TokenAuthAPI, str]:
    """A source on a kubeconfig file with the token OLD, which the API accepts."""
    api = await _auth_api(OLD)
    path = os.path.join(kube.tmp, "secret.kubeconfig")
    write_token_kubeconfig(path, context="fed-a", server=api.url, token=OLD)
    await _start(kube, api, path, options=options)
    return api, path


def _no_token_logged(caplog: pytest.LogCaptureFixture) -> None:
    leaked = [m for m in caplog.messages if any(t in m for t in TOKENS)]
    assert not leaked, leaked


def _reloads(caplog: pytest.LogCaptureFixture, reason: str) -> list[str]:
    return [m for m in caplog.messages
            if m.startswith("credentials_reloaded") and f"reason={reason}" in m]


async def _runs_counted(kube: Harness, plugin: ExecPlugin, counted: Callable[[], float]) -> None:
    """Wait until every plugin run but the first load's is counted as a reload
    (``counted``): a run is seen when it starts, its reload when it ends, so
    the two agree only while no reload is under way."""
    await kube.eventually(lambda: counted() == plugin.runs - 1, within=WITHIN)


# -- a kubeconfig swapped on disk (Secret rotation) -------------------------------------------


async def test_rotated_kubeconfig_is_used_before_the_old_token_stops_working(
    kube: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    api, path = await _token_source(kube)
    seen = len(kube.reports)

    # the Secret is rotated: a new token is issued, the mounted file swapped;
    # the old token still works for a while
    api.accept(OLD, NEW)
    write_token_kubeconfig(path, context="fed-a", server=api.url, token=NEW)
    await kube.eventually(lambda: bool(api.presented(NEW)), within=WITHIN)
    # then the old token is revoked, and the streams opened with it end
    api.accept(NEW)
    revoked = time.time()
    api.drop_watches()
    rewatched = ("services", "endpointslices", "ingresses")
    await kube.eventually(lambda: {r.path.rsplit("/", 1)[-1] for r in api.presented(NEW)
                                   if r.at > revoked and r.accepted} >= set(rewatched),
                          within=WITHIN)

    assert api.refused() == [], api.refused()[:3]  # never sent the old token after the swap
    assert all(r.reachable and shard(r, "web") is not None for r in kube.reports[seen:])
    assert len(_reloads(caplog, "file_changed")) == 1, caplog.messages
    _no_token_logged(caplog)


async def test_kubeconfig_swapped_as_the_old_token_is_revoked_keeps_shards_in_dns(
    tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    # the budget for picking up the new file: one heartbeat, a reload, the
    # watches reopened and settled (watch_settle, 1 s); with room for a busy machine
    grace = 10.0
    api = await _auth_api(OLD)
    path = os.path.join(str(tmp_path), "secret.kubeconfig")
    write_token_kubeconfig(path, context="fed-a", server=api.url, token=OLD)
    cluster = Cluster(name="a", region="us-east1", zone="us-east1-b", source="kubernetes",
                      kubeconfig=path, context="fed-a")
    config = Config(zone="example.com.", federation="fed",
                    regions=(Region("us-east1", (33.8, -84.4), ("us-east1-b",)),),
                    clusters=(cluster,), health=Health(cluster_grace=grace))
    engine = Engine(config, source_factory=lambda c, cfg: KubeSource(c, cfg, OPTIONS))
    seen: list[Snapshot] = []
    engine.subscribe(seen.append)
    await engine.start()
    try:
        await _published(engine, _web_healthy, within=WITHIN)
        since = len(seen)
        started = time.time()
        api.accept(NEW)  # revoked, and the Secret swapped, at once
        api.drop_watches()
        write_token_kubeconfig(path, context="fed-a", server=api.url, token=NEW)
        await _published(engine, lambda s: s.clusters[0].reachable
                         and (s.clusters[0].last_contact or 0) > started
                         and not api.refused(time.time() - 0.5), within=WITHIN)
        assert all(_web_healthy(s) for s in seen[since:]), [s.shards for s in seen[since:]]
        assert api.presented(NEW)
        _no_token_logged(caplog)
    finally:
        await engine.stop()
        await api.kill()


def _web_healthy(snap: Snapshot) -> bool:
    return any(s.service == WEB and s.healthy for s in snap.shards)


# -- an exec plugin that reports no expiry ---------------------------------------------------


async def test_exec_plugin_without_expiry_is_run_again_after_a_401(
    kube: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    plugin = write_exec_plugin(kube.tmp, OLD)
    api = await _auth_api(OLD)
    path = write_exec_kubeconfig(os.path.join(kube.tmp, "exec.kubeconfig"), context="fed-a",
                                 server=api.url, command=plugin.command)
    await _start(kube, api, path)
    assert plugin.runs == 1
    seen = len(kube.reports)

    # the token the plugin handed out is revoked; the plugin now hands out another
    plugin.set_token(NEW)
    api.accept(NEW)
    revoked = time.monotonic()
    api.drop_watches()
    await kube.eventually(lambda: bool(api.presented(NEW)), within=WITHIN)
    renewed = time.time()
    await kube.wait_for(lambda r: r.reachable and r.last_contact is not None
                        and r.last_contact > renewed, within=WITHIN)
    await _runs_counted(kube, plugin, lambda: len(_reloads(caplog, "unauthorized")))

    # run again, once per reload (at most one per interval), not once per request
    elapsed = time.monotonic() - revoked
    assert 2 <= plugin.runs <= elapsed / RELOAD_EVERY + 2, (plugin.runs, elapsed)
    assert all(shard(r, "web") is not None for r in kube.reports[seen:])  # kept meanwhile
    _no_token_logged(caplog)


# -- credentials revoked for good ------------------------------------------------------------


async def test_lasting_401_reloads_at_a_bounded_rate_reports_why_and_recovers(
    kube: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    registry = CollectorRegistry()
    plugin = write_exec_plugin(kube.tmp, OLD)
    api = await _auth_api(OLD)
    path = write_exec_kubeconfig(os.path.join(kube.tmp, "exec.kubeconfig"), context="fed-a",
                                 server=api.url, command=plugin.command)
    await _start(kube, api, path, registry=registry)
    seen = len(kube.reports)

    api.accept()  # every token refused: the credentials are revoked for good
    api.drop_watches()
    down = await kube.wait_for(lambda r: not r.reachable
                               and "credentials reloaded" in (r.last_error or ""), within=WITHIN)
    error = down.last_error or ""
    assert "HTTP 401 Unauthorized" in error and f"from {path}" in error, error

    # watch for a while: the plugin runs at most once per interval
    window = 3 * RELOAD_EVERY
    runs, start = plugin.runs, time.monotonic()
    await asyncio.sleep(window)  # observing a rate: the time span is the measurement
    ran = plugin.runs - runs
    elapsed = time.monotonic() - start
    assert 1 <= ran <= elapsed / RELOAD_EVERY + 1, (ran, elapsed)
    refused = api.refused(time.time() - elapsed)
    # retries keep their backoff: about one heartbeat per interval plus the
    # watches' capped backoff (at least half of backoff_cap, with jitter)
    assert kube.source is not None
    watches = len(kube.source.watchers)
    most = elapsed * (1 / OPTIONS.heartbeat_interval + watches / (OPTIONS.backoff_cap / 2)) + 10
    assert len(refused) <= most, (len(refused), most)

    # valid credentials appear: back at the next reload, within one interval.
    # Counted in plugin runs until the new token is first accepted: the one
    # that fetched it, and one that may have been running already.
    runs = plugin.runs
    plugin.set_token(NEWER)
    api.accept(NEWER)
    appeared = time.time()
    await kube.eventually(lambda: any(r.accepted for r in api.presented(NEWER)), within=WITHIN)
    assert plugin.runs - runs <= 2, plugin.runs - runs
    up = await kube.wait_for(lambda r: r.reachable and r.last_contact is not None
                             and r.last_contact > appeared, within=WITHIN)
    assert up.last_error is None

    def reloads() -> float:
        return registry.get_sample_value("fedns_kube_credential_reloads_total",
                                         {"cluster": "a", "reason": "unauthorized"}) or 0.0

    await _runs_counted(kube, plugin, reloads)  # every reload counted, failed or not
    assert all(shard(r, "web") is not None for r in kube.reports[seen:])
    _no_token_logged(caplog)
    assert all(t not in (r.last_error or "") for r in kube.reports for t in TOKENS)


async def test_unusable_rotated_kubeconfig_keeps_the_working_credentials(
    kube: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    api, path = await _token_source(kube)
    seen = len(kube.reports)

    replace_file(path, "clusters: [unclosed\n")  # a broken Secret
    await kube.eventually(lambda: any("credentials_reload_failed" in m
                                      for m in caplog.messages), within=WITHIN)
    api.drop_watches()  # reconnect: still with the old, working, token
    await kube.eventually(lambda: len(api.presented(OLD)) > 20, within=WITHIN)
    assert api.refused() == []
    assert all(r.reachable and shard(r, "web") is not None for r in kube.reports[seen:])

    # fixed: picked up
    api.accept(OLD, NEW)
    write_token_kubeconfig(path, context="fed-a", server=api.url, token=NEW)
    await kube.eventually(lambda: bool(api.presented(NEW)), within=WITHIN)
    _no_token_logged(caplog)


async def test_reload_wakes_watches_waiting_out_a_long_backoff(kube: Harness) -> None:
    # a refused watch waits at least half of backoff_base (jitter) before it
    # tries again: far longer than a reload takes, on any machine
    slow = replace(OPTIONS, backoff_base=30.0, backoff_cap=60.0)
    shortest_wait = slow.backoff_base / 2
    api, path = await _token_source(kube, slow)
    watched = ("services", "endpointslices", "ingresses")

    api.accept()  # revoked; the replacement comes a little later
    api.expire()  # the streams end with 410 Gone: relisted at once, and refused

    def refused() -> set[str]:
        return {r.path.rsplit("/", 1)[-1] for r in api.refused()}

    await kube.eventually(lambda: refused() >= set(watched), within=WITHIN)
    api.accept(NEW)
    write_token_kubeconfig(path, context="fed-a", server=api.url, token=NEW)

    def rewatched() -> dict[str, float]:
        """When each watch first presented the new token."""
        first: dict[str, float] = {}
        for r in api.presented(NEW):
            first.setdefault(r.path.rsplit("/", 1)[-1], r.at)
        return first

    await kube.eventually(lambda: rewatched().keys() >= set(watched), within=WITHIN)
    # woken by the reload: each watch came back sooner after its last refusal
    # than any backoff would have let it
    for resource in watched:
        back = rewatched()[resource]
        last = max(r.at for r in api.refused() if r.path.endswith(f"/{resource}") and r.at < back)
        assert back - last < shortest_wait, (resource, back - last)
    await kube.wait_for(lambda r: r.reachable, within=WITHIN)


def test_exec_plugin_that_fails_is_a_kubeconfig_error_not_a_client_without_credentials(
    tmp_path: object,
) -> None:
    plugin = write_exec_plugin(str(tmp_path), OLD)
    os.remove(plugin.status_file)  # the plugin now exits 1
    path = write_exec_kubeconfig(os.path.join(str(tmp_path), "exec.kubeconfig"),
                                 context="fed-a", server="http://127.0.0.1:9",
                                 command=plugin.command)
    with pytest.raises(KubeconfigError, match="the exec plugin gave no credentials"):
        load_client(path, "fed-a", FAST)
    assert plugin.runs == 1
