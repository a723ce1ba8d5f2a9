"""SPEC §4 ``cluster_grace`` counted from the onset of a failure: one slow
heartbeat or one watch error must not take a cluster's shards out of DNS
(and back), while an API server that hangs for good still takes them out
within about the heartbeat timeout plus the grace.

The engine watches one simulated cluster (real ``kubernetes`` client, HTTP
wire level) and every published Snapshot is recorded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace

import pytest

from healthwatch.engine import Engine
from healthwatch.kube import KubeOptions, KubeSource
from healthwatch.snapshot import ClusterStatus, ShardStatus, Snapshot
from tests.fakekube import endpoint_slice, service
from tests.fakekube.slow_version import SlowVersionAPI
from tests.healthwatch.kube.harness import FAST, Harness, one_cluster
from tests.healthwatch.kube.test_engine_kube import _published

GRACE = 1.0
WEB = "default/web"


@dataclass
class Watched:
    api: SlowVersionAPI
    engine: Engine
    seen: list[Snapshot]  # every Snapshot published since ``record()``
    recording: bool = False

    def record(self) -> None:
        self.seen.clear()
        self.recording = True


async def _start(tmp: str, options: KubeOptions, grace: float) -> tuple[SlowVersionAPI, Engine]:
    api = SlowVersionAPI(name="a")
    await api.start()
    api.apply("services", service("web", lb_ips=["192.0.2.10"]))
    api.apply("endpointslices", endpoint_slice("web", ready=2))
    config = one_cluster(api, tmp, grace)
    engine = Engine(config, source_factory=lambda c, cfg: KubeSource(c, cfg, options))
    await engine.start()
    return api, engine


Make = Callable[..., Awaitable[Watched]]


@pytest.fixture
async def make(tmp_path: object) -> AsyncIterator[Make]:
    """Starts an engine on one simulated cluster running ``web`` and waits
    until ``web`` is published healthy."""
    made: list[Watched] = []

    async def start(options: KubeOptions, grace: float = GRACE) -> Watched:
        api, engine = await _start(str(tmp_path), options, grace)
        w = Watched(api, engine, [])
        made.append(w)
        engine.subscribe(lambda s: w.seen.append(s) if w.recording else None)
        await _published(engine, _healthy, within=10.0)
        return w

    yield start
    for w in made:
        await w.engine.stop()
        await w.api.kill()


def _web(snap: Snapshot) -> ShardStatus | None:
    return next((s for s in snap.shards if s.service == WEB), None)


def _healthy(snap: Snapshot) -> bool:
    s = _web(snap)
    return s is not None and s.healthy


def _cluster(snap: Snapshot) -> ClusterStatus:
    return snap.clusters[0]


def _flips(w: Watched) -> list[str]:
    """The published verdicts of ``web`` that were not healthy."""
    return [f"serial {s.serial}: {_web(s)!r}" for s in w.seen if not _healthy(s)]


async def _blip(w: Watched, error: str) -> None:
    """Wait until a Snapshot shows the cluster failing with ``error``, then one
    showing it reachable again."""
    await _published(w.engine, lambda s: not _cluster(s).reachable
                     and (_cluster(s).last_error or "").startswith(error), within=5.0)
    await _published(w.engine, lambda s: _cluster(s).reachable, within=5.0)


# heartbeat_interval + heartbeat_timeout > cluster_grace, as with the defaults
# (2 s + 2 s > 3 s): a grace counted from the last good heartbeat has already
# run out when the slow one is given up on.
SLOW_HEARTBEAT = replace(FAST, heartbeat_interval=1.0, heartbeat_timeout=0.5, watch_settle=0.2)


async def test_one_slow_heartbeat_takes_no_shard_out(make: Make) -> None:
    w: Watched = await make(SLOW_HEARTBEAT)
    w.record()
    w.api.slow_version(4 * SLOW_HEARTBEAT.heartbeat_timeout, times=1)
    await _blip(w, "API not answering")
    assert len(w.api.slow_started) == 1
    assert not _flips(w), _flips(w)
    assert _healthy(w.engine.snapshot)


async def test_default_knobs_ride_over_one_slow_heartbeat(make: Make) -> None:
    """The defaults (heartbeat interval 2 s, timeout 2 s, backoff_base 250 ms,
    cluster_grace 3 s), halved."""
    halved = replace(FAST, heartbeat_interval=1.0, heartbeat_timeout=1.0, backoff_base=0.125,
                     backoff_cap=15.0, watch_settle=0.5)
    w = await make(halved, grace=1.5)
    w.record()
    w.api.slow_version(4 * halved.heartbeat_timeout, times=1)
    await _blip(w, "API not answering")
    assert not _flips(w), _flips(w)


QUIET_WATCH = replace(FAST, heartbeat_interval=0.2, heartbeat_timeout=0.5, watch_settle=0.2)


@pytest.mark.parametrize("how", ["error_event", "reset_then_500"])
async def test_one_watch_error_takes_no_shard_out(make: Make, how: str) -> None:
    w: Watched = await make(QUIET_WATCH)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 5.0
    while w.api.open_watches("services") == 0:  # the watch follows the list at once
        assert loop.time() < deadline, "services watch never opened"
        await asyncio.sleep(0.01)
    # A quiet cluster: the last services event is older than the grace when
    # the watch fails (the scenario, not a synchronisation).
    await asyncio.sleep(GRACE + 2 * QUIET_WATCH.watch_settle)
    w.record()
    if how == "error_event":
        assert w.api.inject_event("services", "ERROR", {
            "kind": "Status", "code": 500, "message": "etcdserver: leader changed"}) == 1
        error = "watch services: ERROR event 500"
    else:
        w.api.fail("services", 500, on="watch", times=1)
        assert w.api.drop_watches("services") == 1
        error = "watch services: HTTP 500"
    await _blip(w, error)
    assert not _flips(w), _flips(w)


HUNG = replace(FAST, heartbeat_interval=0.2, heartbeat_timeout=0.3, watch_settle=0.2)


@pytest.mark.parametrize("how", ["hangs", "dies"])
async def test_lost_api_server_takes_shards_out_within_timeout_plus_grace(
        make: Make, how: str) -> None:
    w = await make(HUNG)
    began = time.time()
    if how == "hangs":
        w.api.pause()  # every request and open stream stalls, for good
    else:
        await w.api.kill()  # open watches reset, new connections refused
    try:
        snap = await _published(w.engine, lambda s: not _healthy(s), within=5.0)
        took = time.time() - began
    finally:
        w.api.resume()
    web = _web(snap)
    assert web is not None and web.reason.startswith("cluster unreachable for"), web
    assert not _cluster(snap).reachable and _cluster(snap).last_error, _cluster(snap)
    if how == "hangs":
        assert (_cluster(snap).last_error or "").startswith("API not answering"), _cluster(snap)
        # the first heartbeat sent after the hang began is given up on after
        # heartbeat_timeout; the grace runs from its sending (interval < timeout here)
        limit = HUNG.heartbeat_timeout + GRACE + 0.3
    else:
        limit = GRACE + 0.3  # the grace runs from the watches' reset
    assert took <= limit, f"shards left after {took:.2f}s, limit {limit:.2f}s"


async def test_hung_api_report_carries_the_send_time_of_the_failed_heartbeat_once(
        kube: Harness) -> None:
    """The source's side of it: ``unreachable_since`` is when the first failed
    heartbeat was sent (not the last success before it, not the moment it
    timed out), and heartbeats that keep failing do not emit new reports."""
    await kube.start()
    await kube.synced()
    paused = time.time()
    kube.api.pause()
    try:
        down = await kube.wait_for(lambda r: not r.reachable)
        noticed = time.time()
        since = down.unreachable_since
        assert since is not None and down.grace_from == since
        assert (down.last_error or "").startswith("API not answering")
        assert since >= paused - 0.05  # no heartbeat sent before the hang failed
        assert since <= noticed - FAST.heartbeat_timeout + 0.01  # sent, then timed out
        asked = _versions(kube)
        await kube.eventually(lambda: _versions(kube) >= asked + 2)  # two more failures
        assert kube.last is down
    finally:
        kube.api.resume()
    up = await kube.wait_for(lambda r: r.reachable)
    assert up.unreachable_since is None and up.last_contact is not None
    assert up.last_contact > since


def _versions(kube: Harness) -> int:
    return sum(r.path.rstrip("/") == "/version" for r in kube.api.requests)
