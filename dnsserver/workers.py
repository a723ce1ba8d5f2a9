"""``server.workers``: extra DNS server processes on the same port (SO_REUSEPORT).

The parent (engine, HTTP API, its own ``DnsServer``) owns a ``WorkerPool``.
Each worker is a spawned process running a ``DnsServer`` bound to the same
addresses with SO_REUSEPORT, so the kernel spreads UDP flows and TCP
connections over all processes. The parent ships every Snapshot to every
worker as JSON over a pipe (with the planner's change hint, so a worker
rebuilds incrementally like the parent); a worker that dies is restarted
(with backoff) and given the current Snapshot.

Pipe messages (parent -> worker): ``("snapshot", json, base_serial, changed)``,
``("cookies", keys)``, ``("stats",)``, ``("stop",)``; a worker answers
``("stats", serial, queries)``. A worker reads them in order, so a ``stats``
answer means every earlier message was taken. A worker exits when the pipe
closes (the parent went away).

Not shared with workers: metrics (the parent's ``/metrics`` counts its own
queries; ``stats`` gives the workers' totals), locator reloads, and config
reloads (workers keep the config they started with until restarted), except
the DNS Cookie keys.

Shared: the DNS Cookie keys. Without ``server.cookie_secret`` the parent
makes a random one at start; the pool's config carries it to every worker
(``cookies.pinned``), so a server cookie from any process validates in all.
When a reload rotates the parent's secret, ``cookie_keys`` ships the
parent's keys (the new secret, and the old one with its retirement time) to
every worker, and a worker started later gets them at spawn: every process
issues with the same secret and validates the same previous ones.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import multiprocessing.connection
import threading
import time
from dataclasses import dataclass, replace
from multiprocessing.process import BaseProcess
from typing import Any

from config.model import Config
from dnsserver.cookies import Keys, ServerCookies, pinned
from healthwatch.snapshot import Snapshot
from healthwatch.tasks import cancel

log = logging.getLogger("dnsserver.workers")

CHECK_INTERVAL = 0.2  # seconds between liveness checks
RESTART_BACKOFF = (0.1, 0.5, 2.0, 5.0)  # after 1, 2, 3, 4+ quick deaths
STATS_TIMEOUT = 2.0


@dataclass(frozen=True, slots=True)
class WorkerStats:
    index: int
    pid: int | None
    serial: int | None
    queries: int
    restarts: int


class _Worker:
    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: BaseProcess | None = None
        self.conn: multiprocessing.connection.Connection | None = None
        self.lock = threading.Lock()  # one request/reply exchange at a time
        self.restarts = 0
        self.started_at = 0.0
        self.quick_deaths = 0


class WorkerPool:
    """``count`` worker processes serving ``addresses``; start()/stop()."""

    def __init__(self, config: Config, count: int) -> None:
        # the workers' config: the parent's cookie secret made explicit
        self.config = replace(config, server=pinned(config.server))
        self.count = count
        self._ctx = multiprocessing.get_context("spawn")
        self._workers = [_Worker(i) for i in range(count)]
        self._addresses: list[tuple[str, int]] = []
        self._snapshot: Snapshot | None = None
        self._keys: Keys | None = None  # the parent's cookie keys once a reload rotated them
        self._task: asyncio.Task[None] | None = None

    async def start(self, addresses: list[tuple[str, int]]) -> None:
        self._addresses = list(addresses)
        for w in self._workers:
            self._spawn(w)
        self._task = asyncio.get_running_loop().create_task(self._watch())

    def publish(self, snap: Snapshot) -> None:
        """Ship ``snap`` to every live worker (a dead one gets it on restart)."""
        prev = self._snapshot
        self._snapshot = snap
        text = snap.to_json()
        base = snap.base_serial if prev is not None and snap.base_serial == prev.serial else None
        changed = sorted(snap.changed) if base is not None and snap.changed is not None else None
        for w in self._workers:
            self._send(w, ("snapshot", text, base, changed))

    def cookie_keys(self, keys: Keys) -> None:
        """Have every worker validate and issue server cookies with ``keys``
        (the parent's after a reload), now and after any restart."""
        if keys == self._keys:
            return
        self._keys = keys
        for w in self._workers:
            self._send(w, ("cookies", keys))

    def pids(self) -> list[int | None]:
        return [w.proc.pid if w.proc is not None else None for w in self._workers]

    def stats(self) -> list[WorkerStats]:
        """Every worker's serial and query count (blocking; call off the loop)."""
        out = []
        for w in self._workers:
            serial: int | None = None
            queries = 0
            with w.lock:
                conn = w.conn
                try:
                    if conn is not None:
                        conn.send(("stats",))
                        if conn.poll(STATS_TIMEOUT):
                            _, serial, queries = conn.recv()
                except (OSError, EOFError, ValueError):
                    pass
            out.append(WorkerStats(w.index, w.proc.pid if w.proc else None, serial, queries,
                                   w.restarts))
        return out

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel(task)
        for w in self._workers:
            self._send(w, ("stop",))
        for w in self._workers:
            proc = w.proc
            if proc is None:
                continue
            await asyncio.to_thread(proc.join, 3.0)
            if proc.is_alive():
                proc.kill()
                await asyncio.to_thread(proc.join, 3.0)
            if w.conn is not None:
                w.conn.close()
            w.proc = w.conn = None

    # -- internals ---------------------------------------------------------------

    def _spawn(self, w: _Worker) -> None:
        parent, child = self._ctx.Pipe()
        proc = self._ctx.Process(target=worker_main, name=f"fedns-worker-{w.index}",
                                 args=(self.config, self._addresses, child, w.index,
                                       self._keys),
                                 daemon=True)
        proc.start()
        child.close()
        w.proc, w.conn, w.started_at = proc, parent, time.monotonic()
        log.info("worker_started index=%d pid=%s", w.index, proc.pid)
        if self._snapshot is not None:
            self._send(w, ("snapshot", self._snapshot.to_json(), None, None))

    def _send(self, w: _Worker, msg: tuple[Any, ...]) -> None:
        with w.lock:
            if w.conn is None:
                return
            try:
                w.conn.send(msg)
            except (OSError, ValueError) as exc:
                log.warning("worker_send_failed index=%d error=%r", w.index, exc)

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL)
            now = time.monotonic()
            for w in self._workers:
                if w.proc is None or w.proc.is_alive():
                    continue
                code = w.proc.exitcode
                quick = now - w.started_at < 10.0
                w.quick_deaths = w.quick_deaths + 1 if quick else 0
                delay = RESTART_BACKOFF[min(w.quick_deaths, len(RESTART_BACKOFF)) - 1] \
                    if w.quick_deaths else 0.0
                log.warning("worker_died index=%d pid=%s exitcode=%s restart_in=%.1f",
                            w.index, w.proc.pid, code, delay)
                if w.conn is not None:
                    w.conn.close()
                w.proc = w.conn = None
                if delay:
                    await asyncio.sleep(delay)
                w.restarts += 1
                self._spawn(w)


