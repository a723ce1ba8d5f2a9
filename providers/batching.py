"""Greedy packing of change groups into API-sized batches, and call pacing.

A group holds every change of one name (and its ownership markers); groups
are never split, so each name changes atomically.  A group that alone
exceeds a limit travels alone and the service decides.  ``RateLimiter`` and
``backoff_delay`` pace the calls that carry the batches.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from typing import TypeVar

G = TypeVar("G")


def pack(groups: Sequence[G], cost: Callable[[G], tuple[int, ...]],
         limits: tuple[int, ...]) -> list[list[G]]:
    batches: list[list[G]] = []
    current: list[G] = []
    used = [0] * len(limits)
    for g in groups:
        c = cost(g)
        if current and any(u + x > lim for u, x, lim in zip(used, c, limits, strict=True)):
            batches.append(current)
            current, used = [], [0] * len(limits)
        current.append(g)
        used = [u + x for u, x in zip(used, c, strict=True)]
    if current:
        batches.append(current)
    return batches


class RateLimiter:
    """At most ``rate`` calls per second, spaced evenly (monotonic clock)."""

    def __init__(self, rate: float) -> None:
        self._interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0

    def delay(self, now: float) -> float:
        """Reserve the next slot; returns how long to wait for it."""
        slot = max(now, self._next)
        self._next = slot + self._interval
        return slot - now


def backoff_delay(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Jittered exponential backoff: ``min(cap, base * 2**attempt)`` times 0.5-1.5."""
    return float(min(cap, base * 2 ** attempt) * rng.uniform(0.5, 1.5))
