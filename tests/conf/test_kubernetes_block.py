"""The ``kubernetes`` block: client knobs of the Kubernetes sources, with the
defaults of healthwatch's KubeOptions and one clear problem per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.loader import load_text
from config.model import Kubernetes
from tests.conf.test_loader import BASE, problems_of
from tests.e2e.procs import run_fedns, write

KUBE_LINE = BASE.count("\n") + 1  # the line of "kubernetes:" appended to BASE


def test_no_block_means_the_defaults() -> None:
    assert load_text(BASE).kubernetes == Kubernetes()
    assert load_text(BASE + "kubernetes: {}\n").kubernetes == Kubernetes()


def test_every_knob_in_the_duration_syntax_of_the_config() -> None:
    text = BASE + """\
kubernetes:
  connect_timeout: 2s
  request_timeout: 1m30s
  watch_timeout: 25s
  watch_idle_timeout: 20
  backoff_base: 100ms
  backoff_cap: 1m
  retry_after_cap: 0
  heartbeat_interval: 1.5s
  heartbeat_timeout: 750ms
  list_limit: 100
  credential_reload_interval: 2m
  exec_timeout: 45s
"""
    assert load_text(text).kubernetes == Kubernetes(
        connect_timeout=2.0, request_timeout=90.0, watch_timeout=25, watch_idle_timeout=20.0,
        backoff_base=0.1, backoff_cap=60.0, retry_after_cap=0.0, heartbeat_interval=1.5,
        heartbeat_timeout=0.75, list_limit=100, credential_reload_interval=120.0,
        exec_timeout=45.0)


def test_a_partial_block_keeps_the_other_defaults() -> None:
    got = load_text(BASE + "kubernetes: {watch_idle_timeout: 25s, backoff_cap: 250ms}\n")
    assert got.kubernetes == Kubernetes(watch_idle_timeout=25.0, backoff_cap=0.25)


# (lines of the block under "kubernetes:", line offset of the problem from the
# "kubernetes:" line, column, words the message must contain)
BAD = [
    ("  connect_timeout: 0\n", 1, 20, "kubernetes.connect_timeout: must be greater than 0"),
    ("  request_timeout: soon\n", 1, 20, "kubernetes.request_timeout: invalid duration 'soon'"),
    ("  heartbeat_interval: 0s\n", 1, 23, "kubernetes.heartbeat_interval: must be greater than 0"),
    ("  heartbeat_timeout: 2h\n", 1, 22, "kubernetes.heartbeat_timeout: must be at most 1h"),
    ("  backoff_base: 0\n", 1, 17, "kubernetes.backoff_base: must be greater than 0"),
    ("  retry_after_cap: -1\n", 1, 20, "kubernetes.retry_after_cap: invalid duration"),
    ("  watch_timeout: 1500ms\n", 1, 18, "kubernetes.watch_timeout: must be a whole number of "
                                         "seconds from 1s to 1h"),
    ("  watch_timeout: 0\n", 1, 18, "timeoutSeconds), got 0s"),
    ("  watch_idle_timeout: 1s\n", 1, 23, "kubernetes.watch_idle_timeout: must be longer than 1s"),
    ("  watch_idle_timeout: 500ms\n", 1, 23, "before it ever does"),
    ("  backoff_base: 2s\n  backoff_cap: 1s\n", 2, 16,
     "kubernetes.backoff_cap: must not be shorter than backoff_base (2s), got 1s"),
    ("  backoff_base: 1m\n", 1, 17,
     "kubernetes.backoff_base: must not be longer than backoff_cap (30s, the default), got 60s"),
    ("  credential_reload_interval: 0\n", 1, 31,
     "kubernetes.credential_reload_interval: must be greater than 0"),
    ("  exec_timeout: 0\n", 1, 17, "kubernetes.exec_timeout: must be greater than 0"),
    ("  list_limit: 0\n", 1, 15, "kubernetes.list_limit: must be >= 1, got 0"),
    ("  list_limit: 1.5\n", 1, 15, "kubernetes.list_limit: expected an integer, got a number"),
    ("  pool_size: 4\n", 1, 3, "kubernetes.pool_size: unknown key 'pool_size'"),
    ("  watch_idle: 30s\n", 1, 3, "did you mean 'watch_idle_timeout'?"),
]


@pytest.mark.parametrize(("block", "offset", "column", "words"), BAD,
                         ids=[b.strip().replace("\n", ";") for b, *_ in BAD])
def test_each_bad_value_is_one_problem_at_its_line(block: str, offset: int, column: int,
                                                   words: str) -> None:
    probs = problems_of(BASE + "kubernetes:\n" + block)
    assert [(p.file, p.line, p.column) for p in probs] == [
        ("t.yaml", KUBE_LINE + offset, column)], probs
    assert words in probs[0].message, probs[0].message


def test_a_block_that_is_not_a_mapping() -> None:
    probs = problems_of(BASE + "kubernetes: 30s\n")
    assert [(p.line, p.message) for p in probs] == [
        (KUBE_LINE, "kubernetes: expected a mapping, got a string")]


def test_every_bad_knob_is_reported_at_once() -> None:
    block = "  connect_timeout: 0\n  watch_timeout: 2.5\n  list_limit: -3\n"
    probs = problems_of(BASE + "kubernetes:\n" + block)
    assert [p.line for p in probs] == [KUBE_LINE + 1, KUBE_LINE + 2, KUBE_LINE + 3], probs


def test_fedns_check_rejects_a_bad_knob_with_file_line_and_column(tmp_path: Path) -> None:
    cfg = write(tmp_path / "fedns.yaml", BASE + "kubernetes:\n  watch_idle_timeout: 1s\n")
    res = run_fedns("check", "-c", str(cfg))
    assert res.returncode != 0
    assert (f"{cfg}:{KUBE_LINE + 1}:23: kubernetes.watch_idle_timeout: must be longer than 1s"
            in res.stderr), res.stderr
    assert "Traceback" not in res.stderr
