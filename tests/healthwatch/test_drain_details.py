"""Drains with a reason, a start, an expiry and who asked: the file (version 2,
version 1 still read), the checks on reason and duration, the log lines."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from dnsserver.logs import parse_fields
from healthwatch.drains import (
    MAX_DURATION,
    Drain,
    DrainOptionError,
    Drains,
    DrainSet,
    check_reason,
    parse_drain_duration,
)
from healthwatch.state import DRAINS_FILE, SNAPSHOT_FILE, StateStore

T0 = 1_700_000_000.0

FULL = DrainSet.of([
    Drain("us", None, "kernel upgrade", T0, T0 + 7200, "10.0.0.7"),
    Drain("eu", "ingress:web/shop", "bad canary", T0 + 5, None, "127.0.0.1"),
    Drain("asia", "default/nginx"),  # nothing known: a version 1 drain
])


def test_version_2_round_trip_through_json() -> None:
    doc = json.loads(json.dumps(FULL.to_dict()))
    assert doc["version"] == 2
    back = DrainSet.from_dict(doc)
    assert back == FULL
    assert back.get("us") == Drain("us", None, "kernel upgrade", T0, T0 + 7200, "10.0.0.7")
    shop = back.get("eu", "ingress:web/shop")
    assert shop is not None and (shop.reason, shop.since) == ("bad canary", T0 + 5)
    assert back.get("asia", "default/nginx") == Drain("asia", "default/nginx")
    assert back.get("eu") is None  # only a shard of eu is drained


def test_version_2_keeps_the_version_1_fields_for_a_rollback() -> None:
    doc = FULL.to_dict()
    assert doc["clusters"] == ["us"]
    assert doc["shards"] == [{"cluster": "asia", "service": "default/nginx"},
                             {"cluster": "eu", "service": "ingress:web/shop"}]
    # what a version 1 reader takes from it: every drained name
    v1 = DrainSet.from_dict({k: doc[k] for k in ("clusters", "shards")})
    assert v1.names() == FULL.names()


def test_version_1_file_still_loads_without_details(tmp_path: Path) -> None:
    (tmp_path / DRAINS_FILE).write_text(
        '{"version": 1, "clusters": ["us"], "shards": [{"cluster": "eu", '
        '"service": "default/nginx"}]}')
    store = StateStore(str(tmp_path))
    got = Drains(store).load()
    assert store.problems == []
    assert got.entries() == [Drain("us"), Drain("eu", "default/nginx")]
    assert [(d.since, d.reason, d.until) for d in got.entries()] == [(None, "", None)] * 2
    assert got.next_expiry() is None and got.expired(T0) == []


def test_details_of_a_name_not_drained_are_ignored() -> None:
    doc = {"version": 2, "clusters": [], "shards": [],
           "details": [{"cluster": "us", "service": None, "reason": "x", "since": T0,
                        "until": None, "by": ""}]}
    assert DrainSet.from_dict(doc) == DrainSet()


@pytest.mark.parametrize("details", [
    "nope", [1], [{"service": None}], [{"cluster": "us", "since": "yesterday"}],
    [{"cluster": "us", "until": True}], [{"cluster": "us", "reason": 7}],
    [{"cluster": "us", "service": 3}],
])
def test_malformed_details_are_reported_and_nothing_else_is_lost(
        tmp_path: Path, details: object) -> None:
    (tmp_path / SNAPSHOT_FILE).write_text("{}")
    (tmp_path / DRAINS_FILE).write_text(json.dumps(
        {"version": 2, "clusters": ["us"], "shards": [], "details": details}))
    store = StateStore(str(tmp_path))
    assert Drains(store).load() == DrainSet()
    assert len(store.problems) == 1 and DRAINS_FILE in store.problems[0]
    assert (tmp_path / SNAPSHOT_FILE).read_text() == "{}"  # untouched


def test_expired_active_and_next_expiry() -> None:
    assert FULL.next_expiry() == T0 + 7200
    assert FULL.expired(T0 + 7199.9) == []
    assert [d.key for d in FULL.expired(T0 + 7200)] == [("us", None)]
    left = FULL.active(T0 + 7200)
    assert left.clusters == frozenset() and left.shards == FULL.shards
    assert left.get("eu", "ingress:web/shop") == FULL.get("eu", "ingress:web/shop")


def test_draining_again_keeps_the_start_and_replaces_the_expiry(tmp_path: Path) -> None:
    d = Drains(StateStore(str(tmp_path)))
    assert d.drain("us", now=T0, reason="kernel upgrade", until=T0 + 60, by="a") is True
    # again: nothing new is drained (False), but the expiry and `by` are replaced
    assert d.drain("us", now=T0 + 30, until=T0 + 3600, by="b") is False
    assert d.current.get("us") == Drain("us", None, "kernel upgrade", T0, T0 + 3600, "b")
    assert d.drain("us", now=T0 + 40, reason="longer") is False
    assert d.current.get("us") == Drain("us", None, "longer", T0, None, "")
    again = Drains(StateStore(str(tmp_path))).load()
    assert again.get("us") == Drain("us", None, "longer", T0, None, "")


def test_expire_removes_only_what_is_due_and_persists(tmp_path: Path) -> None:
    d = Drains(StateStore(str(tmp_path)))
    d.drain("us", now=T0, until=T0 + 10)
    d.drain("eu", "default/nginx", now=T0, until=T0 + 20)
    d.drain("asia", now=T0)
    assert d.expire(T0 + 9) == []
    assert [x.key for x in d.expire(T0 + 15)] == [("us", None)]
    on_disk = Drains(StateStore(str(tmp_path))).load()
    assert on_disk.clusters == {"asia"} and on_disk.shards == {("eu", "default/nginx")}


def test_log_lines_carry_reason_times_and_client(caplog: pytest.LogCaptureFixture) -> None:
    d = Drains(StateStore(None))
    with caplog.at_level(logging.INFO, logger="healthwatch.drains"):
        d.drain("us", now=T0, reason="kernel upgrade: it's 'urgent'", until=T0 + 60,
                by="127.0.0.1")
        d.undrain("us", now=T0 + 42, by="10.1.2.3")
        d.drain("eu", now=T0, until=T0 + 5)
        d.expire(T0 + 6)
    lines = [parse_fields(r.getMessage()) for r in caplog.records]
    assert [event for event, _ in lines] == ["drain", "undrain", "drain", "drain_expired"]
    drain, undrain, _, expired = (fields for _, fields in lines)
    assert drain["reason"] == "kernel upgrade: it's 'urgent'"
    assert (drain["since"], drain["until"], drain["by"]) == (str(int(T0)), str(int(T0 + 60)),
                                                              "127.0.0.1")
    assert undrain["reason"] == "kernel upgrade: it's 'urgent'"
    assert (undrain["by"], undrain["drained_for"]) == ("10.1.2.3", "42s")
    assert (expired["cluster"], expired["until"]) == ("eu", str(int(T0 + 5)))


@pytest.mark.parametrize("reason", ["a\nb", "tab\there", "bell\x07", "esc\x1b[31m",
                                    "x" * 201, "nul\x00"])
def test_bad_reasons_are_refused(reason: str) -> None:
    with pytest.raises(DrainOptionError):
        check_reason(reason)


def test_good_reasons_are_kept_trimmed() -> None:
    assert check_reason("  kernel upgrade (INC-42) ") == "kernel upgrade (INC-42)"
    assert check_reason("Wartung — Rechenzentrum") == "Wartung — Rechenzentrum"
    assert check_reason("x" * 200) == "x" * 200


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800.0), ("2h", 7200.0),
                                               ("1m30s", 90.0), ("500ms", 0.5), (90, 90.0),
                                               ("168h", MAX_DURATION)])
def test_durations_use_the_config_syntax(text: object, seconds: float) -> None:
    assert parse_drain_duration(text) == seconds


@pytest.mark.parametrize("text", ["0", "0s", 0, -5, "-5m", "169h", "8d", "soon", "", True,
                                  float("nan"), float("inf")])
def test_bad_durations_are_refused(text: object) -> None:
    with pytest.raises(DrainOptionError):
        parse_drain_duration(text)
