"""The UDP transport: one datagram in, at most one datagram out.

Three receive paths, chosen by ``open_udp(mode=...)`` (``UDP_MODES``):

- ``"mmsg"`` (default on Linux): a dedicated thread receives and sends whole
  batches with ``recvmmsg``/``sendmmsg`` (``dnsserver.mmsg``): one system call
  per batch instead of two per datagram, while traffic is heavy enough to
  queue; one datagram at a time with ``recvfrom``/``sendto`` while it is
  light. Falls back to ``"thread"`` where libc lacks the calls.
- ``"thread"``: a dedicated thread loops on a blocking socket,
  ``recvfrom`` -> handler -> ``sendto``, with no selector in between (the GIL
  is released inside both system calls, so the event loop keeps running TCP,
  HTTP and rebuilds). The handler only reads the current ``ServingState``
  reference, which the loop swaps atomically.
- ``"loop"``: on the event loop (asyncio or uvloop), as below.

For ``"loop"``, instead of asyncio's DatagramProtocol (one loop iteration per datagram) the
listener registers its non-blocking socket with ``loop.add_reader`` and, on
each readiness event, drains up to ``BATCH`` datagrams with ``recvfrom`` and
answers each with ``sendto``. A reply that cannot be sent at once (socket
buffer full) is dropped and counted: the client retries, as with any UDP loss.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable

from dnsserver import mmsg

log = logging.getLogger("dnsserver.udp")

Handle = Callable[[bytes, str, bool], "bytes | None"]
OnDrop = Callable[[str], None]
RCVBUF = 4 * 1024 * 1024
SNDBUF = 4 * 1024 * 1024
BATCH = 64
MAX_DATAGRAM = 65535
UDP_MODES = ("mmsg", "thread", "loop")
DEFAULT_MODE = "mmsg"


class UdpListener:
    """A bound UDP socket served from the running loop until ``close``."""

    def __init__(self, sock: socket.socket, handle: Handle, on_drop: OnDrop) -> None:
        self.sock = sock
        self._handle = handle
        self._on_drop = on_drop
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.sock.fileno(), self._readable)

    def _readable(self) -> None:
        recvfrom = self.sock.recvfrom
        sendto = self.sock.sendto
        handle = self._handle
        for _ in range(BATCH):
            try:
                data, addr = recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # e.g. ICMP errors reported on the socket
                log.debug("udp_recv_error error=%r", exc)
                continue
            out = handle(data, addr[0], False)
            if out is None:
                continue
            try:
                sendto(out, addr)
            except (BlockingIOError, InterruptedError):
                self._on_drop("send_failed")
            except OSError as exc:
                log.debug("udp_send_error error=%r", exc)
                self._on_drop("send_failed")

    def close(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(Exception):
                self._loop.remove_reader(self.sock.fileno())
        self._loop = None
        self.sock.close()


class UdpThreadListener:
    """A bound UDP socket served by its own thread until ``close``."""

    def __init__(self, sock: socket.socket, handle: Handle, on_drop: OnDrop,
                 *, batched: bool = False) -> None:
        self.sock = sock
        self._handle = handle
        self._on_drop = on_drop
        self._batch = mmsg.BatchSocket(sock) if batched else None
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._address = sock.getsockname()

    @property
    def port(self) -> int:
        return int(self._address[1])

    def start(self) -> None:
        self.sock.setblocking(True)
        self._thread = threading.Thread(target=self._run, name=f"fedns-udp-{self.port}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        if self._batch is not None:
            self._batch.serve(self._handle, self._on_drop, lambda: self._stopping)
            return
        # UDP payloads stop at 65,527 bytes: nothing reaches MAX_DATAGRAM
        mmsg.serve_singles(self.sock, self._handle, self._on_drop, lambda: self._stopping,
                           bufsize=MAX_DATAGRAM)

    def close(self) -> None:
        """Stop the thread (woken by an empty datagram to the socket) and close."""
        self._stopping = True
        thread, self._thread = self._thread, None
        if thread is not None and thread.is_alive():
            host = str(self._address[0])
            family = self.sock.family
            if host in ("0.0.0.0", "::"):
                host = "127.0.0.1" if family == socket.AF_INET else "::1"
            with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as s:
                s.sendto(b"", (host, self.port))
            thread.join(timeout=2.0)
            if thread.is_alive():
                log.warning("udp_thread_stuck port=%d", self.port)
            elif self._batch is not None:
                self._batch.close()
        self.sock.close()


def open_udp(host: str, port: int, handle: Handle, on_drop: OnDrop,
             mode: str = DEFAULT_MODE, *, reuse_port: bool = False
             ) -> UdpListener | UdpThreadListener:
    """Bind ``host:port`` (port 0: any free port) and start serving it
    (``mode``: one of ``UDP_MODES``)."""
    if mode not in UDP_MODES:
        raise ValueError(f"udp mode {mode!r} is not one of {', '.join(UDP_MODES)}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        for opt, size in ((socket.SO_RCVBUF, RCVBUF), (socket.SO_SNDBUF, SNDBUF)):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, opt, size)
        if reuse_port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setblocking(False)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    listener: UdpListener | UdpThreadListener
    if mode == "loop":
        listener = UdpListener(sock, handle, on_drop)
    else:
        listener = UdpThreadListener(sock, handle, on_drop,
                                     batched=mode == "mmsg" and mmsg.available())
    listener.start()
    return listener
