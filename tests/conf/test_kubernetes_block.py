"""The ``kubernetes`` block: client knobs of the Kubernetes sources, with the
defaults of healthwatch's KubeOptions and one clear problem per bad value."""

from __future__ import annotations

import dataclasses
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


# -- per-cluster overrides -----------------------------------------------------------------

TWO = """\
clusters:
  - name: far
    source: kubernetes
    region: europe-west1
    kubeconfig: /kc
    kubernetes:
{far}
  - name: near
    source: kubernetes
    region: us-east1
    kubeconfig: /kc
  - name: edge
    zone: us-east1-b
    services:
      - {{name: web, namespace: default, addresses: [192.0.2.1]}}
"""


def _two(top: str, far: str) -> str:
    """BASE, a top-level ``kubernetes`` block of ``top`` lines (none when
    empty) and the clusters: ``far`` (its ``kubernetes`` block is ``far``),
    ``near`` (none) and the static ``edge``."""
    block = f"kubernetes:\n{top}" if top else ""
    return BASE + block + TWO.format(far=far.rstrip("\n"))


def line_of(text: str, needle: str, after: str = "") -> int:
    """1-based line of the first line containing ``needle`` after the first
    containing ``after``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if after in line) if after else 0
    return next(i for i, line in enumerate(lines[start:], start + 1) if needle in line)


def test_a_cluster_block_overrides_the_top_level_one_for_that_cluster_only() -> None:
    text = _two("  request_timeout: 10s\n  heartbeat_timeout: 3s\n  list_limit: 200\n",
                "      request_timeout: 1m\n      exec_timeout: 90s\n      list_limit: 50\n")
    config = load_text(text)
    far, near, edge = config.clusters
    top = Kubernetes(request_timeout=10.0, heartbeat_timeout=3.0, list_limit=200)
    assert config.kubernetes == top
    assert far.kubernetes == Kubernetes(request_timeout=60.0, heartbeat_timeout=3.0,
                                        list_limit=50, exec_timeout=90.0)
    assert near.kubernetes == top  # the top-level block, resolved
    assert edge.kubernetes is None  # a static cluster has no API client
    assert [config.kube_for(c) for c in (far, near)] == [far.kubernetes, top]


def test_without_any_block_every_kubernetes_cluster_has_the_defaults() -> None:
    config = load_text(_two("", "      {}"))
    assert [c.kubernetes for c in config.clusters] == [Kubernetes(), Kubernetes(), None]


def test_a_cluster_built_in_code_without_knobs_takes_the_top_level_block() -> None:
    config = load_text(_two("  list_limit: 7\n", "      list_limit: 8\n"))
    bare = dataclasses.replace(config.clusters[0], kubernetes=None)
    assert config.kube_for(bare) == Kubernetes(list_limit=7)


# (lines of the cluster's block, words of the one problem, on the block's nth line)
CLUSTER_BAD = [
    ("      connect_timeout: 0\n", 1, "clusters[0].kubernetes.connect_timeout: must be greater "
                                      "than 0"),
    ("      request_timeout: 2h\n", 1, "clusters[0].kubernetes.request_timeout: must be at "
                                       "most 1h"),
    ("      watch_idle_timeout: 1s\n", 1, "clusters[0].kubernetes.watch_idle_timeout: must be "
                                          "longer than 1s"),
    ("      watch_timeout: 1500ms\n", 1, "clusters[0].kubernetes.watch_timeout: must be a "
                                         "whole number"),
    ("      list_limit: 0\n", 1, "clusters[0].kubernetes.list_limit: must be >= 1, got 0"),
    ("      exec_timeout: soon\n", 1, "clusters[0].kubernetes.exec_timeout: invalid duration"),
    ("      heartbeat_timeout: 1s\n      pool_size: 4\n", 2,
     "clusters[0].kubernetes.pool_size: unknown key 'pool_size'"),
    ("      heartbeat_timout: 4s\n", 1, "did you mean 'heartbeat_timeout'?"),
]


@pytest.mark.parametrize(("block", "nth", "words"), CLUSTER_BAD,
                         ids=[b.strip().replace("\n", ";") for b, *_ in CLUSTER_BAD])
def test_a_bad_cluster_knob_is_one_problem_at_its_line(block: str, nth: int,
                                                       words: str) -> None:
    text = _two("", block)
    probs = problems_of(text)
    at = line_of(text, "kubernetes:", after="name: far") + nth
    assert [p.line for p in probs] == [at], probs
    assert words in probs[0].message, probs[0].message


def test_a_cluster_block_that_is_not_a_mapping() -> None:
    text = _two("", "      30s").replace("kubernetes:\n      30s", "kubernetes: 30s")
    probs = problems_of(text)
    assert [(p.line, p.message) for p in probs] == [
        (line_of(text, "kubernetes: 30s"),
         "clusters[0].kubernetes: expected a mapping, got a string")]


# (top-level lines, the cluster's lines, the cluster's key at fault, words)
MERGED_BAD = [
    ("  backoff_base: 5s\n", "      backoff_cap: 1s\n", "backoff_cap",
     "clusters[0].kubernetes.backoff_cap: must not be shorter than backoff_base "
     "(5s, kubernetes.backoff_base), got 1s"),
    ("  backoff_cap: 2s\n", "      backoff_base: 3s\n", "backoff_base",
     "clusters[0].kubernetes.backoff_base: must not be longer than backoff_cap "
     "(2s, kubernetes.backoff_cap), got 3s"),
    ("", "      backoff_base: 40s\n", "backoff_base",
     "clusters[0].kubernetes.backoff_base: must not be longer than backoff_cap "
     "(30s, the default), got 40s"),
    ("  backoff_base: 1s\n", "      backoff_base: 2s\n      backoff_cap: 1500ms\n",
     "backoff_cap", "clusters[0].kubernetes.backoff_cap: must not be shorter than "
                    "backoff_base (2s), got 1.5s"),
]


@pytest.mark.parametrize(("top", "far", "key", "words"), MERGED_BAD,
                         ids=[f"{t.strip()}+{f.strip()}".replace("\n", ";")
                              for t, f, *_ in MERGED_BAD])
def test_cross_key_checks_apply_to_the_merged_values_at_the_clusters_line(
        top: str, far: str, key: str, words: str) -> None:
    text = _two(top, far)
    probs = problems_of(text)
    assert [p.line for p in probs] == [line_of(text, f"{key}:", after="name: far")], probs
    assert words in probs[0].message, probs[0].message


def test_a_cluster_may_lower_both_ends_of_the_backoff_below_the_top_level_base() -> None:
    """Merged, not checked key by key: the cluster's cap 1s is below the
    top-level base 5s, but the cluster's own base 500ms is what it pairs with."""
    text = _two("  backoff_base: 5s\n  backoff_cap: 10s\n",
                "      backoff_base: 500ms\n      backoff_cap: 1s\n")
    far, near, _ = load_text(text).clusters
    assert far.kubernetes is not None and near.kubernetes is not None
    assert (far.kubernetes.backoff_base, far.kubernetes.backoff_cap) == (0.5, 1.0)
    assert (near.kubernetes.backoff_base, near.kubernetes.backoff_cap) == (5.0, 10.0)


def test_a_static_cluster_with_a_kubernetes_block_is_refused_at_its_line() -> None:
    text = BASE + """\
clusters:
  - name: edge
    zone: us-east1-b
    kubernetes: {request_timeout: 1m}
"""
    probs = problems_of(text)
    assert [(p.line, p.column, p.message) for p in probs] == [
        (line_of(text, "kubernetes:"), 5,
         "clusters[0].kubernetes: not allowed for a static cluster")]


def test_fedns_check_rejects_a_bad_cluster_knob_at_its_line(tmp_path: Path) -> None:
    text = _two("  backoff_base: 5s\n", "      backoff_cap: 1s\n")
    cfg = write(tmp_path / "fedns.yaml", text)
    res = run_fedns("check", "-c", str(cfg))
    assert res.returncode != 0
    at = line_of(text, "backoff_cap:", after="name: far")
    assert f"{cfg}:{at}:20: clusters[0].kubernetes.backoff_cap: must not be shorter" \
        in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
