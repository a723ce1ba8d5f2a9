"""Durations: ``2s``, ``500ms``, ``1m``, ``1.5s``, ``1m30s`` or a plain number of seconds."""

from __future__ import annotations

import math
import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)(ms|s|m|h)")
# Kept in step with the "duration" pattern in schema.json.
PATTERN = r"^\s*((\d+(\.\d+)?|\.\d+)(ms|s|m|h))+\s*$|^\s*(\d+(\.\d+)?|\.\d+)\s*$"
_WHOLE = re.compile(PATTERN)


class DurationError(ValueError):
    """The text is not a duration; the message says what is expected."""


def parse_duration(value: object) -> float:
    """Return ``value`` in seconds; raise DurationError for anything else.

    Accepts non-negative ints/floats (seconds) and strings made of one or more
    ``<number><unit>`` parts with unit ms, s, m or h (``1m30s``); a bare
    numeric string means seconds.
    """
    if isinstance(value, bool):
        raise DurationError(f"invalid duration {value!r}: use e.g. 2s, 500ms, 1m or seconds")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and _WHOLE.match(value):
        text = value.strip()
        parts = _PART.findall(text)
        seconds = sum(float(num) * _UNITS[unit] for num, unit in parts) if parts else float(text)
    else:
        raise DurationError(f"invalid duration {value!r}: use e.g. 2s, 500ms, 1m or seconds")
    if not math.isfinite(seconds) or seconds < 0:
        raise DurationError(f"invalid duration {value!r}: must be a finite, non-negative time")
    return seconds
