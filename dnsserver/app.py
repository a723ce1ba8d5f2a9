"""The running program: Config -> Engine -> (DnsServer, publishers, HTTP API).

``App`` owns every long-lived part and their order of start and stop. Each
new Snapshot from the engine goes to the DNS server (an atomic swap of the
precomputed answers) and to every publisher (which only records it).
Publishers come from the ``fedns.publishers`` entry points, so dnsserver
never imports providers; they get Snapshots only once the engine is ready
(every source reported), so a start never publishes a partial view.

Reload (SIGHUP or ``POST /v1/reload``): the file is loaded and validated in
full first; an invalid config is rejected with every problem logged and the
old one keeps serving. A valid one is applied to the engine, the DNS server
and the publishers; listen addresses and ``state_dir`` need a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import logging
import platform
import signal
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client import CollectorRegistry, Info

from config.errors import ConfigError
from config.loader import advice, load
from config.model import Config
from dnsserver.explain import ExplainError, explain, parse_question
from dnsserver.http_api import ApiError, HttpApi, ReloadResult, Route
from dnsserver.locality import GeoLocator, LocatorMetrics, build_locator
from dnsserver.server import DnsServer
from dnsserver.workers import WorkerPool
from healthwatch.drains import DeclaredDrainError, DrainSet, parse_drain_duration
from healthwatch.engine import Engine
from healthwatch.errors import HealthwatchError, UnknownClusterError
from healthwatch.heap import HeapKeeper
from healthwatch.hysteresis import PENDING_REASON
from healthwatch.interfaces import Publisher
from healthwatch.snapshot import Snapshot

log = logging.getLogger("dnsserver.app")

PUBLISHERS_GROUP = "fedns.publishers"


def load_publishers(config: Config, registry: CollectorRegistry) -> list[Publisher]:
    """Every publisher the installed plugins make for ``config``."""
    out: list[Publisher] = []
    for ep in importlib.metadata.entry_points(group=PUBLISHERS_GROUP):
        try:
            factory = ep.load()
            pub = factory(config, registry)
        except Exception as exc:
            log.error("publisher_plugin_failed plugin=%s error=%r", ep.name, exc)
            continue
        if pub is not None:
            out.append(pub)
    return out


def register_build_info(registry: CollectorRegistry) -> None:
    """``fedns_build_info{version, python} 1``: which build each replica runs."""
    try:
        version = importlib.metadata.version("fedns")
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    info = Info("fedns_build", "fedns version and Python of this process.", registry=registry)
    info.info({"version": version, "python": platform.python_version()})


class App:
    """Everything ``fedns serve`` runs, with one ``start``/``stop``."""

    def __init__(
        self,
        config: Config,
        *,
        config_path: str | None = None,
        registry: CollectorRegistry | None = None,
        extra_routes: Iterable[Route] = (),
        publishers: bool = True,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.registry = registry if registry is not None else CollectorRegistry()
        register_build_info(self.registry)
        self.engine = Engine(config, registry=self.registry, state_dir=config.state_dir)
        self._locator_metrics = LocatorMetrics(self.registry)
        self.locator: GeoLocator = build_locator(config, metrics=self._locator_metrics)
        self._discovered: dict[str, tuple[str | None, str | None]] = {}
        # server.workers = N: N processes answer DNS on the same port (SO_REUSEPORT):
        # this one plus N-1 workers that get every Snapshot (dnsserver/workers.py)
        # the serving state is frozen out of the garbage collector's walks
        # after each swap; every collection's pause is timed (healthwatch/heap.py)
        self.heap = HeapKeeper(self.registry)
        # NOTIFY to server.also_notify: this process only, never the workers
        self.dns = DnsServer(config, self.locator, registry=self.registry,
                             reuse_port=config.server.workers > 1, heap=self.heap,
                             notify=True)
        self.workers = (WorkerPool(config, config.server.workers - 1)
                        if config.server.workers > 1 else None)
        self._with_publishers = publishers
        self.publishers: list[Publisher] = []
        host, port = config.listen.http
        self.http = HttpApi(self, registry=self.registry, host=host, port=port,
                            extra_routes=extra_routes)
        self._stopping = asyncio.Event()
        self._reload_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False
        self._ready_serial: int | None = None  # first Snapshot planned once ready
        self._stopped = False
        self.loaded_at = time.time()
        self.last_reload: dict[str, Any] | None = None

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Start in dependency order: publishers, DNS, engine, HTTP."""
        self.heap.start()
        if self._with_publishers:
            self.publishers = load_publishers(self.config, self.registry)
            for pub in self.publishers:
                await pub.start()
        await self.dns.start()
        if self.workers is not None:  # bind the same addresses (port 0 resolved)
            await self.workers.start(self.dns.addresses)
        self.engine.subscribe(self._on_snapshot)
        self._on_snapshot(self.engine.snapshot)  # last-known-good or the empty plan
        await self.engine.start()
        await self.http.start()
        self._started = True
        log.info("started zone=%s dns=%s http=%s:%d clusters=%d publishers=%d",
                 self.config.zone, ",".join(f"{h}:{p}" for h, p in self.dns.addresses),
                 self.config.listen.http[0], self.http.port, len(self.config.clusters),
                 len(self.publishers))

    async def stop(self) -> None:
        """Stop in reverse order; every part is stopped even if one fails. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        for task in list(self._tasks):
            task.cancel()
        for step in (self.http.stop, self.engine.stop, self.dns.stop,
                     *((self.workers.stop,) if self.workers is not None else ()),
                     *(p.stop for p in self.publishers)):
            try:
                await step()
            except Exception:
                log.exception("stop_failed step=%s", getattr(step, "__qualname__", step))
        self._started = False
        self.heap.stop()
        log.info("stopped")

    def request_stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        """Start, serve until SIGTERM/SIGINT (SIGHUP reloads), then stop."""
        try:
            await self.start()
        except BaseException:
            await self.stop()
            raise
        await self.serve_until_stopped()

    async def serve_until_stopped(self) -> None:
        """Wait for SIGTERM/SIGINT or ``request_stop`` (SIGHUP reloads), then stop."""
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        try:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.add_signal_handler(sig, self._on_stop_signal, sig)
                installed.append(sig)
            loop.add_signal_handler(signal.SIGHUP, self._on_hup)
            installed.append(signal.SIGHUP)
        except (NotImplementedError, RuntimeError):  # not the main thread
            pass
        try:
            await self._stopping.wait()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            await self.stop()

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        log.info("signal_received signal=%s action=stop", sig.name)
        self._stopping.set()

    def _on_hup(self) -> None:
        log.info("signal_received signal=SIGHUP action=reload")
        self.spawn(self.reload())

    def spawn(self, coro: Any) -> None:
        """Run ``coro`` as a task owned by the app (cancelled on stop)."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- snapshots -------------------------------------------------------------

    def _on_snapshot(self, snap: Snapshot) -> None:
        self._refresh_discovered(snap)
        try:
            # submit: incremental updates at once, full table builds in a thread
            # (the event loop keeps answering from the old table meanwhile)
            self.dns.submit(snap)
            if self.workers is not None:
                self.workers.publish(snap)  # JSON over each worker's pipe
        except Exception:
            log.exception("dns_update_failed serial=%d", snap.serial)
        if self.engine.ready:
            if self._ready_serial is None:
                self._ready_serial = snap.serial
        else:
            # Until every source has reported, a Snapshot lacks shards that exist:
            # external DNS keeps what it has rather than losing records.
            return
        for pub in self.publishers:
            try:
                pub.publish(snap)
            except Exception:
                log.exception("publish_failed publisher=%s serial=%d", pub.name, snap.serial)

    def _refresh_discovered(self, snap: Snapshot) -> None:
        """Clusters whose region/zone come from Node labels: feed them to the locator."""
        open_ = {c.name for c in self.config.clusters if c.region is None or c.zone is None}
        if not open_:
            return
        found = {c.name: (c.region or None, c.zone or None) for c in snap.clusters
                 if c.name in open_}
        if found == self._discovered:
            return
        try:
            self.locator.reload(self.config, discovered=found)
        except Exception:
            log.exception("locator_reload_failed reason=discovered_localities")
            return
        self._discovered = found
        log.info("locator_discovered clusters=%s", ",".join(sorted(found)))

    # -- Control (used by the HTTP API) -----------------------------------------

    @property
    def ready(self) -> bool:
        """Every source has synced once and every probe has a first verdict.

        Before a shard's first probe result it counts as down, so answers
        given earlier could send clients away from a healthy nearby cluster.
        The DNS server must also be *serving* a Snapshot planned after that (a
        full table build runs in a thread, so "submitted" is not "served").
        """
        served = self.dns.serial
        if not self.engine.ready or self._ready_serial is None or served is None:
            return False
        if served < self._ready_serial:
            return False
        return not any(s.reason == PENDING_REASON for s in self.engine.snapshot.shards)

    @property
    def api_token(self) -> str | None:
        return self.config.api_token

    async def drain(self, cluster: str, service: str | None, *, reason: str = "",
                    duration: str | float | None = None, client: str = "") -> dict[str, Any]:
        """Drain; ``duration`` in the config's syntax (``30m``) or seconds."""
        def op() -> None:
            seconds = None if duration is None else parse_drain_duration(duration)
            self.engine.drain(cluster, service, reason=reason, duration=seconds, by=client)
        self._drain_op(op)
        drain = self.engine.drains.get(cluster, service)
        return {} if drain is None else drain.to_dict()

    async def undrain(self, cluster: str, service: str | None, *,
                      client: str = "") -> dict[str, Any]:
        before = self.engine.drains
        self._drain_op(lambda: self.engine.undrain(cluster, service, by=client))
        return {"was_drained": before.get(cluster, service) is not None,
                "still_drained": before.covering(cluster, service)}

    @staticmethod
    def _drain_op(op: Callable[[], object]) -> None:
        try:
            op()
        except UnknownClusterError as exc:
            raise ApiError(str(exc), status=404) from exc
        except DeclaredDrainError as exc:  # only the config or an annotation can end it
            raise ApiError(str(exc), status=409) from exc
        except HealthwatchError as exc:
            raise ApiError(str(exc), status=400) from exc

    async def reload(self) -> ReloadResult:
        """Reload the config file; the old config keeps serving when it is invalid."""
        if self.config_path is None:
            return ReloadResult(False, ("no config file to reload (built-in config)",))
        async with self._reload_lock:
            try:
                new = await asyncio.to_thread(load, self.config_path)
            except ConfigError as exc:
                problems = tuple(str(p) for p in exc.problems)
                for p in problems:
                    log.error("reload_rejected problem=%r", p)
                log.error("reload_rejected path=%s problems=%d action=keep_old_config",
                          self.config_path, len(problems))
                self.last_reload = {"at": time.time(), "ok": False, "problems": list(problems)}
                return ReloadResult(False, problems)
            except OSError as exc:
                log.error("reload_rejected path=%s error=%r", self.config_path, exc)
                self.last_reload = {"at": time.time(), "ok": False, "problems": [str(exc)]}
                return ReloadResult(False, (str(exc),))
            return await self.apply(new)

    async def apply(self, new: Config) -> ReloadResult:
        """Switch to a validated config."""
        old = self.config
        for key, a, b in (("listen.dns", old.listen.dns, new.listen.dns),
                          ("listen.http", old.listen.http, new.listen.http),
                          ("state_dir", old.state_dir, new.state_dir)):
            if a != b:
                log.warning("reload_needs_restart key=%s old=%s new=%s", key, a, b)
        try:  # the only step that can fail (geo.database); the old one stays on error
            self.locator.reload(new, discovered=self._discovered)
        except Exception as exc:
            log.error("reload_rejected error=%r action=keep_old_config", exc)
            self.last_reload = {"at": time.time(), "ok": False, "problems": [str(exc)]}
            return ReloadResult(False, (f"geo: {exc}",))
        try:  # the server's protocol knobs (a bad TSIG secret: the old config stays)
            restart = self.dns.reconfigure(new)
        except ValueError as exc:
            with contextlib.suppress(Exception):
                self.locator.reload(old, discovered=self._discovered)
            log.error("reload_rejected error=%r action=keep_old_config", exc)
            self.last_reload = {"at": time.time(), "ok": False, "problems": [str(exc)]}
            return ReloadResult(False, (f"server: {exc}",))
        for key in restart:
            log.warning("reload_needs_restart key=server.%s", key)
        self._share_cookie_keys()
        self.config = new  # the answers' knobs take effect with the next table build
        before = self.engine.snapshot.serial
        try:
            await self.engine.reload(new)
        except Exception as exc:  # not expected: the config was validated
            log.exception("reload_failed path=%s action=restore_old_config", self.config_path)
            self.config = old
            with contextlib.suppress(Exception):
                self.dns.reconfigure(old)
                self._share_cookie_keys()
                self.locator.reload(old, discovered=self._discovered)
                await self.engine.reload(old)
            self.last_reload = {"at": time.time(), "ok": False, "problems": [repr(exc)]}
            return ReloadResult(False, (f"engine: {exc!r}",))
        if self.engine.snapshot.serial == before:
            self.dns.submit(self.engine.snapshot)  # new protocol knobs: full build, threaded
        if self._with_publishers and new.providers != old.providers:
            await self._restart_publishers()
        serial = self.engine.snapshot.serial
        self.loaded_at = time.time()
        self.last_reload = {"at": self.loaded_at, "ok": True, "problems": []}
        log.info("reload_applied path=%s serial=%s clusters=%d",
                 self.config_path, serial, len(new.clusters))
        if self.config_path is not None:
            log_config_warnings(new, self.config_path)
        return ReloadResult(True, (), serial)

    def _share_cookie_keys(self) -> None:
        """The workers validate and issue cookies with this process's keys,
        which a reload may have rotated (dnsserver/workers.py)."""
        if self.workers is not None and self.dns.cookies is not None:
            self.workers.cookie_keys(self.dns.cookies.keys)

    async def _restart_publishers(self) -> None:
        for pub in self.publishers:
            with contextlib.suppress(Exception):
                await pub.stop()
        self.publishers = load_publishers(self.config, self.registry)
        for pub in self.publishers:
            await pub.start()
        if self.engine.ready:
            for pub in self.publishers:
                pub.publish(self.engine.snapshot)

    def status(self) -> dict[str, Any]:
        """The ``/v1/status`` document."""
        return build_status(self)

    def explain(self, name: str, qtype: str, client: str,
                subnet: str | None) -> dict[str, Any]:
        """The ``/v1/explain`` document (``dnsserver.explain``)."""
        try:
            q = parse_question(self.config.zone, name, qtype, client, subnet)
            return explain(self.dns.handler, self.config, q)
        except ExplainError as exc:
            raise ApiError(str(exc), status=exc.status) from exc


