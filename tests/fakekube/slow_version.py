"""A simulated API server whose ``GET /version`` can be made slow, a given number
of times: the heartbeat's view of an API server that stalls for a moment.

    api = SlowVersionAPI(name="a")
    api.slow_version(2.0, times=1)   # the next /version answers after 2 s
"""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from healthwatch.kube.sim import FakeKubeAPI


class SlowVersionAPI(FakeKubeAPI):
    """``FakeKubeAPI`` plus ``slow_version``; everything else is unchanged."""

    def __init__(self, name: str = "sim") -> None:
        super().__init__(name=name)
        self._delays: list[float] = []
        self.slow_started: list[float] = []  # time.time() each slow /version arrived

    def slow_version(self, delay: float, *, times: int = 1) -> None:
        """The next ``times`` ``/version`` requests answer after ``delay`` seconds."""
        if delay <= 0 or times < 1:
            raise ValueError(f"need delay > 0 and times >= 1, got {delay}, {times}")
        self._delays.extend([delay] * times)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if request.path.rstrip("/") != "/version":
            return await super()._handle(request)
        if self._delays:
            delay = self._delays.pop(0)
            self.slow_started.append(time.time())
            await asyncio.sleep(delay)  # the server being slow (the client gives up first)
            return await super()._handle(request)
        return await super()._handle(request)


__all__ = ["SlowVersionAPI"]
