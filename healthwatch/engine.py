"""The health engine: sources + probes + hysteresis + drains -> Snapshots.

One ``Engine`` owns every background task of healthwatch: one per source,
one probe loop per probed shard, the planner loop and the state writer.
Any change (a report, a probe transition, a drain, a reload, a cluster's
grace running out) marks the engine dirty; the planner loop re-plans at once
for a lone change and coalesces what follows within ``COALESCE`` seconds of
the last plan into one re-plan, publishing if anything changed, so a change
is published well within 100 ms. Queries never plan.

SOA serial: every published change gets ``max(previous + 1, int(unix time))``,
so it grows on every change and across restarts.

With a state dir, the last published Snapshot is persisted (write-then-rename)
and served, marked stale, after a restart until every source has reported
(synced once, or declared unreachable after ``cluster_grace``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import logging
import operator
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from prometheus_client import CollectorRegistry

from config.model import Cluster, Config, Probe
from healthwatch.drains import (
    DeclaredDrainError,
    DeclaredDrains,
    Drains,
    DrainSet,
    check_duration,
    check_reason,
)
from healthwatch.errors import HealthwatchError, InvalidDrainError, UnknownClusterError
from healthwatch.hostnames import ResolvingSource
from healthwatch.hysteresis import ProbeState
from healthwatch.interfaces import ContactSource, Source
from healthwatch.metrics import HealthMetrics
from healthwatch.model import HOST_KINDS, ClusterReport, ShardHealth, split_service
from healthwatch.planner import Planner, ShardKey, global_name, plan, same_but_soa
from healthwatch.probes import Prober, describe_probe
from healthwatch.snapshot import ClusterStatus, Snapshot
from healthwatch.sources import make_source
from healthwatch.state import StateStore
from healthwatch.tasks import cancel_all

log = logging.getLogger("healthwatch.engine")

COALESCE = 0.02  # seconds a burst of changes is collected before one re-plan
MAX_START_JITTER = 0.25  # first probe of a shard within this many seconds
SOURCE_START_TIMEOUT = 10.0
SOURCE_STOP_TIMEOUT = 5.0
DRAIN_TIMER_MAX = 60.0  # seconds: the drain expiry timer re-checks at least this often

SourceFactory = Callable[[Cluster, Config], Source]
Subscriber = Callable[[Snapshot], None]


@dataclass(slots=True)
class _SourceRun:
    cluster: Cluster
    source: Source | None
    synced: bool = False  # this run of the source has synced once


@dataclass(slots=True)
class _ProbeRun:
    cluster: str
    probe: Probe
    interval: float
    timeout: float
    state: ProbeState
    task: asyncio.Task[None] | None = None
    last: str = ""  # last result detail, for status()
    last_at: float = 0.0


def next_serial(previous: int, now: float) -> int:
    return max(previous + 1, int(now))


class Engine:
    """Watches every configured cluster and publishes Snapshots."""

    def __init__(
        self,
        config: Config,
        *,
        registry: CollectorRegistry | None = None,
        state_dir: str | None = None,
        source_factory: SourceFactory | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._clock = clock
        # the default factory gets the registry too (per-cluster watch metrics)
        self._source_factory: SourceFactory = source_factory or functools.partial(
            make_source, registry=registry)
        self._store = StateStore(state_dir if state_dir is not None else config.state_dir)
        self._drains = Drains(self._store)  # the API's: this process, persisted
        self._drains.load()
        self._drains.expire(clock(), at_start=True)
        # the config's and the annotations': every replica reads them alike
        self._declared_drains = DeclaredDrains()
        self._declared_drains.configure(config, clock())
        self._drain_timer: asyncio.TimerHandle | None = None
        self._metrics = HealthMetrics(registry) if registry is not None else None
        self._sources: dict[str, _SourceRun] = {}
        self._reports: dict[str, ClusterReport] = {}
        self._synced: set[str] = set()
        self._declared: set[str] = set()  # declared unreachable: never synced in time
        self._probes: dict[ShardKey, _ProbeRun] = {}
        # verdicts of probes that reported, one object per verdict (the planner
        # diffs them by identity)
        self._health: dict[ShardKey, ShardHealth] = {}
        self._planner = Planner()  # incremental; used by one plan at a time
        self._plan_lock = threading.Lock()
        self._subscribers: list[Subscriber] = []
        self._prober = Prober()
        self._dirty = asyncio.Event()
        self._last_planned = 0.0  # time.monotonic() when the last plan finished
        self._persist_wanted: Snapshot | None = None
        self._persist_event = asyncio.Event()
        self._write: asyncio.Future[bool] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._running = False
        self._started_at = clock()
        if any(c.source == "kubernetes" for c in config.clusters):
            # the kubernetes client takes seconds to import; done here, before
            # anyone serves DNS, it cannot freeze the loop that answers queries
            with contextlib.suppress(ImportError):
                importlib.import_module("healthwatch.kube")
        now = clock()
        stale = self._store.load_snapshot(config.zone)
        if stale is not None:
            log.info("state_loaded serial=%d shards=%d", stale.serial, len(stale.shards))
            self._snapshot = stale
        else:
            self._snapshot = plan(config, {}, {}, self.drains, int(now), now)
        if self._metrics is not None:  # served from now on, before any publish
            self._metrics.snapshot_serial.set(self._snapshot.serial)
            self._metrics.snapshot_timestamp.set(self._snapshot.generated_at)
            self._metrics.snapshot_stale.set(1 if self._snapshot.stale else 0)

    # -- public API --------------------------------------------------------------

    @property
    def config(self) -> Config:
        return self._config

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def ready(self) -> bool:
        """Every source has synced once or was declared unreachable."""
        return all(c.name in self._synced or c.name in self._declared
                   for c in self._config.clusters)

    def subscribe(self, callback: Subscriber) -> None:
        """``callback(snapshot)`` runs on the event loop after every publish."""
        self._subscribers.append(callback)

    async def start(self) -> None:
        if self._running:
            return
        self._running = True
        self._started_at = self._clock()
        await self._prober.start()
        self._tasks.append(asyncio.create_task(self._planner_loop(), name="healthwatch.planner"))
        self._tasks.append(asyncio.create_task(self._writer_loop(), name="healthwatch.state"))
        for cluster in self._config.clusters:
            await self._start_source(cluster)
        self.expire_drains()  # also arms the timer for the next expiry
        self._mark_dirty()
        log.info("engine_started clusters=%d stale=%s", len(self._config.clusters),
                 self._snapshot.stale)

    async def stop(self) -> None:
        if not self._running:
            return
        self._running = False
        self._arm_drain_timer()  # stopped: cancels it
        probe_tasks = [r.task for r in self._probes.values() if r.task is not None]
        for run in list(self._probes.values()):
            self._cancel_probe(run)
        self._probes.clear()
        self._health.clear()
        for name in list(self._sources):
            await self._stop_source(name)
        tasks, self._tasks = self._tasks, []
        await cancel_all([*tasks, *probe_tasks])
        if self._write is not None:  # a write in flight finishes first
            await asyncio.gather(self._write, return_exceptions=True)
            self._write = None
        if self._persist_wanted is not None:  # flush the newest snapshot
            snap, self._persist_wanted = self._persist_wanted, None
            await asyncio.to_thread(self._store.save_snapshot, snap)
        await self._prober.stop()
        log.info("engine_stopped serial=%d", self._snapshot.serial)

    @property
    def drains(self) -> DrainSet:
        """Every drain in force, with its source, reason, start and expiry: the
        API's (this process's, persisted) with the config's and the
        annotations' (every replica's alike). Either set alone when the other
        is empty (``DrainSet.union``), as it usually is."""
        return self._drains.current.union(self._declared_drains.current)

    def drain(self, cluster: str, service: str | None = None, *, reason: str = "",
              duration: float | None = None, by: str = "") -> Snapshot:
        """Drain a cluster or one shard (``service`` = "ns/name"); persisted.

        ``duration`` (seconds) makes it end by itself; ``by`` says who asked.
        Draining it again replaces its expiry (and reason, if one is given):
        nothing is published then, as nothing served changes.
        """
        self._check_drain(cluster, service)
        reason = check_reason(reason)
        now = self._clock()
        until = None if duration is None else now + check_duration(duration)
        if self._drains.drain(cluster, service, now=now, reason=reason, until=until, by=by):
            self._replan()
        self._arm_drain_timer()
        return self._snapshot

    def undrain(self, cluster: str, service: str | None = None, *, by: str = "") -> Snapshot:
        """End the API's drain of a cluster or shard. A drained name is always
        accepted, so the drain of a cluster since removed from the config can be
        ended; an unknown, undrained cluster is an UnknownClusterError like a
        drain's. A target that only the config or an annotation drains is a
        DeclaredDrainError saying where to end it: the API cannot (the config's
        and annotation drains of a target the API drains too stay)."""
        if self._drains.current.get(cluster, service) is None:
            declared = self._declared_drains.current.drains_of(cluster, service)
            if declared:
                raise DeclaredDrainError(
                    target=declared[0].target,
                    origins=tuple(self._declared_drains.origin(d) for d in declared))
            self._check_drain(cluster, service)
        if self._drains.undrain(cluster, service, now=self._clock(), by=by):
            self._replan()
        self._arm_drain_timer()
        return self._snapshot

    def expire_drains(self) -> Snapshot:
        """End every drain whose expiry has passed (the API's ``for``, the
        config's ``until``), publish, and re-arm the timer for the next one (the
        timer calls this; so may a test with its own clock)."""
        now = self._clock()
        api = self._drains.expire(now)
        if self._declared_drains.expire(now) or api:
            self._replan()
        self._arm_drain_timer()
        return self._snapshot

    def _arm_drain_timer(self) -> None:
        """One loop timer, at the earliest expiry (at most DRAIN_TIMER_MAX away, so
        a wall-clock step cannot delay an expiry by long); none when stopped."""
        if self._drain_timer is not None:
            self._drain_timer.cancel()
            self._drain_timer = None
        times = [t for t in (self._drains.current.next_expiry(),
                             self._declared_drains.next_expiry()) if t is not None]
        at = min(times) if times else None
        if not self._running or at is None:
            return
        delay = min(max(0.0, at - self._clock()) + 0.001, DRAIN_TIMER_MAX)
        self._drain_timer = asyncio.get_running_loop().call_later(delay, self.expire_drains)

    async def reload(self, new_config: Config) -> Snapshot:
        """Switch to ``new_config``: restart only the sources and probes that changed."""
        old, self._config = self._config, new_config
        if self._running:
            new_by_name = {c.name: c for c in new_config.clusters}
            for name, run in list(self._sources.items()):
                cluster = new_by_name.get(name)
                if cluster is None or cluster != run.cluster or _knobs_changed(
                        old, run.cluster, new_config, cluster):
                    await self._stop_source(name)
            for cluster in new_config.clusters:
                if cluster.name not in self._sources:
                    await self._start_source(cluster)
        for name in list(self._reports):
            if name not in {c.name for c in new_config.clusters}:
                self._forget(name)
        self._declared_drains.configure(new_config, self._clock())
        if old.health != new_config.health:
            for prun in self._probes.values():
                prun.state.rise = max(1, new_config.health.rise)
                prun.state.fall = max(1, new_config.health.fall)
        self._sync_probes()
        self._replan()
        self._arm_drain_timer()  # the config's drains may expire at other times now
        log.info("engine_reloaded clusters=%d serial=%d", len(new_config.clusters),
                 self._snapshot.serial)
        return self._snapshot

    def status(self) -> dict[str, Any]:
        """Engine-side detail for ``/v1/status``."""
        snap = self._snapshot
        now = self._clock()
        probes = []
        for key, run in sorted(self._probes.items()):
            probes.append({
                "cluster": key[0], "kind": key[1], "service": f"{key[2]}/{key[3]}",
                "probe": describe_probe(run.probe), "up": run.state.up,
                "reason": run.state.reason, "passes": run.state.passes,
                "fails": run.state.fails, "last_result": run.last,
                "last_at": run.last_at or None,
            })
        return {
            "ready": self.ready,
            "serial": snap.serial,
            "generated_at": snap.generated_at,
            "age_seconds": round(max(0.0, now - snap.generated_at), 3),
            "stale": snap.stale,
            "failovers": list(snap.failovers),
            "sources": {
                c.name: {
                    "source": c.source,
                    "synced": c.name in self._synced,
                    "declared_unreachable": c.name in self._declared,
                    "hostnames": self._hostnames(c.name),
                }
                for c in self._config.clusters
            },
            "probes": probes,
            "drains": self._drains.current.to_dict(),
            "state_dir": self._store.state_dir,
            "state_problems": list(self._store.problems),
        }

    def last_contacts(self) -> dict[str, float]:
        """Per running source that contacts an API (``ContactSource``): its live
        last contact time. Newer than the Snapshot's, which holds the time of
        the source's last *report* (a quiet cluster reports rarely)."""
        out: dict[str, float] = {}
        for name, run in self._sources.items():
            if isinstance(run.source, ContactSource):
                at = run.source.last_contact
                if at is not None:
                    out[name] = at
        return out

    def _hostnames(self, cluster: str) -> list[dict[str, Any]]:
        """The cluster's LB hostnames and their resolution (``ResolvingSource``)."""
        run = self._sources.get(cluster)
        source = run.source if run is not None else None
        return source.status() if isinstance(source, ResolvingSource) else []

    # -- sources -----------------------------------------------------------------

    async def _start_source(self, cluster: Cluster) -> None:
        run = _SourceRun(cluster, None)
        self._sources[cluster.name] = run
        try:
            source = self._source_factory(cluster, self._config)
        except Exception as exc:
            self._source_failed(cluster.name, exc)
            return
        run.source = source

        def emit(report: ClusterReport) -> None:
            if self._sources.get(cluster.name) is run and self._running:
                if report.synced:
                    run.synced = True
                elif not run.synced:
                    report = self._carry_over(report)
                self._on_report(report)

        try:
            async with asyncio.timeout(SOURCE_START_TIMEOUT):
                await source.start(emit)
        except Exception as exc:
            self._source_failed(cluster.name, exc)

    def _carry_over(self, report: ClusterReport) -> ClusterReport:
        """A report of a source that has not synced yet, with the shards that the
        cluster's previous source knew (a reload restarted it) instead of its
        own partial ones: they stay published, judged by the grace since the
        last contact, instead of vanishing (or losing their ready endpoints)
        until the new source syncs, or for good if its kubeconfig context is
        gone."""
        prev = self._reports.get(report.cluster)
        if prev is None or not prev.shards:
            return report
        return replace(report, shards=prev.shards,
                       last_contact=report.last_contact or prev.last_contact,
                       region=report.region or prev.region, zone=report.zone or prev.zone)

    def _source_failed(self, name: str, exc: BaseException) -> None:
        why = str(exc) or type(exc).__name__
        log.error("source_failed cluster=%s error=%r", name, why)
        prev = self._reports.get(name)
        self._reports[name] = ClusterReport(
            cluster=name, shards=prev.shards if prev else (), synced=False, reachable=False,
            last_contact=prev.last_contact if prev else None, last_error=why)
        self._declared.add(name)
        self._mark_dirty()

    async def _stop_source(self, name: str) -> None:
        run = self._sources.pop(name, None)
        if run is None or run.source is None:
            return
        try:
            async with asyncio.timeout(SOURCE_STOP_TIMEOUT):
                await run.source.stop()
        except Exception as exc:
            log.warning("source_stop_failed cluster=%s error=%r", name, exc)

    def _forget(self, name: str) -> None:
        self._reports.pop(name, None)
        self._synced.discard(name)
        self._declared.discard(name)
        self._declared_drains.forget(name, self._clock())

    def _on_report(self, report: ClusterReport) -> None:
        name = report.cluster
        prev = self._reports.get(name)
        self._reports[name] = report
        if report.synced and name not in self._synced:
            self._synced.add(name)
            self._declared.discard(name)
            log.info("source_synced cluster=%s shards=%d", name, len(report.shards))
        if prev is None or prev.reachable != report.reachable:
            log.info("source_reachable cluster=%s reachable=%s error=%r", name,
                     report.reachable, report.last_error)
        if prev is None or prev.shards != report.shards:
            self._sync_probes()
            # this cluster's annotation drains, from its own shards only
            self._declared_drains.observe(name, report.shards, self._clock())
        self._mark_dirty()

    # -- probes ------------------------------------------------------------------

    def _sync_probes(self) -> None:
        """Run exactly one probe loop per probed shard of a configured cluster."""
        h = self._config.health
        wanted: dict[ShardKey, Probe] = {}
        configured = {c.name for c in self._config.clusters}
        for name, report in self._reports.items():
            if name not in configured:
                continue
            for spec in report.shards:
                if spec.probe is not None and spec.cluster == name:
                    wanted[spec.key] = spec.probe
        for key, run in list(self._probes.items()):
            probe = wanted.get(key)
            if probe is None or probe != run.probe:
                self._cancel_probe(run)
                del self._probes[key]
                self._health.pop(key, None)
            elif (run.interval, run.timeout) != (h.interval, h.timeout):
                self._cancel_probe(run)
                run.interval, run.timeout = h.interval, h.timeout
                if self._running:
                    run.task = self._spawn_probe(key, run)
        for key, probe in wanted.items():
            if key not in self._probes:
                run = _ProbeRun(key[0], probe, h.interval, h.timeout, ProbeState(h.rise, h.fall))
                self._probes[key] = run
                if self._running:
                    run.task = self._spawn_probe(key, run)

    def _spawn_probe(self, key: ShardKey, run: _ProbeRun) -> asyncio.Task[None]:
        return asyncio.create_task(self._probe_loop(key, run),
                                   name=f"healthwatch.probe[{'/'.join(key)}]")

    @staticmethod
    def _cancel_probe(run: _ProbeRun) -> None:
        if run.task is not None:
            run.task.cancel()
            run.task = None

    async def _probe_loop(self, key: ShardKey, run: _ProbeRun) -> None:
        loop = asyncio.get_running_loop()
        await asyncio.sleep(random.uniform(0.0, min(run.interval, MAX_START_JITTER)))
        next_at = loop.time()
        while True:
            try:
                result = await self._prober.check(run.probe, run.timeout)
                ok, detail, took = result.ok, result.detail, result.latency
                kind = result.kind
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a probe bug must not kill the loop
                log.exception("probe_crashed shard=%s", "/".join(key))
                ok, detail, took, kind = False, f"error: {exc!r}"[:120], 0.0, "error"
            if run.task is not asyncio.current_task():
                # replaced or stopped while probing, and the cancellation was
                # lost inside the check (a 3.11 wait_for can lose one): end here
                return
            run.last, run.last_at = detail, self._clock()
            if self._metrics is not None:
                self._metrics.probe(run.cluster, kind, took)
            was = run.state.up
            if run.state.observe(ok, detail, self._clock()):
                if self._probes.get(key) is run:
                    self._health[key] = run.state.health()
                if was != run.state.up:
                    log.info("probe_transition shard=%s up=%s reason=%r", "/".join(key),
                             run.state.up, run.state.reason)
                self._mark_dirty()
            next_at += run.interval
            delay = next_at - loop.time()
            if delay < 0:
                next_at, delay = loop.time(), 0.0
            await asyncio.sleep(delay)

    # -- planning and publishing -------------------------------------------------

    def _mark_dirty(self) -> None:
        self._dirty.set()

    def _next_deadline(self, now: float) -> float | None:
        """Seconds until a verdict can change by time alone (grace running out)."""
        grace = self._config.health.cluster_grace
        times: list[float] = []
        if not self.ready:
            times.append(self._started_at + grace)
        for report in self._reports.values():
            since = report.grace_from
            if not report.reachable and since is not None:
                times.append(since + grace)
        future = [t - now for t in times if t > now]
        return min(future) + 0.005 if future else None

    async def _planner_loop(self) -> None:
        while True:
            wait = self._next_deadline(self._clock())
            try:
                async with asyncio.timeout(wait):
                    await self._dirty.wait()
            except TimeoutError:
                pass
            # leading edge: a lone change plans at once; a burst right after a
            # plan is collected until COALESCE has passed since that plan
            since = time.monotonic() - self._last_planned
            if since < COALESCE:
                await asyncio.sleep(COALESCE - since)
            await self._replan_off_loop()
            self._last_planned = time.monotonic()

    def _plan_inputs(self) -> tuple[Any, ...] | None:
        """Clear the dirty flag and capture what a plan needs (None: keep the stale one)."""
        self._dirty.clear()
        now = self._clock()
        if self._running:
            grace = self._config.health.cluster_grace
            for c in self._config.clusters:
                if (c.name not in self._synced and c.name not in self._declared
                        and now >= self._started_at + grace):
                    self._declared.add(c.name)
                    log.warning("source_declared_unreachable cluster=%s grace=%gs", c.name, grace)
        prev = self._snapshot
        if prev.stale and (not self.ready or not self._synced):
            # keep serving last-known-good until every source reported and at
            # least one really synced: all declared unreachable is no reason
            # to replace the persisted zone with an empty one
            return None
        return (self._config, dict(self._reports), dict(self._health), self.drains,
                next_serial(prev.serial, now), now, prev)

    def _plan(self, inputs: tuple[Any, ...]) -> Snapshot | None:
        """Plan with the incremental planner (one plan at a time: a drain on the
        loop waits for a worker's plan, usually milliseconds, rather than
        planning everything from scratch)."""
        with self._plan_lock:
            return _safe_plan(self._planner.plan, *inputs)

    def _replan(self) -> None:
        """Plan now, on the loop (drains, reloads); publish only if something changed."""
        inputs = self._plan_inputs()
        if inputs is not None:
            self._finish(inputs, self._plan(inputs))

    async def _replan_off_loop(self) -> None:
        """Plan in a worker thread so a large plan never stalls the event loop.

        Planning is pure, so it only needs the captured inputs; if anything was
        published meanwhile (a drain), the result is dropped and planned again.
        The incremental planner re-plans only what changed since its last call.
        """
        inputs = self._plan_inputs()
        if inputs is None:
            return
        cand = await asyncio.to_thread(self._plan, inputs)
        if self._snapshot is not inputs[-1]:
            self._mark_dirty()
            return
        self._finish(inputs, cand)

    def _finish(self, inputs: tuple[Any, ...], cand: Snapshot | None) -> None:
        """Publish ``cand`` (planned at the next serial) unless nothing changed."""
        prev: Snapshot = inputs[-1]
        if cand is None or (not prev.stale and _same(cand, prev)):
            return
        self._publish(cand)

    def _publish(self, snap: Snapshot) -> None:
        prev, self._snapshot = self._snapshot, snap
        # subscribers first: the DNS answers should not wait for bookkeeping
        for cb in list(self._subscribers):
            try:
                cb(snap)
            except Exception:
                log.exception("subscriber_failed serial=%d", snap.serial)
        new_failovers = sorted(set(snap.failovers) - set(prev.failovers))
        log.info("snapshot_published serial=%d names=%d changed=%s shards=%d healthy=%d "
                 "failovers=%d", snap.serial, len(snap.geo),
                 "all" if snap.changed is None else len(snap.changed), len(snap.shards),
                 sum(map(_healthy, snap.shards)), len(snap.failovers))
        if self._metrics is not None:
            self._metrics.published(snap, prev, [self._service_label(n) for n in new_failovers])
        if self._store.state_dir is not None:
            self._persist_wanted = snap
            self._persist_event.set()

    def _service_label(self, name: str) -> str:
        suffix = global_name(self._config, "", "").lstrip(".")  # "<F>.svc.<Z>"
        if name.endswith("." + suffix):
            parts = name[: -len(suffix) - 1].split(".")
            if len(parts) == 2:
                return f"{parts[1]}/{parts[0]}"
        for report in self._reports.values():
            for spec in report.shards:
                if spec.kind in HOST_KINDS and name in spec.hosts:
                    return spec.service
        return name

    async def _writer_loop(self) -> None:
        while True:
            await self._persist_event.wait()
            self._persist_event.clear()
            snap, self._persist_wanted = self._persist_wanted, None
            if snap is not None:
                # shielded: stop() cancels this loop but waits for the write
                self._write = asyncio.ensure_future(
                    asyncio.to_thread(self._store.save_snapshot, snap))
                await asyncio.shield(self._write)

    def _check_drain(self, cluster: str, service: str | None) -> None:
        if cluster not in {c.name for c in self._config.clusters}:
            raise UnknownClusterError(cluster=cluster)
        if service is not None:
            try:
                split_service(service)
            except ValueError as e:
                raise InvalidDrainError(service=service, why=str(e)) from None


