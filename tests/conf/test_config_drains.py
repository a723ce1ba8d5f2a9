"""The top-level ``drains`` list: drains every replica that loads the config
applies (docs/operations.md, Drains). Targets use the drain API's syntax;
a cluster that is not configured, a bad target, a bad reason or an ``until``
without a timezone is a problem at its line."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from config.errors import ConfigError, Problem
from config.loader import load_text
from config.model import ConfigDrain
from tests.conf.test_loader import BASE

CLUSTERS = """\
clusters:
  - {name: us, zone: us-east1-b}
  - {name: eu, zone: europe-west1-b}
"""
NOV25 = datetime(2026, 11, 25, 6, 0, tzinfo=UTC).timestamp()


def drains_of(text: str) -> tuple[ConfigDrain, ...]:
    return load_text(BASE + CLUSTERS + text, "t.yaml").drains


def problems(text: str) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        load_text(BASE + CLUSTERS + text, "t.yaml")
    return info.value.problems


def only_problem(text: str) -> Problem:
    [p] = problems(text)
    return p


def line_of(text: str, needle: str) -> int:
    full = BASE + CLUSTERS + text
    return next(i for i, ln in enumerate(full.splitlines(), 1) if needle in ln)


def test_no_drains_by_default() -> None:
    assert drains_of("") == ()


def test_cluster_and_shard_targets_in_the_drain_apis_syntax() -> None:
    got = drains_of("""\
drains:
  - {cluster: us}
  - {cluster: eu, service: default/nginx, reason: "  kernel upgrade, INC-4711 "}
  - {cluster: eu, service: "ingress:web/shop"}
  - cluster: eu
    service: httproute:web/shop
""")
    assert got == (
        ConfigDrain("us"),
        ConfigDrain("eu", "default/nginx", "kernel upgrade, INC-4711"),
        ConfigDrain("eu", "ingress:web/shop"),
        ConfigDrain("eu", "httproute:web/shop"),
    )


@pytest.mark.parametrize("until", [
    "2026-11-25T06:00:00Z",  # a YAML timestamp (parsed by YAML)
    "'2026-11-25T06:00:00Z'",  # a string
    "'2026-11-25T07:00:00+01:00'",
    "2026-11-25T07:30:00+01:30",
    "'2026-11-25t06:00:00z'",  # RFC 3339 allows lower case
    "'2026-11-25 06:00:00Z'",  # and a space instead of the T
])
def test_until_is_an_rfc3339_time_with_a_timezone(until: str) -> None:
    [d] = drains_of(f"drains: [{{cluster: us, until: {until}}}]\n")
    assert d.until == NOV25


def test_fractional_seconds_are_kept() -> None:
    [d] = drains_of("drains: [{cluster: us, until: '2026-11-25T06:00:00.5Z'}]\n")
    assert d.until == NOV25 + 0.5


@pytest.mark.parametrize(("until", "says"), [
    ("2026-11-25T06:00:00", "timezone"),  # a YAML timestamp without one
    ("'2026-11-25T06:00:00'", "timezone"),
    ("2026-11-25", "timezone"),  # a YAML date: no time either
    ("'tomorrow'", "RFC 3339"),
    ("'20261125T060000Z'", "RFC 3339"),  # ISO 8601 basic format: not RFC 3339
    ("'2026-13-25T06:00:00Z'", "RFC 3339"),  # no 13th month
    ("1795528422", "RFC 3339"),  # Unix time: ambiguous to a reader
    ("2h", "RFC 3339"),  # a duration is the API's 'for', not 'until'
])
def test_bad_until_is_a_problem_at_its_line(until: str, says: str) -> None:
    text = f"drains:\n  - cluster: us\n    until: {until}\n"
    p = only_problem(text)
    assert p.line == line_of(text, "until:"), p
    assert "drains[0].until" in p.message and says in p.message, p


def test_unknown_cluster_is_a_problem_at_its_line() -> None:
    text = "drains:\n  - {cluster: us}\n  - {cluster: uss, service: default/nginx}\n"
    p = only_problem(text)
    assert p.line == line_of(text, "uss")
    assert "drains[1].cluster" in p.message and "unknown cluster 'uss'" in p.message
    assert "eu, us" in p.message  # what it could have been


@pytest.mark.parametrize("service", ["nginx", "default/", "/nginx", "a/b/c", "pod:ns/x",
                                     "ingress:shop", "'ns:x/y'"])
def test_bad_target_is_a_problem_at_its_line(service: str) -> None:
    text = f"drains:\n  - cluster: us\n    service: {service}\n"
    p = only_problem(text)
    assert p.line == line_of(text, "service:")
    assert "drains[0].service" in p.message and "NAMESPACE/NAME" in p.message, p


@pytest.mark.parametrize(("reason", "says"), [
    ('"two\\nlines"', "printable"),
    ('"bell\\a"', "printable"),
    ("x" * 201, "at most 200"),
])
def test_reason_follows_the_apis_rules(reason: str, says: str) -> None:
    text = f"drains:\n  - cluster: us\n    reason: {reason}\n"
    p = only_problem(text)
    assert p.line == line_of(text, "reason:") and says in p.message, p


def test_the_same_target_twice_is_a_problem() -> None:
    text = ("drains:\n  - {cluster: eu, service: default/nginx}\n  - {cluster: us}\n"
            "  - {cluster: eu, service: default/nginx, reason: again}\n")
    p = only_problem(text)
    assert p.line == line_of(text, "reason: again")
    assert "listed twice" in p.message and f"line {line_of(text, 'service: default')}" \
        in p.message


@pytest.mark.parametrize(("text", "says"), [
    ("drains: [{service: default/nginx}]\n", "cluster"),
    ("drains: [{cluster: us, for: 2h}]\n", "for"),
    ("drains: {cluster: us}\n", "a list"),
    ("drains: [us]\n", "a mapping"),
    ("drains: [{cluster: 7}]\n", "a string"),
])
def test_schema_checks_the_shape(text: str, says: str) -> None:
    found = problems(text)
    assert any(says in p.message for p in found), found


def test_every_problem_at_once() -> None:
    text = ("drains:\n  - {cluster: mars}\n  - {cluster: us, service: nginx}\n"
            "  - {cluster: eu, until: 2026-11-25}\n")
    assert len(problems(text)) == 3
