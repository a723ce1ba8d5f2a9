"""Which queries the handler times: about one a second when quiet, at most 1
in ``sample_every`` when busy (``QueryHandler._timed``)."""

from __future__ import annotations

import dns.message
import pytest

from dnsserver import handler as handler_module
from dnsserver.server import DnsServer
from tests.dnsserver import zonefixture as zf


class Clock:
    """``time.perf_counter`` as the test sets it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def timed_per_window(rate: float, seconds: float, *, every: int = 1024, pairs: bool = False,
                     monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Send ``rate`` queries a second for ``seconds`` (on a fake clock; with
    ``pairs``, two at a time 1 ms apart); the number of timed queries in each
    second."""
    clock = Clock()
    monkeypatch.setattr(handler_module.time, "perf_counter", clock)
    server = DnsServer(zf.config(), zf.locator(), registry=None)
    assert server.update(zf.snapshot())
    server.metrics.sample_every = every
    query = dns.message.make_query(f"www.{zf.ZONE}", "A").to_wire()
    windows = [0] * int(seconds)
    start = clock.now
    for i in range(int(rate * seconds)):
        clock.now = start + ((i - i % 2) / rate + (i % 2) * 0.001 if pairs else i / rate)
        before = sum(h.count for h in server.metrics.durations.values())
        assert server.handler.handle(query, "127.0.0.1", False) is not None
        if sum(h.count for h in server.metrics.durations.values()) > before:
            windows[int(clock.now - start)] += 1
    return windows


def test_a_quiet_server_times_about_one_query_a_second(monkeypatch: pytest.MonkeyPatch) -> None:
    windows = timed_per_window(40, 20, monkeypatch=monkeypatch)
    # the gap doubles from 1 query to about 40 within the first seconds
    assert sum(windows[:2]) >= 4
    assert all(1 <= n <= 2 for n in windows[4:]), windows


def test_two_queries_close_together_do_not_make_a_quiet_server_look_busy(
        monkeypatch: pytest.MonkeyPatch) -> None:
    windows = timed_per_window(40, 20, pairs=True, monkeypatch=monkeypatch)
    assert all(1 <= n <= 2 for n in windows[4:]), windows


def test_a_busy_server_times_one_query_in_sample_every(monkeypatch: pytest.MonkeyPatch) -> None:
    windows = timed_per_window(20_000, 4, monkeypatch=monkeypatch)
    steady = windows[1:]
    assert all(19 <= n <= 21 for n in steady), windows  # 20,000 / 1024


def test_a_server_that_quiets_down_times_about_one_a_second_again(
        monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()
    monkeypatch.setattr(handler_module.time, "perf_counter", clock)
    server = DnsServer(zf.config(), zf.locator(), registry=None)
    assert server.update(zf.snapshot())
    query = dns.message.make_query(f"www.{zf.ZONE}", "A").to_wire()

    def send(rate: float, seconds: float) -> int:
        before = sum(h.count for h in server.metrics.durations.values())
        start = clock.now
        for i in range(int(rate * seconds)):
            clock.now = start + i / rate
            server.handler.handle(query, "127.0.0.1", False)
        clock.now = start + seconds
        return sum(h.count for h in server.metrics.durations.values()) - before

    send(10_000, 2)
    assert server.handler._period == 1024
    send(10, 103)  # one gap of 1024 queries at the new rate, then ~10 a window
    assert server.handler._period == 10
    assert 9 <= send(10, 10) <= 11
