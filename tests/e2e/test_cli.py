"""``fedns check``, ``fedns serve`` refusing bad configs, and ``fedns records``."""

from __future__ import annotations

import re
from pathlib import Path

from tests.e2e.configs import GLOBAL, MISTAKE_LINES, THREE_MISTAKES, static_config
from tests.e2e.procs import run_fedns, write


def _problem_lines(text: str, path: Path) -> dict[int, str]:
    found: dict[int, str] = {}
    for line in text.splitlines():
        m = re.match(rf"{re.escape(str(path))}:(\d+):\d+: (.+)", line)
        if m:
            found[int(m.group(1))] = m.group(2)
    return found


def test_check_reports_all_three_mistakes_with_lines(tmp_path: Path) -> None:
    cfg = write(tmp_path / "bad.yaml", THREE_MISTAKES)
    res = run_fedns("check", "-c", str(cfg))
    assert res.returncode != 0
    problems = _problem_lines(res.stderr, cfg)
    assert sorted(problems) == list(MISTAKE_LINES), res.stderr
    assert "parsecs" in problems[7]
    assert "us-west9" in problems[10]
    assert "colour" in problems[14]
    assert "Traceback" not in res.stderr


def test_serve_refuses_the_same_config_with_the_same_messages(tmp_path: Path) -> None:
    cfg = write(tmp_path / "bad.yaml", THREE_MISTAKES)
    check = run_fedns("check", "-c", str(cfg))
    serve = run_fedns("serve", "-c", str(cfg), timeout=30)
    assert serve.returncode != 0
    assert _problem_lines(serve.stderr, cfg) == _problem_lines(check.stderr, cfg)
    assert "started" not in serve.stderr


def test_check_accepts_a_valid_config_and_the_shipped_example(tmp_path: Path) -> None:
    cfg = write(tmp_path / "ok.yaml", static_config())
    res = run_fedns("check", "-c", str(cfg))
    assert res.returncode == 0, res.stderr
    assert "3 clusters" in res.stdout
    example = Path(__file__).resolve().parents[2] / "config" / "example.yaml"
    res = run_fedns("check", "-c", str(example), env={"FEDNS_API_TOKEN": "x"})
    assert res.returncode == 0, res.stderr


def test_check_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    res = run_fedns("check", "-c", str(tmp_path / "nope.yaml"))
    assert res.returncode != 0
    assert "nope.yaml" in res.stderr and "Traceback" not in res.stderr


def _records(text: str) -> list[tuple[str, str, str]]:
    out = []
    for line in text.splitlines():
        parts = line.split("\t")
        if len(parts) == 5 and parts[2] == "IN":
            out.append((parts[0], parts[3], parts[4]))
    return out


def test_records_prints_the_zone_per_locality(tmp_path: Path) -> None:
    cfg = write(tmp_path / "ok.yaml", static_config())
    res = run_fedns("records", "-c", str(cfg))
    assert res.returncode == 0, res.stderr
    recs = _records(res.stdout)
    assert ("example.com.", "SOA") in {(n, t) for n, t, _ in recs}
    assert ("example.com.", "NS", "ns1.example.com.") in recs
    assert ("www.example.com.", "A", "192.0.2.80") in recs
    assert sorted(v for n, t, v in recs if n == GLOBAL and t == "A") == [
        "192.0.2.10", "192.0.2.20", "192.0.2.30"]

    res = run_fedns("records", "-c", str(cfg), "--locality", "zone:europe-west1-b")
    assert res.returncode == 0, res.stderr
    assert [v for n, t, v in _records(res.stdout) if n == GLOBAL and t == "A"] == ["192.0.2.20"]

    res = run_fedns("records", "-c", str(cfg), "--all")
    assert res.returncode == 0, res.stderr
    for view in ("zone:us-east1-b", "region:europe-west1", "zone:asia-east1-a"):
        assert f"; view: {view}\n" in res.stdout

    res = run_fedns("records", "-c", str(cfg), "--locality", "zone:mars-1")
    assert res.returncode != 0 and "unknown locality" in res.stderr


def test_records_honours_drains_in_the_state_dir(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / "drains.json").write_text('{"version": 1, "clusters": ["us"], "shards": []}')
    cfg = write(tmp_path / "ok.yaml", static_config(extra=f"state_dir: {state}"))
    res = run_fedns("records", "-c", str(cfg), "--locality", "zone:us-east1-b")
    assert res.returncode == 0, res.stderr
    assert [v for n, t, v in _records(res.stdout) if n == GLOBAL and t == "A"] == ["192.0.2.20"]
    assert sorted(p.name for p in state.iterdir()) == ["drains.json"]  # nothing written


def test_operator_commands_report_an_unreachable_server() -> None:
    res = run_fedns("status", "--api", "http://127.0.0.1:9", "--timeout", "2")
    assert res.returncode != 0
    assert "cannot reach fedns" in res.stderr and "Traceback" not in res.stderr


def test_serve_rejects_an_unknown_udp_mode_clearly(tmp_path: Path) -> None:
    cfg = write(tmp_path / "ok.yaml", static_config())
    res = run_fedns("serve", "-c", str(cfg), env={"FEDNS_UDP": "bogus"}, timeout=30)
    assert res.returncode != 0
    assert "FEDNS_UDP='bogus' is not one of mmsg, thread, loop" in res.stderr
    assert "Traceback" not in res.stderr
