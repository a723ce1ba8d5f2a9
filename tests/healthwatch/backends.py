"""Real HTTP backends on loopback addresses that tests can kill and restore."""

from __future__ import annotations

import asyncio
import socket
import ssl

from aiohttp import web


class Backend:
    """An aiohttp server on ``host``; keeps its port across stop()/start()."""

    def __init__(self, host: str = "127.0.0.1", *, ssl_context: ssl.SSLContext | None = None,
                 expect_host: str | None = None) -> None:
        self.host = host
        self.port = 0
        self.status = 200
        self.delay = 0.0
        self.seen_hosts: list[str] = []
        self._expect_host = expect_host
        self._ssl = ssl_context
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        self.seen_hosts.append(request.host)
        if self.delay:
            await asyncio.sleep(self.delay)
        if self._expect_host is not None and request.host.split(":")[0] != self._expect_host:
            return web.Response(status=421, text="wrong host")
        return web.Response(status=self.status, text="ok")

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        if self.port == 0:
            with socket.socket() as s:
                s.bind((self.host, 0))
                self.port = s.getsockname()[1]
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True,
                           ssl_context=self._ssl)
        await site.start()
        self._runner = runner

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl else "http"
        return f"{scheme}://{self.host}:{self.port}/healthz"
