"""The one sync loop shared by every provider.

read current → plan → safety check → apply → re-read, in the shape of
external-dns' controller.  Snapshots are debounced; transient errors are
retried with jittered exponential backoff and counted; a conflict (the zone
changed under us) leads to re-read and re-plan; per-record rejections are
reported while the rest of the plan proceeds.  The background loop never
raises into its owner: failures land in ``status()`` and the metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from config.model import Provider
from healthwatch.snapshot import Record, Snapshot
from healthwatch.tasks import cancel
from providers.backend import ApplyResult, Backend, Current, RecordError
from providers.batching import backoff_delay
from providers.errors import (
    ConflictError,
    PermanentError,
    ProviderError,
    TransientError,
    UnsafePlanError,
)
from providers.metrics import ProviderMetrics
from providers.plan import Plan, Skipped, check_safety, make_plan
from providers.rrset import RRKey, RRSet, group

T = TypeVar("T")
# what to publish: records (grouped into sets here) or record sets as they are
DesiredFn = Callable[[Snapshot], list[Record] | Mapping[RRKey, RRSet]]
MAX_REPLANS = 3


@dataclass(frozen=True, slots=True)
class SyncResult:
    plan: Plan
    applied: int = 0
    errors: tuple[RecordError, ...] = field(default=())
    residual: int = 0  # changes still planned after the re-read (0 when converged)
    dry_run: bool = False
    refused: str | None = None  # dry run only: why a real sync would refuse this plan


class Syncer:
    """Keeps one provider in step with the newest Snapshot."""

    def __init__(
        self,
        backend: Backend,
        provider: Provider,
        desired: DesiredFn,
        metrics: ProviderMetrics,
        *,
        retries: int = 4,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        resync_interval: float = 300.0,
        rng: random.Random | None = None,
    ) -> None:
        self.backend = backend
        self.provider = provider
        self.name = provider.name
        self._desired = desired
        self._metrics = metrics
        self._retries = max(1, retries)
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._resync = resync_interval
        self._rng = rng or random.Random()
        self._log = logging.getLogger(f"providers.{provider.type}[{provider.name}]")
        self._latest: Snapshot | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._failures = 0
        self._failed_kind = ""  # the kind of the last failed pass (for _run's log line)
        self._status: dict[str, Any] = {
            "provider": provider.name, "type": provider.type, "state": "pending",
            "serial": None, "last_sync": None, "last_success": None, "last_error": None,
            "last_changes": {}, "record_errors": [], "skipped": 0, "syncs": 0, "errors": 0,
        }
        metrics.up.labels(self.name).set(0)
        if hasattr(backend, "on_retry"):  # backends that retry single calls count them here
            backend.on_retry = self._count_retry

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"syncer[{self.name}]")

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel(task)
        await self.backend.close()

    def publish(self, snapshot: Snapshot) -> None:
        """Record the newest Snapshot; the loop picks it up after the debounce."""
        self._latest = snapshot
        self._wake.set()

    def status(self) -> dict[str, Any]:
        return dict(self._status)

    # -- one sync ------------------------------------------------------------

    def plan(self, snapshot: Snapshot, current: Current) -> Plan:
        got = self._desired(snapshot)
        wanted = dict(got) if isinstance(got, Mapping) else group(got)
        refused = self.backend.check(wanted, current)
        desired = {k: rr for k, rr in wanted.items() if k not in refused}
        skipped = [Skipped(k[0], k[1], why) for k, why in sorted(refused.items())]
        return make_plan(self.name, desired, current.owned, current.foreign, tuple(skipped))

    async def sync_once(
        self, snapshot: Snapshot, *, force: bool = False, dry_run: bool = False,
        limit_updates: bool = True,
    ) -> SyncResult:
        """One full pass; raises ProviderError subclasses (UnsafePlanError when refused).

        ``limit_updates`` is passed to ``check_safety`` (see there).
        """
        async with self._lock:
            return await self._sync(snapshot, force, dry_run, limit_updates)

    async def _sync(
        self, snapshot: Snapshot, force: bool, dry_run: bool, limit_updates: bool = True
    ) -> SyncResult:
        started = time.monotonic()
        self._status["last_sync"] = time.time()
        self._status["syncs"] += 1
        try:
            result = await self._sync_steps(snapshot, force, dry_run, limit_updates)
        except UnsafePlanError as e:
            self._fail("unsafe", e, state="refused")
            raise
        except ConflictError as e:
            self._fail("conflict", e)
            raise
        except TransientError as e:
            self._fail("transient_exhausted", e)
            raise
        except PermanentError as e:
            self._fail("permanent", e)
            raise
        finally:
            self._metrics.sync_duration.labels(self.name).observe(time.monotonic() - started)
        if not dry_run:
            self._succeed(snapshot, result)
        return result

    async def _sync_steps(
        self, snapshot: Snapshot, force: bool, dry_run: bool, limit_updates: bool
    ) -> SyncResult:
        conflicts = transient = 0
        while True:
            current = await self._retry("read", self.backend.read)
            plan = self.plan(snapshot, current)
            if dry_run:
                try:
                    check_safety(plan, self.provider.max_change_fraction, force,
                                 limit_updates=limit_updates)
                except UnsafePlanError as e:
                    return SyncResult(plan, dry_run=True, refused=e.reason)
                return SyncResult(plan, dry_run=True)
            check_safety(plan, self.provider.max_change_fraction, force,
                                 limit_updates=limit_updates)
            if plan.empty:
                return SyncResult(plan)
            self._log.info("apply counts=%s owned=%d serial=%d", plan.counts(), plan.owned,
                           snapshot.serial)
            # A failed apply may have landed in part: always re-read and re-plan
            # instead of replaying a plan that no longer matches the zone.
            try:
                res = await self.backend.apply(plan, current)
            except ConflictError as e:
                conflicts += 1
                self._metrics.errors.labels(self.name, "conflict").inc()
                self._log.warning("conflict attempt=%d detail=%s", conflicts, e.detail)
                if conflicts >= MAX_REPLANS:
                    raise
                continue
            except TransientError as e:
                transient += 1
                self._metrics.errors.labels(self.name, "transient").inc()
                if transient >= self._retries:
                    raise
                delay = self._delay(transient - 1)
                self._log.info("retry op=apply attempt=%d delay=%.2f detail=%s",
                               transient, delay, e.detail)
                await asyncio.sleep(delay)
                continue
            return await self._verify(snapshot, plan, res)

    async def _verify(self, snapshot: Snapshot, plan: Plan, res: ApplyResult) -> SyncResult:
        failed = {(e.name, e.rtype) for e in res.errors}
        for ch in plan.changes:
            if ch.key not in failed:
                self._metrics.changes.labels(self.name, ch.action).inc()
        if res.errors:  # counted here, logged by _run (``_log_rejected``)
            self._metrics.errors.labels(self.name, "record").inc(len(res.errors))
        after = await self._retry("read", self.backend.read)
        residual = self.plan(snapshot, after)
        left = len([c for c in residual.changes if c.key not in failed])
        if left:
            self._log.warning("not_converged residual=%d", left)
        return SyncResult(plan, res.applied, res.errors, left)

    async def _retry(self, op: str, fn: Callable[[], Awaitable[T]]) -> T:
        for attempt in range(self._retries):
            try:
                return await fn()
            except TransientError as e:
                self._metrics.errors.labels(self.name, "transient").inc()
                if attempt + 1 == self._retries:
                    raise
                delay = self._delay(attempt)
                self._log.info("retry op=%s attempt=%d delay=%.2f detail=%s",
                               op, attempt + 1, delay, e.detail)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    def _count_retry(self, kind: str) -> None:
        self._metrics.errors.labels(self.name, kind).inc()

    def _delay(self, attempt: int) -> float:
        return backoff_delay(attempt, self._backoff, self._max_backoff, self._rng)

    def _fail(self, kind: str, err: ProviderError, state: str = "error") -> None:
        """Count and record a failed pass. It is logged by the background loop
        (``_run``), not here: a caller of ``sync_once`` (``fedns sync --once``)
        reports the raised error itself, so a log line would repeat it."""
        self._metrics.errors.labels(self.name, kind).inc()
        self._metrics.up.labels(self.name).set(0)
        self._status.update(state=state, last_error=str(err))
        self._failed_kind = kind
        self._status["errors"] += 1

    def _log_rejected(self, result: SyncResult) -> None:
        """One ``record_rejected`` line per change the service rejected, by the
        background loop only: a caller of ``sync_once`` (``fedns sync --once``)
        reports ``SyncResult.errors`` itself, as it does a failed pass."""
        for e in result.errors:
            self._log.warning("record_rejected name=%s type=%s action=%s reason=%s",
                              e.name, e.rtype, e.action, e.reason)

    def _succeed(self, snapshot: Snapshot, result: SyncResult) -> None:
        now = time.time()
        self._metrics.up.labels(self.name).set(1)
        self._metrics.last_success.labels(self.name).set(now)
        self._status.update(
            state="ok" if not result.errors else "partial",
            serial=snapshot.serial, last_success=now, last_error=None,
            last_changes=result.plan.counts(), skipped=len(result.plan.skipped),
            record_errors=[e.to_json() for e in result.errors[:20]],
        )

    # -- background loop -----------------------------------------------------

    async def _run(self) -> None:
        debounce = self.provider.debounce if self.provider.debounce >= 0 else 1.0
        while True:
            timeout = self._resync if self._failures == 0 else self._delay(
                min(self._failures, 8))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self._wake.wait()
            if self._latest is None:
                continue
            await asyncio.sleep(debounce)
            self._wake.clear()
            snapshot = self._latest
            try:
                # Health-driven failovers must reach the provider unattended:
                # only deletes are limited here (fedns sync --once limits both).
                result = await self.sync_once(snapshot, limit_updates=False)
                self._failures = 0
                self._log_rejected(result)
            except ProviderError as e:
                self._failures += 1
                self._log.warning("sync_failed kind=%s error=%s", self._failed_kind, e)
            except Exception as e:  # a bug or an SDK surprise must not kill the loop
                self._failures += 1
                self._metrics.errors.labels(self.name, "internal").inc()
                self._metrics.up.labels(self.name).set(0)
                self._status.update(state="error", last_error=f"internal: {e!r}")
                self._status["errors"] += 1
                self._log.exception("sync_crashed error=%r", e)
