"""``fedns check`` states the failover budget and the config warnings;
``--strict`` fails on warnings, ``--json`` gives the same as data; ``fedns
serve`` logs each warning once at startup. All through the real CLI process."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from config.advice import CODES
from tests.e2e.configs import static_config
from tests.e2e.procs import Fedns, run_fedns, write

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = (ROOT / "config" / "example.yaml", ROOT / "config" / "deploy" / "fedns.yaml")
DOC = ROOT / "docs" / "operations.md"
# config/deploy/fedns.yaml reads api_token and server.cookie_secret from these
ENV = {"FEDNS_API_TOKEN": "x", "FEDNS_COOKIE_SECRET": "00" * 16}

PROBED = """\
zone: example.com.
federation: myfed
ttl: 20
listen: {dns: ["127.0.0.1:0"], http: "127.0.0.1:0"}
regions:
  us-east1: {location: [33.8, -84.4], zones: [us-east1-b]}
health:
  interval: 2s
  timeout: 1s
  fall: 3
clusters:
  - name: us
    zone: us-east1-b
    services:
      - {name: web, namespace: default, addresses: [192.0.2.1], probe: {tcp: "192.0.2.1:80"}}
"""
RISKY = PROBED.replace("  fall: 3\n", "  fall: 1\n  when_all_unhealthy: nxdomain\n")


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def warning_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("warning[")]


def test_check_prints_the_budget_after_the_ok_line(tmp_path: Path) -> None:
    cfg = write(tmp_path / "ok.yaml", PROBED)
    res = run_fedns("check", "-c", str(cfg))
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith(f"{cfg}: ok: zone example.com.")
    assert any(line.startswith("failover budget") for line in lines[1:]), res.stdout
    [probe] = [line for line in lines if "shard probe fails" in line]
    # 2s x fall 3 + 1s = 7 detection, 0.1 publish, ttl 20: 27.1
    assert re.search(r"\b7 = interval 2s x fall 3 \+ timeout 1s\s+0\.1\s+20\s+27\.1$", probe), \
        probe
    [back] = [line for line in lines if "passes again" in line]
    assert re.search(r"\b5 = interval 2s x rise 2 \+ timeout 1s\s+0\.1\s+20\s+25\.1$",
                     back), back
    assert warning_lines(res.stdout) == []


def test_warnings_with_file_and_line_and_exit_zero(tmp_path: Path) -> None:
    cfg = write(tmp_path / "risky.yaml", RISKY)
    res = run_fedns("check", "-c", str(cfg))
    assert res.returncode == 0, res.stderr
    got = warning_lines(res.stdout)
    assert [w.split("]")[0] for w in got] == ["warning[no-fall-hysteresis",
                                              "warning[nxdomain-when-all-unhealthy"]
    assert got[0].startswith(f"warning[no-fall-hysteresis] {cfg}:{line_of(RISKY, 'fall:')}: ")
    assert got[1].startswith(
        f"warning[nxdomain-when-all-unhealthy] {cfg}:{line_of(RISKY, 'when_all')}: ")
    budget_at = res.stdout.index("failover budget")
    assert all(res.stdout.index(w) > budget_at for w in got)  # after the budget


def test_strict_fails_on_warnings_only(tmp_path: Path) -> None:
    risky = write(tmp_path / "risky.yaml", RISKY)
    res = run_fedns("check", "--strict", "-c", str(risky))
    assert res.returncode == 3, (res.stdout, res.stderr)
    assert "2 warnings" in res.stderr and "--strict" in res.stderr
    assert len(warning_lines(res.stdout)) == 2
    ok = write(tmp_path / "ok.yaml", PROBED)
    assert run_fedns("check", "--strict", "-c", str(ok)).returncode == 0
    bad = write(tmp_path / "bad.yaml", RISKY.replace("fall: 1", "fall: 0"))
    res = run_fedns("check", "--strict", "-c", str(bad))
    assert res.returncode == 1, res.stderr  # a config that does not load: as before
    assert "Traceback" not in res.stderr


def test_json_output(tmp_path: Path) -> None:
    cfg = write(tmp_path / "risky.yaml", RISKY)
    res = run_fedns("check", "--json", "-c", str(cfg))
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["ok"] is True and doc["file"] == str(cfg) and doc["zone"] == "example.com."
    assert [(w["code"], w["line"]) for w in doc["warnings"]] == [
        ("no-fall-hysteresis", line_of(RISKY, "fall:")),
        ("nxdomain-when-all-unhealthy", line_of(RISKY, "when_all"))]
    [probe] = [r for r in doc["budget"]["failover"] if r["failure"] == "shard probe fails"]
    assert probe["detection"] == 2 * 1 + 1 and probe["total"] == pytest.approx(3 + 0.1 + 20)
    strict = run_fedns("check", "--json", "--strict", "-c", str(cfg))
    assert strict.returncode == 3 and json.loads(strict.stdout)["warnings"]


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_shipped_examples_pass_strict(example: Path) -> None:
    res = run_fedns("check", "--strict", "-c", str(example), env=ENV)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "failover budget" in res.stdout and warning_lines(res.stdout) == []


def test_serve_logs_each_warning_once_at_startup(tmp_path: Path) -> None:
    cfg = write(tmp_path / "risky.yaml", static_config(extra="health: {fall: 1}"))
    expected = [(w["code"], w["line"], w["message"]) for w in
                json.loads(run_fedns("check", "--json", "-c", str(cfg)).stdout)["warnings"]]
    assert {c for c, _, _ in expected} == {"unprobed-static-shard"}  # fall: no probes here
    srv = Fedns("serve", "-c", str(cfg))
    try:
        srv.wait_started()
    finally:
        assert srv.stop() == 0, srv.output
    logged = re.findall(r"WARNING \S+ config_warning code=(\S+) line=(\S+) message=(.*)$",
                        srv.output, re.MULTILINE)
    assert [(c, int(line), ast.literal_eval(m)) for c, line, m in logged] == expected, \
        srv.output
    started = srv.output.index(" started zone=")
    assert all(srv.output.index(m) < started for _, _, m in expected)


def test_operations_doc_describes_every_code_and_the_example_output() -> None:
    doc = DOC.read_text()
    section = doc[doc.index("### What `fedns check` reports"):]
    section = section[:section.index("\n## ")]
    documented = re.findall(r"^\| `([a-z0-9-]+)` \|", section, re.MULTILINE)
    assert documented == list(CODES)
    [shown] = re.findall(r"```text\n\$ (fedns check .*?)\n(.*?)^```", section,
                         re.MULTILINE | re.DOTALL)
    args = shown[0].split()[1:]
    res = run_fedns(*[str(ROOT / a) if a.endswith(".yaml") else a for a in args], env=ENV)
    assert res.returncode == 0, res.stderr
    real = [" ".join(line.split()) for line in res.stdout.splitlines()]
    for line in shown[1].splitlines():
        want = " ".join(line.replace("config/", f"{ROOT}/config/", 1).split())
        assert want in real, f"{line!r} is not in the real output:\n{res.stdout}"


KUBE_PAIR = PROBED.replace("  fall: 3\n", "  fall: 3\n  cluster_grace: 3s\n") + """\
  - {name: near, source: kubernetes, region: us-east1, kubeconfig: /kc}
  - name: far
    source: kubernetes
    region: us-east1
    kubeconfig: /kc
    kubernetes:
