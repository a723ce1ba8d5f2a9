"""``server.cookie_secret_previous``: the DNS Cookie secrets a server still
validates after a rotation (RFC 9018 section 5, docs/security.md).

One secret or a list, each as ``cookie_secret`` is written (32 hex digits or
``${ENV_VAR}``); an unset or empty variable, an empty string or an empty list
mean none (so a Deployment can pass an optional Secret key); only with
``cookie_secret``; malformed values are reported at their line without the
value; never in a repr.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from config.errors import ConfigError
from config.loader import load_text

EXAMPLE = Path(__file__).parents[2] / "config" / "example.yaml"
BASE = "zone: example.com.\nfederation: f\n"
CURRENT = "000102030405060708090a0b0c0d0e0f"
OLD = "f0e1d2c3b4a5968778695a4b3c2d1e0f"
OLDER = "aa" * 16
VAR = "FEDNS_TEST_COOKIE_PREVIOUS"


def server(lines: str) -> str:
    return BASE + "server:\n" + lines


def previous_of(lines: str) -> tuple[bytes, ...]:
    return load_text(server(lines), "t.yaml").server.cookie_secret_previous


def problems(lines: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_text(server(lines), "t.yaml")
    return [str(p) for p in info.value.problems]


def test_default_is_none() -> None:
    assert load_text(BASE).server.cookie_secret_previous == ()
    assert previous_of(f"  cookie_secret: {CURRENT}\n") == ()


@pytest.mark.parametrize(("value", "want"), [
    (OLD, (OLD,)),
    (OLD.upper(), (OLD,)),
    (f"[{OLD}]", (OLD,)),
    (f"[{OLD}, {OLDER}]", (OLD, OLDER)),
    (f"[{OLD}, {OLDER}, {OLD}]", (OLD, OLDER)),  # each once, first place kept
])
def test_one_secret_or_a_list(value: str, want: tuple[str, ...]) -> None:
    got = previous_of(f"  cookie_secret: {CURRENT}\n  cookie_secret_previous: {value}\n")
    assert got == tuple(bytes.fromhex(w) for w in want)


def test_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VAR, OLD)
    lines = f"  cookie_secret: {CURRENT}\n  cookie_secret_previous: ${{{VAR}}}\n"
    assert previous_of(lines) == (bytes.fromhex(OLD),)
    listed = f"  cookie_secret: {CURRENT}\n  cookie_secret_previous: [{OLDER}, '${{{VAR}}}']\n"
    assert previous_of(listed) == (bytes.fromhex(OLDER), bytes.fromhex(OLD))


@pytest.mark.parametrize("empty", ["unset", "empty"])
def test_unset_or_empty_variable_means_none(monkeypatch: pytest.MonkeyPatch, empty: str) -> None:
    """The Deployment's optional Secret key: absent, the pod still starts."""
    if empty == "unset":
        monkeypatch.delenv(VAR, raising=False)
    else:
        monkeypatch.setenv(VAR, "")
    lines = f"  cookie_secret: {CURRENT}\n  cookie_secret_previous: ${{{VAR}}}\n"
    assert previous_of(lines) == ()
    listed = f"  cookie_secret: {CURRENT}\n  cookie_secret_previous: ['${{{VAR}}}', {OLD}]\n"
    assert previous_of(listed) == (bytes.fromhex(OLD),)


@pytest.mark.parametrize("value", ['""', "[]", "['']"])
def test_empty_means_none(value: str) -> None:
    assert previous_of(f"  cookie_secret: {CURRENT}\n  cookie_secret_previous: {value}\n") == ()


def test_needs_cookie_secret() -> None:
    (problem,) = problems(f"  cookie_secret_previous: {OLD}\n")
    assert "t.yaml:4:" in problem
    assert "cookie_secret_previous" in problem and "needs server.cookie_secret" in problem
    assert OLD not in problem


def test_without_cookie_secret_one_problem_only() -> None:
    """A cookie_secret that is itself wrong is reported once, not again here."""
    (problem,) = problems(f"  cookie_secret: nope\n  cookie_secret_previous: {OLD}\n")
    assert "server.cookie_secret:" in problem


@pytest.mark.parametrize("bad", ["abcdef", OLD + "00", "zz" + OLD[2:]])
def test_malformed_secret_is_reported_at_its_line_without_the_value(bad: str) -> None:
    (problem,) = problems(f"  cookie_secret: {CURRENT}\n"
                          f"  cookie_secret_previous: [{OLD}, {bad}]\n")
    assert "t.yaml:5:" in problem and "cookie_secret_previous[1]" in problem
    assert "32 hex digits" in problem
    assert bad not in problem and bad[2:8] not in problem and OLD not in problem


def test_list_item_from_a_variable_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VAR, "not hex at all")
    (problem,) = problems(f"  cookie_secret: {CURRENT}\n  cookie_secret_previous: ${{{VAR}}}\n")
    assert "cookie_secret_previous" in problem and "32 hex digits" in problem
    assert "not hex" not in problem


@pytest.mark.parametrize(("value", "message"), [
    ("12", "cookie_secret_previous"),
    ("{a: b}", "cookie_secret_previous"),
    (f"[{', '.join([OLD] * 9)}]", "cookie_secret_previous"),  # at most 8
])
def test_schema_refuses_other_shapes(value: str, message: str) -> None:
    found = problems(f"  cookie_secret: {CURRENT}\n  cookie_secret_previous: {value}\n")
    assert found and all(message in p and OLD not in p for p in found)
    assert not any("unknown key" in p for p in found)  # a known key of the wrong shape


def test_never_in_the_config_repr() -> None:
    cfg = load_text(server(f"  cookie_secret: {CURRENT}\n  cookie_secret_previous: {OLD}\n"))
    assert cfg.server.cookie_secret_previous == (bytes.fromhex(OLD),)
    for text in (repr(cfg), repr(cfg.server), str(cfg)):
        assert OLD not in text.lower() and repr(bytes.fromhex(OLD)) not in text


def test_example_shows_the_previous_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """config/example.yaml's commented cookie lines, uncommented, load."""
    text = EXAMPLE.read_text()
    for key in ("cookie_secret", "cookie_secret_previous"):
        assert f"  # {key}: " in text
        text = text.replace(f"  # {key}: ", f"  {key}: ")
    monkeypatch.setenv("FEDNS_COOKIE_SECRET", CURRENT)
    monkeypatch.delenv("FEDNS_COOKIE_SECRET_PREVIOUS", raising=False)
    assert load_text(text, str(EXAMPLE)).server.cookie_secret_previous == ()
    monkeypatch.setenv("FEDNS_COOKIE_SECRET_PREVIOUS", OLD)
    s = load_text(text, str(EXAMPLE)).server
    assert (s.cookie_secret, s.cookie_secret_previous) == (bytes.fromhex(CURRENT),
                                                           (bytes.fromhex(OLD),))
