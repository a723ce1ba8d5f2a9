"""The sync loop with an in-memory backend: debounce, retries, never raising."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import pytest

from providers.backend import ApplyResult, Current
from providers.delegation import delegation_records
from providers.errors import TransientError
from providers.factory import desired_records
from providers.metrics import ProviderMetrics
from providers.plan import Plan
from providers.rrset import RRKey, RRSet
from providers.syncer import Syncer
from tests.providers.helpers import ZONE, config, fed_snapshot, provider


class MemoryBackend:
    kind = "memory"

    def __init__(self, fail_reads: int = 0, fail_applies: int = 0) -> None:
        self.name = "mem"
        self.zone: dict[RRKey, RRSet] = {}
        self.fail_reads, self.fail_applies = fail_reads, fail_applies
        self.applies: list[Plan] = []

    async def read(self) -> Current:
        if self.fail_reads:
            self.fail_reads -= 1
            raise TransientError(self.name, "read", "down")
        return Current(ZONE, dict(self.zone))

    def check(self, desired: Mapping[RRKey, RRSet], current: Current) -> dict[RRKey, str]:
        return {}

    async def apply(self, plan: Plan, current: Current) -> ApplyResult:
        if self.fail_applies:
            self.fail_applies -= 1
            raise TransientError(self.name, "apply", "down")
        self.applies.append(plan)
        for ch in plan.changes:
            if ch.before is not None:
                self.zone.pop(ch.before.key, None)
            if ch.after is not None:
                self.zone[ch.after.key] = ch.after
        return ApplyResult(len(plan.changes), (), 1)

    async def close(self) -> None:
        pass


def make(backend: Any, **kw: Any) -> tuple[Syncer, ProviderMetrics]:
    p = provider("coredns-etcd", name="mem", **kw)
    metrics = ProviderMetrics(None)
    return Syncer(backend, p, desired_records(config(p), p), metrics, backoff=0.001), metrics


async def test_debounce_publishes_only_the_newest_snapshot() -> None:
    backend = MemoryBackend()
    syncer, _ = make(backend, debounce=0.2)
    await syncer.start()
    for serial in range(1, 6):
        syncer.publish(fed_snapshot(down=[("web", "c1")] if serial % 2 else [], serial=serial))
        await asyncio.sleep(0.01)
    for _ in range(200):
        if syncer.status()["serial"] == 5:
            break
        await asyncio.sleep(0.02)
    assert syncer.status()["serial"] == 5
    assert len(backend.applies) == 1  # five snapshots inside the debounce: one sync
    await syncer.stop()


async def test_transient_errors_retried_and_counted() -> None:
    backend = MemoryBackend(fail_reads=2, fail_applies=1)
    syncer, metrics = make(backend)
    res = await syncer.sync_once(fed_snapshot())
    assert res.residual == 0 and len(backend.zone) == 15
    assert metrics.errors.labels("mem", "transient")._value.get() == 3
    assert metrics.up.labels("mem")._value.get() == 1
    assert syncer.status()["state"] == "ok"


async def test_loop_survives_exhausted_retries_then_recovers() -> None:
    backend = MemoryBackend(fail_reads=10)
    syncer, metrics = make(backend, debounce=0.0)
    syncer._retries = 2
    await syncer.start()
    syncer.publish(fed_snapshot())
    for _ in range(300):
        if syncer.status()["state"] == "ok":
            break
        await asyncio.sleep(0.02)
    status = syncer.status()
    assert status["state"] == "ok" and status["errors"] >= 1
    assert metrics.errors.labels("mem", "transient_exhausted")._value.get() >= 1
    assert len(backend.zone) == 15
    await syncer.stop()


def test_delegation_records_are_ns_and_in_zone_glue() -> None:
    cfg = config()
    cfg2 = type(cfg)(zone=ZONE, federation="fed", ttl=30, nameservers=(
        ("ns1." + ZONE, ("192.0.2.53", "2001:db8::53")), ("ns.other.example.", ("192.0.2.9",))))
    recs = {(r.name, r.rtype, r.value) for r in delegation_records(cfg2)}
    assert recs == {(ZONE, "NS", "ns1." + ZONE), (ZONE, "NS", "ns.other.example."),
                    ("ns1." + ZONE, "A", "192.0.2.53"), ("ns1." + ZONE, "AAAA", "2001:db8::53")}
    assert all(r.ttl == 30 for r in delegation_records(cfg))


async def test_one_cancel_ends_the_loop_when_a_publish_lands_with_it() -> None:
    """A publish and a cancel in the same loop iteration: the cancel must not
    be lost. (Python 3.11's ``asyncio.wait_for`` returned the inner result
    here and dropped the cancellation, gh-86296; ``stop`` then needed
    ``tasks.cancel``'s re-cancel a second later.)"""
    backend = MemoryBackend()
    syncer, _ = make(backend, debounce=0.0)
    await syncer.start()
    task = syncer._task
    assert task is not None
    for _ in range(5):  # let the loop reach its wait
        await asyncio.sleep(0)
    syncer.publish(fed_snapshot())
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=0.5)
    assert task in done and task.cancelled()
    assert backend.applies == []
    await syncer.stop()


class BrokenBackend(MemoryBackend):
    """A backend with a bug: its read raises something that is no ProviderError."""

    async def read(self) -> Current:
        raise KeyError("name")


async def test_sync_once_command_reports_a_broken_provider_and_runs_the_next(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`fedns sync --once`: an unexpected exception in one provider is reported
    as an error (exit 1) and the other providers still sync (was: a traceback,
    and the providers after it never ran)."""
    from providers import commands

    broken, good = provider("coredns-etcd", name="broken"), provider("coredns-etcd", name="good")
    backends = {"broken": BrokenBackend(), "good": MemoryBackend()}

    def fake_make_syncer(cfg: Any, p: Any, metrics: ProviderMetrics) -> Syncer:
        return Syncer(backends[p.name], p, desired_records(cfg, p), metrics, backoff=0.001)

    monkeypatch.setattr(commands, "make_syncer", fake_make_syncer)
    out: list[str] = []
    err: list[str] = []
    code = await commands.run_once(config(broken, good), fed_snapshot(), dry_run=False,
                                   force=False, out=out.append, err=err.append)
    assert code == commands.EXIT_FAIL
    assert any("broken" in line and "KeyError" in line for line in err)
    assert len(backends["good"].zone) == 15
    assert any("provider good: in sync" in line for line in out)
