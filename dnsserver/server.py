"""DnsServer: owns the UDP/TCP listeners and the current answers.

``update(snapshot)`` builds a new ``Resolver`` and ``AnswerTable`` (or, for a
small change, updates the changed names' entries in place, each with one dict
assignment) and swaps the per-Snapshot state (serial, SOA) in with one
reference assignment: a query sees each name's old or new answers, and for a
moment some names may already answer from the new Snapshot. A Snapshot that
fails to build is logged and the old one keeps serving.

Each configured ``host:port`` gets a UDP socket and a TCP listener on the same
port; with port 0 the TCP listener takes the port UDP got, so ``addresses``
lists one (host, port) per listen entry that works for both.

``notify=True`` (the parent process, never a ``server.workers`` worker): each
new serial served, and the one served at ``start``, is announced to
``server.also_notify`` with NOTIFY (``dnsserver.notify``).

DNS Cookies (``server.cookies``): the handler gets the process's
``ServerCookies`` for ``server.cookie_secret`` (``cookies.make_cookies``), and
UDP response-rate limiting exempts the queries whose cookie it validates.
``server.cookies`` changes at restart. A reload that changes
``cookie_secret`` or ``cookie_secret_previous`` rotates the keys
(``cookies.Keys.rotated``): new cookies come from the new secret at once,
and the old one still validates for ``cookies.LIFETIME``, so no client
loses its cookie; a new keeper replaces the old one in the handler and for
RRL (``use_cookie_keys``, which the worker processes get too).
``require_server_cookie`` applies at reload.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from prometheus_client import CollectorRegistry

from config.model import Config, Server
from dnsserver.cookies import Keys, ServerCookies, make_cookies, process_secret
from dnsserver.errors import BindError, DnsServerError
from dnsserver.handler import QueryHandler, ServingState
from dnsserver.locality import Locator
from dnsserver.metrics import DnsMetrics
from dnsserver.notify import Notifier, Timing
from dnsserver.rebuild import Rebuilder, derive_state, full_state
from dnsserver.rrl import make_rrl
from dnsserver.tcp import TcpLimits, open_tcp
from dnsserver.udp import DEFAULT_MODE, UDP_MODES, UdpListener, UdpThreadListener, open_udp
from dnsserver.xfr import make_xfr, transfer_policy
from healthwatch.heap import HeapKeeper
from healthwatch.snapshot import Snapshot

_PORT_RETRIES = 8


class DnsServer:
    def __init__(self, config: Config, locator: Locator, *,
                 registry: CollectorRegistry | None, fast_path: bool = True,
                 udp_mode: str | None = None, reuse_port: bool = False,
                 heap: HeapKeeper | None = None, notify: bool = False,
                 notify_timing: Timing | None = None,
                 cookies: ServerCookies | None = None) -> None:
        """``udp_mode``: "mmsg", "thread" or "loop" (``udp.UDP_MODES``); default from the
        environment variable FEDNS_UDP, else ``udp.DEFAULT_MODE``.
        ``reuse_port``: bind with SO_REUSEPORT (worker processes share a port).
        ``heap``: settled after each new state serves (``healthwatch.heap``).
        ``notify``: send NOTIFY to ``server.also_notify`` on each new serial
        (the parent process only), retransmitting as ``notify_timing`` says.
        ``cookies``: the server-cookie keeper (tests inject one with its own
        clock); default ``make_cookies(config.server)``; none when
        ``server.cookies`` is off."""
        self.config = config
        self.heap = heap
        self.udp_mode = udp_mode or os.environ.get("FEDNS_UDP", DEFAULT_MODE)
        if self.udp_mode not in UDP_MODES:
            raise DnsServerError(
                f"FEDNS_UDP={self.udp_mode!r} is not one of {', '.join(UDP_MODES)}")
        self.reuse_port = reuse_port
        self.metrics = DnsMetrics(registry)
        if cookies is None:
            cookies = make_cookies(config.server)
        self.cookies = cookies if config.server.cookies else None
        self.handler = QueryHandler(locator, self.metrics, config.server, fast_path=fast_path,
                                    cookies=self.cookies)
        self.rrl = make_rrl(config.server, registry)  # UDP response-rate limiting
        self.xfr = make_xfr(config.server, lambda: (
            s.resolver.snapshot if (s := self.handler.state) is not None else None),
            self.metrics.transfers)
        self.log = logging.getLogger("dnsserver.server")
        self.notifier = (Notifier(lambda: self.config.server, self.metrics.notify,
                                  timing=notify_timing) if notify else None)
        self._rebuilder = Rebuilder(lambda: self.handler.state, self._install,
                                    lambda: self.config.server)
        self.addresses: list[tuple[str, int]] = []
        self._udp: list[UdpListener | UdpThreadListener] = []
        self._tcp: list[asyncio.Server] = []
        self._limits = TcpLimits(total=config.server.tcp_max_connections,
                                 per_client=config.server.tcp_max_per_client)

    def reconfigure(self, config: Config) -> list[str]:
        """Take a reloaded ``config``: its protocol knobs apply to the running
        server (transfer and NOTIFY policy, TCP connection limits, RRL
        limits, ``require_server_cookie``, the cookie secrets: rotated; the
        answers' knobs with the next table build, which the caller asks for).
        Returns the ``server.*`` keys that change only on restart (listeners,
        workers, RRL or cookies switched on or off). Raises ValueError,
        changing nothing, for a TSIG secret that is not usable."""
        old, new = self.config.server, config.server
        policy = transfer_policy(new)  # the one step that can fail: before any change
        restart = [key for key in ("tcp_idle_timeout", "workers", "cookies")
                   if getattr(old, key) != getattr(new, key)]
        if (self.rrl is None) != (new.rrl_responses_per_second <= 0):
            restart.append("rrl_responses_per_second")
        elif self.rrl is not None:
            self.rrl.configure(new.rrl_responses_per_second, new.rrl_slip, new.rrl_window)
        self.config = config
        self.handler.transfers = self.xfr.policy = policy
        self.handler.require_cookie = new.require_server_cookie
        if (old.cookie_secret, old.cookie_secret_previous) != (new.cookie_secret,
                                                               new.cookie_secret_previous):
            self._rotate_cookies(new)
        self._limits.total = new.tcp_max_connections
        self._limits.per_client = new.tcp_max_per_client
        return restart

    def _rotate_cookies(self, new: Server) -> None:
        """Issue with ``new``'s cookie secret from now on; the one it replaces
        still validates for ``cookies.LIFETIME`` (RFC 9018 section 5)."""
        if self.cookies is None:
            return
        keys = self.cookies.keys.rotated(new.cookie_secret or process_secret(),
                                         new.cookie_secret_previous, self.cookies.clock())
        self.use_cookie_keys(keys)
        self.log.info("cookie_secret_rotated previous=%d", len(keys.previous))  # no secret

    def use_cookie_keys(self, keys: Keys) -> None:
        """Validate and issue server cookies with ``keys`` from now on (a
        reload here, or the parent's keys in a worker process): a new keeper,
        one reference assignment each for the handler and RRL."""
        cookies = self.cookies
        if cookies is None or cookies.keys == keys:
            return
        self.cookies = self.handler.cookies = cookies.rekeyed(keys)

    def _proven(self, query: bytes, client: str) -> bool:
        """RRL's exemption: a valid server cookie for the current keeper."""
        cookies = self.cookies
        return cookies is not None and cookies.proven(query, client)

    # -- answers ------------------------------------------------------------

    @property
    def serial(self) -> int | None:
        state = self.handler.state
        return state.serial if state is not None else None

    def update(self, snapshot: Snapshot) -> bool:
        """Serve ``snapshot`` from now on; False (old answers kept) if it fails.

        Synchronous: incremental when only some names changed (milliseconds),
        else a full build on the calling thread. From the event loop prefer
        ``submit``, which never blocks on a full build."""
        started = time.perf_counter()
        how = "incremental"
        try:
            state = self.handler.state
            new = None if state is None else derive_state(state, snapshot, self.config.server)
            if new is None:
                how = "full"
                new = full_state(snapshot, self.config.server)
        except Exception:
            self.log.exception("snapshot_rejected serial=%s", snapshot.serial)
            return False
        self._install(new, time.perf_counter() - started, how)
        return True

    def submit(self, snapshot: Snapshot) -> None:
        """Serve ``snapshot`` as soon as it is built, without blocking the
        running loop (a full build runs in a thread; the old answers serve
        meanwhile; a newer Snapshot supersedes one still waiting)."""
        if self.handler.state is None:
            self.update(snapshot)  # nothing served yet: build now
        else:
            self._rebuilder.submit(snapshot)

    def _install(self, state: ServingState, seconds: float, how: str) -> None:
        self.handler.swap(state)
        if self.heap is not None:  # the old state is gone: freeze the new one
            self.heap.settle()
        self.metrics.table_builds += 1
        self.metrics.last_build_seconds = seconds
        st = state.table.stats
        self.log.info("snapshot_served serial=%d build=%s names=%d rebuilt=%d keys=%d "
                      "seconds=%.4f", state.serial, how, st.names, st.rebuilt_names, st.keys,
                      seconds)
        if self.notifier is not None:  # never raises
            self.notifier.publish(state.resolver)

    # -- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        handle = self.handler.handle
        exempt = self._proven if self.cookies is not None else None
        udp_handle = self.rrl.wrap(handle, exempt) if self.rrl is not None else handle
        server = self.config.server
        try:
            for host, port in self.config.listen.dns:
                for attempt in range(_PORT_RETRIES):
                    udp = open_udp(host, port, udp_handle, self.metrics.drop, self.udp_mode,
                                   reuse_port=self.reuse_port)
                    bound = udp.port
                    try:
                        tcp = await open_tcp(host, bound, handle, self._limits,
                                             server.tcp_idle_timeout, self.metrics.drop,
                                             self.xfr.frames, reuse_port=self.reuse_port)
                    except OSError as exc:
                        udp.close()
                        if port != 0 or attempt == _PORT_RETRIES - 1:
                            raise BindError(address=host, port=bound, cause=str(exc)) from exc
                        continue
                    self._udp.append(udp)
                    self._tcp.append(tcp)
                    self.addresses.append((host, bound))
                    self.log.info("listening address=%s port=%d proto=udp,tcp", host, bound)
                    break
            if self.notifier is not None:  # the serial served before start, if any
                self.notifier.start()
        except OSError as exc:
            await self.stop()
            raise BindError(address=host, port=port, cause=str(exc)) from exc
        except BindError:
            await self.stop()
            raise

    async def stop(self) -> None:
        await self._rebuilder.stop()
        if self.notifier is not None:
            await self.notifier.stop()
        for udp in self._udp:
            udp.close()
        for tcp in self._tcp:
            tcp.close()
        for conn in list(self._limits.connections):
            conn.abort()
        for tcp in self._tcp:
            await tcp.wait_closed()
        self._udp.clear()
        self._tcp.clear()
        self.addresses.clear()
