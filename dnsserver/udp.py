"""The UDP transport: one datagram in, at most one datagram out."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any, cast

log = logging.getLogger("dnsserver.udp")

Handle = Callable[[bytes, str, bool], "bytes | None"]
RCVBUF = 4 * 1024 * 1024


class UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, handle: Handle) -> None:
        self._handle = handle
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RCVBUF)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        out = self._handle(data, addr[0], False)
        if out is not None and self.transport is not None:
            self.transport.sendto(out, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("udp_error error=%r", exc)


async def open_udp(host: str, port: int, handle: Handle) -> tuple[asyncio.DatagramTransport, int]:
    """Bind a UDP endpoint; returns the transport and the bound port."""
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: UdpProtocol(handle), local_addr=(host, port))
    bound = transport.get_extra_info("sockname")[1]
    return transport, int(bound)
