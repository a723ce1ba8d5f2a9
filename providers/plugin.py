"""Entry points: the ``fedns serve`` publisher and the ``plan``/``sync`` commands.

Declared in pyproject.toml (``fedns.publishers`` and ``fedns.commands``), so
dnsserver finds them without importing this package.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import weakref
from typing import Any

from prometheus_client import CollectorRegistry

from config.model import Config
from healthwatch.interfaces import Publisher
from healthwatch.snapshot import Snapshot
from providers.metrics import ProviderMetrics
from providers.syncer import Syncer

log = logging.getLogger("providers.plugin")
_METRICS: weakref.WeakKeyDictionary[CollectorRegistry, ProviderMetrics] = \
    weakref.WeakKeyDictionary()


def metrics_for(registry: CollectorRegistry | None) -> ProviderMetrics:
    """One ProviderMetrics per registry (publishers are rebuilt on reload)."""
    if registry is None:
        return ProviderMetrics(None)
    m = _METRICS.get(registry)
    if m is None:
        m = _METRICS[registry] = ProviderMetrics(registry)
    return m


class ProvidersPublisher:
    """Runs one syncer per configured provider; a provider failure stays inside it."""

    name = "providers"

    def __init__(self, syncers: list[Syncer]) -> None:
        self.syncers = syncers

    async def start(self) -> None:
        for s in self.syncers:
            await s.start()

    def publish(self, snapshot: Snapshot) -> None:
        for s in self.syncers:
            s.publish(snapshot)

    async def stop(self) -> None:
        results = await asyncio.gather(*(s.stop() for s in self.syncers),
                                       return_exceptions=True)
        for s, r in zip(self.syncers, results, strict=True):
            if isinstance(r, BaseException):
                log.warning("stop_failed provider=%s error=%r", s.name, r)

    def status(self) -> list[dict[str, Any]]:
        return [s.status() for s in self.syncers]


def make_publisher(config: Config, registry: CollectorRegistry | None) -> Publisher | None:
    """The publisher ``fedns serve`` runs, or None when no provider is configured."""
    if not config.providers:
        return None
    from providers.factory import make_syncer

    metrics = metrics_for(registry)
    syncers = [make_syncer(config, p, metrics) for p in config.providers]
    return ProvidersPublisher(syncers)


def add_commands(subparsers: argparse._SubParsersAction[Any]) -> None:
    """Add ``fedns plan`` and ``fedns sync``."""
    from providers import commands

    p = subparsers.add_parser("plan", help="dry run: print what a provider sync would change")
    p.add_argument("-c", "--config", required=True, help="config file")
    p.add_argument("--provider", action="append", help="only this provider (repeatable)")
    p.add_argument("--json", action="store_true", help="print the plans as JSON")
    p.set_defaults(func=commands.cmd_plan)

    s = subparsers.add_parser("sync", help="publish the static view to the providers")
    s.add_argument("-c", "--config", required=True, help="config file")
    s.add_argument("--once", action="store_true", required=True,
                   help="sync once and exit (the continuous loop runs in `fedns serve`)")
    s.add_argument("--force", action="store_true",
                   help="apply plans the safety check would refuse")
    s.add_argument("--provider", action="append", help="only this provider (repeatable)")
    s.set_defaults(func=commands.cmd_sync)
