"""config.duration: the duration forms the config accepts, and the ones it refuses."""

from __future__ import annotations

import re

import pytest

from config.duration import PATTERN, DurationError, parse_duration

GOOD = [
    ("2s", 2.0),
    ("500ms", 0.5),
    ("1m", 60.0),
    ("1.5s", 1.5),
    ("1m30s", 90.0),
    ("1h", 3600.0),
    (".25s", 0.25),
    (" 3s ", 3.0),
    ("3", 3.0),
    ("0.5", 0.5),
    (0, 0.0),
    (2, 2.0),
    (0.75, 0.75),
]
BAD = ["2x", "-1s", "", "s", "1.s", "1 s", "ms", "1sm", "1e3", True, None, [1], -1, float("inf")]


@pytest.mark.parametrize(("value", "seconds"), GOOD)
def test_parses(value: object, seconds: float) -> None:
    assert parse_duration(value) == pytest.approx(seconds)


@pytest.mark.parametrize("value", BAD)
def test_refuses(value: object) -> None:
    with pytest.raises(DurationError, match="invalid duration"):
        parse_duration(value)


@pytest.mark.parametrize(
    "text", [v for v, _ in GOOD if isinstance(v, str)] + [v for v in BAD if isinstance(v, str)]
)
def test_schema_pattern_agrees_with_parser(text: str) -> None:
    from config.schemacheck import schema

    pattern = schema()["$defs"]["duration"]["anyOf"][1]["pattern"]
    assert pattern == PATTERN
    try:
        parse_duration(text)
        ok = True
    except DurationError:
        ok = False
    assert bool(re.search(pattern, text)) == ok
