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
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
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
OPTIONS = replace(FAST, credential_reload_interval=RELOAD_EVERY)


async def _auth_api(token: str) -> TokenAuthAPI:
    api = TokenAuthAPI(name="a", accepted={token})
    await api.start()
    api.apply("services", service("web", lb_ips=["192.0.2.10"]))
    api.apply("endpointslices", endpoint_slice("web", ready=2))
    return api


async def _start(kube: Harness, api: TokenAuthAPI, kubeconfig: str,
                 options: KubeOptions = OPTIONS,
                 registry: CollectorRegistry | None = None) -> None:
    kube.api = api  # the harness kills it at the end
    await kube.start(options=options, registry=registry, kubeconfig=kubeconfig, context="fed-a")
    await kube.wait_for(lambda r: r.synced and r.reachable and shard(r, "web") is not None)


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
    await kube.eventually(lambda: bool(api.presented(NEW)), within=5.0)
    # then the old token is revoked, and the streams opened with it end
    api.accept(NEW)
    revoked = time.time()
    api.drop_watches()
    rewatched = ("services", "endpointslices", "ingresses")
    await kube.eventually(lambda: {r.path.rsplit("/", 1)[-1] for r in api.presented(NEW)
                                   if r.at > revoked and r.accepted} >= set(rewatched), within=5.0)

    assert api.refused() == [], api.refused()[:3]  # never sent the old token after the swap
    assert all(r.reachable and shard(r, "web") is not None for r in kube.reports[seen:])
    assert len(_reloads(caplog, "file_changed")) == 1, caplog.messages
    _no_token_logged(caplog)


async def test_kubeconfig_swapped_as_the_old_token_is_revoked_keeps_shards_in_dns(
    tmp_path: object, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    grace = 3.0
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
        await _published(engine, _web_healthy, within=10.0)
        since = len(seen)
        started = time.time()
        api.accept(NEW)  # revoked, and the Secret swapped, at once
        api.drop_watches()
        write_token_kubeconfig(path, context="fed-a", server=api.url, token=NEW)
        await _published(engine, lambda s: s.clusters[0].reachable
                         and (s.clusters[0].last_contact or 0) > started
                         and not api.refused(time.time() - 0.5), within=grace)
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
    api.drop_watches()
    await kube.eventually(lambda: bool(api.presented(NEW)), within=5.0)
    revoked = time.time()
    await kube.wait_for(lambda r: r.reachable and r.last_contact is not None
                        and r.last_contact > revoked, within=5.0)

    assert 2 <= plugin.runs <= 3, plugin.runs  # once per reload, not once per request
    assert all(shard(r, "web") is not None for r in kube.reports[seen:])  # kept meanwhile
    assert len(_reloads(caplog, "unauthorized")) == plugin.runs - 1
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
                               and "credentials reloaded" in (r.last_error or ""), within=5.0)
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
    most = elapsed * (1 / OPTIONS.heartbeat_interval + 3 / (OPTIONS.backoff_cap / 2)) + 10
    assert len(refused) <= most, (len(refused), most)
    reloads = registry.get_sample_value("fedns_kube_credential_reloads_total",
                                        {"cluster": "a", "reason": "unauthorized"})
    assert reloads is not None and reloads == plugin.runs - 1

    # valid credentials appear: back within one interval
    plugin.set_token(NEWER)
    api.accept(NEWER)
    appeared = time.time()
    up = await kube.wait_for(lambda r: r.reachable and r.last_contact is not None
                             and r.last_contact > appeared, within=RELOAD_EVERY + 3.0)
    assert up.last_error is None
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
                                      for m in caplog.messages), within=5.0)
    api.drop_watches()  # reconnect: still with the old, working, token
    await kube.eventually(lambda: len(api.presented(OLD)) > 20, within=5.0)
    assert api.refused() == []
    assert all(r.reachable and shard(r, "web") is not None for r in kube.reports[seen:])

    # fixed: picked up
    api.accept(OLD, NEW)
    write_token_kubeconfig(path, context="fed-a", server=api.url, token=NEW)
    await kube.eventually(lambda: bool(api.presented(NEW)), within=5.0)
    _no_token_logged(caplog)


async def test_reload_wakes_watches_waiting_out_a_long_backoff(kube: Harness) -> None:
    # retries of a watch back off from 2 s: after two 401s the next waits 2-4 s
    slow = replace(OPTIONS, backoff_base=2.0, backoff_cap=10.0)
    api, path = await _token_source(kube, slow)
    watched = ("services", "endpointslices", "ingresses")

    api.accept()  # revoked; the replacement comes a little later
    api.drop_watches()

    def refused_twice() -> bool:
        paths = [r.path.rsplit("/", 1)[-1] for r in api.refused()]
        return all(paths.count(res) >= 2 for res in watched)

    await kube.eventually(refused_twice, within=10.0)
    api.accept(NEW)
    fixed = time.monotonic()
    write_token_kubeconfig(path, context="fed-a", server=api.url, token=NEW)

    def rewatched() -> bool:
        return {r.path.rsplit("/", 1)[-1] for r in api.presented(NEW)} >= set(watched)

    await kube.eventually(rewatched, within=10.0)
    # woken by the reload, not after the 2 s or more left of their backoff
    assert time.monotonic() - fixed < 1.5
    await kube.wait_for(lambda r: r.reachable, within=5.0)


def test_exec_plugin_that_fails_is_a_kubeconfig_error_not_a_client_without_credentials(
    tmp_path: object,
) -> None:
    plugin = write_exec_plugin(str(tmp_path), OLD)
    os.remove(plugin.token_file)  # the plugin now exits 1
    path = write_exec_kubeconfig(os.path.join(str(tmp_path), "exec.kubeconfig"),
                                 context="fed-a", server="http://127.0.0.1:9",
                                 command=plugin.command)
    with pytest.raises(KubeconfigError, match="the exec plugin gave no credentials"):
        load_client(path, "fed-a", FAST)
    assert plugin.runs == 1
