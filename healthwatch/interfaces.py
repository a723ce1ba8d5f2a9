"""Seams between healthwatch and the rest: sources feed it, publishers read it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from healthwatch.model import ClusterReport
from healthwatch.snapshot import Snapshot

ReportSink = Callable[[ClusterReport], None]


class Source(Protocol):
    """Watches one member cluster and reports what it runs.

    ``start`` returns quickly; the source then calls ``emit`` (on the event
    loop thread) with a full ``ClusterReport`` whenever anything changes.
    """

    cluster: str

    async def start(self, emit: ReportSink) -> None: ...

    async def stop(self) -> None: ...


@runtime_checkable
class ContactSource(Protocol):
    """A ``Source`` that contacts an API between its reports.

    A source reports only when what it saw changes, so the ``last_contact``
    of its last report can be minutes old on a quiet, healthy cluster while
    its heartbeat reaches the API every few seconds. ``last_contact`` is the
    live value (unix time; None: never contacted), read for ``/v1/status``.
    """

    @property
    def last_contact(self) -> float | None: ...


class Publisher(Protocol):
    """Something that publishes Snapshots elsewhere (a provider syncer).

    ``publish`` must not block: it records the newest Snapshot and returns.
    """

    name: str

    async def start(self) -> None: ...

    def publish(self, snapshot: Snapshot) -> None: ...

    async def stop(self) -> None: ...

    def status(self) -> list[dict[str, Any]]: ...
