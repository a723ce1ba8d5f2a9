"""Owning background tasks: the one way every component stops its own."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

RECANCEL_SECONDS = 1.0  # how long a cancelled task may run on before it is cancelled again


async def cancel(task: asyncio.Task[Any] | None) -> None:
    """Cancel ``task`` (None: nothing) and wait until it has finished; an
    exception it ended with is raised here.

    The cancellation is repeated while the task runs on: in Python 3.11
    ``asyncio.wait_for`` returns its result instead of raising when the
    awaited future completes in the same iteration as the cancellation
    (gh-86296), and a task that lost its cancellation that way would keep
    running and hang its owner's ``stop`` (a provider syncer's retry loop did,
    under CI load). Our packages use ``asyncio.timeout`` instead (ruff bans
    ``wait_for`` there); the re-cancel stays for the libraries we await,
    which may still use it. A cancellation of the caller itself is not
    swallowed."""
    if task is None:
        return
    await cancel_all((task,))
    if not task.cancelled() and (exc := task.exception()) is not None:
        raise exc


async def cancel_all(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """``cancel`` for several tasks at once, cancelling again while any runs
    on; what they end with is retrieved, not raised (their owners log it)."""
    pending = list(tasks)
    while left := [t for t in pending if not t.done()]:
        for t in left:
            t.cancel()
        await asyncio.wait(left, timeout=RECANCEL_SECONDS)
    for t in pending:
        if not t.cancelled():
            t.exception()
