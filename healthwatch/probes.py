"""Active probes of a shard's data path: HTTP(S) GET or TCP connect.

One ``Prober`` per engine owns one ``aiohttp.ClientSession``; every check is
bounded by its timeout and never raises: it returns a ``ProbeResult``.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import ssl
import time
from dataclasses import dataclass

import aiohttp

from config.model import HttpProbe, Probe, TcpProbe

log = logging.getLogger("healthwatch.probes")

_MAX_DETAIL = 120


@dataclass(frozen=True, slots=True)
class ProbeResult:
    ok: bool
    detail: str  # "ok", "connection refused", "timeout after 0.5s", "HTTP 503", ...
    latency: float  # seconds

    @property
    def kind(self) -> str:
        """A bounded classification for metrics labels."""
        if self.ok:
            return "ok"
        d = self.detail
        if d.startswith("timeout"):
            return "timeout"
        if d == "connection refused":
            return "refused"
        if d.startswith("HTTP "):
            return "status"
        return "error"


def describe_probe(probe: Probe) -> str:
    if isinstance(probe, HttpProbe):
        return probe.url if probe.host is None else f"{probe.url} (Host: {probe.host})"
    return f"tcp://{_join_host_port(probe.host, probe.port)}"


def _join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _describe_os_error(exc: BaseException) -> str:
    err = exc
    while True:
        if isinstance(err, ConnectionRefusedError):
            return "connection refused"
        if isinstance(err, OSError) and err.errno is not None:
            if err.errno == errno.ECONNREFUSED:
                return "connection refused"
            if err.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
                return "unreachable"
            return (err.strerror or str(err)).lower()
        nxt = err.__cause__ or err.__context__
        if nxt is None or nxt is err:
            break
        err = nxt
    text = str(exc) or type(exc).__name__
    return f"error: {text}"[:_MAX_DETAIL]


class Prober:
    """Runs probes; ``start`` opens the shared HTTP session, ``stop`` closes it."""

    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            # force_close: every probe opens its own connection, so a probe
            # measures the connect path and never rides a stale keep-alive.
            connector = aiohttp.TCPConnector(force_close=True, limit=256)
            self._session = aiohttp.ClientSession(connector=connector, trust_env=False)

    async def stop(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def check(self, probe: Probe, time_limit: float) -> ProbeResult:
        start = time.monotonic()
        try:
            if isinstance(probe, TcpProbe):
                ok, detail = await self._tcp(probe, time_limit)
            else:
                ok, detail = await self._http(probe, time_limit)
        except TimeoutError:
            ok, detail = False, f"timeout after {time_limit:g}s"
        except (aiohttp.ClientSSLError, ssl.SSLError) as exc:
            why = getattr(exc, "reason", None) or exc
            ok, detail = False, f"TLS error: {why}"[:_MAX_DETAIL]
        except aiohttp.ClientConnectorError as exc:
            ok, detail = False, _describe_os_error(exc.os_error)
        except OSError as exc:
            ok, detail = False, _describe_os_error(exc)
        except (aiohttp.ClientError, ValueError) as exc:
            ok, detail = False, f"error: {type(exc).__name__}: {exc}"[:_MAX_DETAIL]
        return ProbeResult(ok, detail, time.monotonic() - start)

    async def _tcp(self, probe: TcpProbe, time_limit: float) -> tuple[bool, str]:
        async with asyncio.timeout(time_limit):
            _, writer = await asyncio.open_connection(probe.host, probe.port)
        writer.close()
        try:
            async with asyncio.timeout(time_limit):
                await writer.wait_closed()
        except (OSError, TimeoutError):
            pass
        return True, "ok"

    async def _http(self, probe: HttpProbe, time_limit: float) -> tuple[bool, str]:
        if self._session is None:
            await self.start()
        assert self._session is not None
        headers = {"Host": probe.host} if probe.host else None
        https = probe.url.lower().startswith("https://")
        ssl_arg = not probe.insecure
        async with (
            asyncio.timeout(time_limit),
            self._session.get(
                probe.url,
                headers=headers,
                allow_redirects=False,
                ssl=ssl_arg if https else True,
                server_hostname=probe.host if (https and probe.host) else None,
                timeout=aiohttp.ClientTimeout(total=time_limit),
            ) as resp,
        ):
            status = resp.status
        if probe.status_min <= status <= probe.status_max:
            return True, "ok"
        return False, f"HTTP {status}"