_healthy = operator.attrgetter("healthy")


def _knobs_changed(old: Config, was: Cluster, new: Config, cluster: Cluster) -> bool:
    """Did the client knobs of a Kubernetes cluster (``was`` in ``old``,
    ``cluster`` in ``new``) change? They live in the threads of its running
    source, so a change restarts it, as a changed kubeconfig does; a
    cluster whose own ``kubernetes`` block overrides what changed at the top
    keeps running. Read through ``Config.kube_for``: a Cluster built in code
    carries no knobs and takes the top-level block."""
    return cluster.source == "kubernetes" and old.kube_for(was) != new.kube_for(cluster)


def _safe_plan(planner: Callable[..., Snapshot], config: Config,
               reports: dict[str, ClusterReport], health: dict[ShardKey, ShardHealth],
               drains: DrainSet, serial: int, now: float, prev: Snapshot) -> Snapshot | None:
    try:
        return planner(config, reports, health, drains, serial, now, previous=prev)
    except Exception:
        log.exception("plan_failed serial=%d action=keep_old_snapshot", serial)
        return None


def _same(a: Snapshot, b: Snapshot) -> bool:
    """Equal for publishing purposes (serial, SOA, time and contact times aside).

    When ``a`` names what changed since ``b`` (the planner's delta), an apex-only
    change means the records and answers are the same: no scan needed.
    """
    if a.changed is not None and a.base_serial == b.serial:
        if not a.changed <= {a.zone}:
            return False
    elif not (same_but_soa(a.records, b.records, a.zone) and a.geo == b.geo):
        return False
    return (a.localities == b.localities and a.failovers == b.failovers
            and a.shards == b.shards and _clusters(a.clusters) == _clusters(b.clusters))


def _clusters(cs: tuple[ClusterStatus, ...]) -> tuple[ClusterStatus, ...]:
    return tuple(replace(c, last_contact=None) for c in cs)


__all__ = ["Engine", "HealthwatchError", "next_serial"]
