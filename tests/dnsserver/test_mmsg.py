"""Batched UDP I/O (recvmmsg/sendmmsg): every reply reaches the socket its
query came from, in batches with gaps, over IPv4 and IPv6; oversized
datagrams are dropped and counted; close stops the thread."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from dnsserver import mmsg
from dnsserver.udp import UdpThreadListener, open_udp

pytestmark = pytest.mark.skipif(not mmsg.available(), reason="no recvmmsg/sendmmsg here")


def echo(data: bytes, client: str, tcp: bool) -> bytes | None:
    """Reply with the query, the client text and a marker; drop queries
    starting with b"drop"."""
    assert not tcp
    if data.startswith(b"drop"):
        return None
    return data + b"|" + client.encode()


class Drops:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    def __call__(self, reason: str) -> None:
        self.reasons.append(reason)


def _listener(host: str, drops: Drops) -> UdpThreadListener:
    listener = open_udp(host, 0, echo, drops, "mmsg")
    assert isinstance(listener, UdpThreadListener) and listener._batch is not None
    return listener


@pytest.fixture(params=["batches", "adaptive"])
def v4(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
       ) -> Iterator[tuple[UdpThreadListener, Drops]]:
    """A listener that goes to batches after its first datagram and stays
    there ("batches"), or one with the shipped thresholds ("adaptive")."""
    if request.param == "batches":
        _batches_only(monkeypatch)
    drops = Drops()
    listener = _listener("127.0.0.1", drops)
    yield listener, drops
    listener.close()


def _batches_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mmsg, "SINGLE_WINDOW", 1)
    monkeypatch.setattr(mmsg, "BATCH_ENTER_RATE", 1e-9)
    monkeypatch.setattr(mmsg, "BATCH_LEAVE", 0)


def _clients(n: int, family: int = socket.AF_INET, host: str = "127.0.0.1"
             ) -> list[socket.socket]:
    out = []
    for _ in range(n):
        s = socket.socket(family, socket.SOCK_DGRAM)
        s.bind((host, 0))
        s.settimeout(5)
        out.append(s)
    return out


def test_every_reply_goes_back_to_its_sender(v4: tuple[UdpThreadListener, Drops]) -> None:
    listener, drops = v4
    clients = _clients(8)
    addr = ("127.0.0.1", listener.port)
    try:
        # queue far more than one batch before the server can drain them; every
        # third query is dropped by the handler, so replies and slots differ
        sent: dict[int, list[bytes]] = {k: [] for k in range(len(clients))}
        for i in range(400):
            k = i % len(clients)
            msg = (b"drop" if i % 3 == 0 else b"q") + str(i).encode()
            clients[k].sendto(msg, addr)
            if not msg.startswith(b"drop"):
                sent[k].append(msg)
        for k, s in enumerate(clients):
            got = sorted(s.recv(2048) for _ in sent[k])
            assert got == sorted(m + b"|127.0.0.1" for m in sent[k])
            s.settimeout(0.2)
            with pytest.raises(TimeoutError):
                s.recv(2048)  # nothing more: dropped queries got no reply
        assert drops.reasons == []
    finally:
        for s in clients:
            s.close()


def test_oversized_datagrams_are_dropped_and_counted(v4: tuple[UdpThreadListener, Drops]
                                                   ) -> None:
    listener, drops = v4
    (s,) = _clients(1)
    try:
        s.sendto(b"x" * mmsg.SLOT, ("127.0.0.1", listener.port))
        s.sendto(b"q-small", ("127.0.0.1", listener.port))
        assert s.recv(2048) == b"q-small|127.0.0.1"
        assert drops.reasons == ["malformed"]
        # the largest query still read whole; its reply does not fit a send
        # slot and goes out on its own
        big = b"y" * (mmsg.SLOT - 1)
        s.sendto(big, ("127.0.0.1", listener.port))
        assert s.recv(65535) == big + b"|127.0.0.1"
        assert drops.reasons == ["malformed"]
    finally:
        s.close()


def test_light_traffic_one_at_a_time_a_flood_in_batches(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    monkeypatch.setattr(mmsg, "BATCH_WINDOW", 8)
    monkeypatch.setattr(mmsg, "BATCH_ENTER_RATE", 2000)  # a slow CI machine floods too
    drops = Drops()
    # the flood's first datagram holds the thread until the whole flood is
    # queued, so the flood arrives as a backlog however fast the thread is
    # (without it, a thread that keeps up with the sender sees batches of one
    # and rightly goes back to singles before the check)
    flood_queued = threading.Event()

    def gated(data: bytes, client: str, tcp: bool) -> bytes | None:
        if data == b"f0":
            flood_queued.wait(10)
        return echo(data, client, tcp)

    listener = open_udp("127.0.0.1", 0, gated, drops, "mmsg")
    assert isinstance(listener, UdpThreadListener)
    batch = listener._batch
    assert batch is not None
    (s,) = _clients(1)
    addr = ("127.0.0.1", listener.port)
    try:
        for i in range(3):  # one at a time, each answered before the next
            s.sendto(b"q%d" % i, addr)
            assert s.recv(2048) == b"q%d|127.0.0.1" % i
        assert batch.mode == "single"
        # a flood: 64 datagrams come faster than 2,000/s, so batches follow
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        for i in range(600):
            s.sendto(b"f%d" % i, addr)
        flood_queued.set()
        got = {s.recv(2048) for _ in range(600)}
        assert got == {b"f%d|127.0.0.1" % i for i in range(600)}
        assert batch.mode == "batch"
        # quiet again: a window of 8 batches of one datagram each (at most 7
        # single batches finish the flood's window first) and it is back to singles
        for i in range(20):
            s.sendto(b"l%d" % i, addr)
            assert s.recv(2048) == b"l%d|127.0.0.1" % i
        assert batch.mode == "single"
        assert drops.reasons == []
    finally:
        s.close()
        listener.close()


def test_ipv6(monkeypatch: pytest.MonkeyPatch) -> None:
    _batches_only(monkeypatch)
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback")
    drops = Drops()
    listener = _listener("::1", drops)
    clients = _clients(3, socket.AF_INET6, "::1")
    try:
        big = b"b" * (mmsg.SLOT + 98)  # its reply is larger than a send slot (IPv6)
        clients[0].sendto(big[:-100], ("::1", listener.port))
        assert clients[0].recv(65535) == big[:-100] + b"|::1"
        for i, s in enumerate(clients):
            for j in range(20):
                s.sendto(f"q{i}-{j}".encode(), ("::1", listener.port))
        for i, s in enumerate(clients):
            got = sorted(s.recv(2048) for _ in range(20))
            assert got == sorted(f"q{i}-{j}|::1".encode() for j in range(20))
    finally:
        for s in clients:
            s.close()
        listener.close()


def test_close_stops_the_thread() -> None:
    drops = Drops()
    listener = _listener("127.0.0.1", drops)
    thread = listener._thread
    assert thread is not None and thread.is_alive()
    started = time.monotonic()
    listener.close()
    assert not thread.is_alive()
    assert time.monotonic() - started < 2.5
    assert listener.sock.fileno() == -1


@pytest.mark.parametrize("mode", ["mmsg", "thread"])
@pytest.mark.parametrize("wake_lost", [False, True])
def test_close_stops_the_thread_while_datagrams_keep_coming(
        mode: str, wake_lost: bool, caplog: pytest.LogCaptureFixture) -> None:
    """The single-datagram loop asks ``stopping()`` on the empty wake-up
    datagram and every ``SINGLE_WINDOW`` datagrams, not per datagram: with a
    sender still sending while ``close`` runs, the thread still ends at once
    (no ``udp_thread_stuck``), also when the wake-up datagram never arrives
    (sent elsewhere here, as a full receive buffer would drop it)."""
    listener = open_udp("127.0.0.1", 0, echo, Drops(), mode)
    assert isinstance(listener, UdpThreadListener)
    thread = listener._thread
    assert thread is not None
    port = listener.port
    if wake_lost:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
            other.bind(("127.0.0.1", 0))
            listener._address = other.getsockname()  # close() wakes a closed port
    done = threading.Event()

    def flood() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            deadline = time.monotonic() + 5.0
            while not done.is_set() and time.monotonic() < deadline:
                for _ in range(32):
                    s.sendto(b"x" * 40, ("127.0.0.1", port))
                time.sleep(0.0005)

    sender = threading.Thread(target=flood, daemon=True)
    sender.start()
    try:
        time.sleep(0.2)
        started = time.monotonic()
        listener.close()
        assert not thread.is_alive()
        assert time.monotonic() - started < 2.0
        assert "udp_thread_stuck" not in caplog.text
    finally:
        done.set()
        sender.join(timeout=6)