def log_config_warnings(config: Config, path: str) -> None:
    """One WARNING line per config warning (``config.advice``), at start and
    after each reload, so a risky setting shows in the logs, not only when
    someone runs ``fedns check``. Advice is optional: a bug in it is logged
    and the server goes on."""
    try:
        found = advice(config, path)
    except Exception:
        log.exception("config_advice_failed path=%s", path)
        return
    for w in found:
        log.warning("config_warning %s", w.log_fields())


def build_status(app: App) -> dict[str, Any]:
    snap = app.engine.snapshot
    d = snap.to_dict()
    try:
        engine = app.engine.status()
    except Exception as exc:  # status must render even if a part misbehaves
        engine = {"error": repr(exc)}
    drains = app.engine.drains
    providers: list[dict[str, Any]] = []
    for pub in app.publishers:
        try:
            providers.extend(pub.status())
        except Exception as exc:
            providers.append({"name": pub.name, "error": repr(exc)})
    return {
        "zone": app.config.zone,
        "federation": app.config.federation,
        "ready": app.ready,
        "config": {"path": app.config_path, "loaded_at": app.loaded_at,
                   "last_reload": app.last_reload},
        "snapshot": {"serial": snap.serial, "generated_at": snap.generated_at,
                     "age_seconds": round(max(0.0, time.time() - snap.generated_at), 3),
                     "failovers": list(snap.failovers)},
        "stale": snap.stale,
        "clusters": live_contacts(d["clusters"], app.engine.last_contacts()),
        "shards": d["shards"],
        "drains": {
            "clusters": sorted(drains.clusters),
            "shards": [f"{c}/{s}" for c, s in sorted(drains.shards)],
        },
        "drain_details": drain_details(drains, time.time()),
        "providers": providers,
        "engine": engine,
    }


def live_contacts(clusters: list[dict[str, Any]],
                  live: dict[str, float]) -> list[dict[str, Any]]:
    """The Snapshot's cluster entries with ``last_contact`` brought up to the
    source's live value where that is newer: the Snapshot keeps the time of
    the last report, which on a quiet healthy cluster can be minutes old while
    its heartbeat reaches the API every few seconds."""
    out = []
    for c in clusters:
        at = live.get(c["name"])
        if at is not None and (c.get("last_contact") is None or at > c["last_contact"]):
            c = {**c, "last_contact": at}
        out.append(c)
    return out


def drain_details(drains: DrainSet, now: float) -> list[dict[str, Any]]:
    """Every drain with its reason, start, age, expiry and time left (``None``:
    unknown start, or no expiry)."""
    out = []
    for d in drains.entries():
        out.append({
            **d.to_dict(), "target": d.target,
            "age_seconds": None if d.since is None else round(max(0.0, now - d.since), 1),
            "remaining_seconds": None if d.until is None else round(max(0.0, d.until - now), 1),
        })
    return out
