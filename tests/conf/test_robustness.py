"""Mangled configs never crash the loader: the result is a Config or a ConfigError."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from config.errors import ConfigError
from config.loader import load_text
from config.model import Config

EXAMPLE = (Path(__file__).parents[2] / "config" / "example.yaml").read_text()
LINES = EXAMPLE.splitlines(keepends=True)
JUNK = ["", "x", "-1", "[]", "{}", "null", "1.2.3.4", "::", "/", "'", "1e999", "true", "a: b", "@"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    edits=st.lists(
        st.tuples(st.integers(0, len(LINES) - 1), st.integers(0, 80), st.sampled_from(JUNK)),
        min_size=1,
        max_size=4,
    )
)
def test_mangled_example_gives_config_or_config_error(edits: list[tuple[int, int, str]]) -> None:
    lines = list(LINES)
    for index, column, junk in edits:
        line = lines[index]
        cut = min(column, max(len(line) - 1, 0))
        lines[index] = line[:cut] + junk + line[cut + len(junk) :]
    try:
        result = load_text("".join(lines), "m.yaml")
    except ConfigError as exc:
        assert exc.problems and all(p.line >= 1 and p.column >= 1 for p in exc.problems)
    else:
        assert isinstance(result, Config)
