"""Exponential backoff with jitter."""

from __future__ import annotations

import random


class Backoff:
    """Delays ``base, 2*base, 4*base ...`` capped at ``cap``, each scaled by a
    random factor in [0.5, 1.0] so that many clients do not retry in step."""

    def __init__(self, base: float, cap: float, rng: random.Random | None = None) -> None:
        if base <= 0 or cap < base:
            raise ValueError(f"backoff needs 0 < base <= cap, got base={base} cap={cap}")
        self._base = base
        self._cap = cap
        self._rng = rng or random.Random()
        self._failures = 0

    @property
    def failures(self) -> int:
        return self._failures

    def next(self) -> float:
        ceiling = min(self._cap, self._base * 2.0 ** min(self._failures, 32))
        self._failures += 1
        jitter: float = self._rng.uniform(0.5, 1.0)
        return ceiling * jitter

    def reset(self) -> None:
        self._failures = 0