KNOBS"""


def test_check_shows_the_slowest_clusters_lost_api_row_and_its_warning(
        tmp_path: Path) -> None:
    text = KUBE_PAIR.replace("KNOBS", "      heartbeat_interval: 3s\n"
                                      "      heartbeat_timeout: 10s\n")
    cfg = write(tmp_path / "far.yaml", text)
    res = run_fedns("check", "-c", str(cfg))
    assert res.returncode == 0, res.stderr
    [api] = [line for line in res.stdout.splitlines() if "Kubernetes API lost" in line]
    # 3s + max(grace 3s, 10s) = 13 detection, 0.1 publish, ttl 20: 33.1
    assert re.search(r"Kubernetes API lost, slowest: far \(near, far\)\s+13 = heartbeat_interval "
                     r"3s \+ max\(cluster_grace 3s, heartbeat_timeout 10s\)\s+0\.1\s+20\s+33\.1$",
                     api), api
    [warning] = warning_lines(res.stdout)
    assert warning.startswith(
        f"warning[grace-below-heartbeat] {cfg}:{line_of(text, 'heartbeat_timeout: 10s')}: ")
    assert "cluster far" in warning and "near" not in warning
    doc = json.loads(run_fedns("check", "--json", "-c", str(cfg)).stdout)
    [row] = [r for r in doc["budget"]["failover"] if r["failure"].startswith("Kubernetes")]
    assert (row["failure"], row["applies_to"], row["detection"]) == (
        "Kubernetes API lost, slowest: far", ["near", "far"], 13)


def test_check_output_is_unchanged_by_an_override_of_other_knobs(tmp_path: Path) -> None:
    other = write(tmp_path / "other.yaml", KUBE_PAIR.replace("KNOBS", "      list_limit: 50\n"))
    none = write(tmp_path / "none.yaml", KUBE_PAIR.replace("KNOBS", "      {}\n"))
    got, want = (run_fedns("check", "-c", str(p)) for p in (other, none))
    assert got.returncode == want.returncode == 0, got.stderr + want.stderr
    assert got.stdout.replace(str(other), "X") == want.stdout.replace(str(none), "X")
    assert "Kubernetes API lost (near, far)" in got.stdout