# -- the worker process ----------------------------------------------------------


def worker_main(config: Config, addresses: list[tuple[str, int]],
                conn: multiprocessing.connection.Connection, index: int,
                keys: Keys | None = None) -> None:
    """Entry point of a worker process (spawned: imports happen here).
    ``keys``: the parent's cookie keys when a reload rotated them (else the
    config's)."""
    logging.basicConfig(level=logging.WARNING,
                        format=f"%(asctime)s worker{index} %(name)s %(message)s")
    asyncio.run(_serve(config, addresses, conn, keys))


async def _serve(config: Config, addresses: list[tuple[str, int]],
                 conn: multiprocessing.connection.Connection, keys: Keys | None) -> None:
    from dnsserver.locality import build_locator
    from dnsserver.server import DnsServer
    from healthwatch.heap import HeapKeeper

    cfg = replace(config, listen=replace(config.listen, dns=tuple(addresses)))
    heap = HeapKeeper()
    heap.start()
    server = DnsServer(cfg, build_locator(cfg), registry=None, reuse_port=True, heap=heap,
                       cookies=ServerCookies(keys) if keys is not None else None)
    await server.start()
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    current: list[Snapshot] = []

    def install(snap: Snapshot) -> None:
        if current and snap.base_serial != current[0].serial:
            snap = replace(snap, base_serial=None, changed=None)
        current[:] = [snap]
        server.submit(snap)

    def reader() -> None:  # the pipe, on a thread: never blocks the loop
        try:
            while True:
                msg = conn.recv()
                if msg[0] == "snapshot":
                    snap = Snapshot.from_json(msg[1])
                    if msg[2] is not None and msg[3] is not None:
                        snap = replace(snap, base_serial=msg[2], changed=frozenset(msg[3]))
                    loop.call_soon_threadsafe(install, snap)
                elif msg[0] == "cookies":  # before the next message is read
                    server.use_cookie_keys(msg[1])
                elif msg[0] == "stats":
                    total = sum(server.metrics.totals().values())
                    conn.send(("stats", server.serial, total))
                elif msg[0] == "stop":
                    break
        except (EOFError, OSError):
            pass  # the parent went away
        finally:
            loop.call_soon_threadsafe(done.set)

    threading.Thread(target=reader, name="fedns-worker-pipe", daemon=True).start()
    try:
        await done.wait()
    finally:
        await server.stop()
