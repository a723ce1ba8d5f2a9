"""The TCP transport (RFC 7766): 2-byte length framing, pipelining, idle
timeout, connection limits per client address and in total.

Queries on one connection are answered in arrival order as soon as each frame
is complete. A zero-length frame closes the connection. When the client stops
reading (our write buffer fills), we stop reading too.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import cast

log = logging.getLogger("dnsserver.tcp")

Handle = Callable[[bytes, str, bool], "bytes | None"]
OnDrop = Callable[[str], None]
Xfr = Callable[[bytes, str], "list[bytes] | None"]  # zone transfer replies, None: not one


class TcpLimits:
    """Open connections per client address and in total (shared by listeners)."""

    def __init__(self, *, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self.open: dict[str, int] = {}
        self.count = 0
        self.connections: set[TcpProtocol] = set()

    def admit(self, client: str) -> bool:
        if self.count >= self.total or self.open.get(client, 0) >= self.per_client:
            return False
        self.count += 1
        self.open[client] = self.open.get(client, 0) + 1
        return True

    def release(self, client: str) -> None:
        self.count -= 1
        left = self.open.get(client, 1) - 1
        if left:
            self.open[client] = left
        else:
            self.open.pop(client, None)


class TcpProtocol(asyncio.Protocol):
    def __init__(self, handle: Handle, limits: TcpLimits, idle_timeout: float,
                 on_drop: OnDrop, xfr: Xfr | None = None) -> None:
        self._handle = handle
        self._xfr = xfr
        self._limits = limits
        self._idle = idle_timeout
        self._on_drop = on_drop
        self._buf = bytearray()
        self._client = ""
        self._admitted = False
        self._transport: asyncio.Transport | None = None
        self._last = 0.0
        self._partial_since = 0.0  # when the oldest incomplete frame began (0: none)
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._client = str(peer[0]) if peer else ""
        if not self._limits.admit(self._client):
            self._on_drop("tcp_limit")
            self._transport.abort()
            return
        self._admitted = True
        self._limits.connections.add(self)
        self._last = time.monotonic()
        self._timer = asyncio.get_running_loop().call_later(self._idle, self._check_idle)

    def _check_idle(self) -> None:
        now = time.monotonic()
        left = self._last + self._idle - now
        if self._partial_since:  # a frame dripped in byte by byte must still finish in time
            left = min(left, self._partial_since + self._idle - now)
        if left > 0:
            self._timer = asyncio.get_running_loop().call_later(left, self._check_idle)
            return
        self._timer = None
        self._on_drop("tcp_idle")
        self.close()

    def data_received(self, data: bytes) -> None:
        transport = self._transport
        if transport is None or not self._admitted:
            return
        self._last = time.monotonic()
        buf = self._buf
        buf += data
        out: list[bytes] = []
        while len(buf) >= 2:
            size = (buf[0] << 8) | buf[1]
            if size == 0:
                self._on_drop("malformed")
                self._flush(out)
                self.close()
                return
            if len(buf) < 2 + size:
                break
            self._partial_since = 0.0
            msg = bytes(buf[2:2 + size])
            del buf[:2 + size]
            frames = self._xfr(msg, self._client) if self._xfr is not None else None
            if frames is not None:  # AXFR/IXFR: several messages
                for frame in frames:
                    out += (len(frame).to_bytes(2, "big"), frame)
                continue
            reply = self._handle(msg, self._client, True)
            if reply is not None:
                out.append(len(reply).to_bytes(2, "big"))
                out.append(reply)
        if buf and not self._partial_since:
            self._partial_since = self._last
        self._flush(out)

    def _flush(self, out: list[bytes]) -> None:
        if out and self._transport is not None and not self._transport.is_closing():
            self._transport.write(b"".join(out))

    def eof_received(self) -> bool:
        return False  # close once pending replies are written

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    def close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._admitted:
            self._admitted = False
            self._limits.release(self._client)
            self._limits.connections.discard(self)
        self._transport = None


async def open_tcp(host: str, port: int, handle: Handle, limits: TcpLimits,
                   idle_timeout: float, on_drop: OnDrop, xfr: Xfr | None = None, *,
                   reuse_port: bool = False) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: TcpProtocol(handle, limits, idle_timeout, on_drop, xfr), host, port,
        reuse_address=True, reuse_port=reuse_port or None, backlog=512)
