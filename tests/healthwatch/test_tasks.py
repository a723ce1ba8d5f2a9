"""healthwatch.tasks.cancel: a task that loses its cancellation still ends."""

from __future__ import annotations

import asyncio

import pytest

from healthwatch import tasks
from healthwatch.tasks import cancel


async def stubborn(lost: list[int], swallow: int) -> None:
    """Sleeps, swallowing the first ``swallow`` cancellations (as a 3.11
    ``asyncio.wait_for`` can lose one), each noted in ``lost``."""
    while True:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            if len(lost) == swallow:
                raise
            lost.append(1)


async def test_cancel_ends_a_plain_task() -> None:
    task = asyncio.create_task(asyncio.sleep(10))
    await asyncio.sleep(0)
    await cancel(task)
    assert task.cancelled()
    await cancel(None)


async def test_cancel_repeats_until_a_task_that_swallowed_it_ends(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """As ``asyncio.wait_for`` can in 3.11: the first cancellation is lost."""
    monkeypatch.setattr(tasks, "RECANCEL_SECONDS", 0.05)
    lost: list[int] = []
    task = asyncio.create_task(stubborn(lost, 2))
    await asyncio.sleep(0)
    await asyncio.wait_for(cancel(task), 5)
    assert task.cancelled() and len(lost) == 2


async def test_the_task_error_is_raised_and_the_callers_cancellation_kept() -> None:
    async def fails() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            raise RuntimeError("cleanup failed")

    task = asyncio.create_task(fails())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="cleanup failed"):
        await cancel(task)

    async def slow() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(10)  # a long cleanup

    inner = asyncio.create_task(slow())
    await asyncio.sleep(0)
    outer = asyncio.create_task(cancel(inner))
    await asyncio.sleep(0.01)
    outer.cancel()  # the caller of cancel() is cancelled meanwhile
    with pytest.raises(asyncio.CancelledError):
        await outer
    await cancel(inner)


async def test_cancel_all_ends_every_task_even_one_that_swallowed_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tasks, "RECANCEL_SECONDS", 0.05)
    lost: list[int] = []

    async def broken() -> None:
        raise RuntimeError("its own error, logged by its owner")

    group = [asyncio.create_task(stubborn(lost, 1)), asyncio.create_task(asyncio.sleep(10)),
             asyncio.create_task(broken())]
    await asyncio.sleep(0)
    await asyncio.wait_for(tasks.cancel_all(group), 5)
    assert all(t.done() for t in group) and len(lost) == 1


async def test_an_untracked_hostname_loop_ends_even_if_its_cancellation_is_lost(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from healthwatch.hostnames import HostnameResolver, ResolverOptions

    resolver = HostnameResolver(ResolverOptions(nameservers=("127.0.0.1",), port=9,
                                                min_ttl=0.01, max_ttl=0.01))
    lost = 0

    async def resolve(host: str) -> tuple[tuple[str, ...], float]:
        nonlocal lost
        try:
            await asyncio.sleep(0.05)
        except asyncio.CancelledError:
            lost += 1  # as a 3.11 wait_for can: the cancellation is gone
        return ("192.0.2.1",), 0.01

    monkeypatch.setattr(resolver, "_resolve", resolve)
    await resolver.start()
    try:
        resolver.track("owner", ["a.example"], lambda: None)
        await asyncio.sleep(0.02)
        (task,) = resolver._tasks.values()
        resolver.untrack("owner")
        await asyncio.wait_for(asyncio.shield(task), 2)  # ends by itself
        assert lost == 1
    finally:
        await resolver.stop()
