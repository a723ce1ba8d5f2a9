"""``fedns plan`` and ``fedns sync --once``: one pass over the configured providers.

Both build a Snapshot by running healthwatch's Engine until the first probe
round has settled (interval * rise + timeout, and every source synced), so
they publish real health.  ``plan`` never writes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable

from config.model import Config, Provider
from healthwatch.snapshot import Snapshot
from providers.errors import ProviderError, UnsafePlanError
from providers.factory import make_syncer
from providers.metrics import ProviderMetrics
from providers.syncer import SyncResult

EXIT_OK = 0
EXIT_FAIL = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3

SnapshotFactory = Callable[[Config], Awaitable[Snapshot]]


def _load(path: str) -> Config:
    from config.loader import load
    return load(path)


async def engine_snapshot(config: Config) -> Snapshot:
    """Run the Engine once until its first probe round settles; return the Snapshot."""
    from healthwatch.engine import Engine

    engine = Engine(config, registry=None, state_dir=config.state_dir)
    h = config.health
    settle = h.interval * h.rise + h.timeout + 0.2
    bound = settle + h.cluster_grace + 5.0
    started = time.monotonic()
    await engine.start()
    try:
        while True:
            elapsed = time.monotonic() - started
            if (elapsed >= settle and engine.ready) or elapsed >= bound:
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.2)  # let the planner publish the last results
        return engine.snapshot
    finally:
        await engine.stop()


def _selected(config: Config, names: list[str] | None) -> list[Provider]:
    if not names:
        return list(config.providers)
    return [p for p in config.providers if p.name in names]


async def run_once(config: Config, snapshot: Snapshot, *, dry_run: bool, force: bool,
                   names: list[str] | None = None,
                   out: Callable[[str], None] = print,
                   err: Callable[[str], None] = lambda s: print(s, file=sys.stderr),
                   as_json: bool = False) -> int:
    """Plan (dry run) or sync every selected provider once; returns the exit code."""
    providers = _selected(config, names)
    if not providers:
        err("no providers configured" if not names else f"no provider named {names}")
        return EXIT_USAGE
    metrics = ProviderMetrics(None)
    code = EXIT_OK
    plans = []
    for p in providers:
        syncer = None
        try:
            syncer = make_syncer(config, p, metrics)
            res: SyncResult = await syncer.sync_once(snapshot, force=force, dry_run=dry_run)
        except UnsafePlanError as e:
            err(str(e))
            code = max(code, EXIT_REFUSED)
            continue
        except ProviderError as e:
            err(f"provider {p.name}: {e}")
            code = max(code, EXIT_FAIL)
            continue
        except Exception as e:  # a bug or an SDK surprise: report it, go on with the next
            err(f"provider {p.name}: internal error: {e!r}")
            code = max(code, EXIT_FAIL)
            continue
        finally:
            if syncer is not None:
                await syncer.backend.close()
        if as_json:
            d = res.plan.to_dict()
            d["refused"] = res.refused
            plans.append(d)
        else:
            out(res.plan.describe())
            if res.refused:
                out(f"  note: sync would refuse this plan: {res.refused}")
        if not dry_run:
            for rej in res.errors:
                err(f"provider {p.name}: rejected {rej.action} {rej.name} {rej.rtype}: "
                    f"{rej.reason}")
            if res.errors or res.residual:
                code = max(code, EXIT_FAIL)
            else:
                out(f"provider {p.name}: in sync ({res.applied} changes applied)")
    if as_json:
        out(json.dumps(plans, indent=2, sort_keys=True))
    return code


async def _main(args: argparse.Namespace, dry_run: bool,
                snapshot_factory: SnapshotFactory | None) -> int:
    from config.errors import ConfigError

    try:
        config = _load(args.config)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        print(f"{args.config}: cannot read config: {e}", file=sys.stderr)
        return EXIT_USAGE
    snapshot = await (snapshot_factory or engine_snapshot)(config)
    return await run_once(config, snapshot, dry_run=dry_run, force=getattr(args, "force", False),
                          names=getattr(args, "provider", None),
                          as_json=getattr(args, "json", False))


def cmd_plan(args: argparse.Namespace, snapshot_factory: SnapshotFactory | None = None) -> int:
    return asyncio.run(_main(args, True, snapshot_factory))


def cmd_sync(args: argparse.Namespace, snapshot_factory: SnapshotFactory | None = None) -> int:
    return asyncio.run(_main(args, False, snapshot_factory))
