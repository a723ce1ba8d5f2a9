"""``fedns check``, ``fedns serve`` refusing bad configs, ``fedns records``, and
``fedns sync --once`` refusing an unsafe plan."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from tests.e2e.configs import GLOBAL, MISTAKE_LINES, THREE_MISTAKES, static_config
from tests.e2e.procs import dig, eventually, run_fedns, serving, status, write
from tests.providers import conftest as provider_fixtures
from tests.providers.conftest import EtcdServer

etcd_server = provider_fixtures.etcd_server  # a real etcd on 127.0.0.1 (the provider tests')


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


def test_records_skips_expired_drains_and_drains_of_removed_clusters(tmp_path: Path) -> None:
    """The drains file of a server: ``us`` drained for an hour more, ``eu``'s
    drain expired, ``mars`` no longer in the config (it used to be a traceback)."""
    state = tmp_path / "state"
    state.mkdir()
    now = time.time()
    (state / "drains.json").write_text(json.dumps({
        "version": 2, "clusters": ["eu", "mars", "us"], "shards": [],
        "details": [{"cluster": "us", "reason": "r", "since": now, "until": now + 3600},
                    {"cluster": "eu", "reason": "r", "since": now - 60, "until": now - 1}]}))
    before = (state / "drains.json").read_text()
    cfg = write(tmp_path / "ok.yaml", static_config(extra=f"state_dir: {state}"))
    res = run_fedns("records", "-c", str(cfg), "--locality", "zone:us-east1-b")
    assert res.returncode == 0, res.stderr
    # us drained, eu not (expired): us clients go to Europe, not Asia
    assert [v for n, t, v in _records(res.stdout) if n == GLOBAL and t == "A"] == ["192.0.2.20"]
    assert (state / "drains.json").read_text() == before  # nothing written


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


SYNC_CONFIG = """\
zone: sync.example.
federation: fed
nameservers: {{ns1: [192.0.2.53]}}
regions:
  eu: {{location: [50.0, 4.0], zones: [eu-a]}}
health: {{interval: 200ms, timeout: 100ms, rise: 1, fall: 1}}
clusters:
  - name: c1
    region: eu
    zone: eu-a
    source: static
    services:
{services}
providers:
  - {{type: coredns-etcd, endpoints: ["{url}"], prefix: {prefix}}}
"""


def _sync_config(path: Path, srv: EtcdServer, services: int) -> Path:
    lines = "\n".join(f"      - {{name: web{i}, namespace: default, addresses: [10.0.0.{i + 1}]}}"
                      for i in range(services))
    return write(path, SYNC_CONFIG.format(services=lines, url=srv.url,
                                          prefix=f"/{path.parent.name}/skydns"))


def test_sync_once_reports_a_refused_plan_once(etcd_server: EtcdServer, tmp_path: Path) -> None:
    """A refused plan reaches the operator once, exit 3 (was: printed by the
    command and logged again by the syncer as ``sync_failed``)."""
    four = _sync_config(tmp_path / "four.yaml", etcd_server, 4)  # 4 x 3 names + ns1 = 13 sets
    res = run_fedns("sync", "-c", str(four), "--once")
    assert res.returncode == 0, res.stderr
    assert "in sync (13 changes applied)" in res.stdout

    one = _sync_config(tmp_path / "one.yaml", etcd_server, 1)  # deletes 9 of the 13
    reason = "delete 9 of 13 owned record sets"
    res = run_fedns("sync", "-c", str(one), "--once")
    assert res.returncode == 3, res.stdout + res.stderr
    output = res.stdout + res.stderr
    assert output.count(reason) == 1, output
    assert "refusing unsafe plan for provider coredns-etcd" in res.stderr

    res = run_fedns("plan", "-c", str(one))
    assert res.returncode == 0, res.stderr
    output = res.stdout + res.stderr
    assert output.count(reason) == 1, output
    assert "sync would refuse this plan" in res.stdout

    res = run_fedns("sync", "-c", str(four), "--once")  # nothing was written by the refusal
    assert res.returncode == 0 and "in sync (0 changes applied)" in res.stdout, res.stderr


def test_drain_with_a_reason_and_expiry_against_a_live_server(tmp_path: Path) -> None:
    """``fedns drain --reason --for`` on a real ``fedns serve``: printed, shown by
    ``fedns status``, logged with the client, and gone by itself when it expires."""
    cfg = write(tmp_path / "ok.yaml", static_config(extra=f"state_dir: {tmp_path / 'state'}"))
    with serving(cfg) as srv:
        for bad, says in ((["--for", "0s"], "positive"), (["--for", "8d"], "invalid duration"),
                          (["--reason", "two\nlines"], "printable")):
            res = run_fedns("drain", "us", *bad, "--api", srv.api)
            assert res.returncode != 0 and "HTTP 400" in res.stderr and says in res.stderr
            assert "Traceback" not in res.stderr
        assert status(srv.api)["drains"] == {"clusters": [], "shards": []}

        res = run_fedns("drain", "us", "--reason", "kernel upgrade", "--for", "2s",
                        "--api", srv.api)
        assert res.returncode == 0, res.stderr
        assert re.fullmatch(r"drained us until \S+Z \(in [12]s\): kernel upgrade\n", res.stdout)
        res = run_fedns("status", "--api", srv.api)
        assert res.returncode == 0, res.stderr
        row = next(ln for ln in res.stdout.split("DRAINS", 1)[1].splitlines()
                   if ln.strip().startswith("us "))
        assert " ago)" in row and "(in " in row and row.endswith("127.0.0.1  kernel upgrade")
        assert re.search(r"\bdrain cluster=us service=- reason='kernel upgrade' since=\d+ "
                         r"until=\d+ by=127\.0\.0\.1\b", srv.output)
        # it ends by itself
        out = srv.wait_for(lambda o: "drain_expired cluster=us" in o, timeout=6,
                           what="drain_expired")
        assert "reason='kernel upgrade'" in out.split("drain_expired", 1)[1].splitlines()[0]
        eventually(lambda: status(srv.api)["drains"],
                   lambda d: d == {"clusters": [], "shards": []}, timeout=2)
        assert dig(srv.dns_port, GLOBAL, source="127.0.1.10") == ["192.0.2.10"]


def test_undrain_says_what_it_did_and_refuses_unknown_clusters(tmp_path: Path) -> None:
    """``fedns undrain`` of something not drained succeeds (exit 0) but says so; a
    service's undrain names the cluster drain that still keeps it out; a drain of
    an unknown cluster is a clear 404, exit 1."""
    cfg = write(tmp_path / "ok.yaml", static_config(extra=f"state_dir: {tmp_path / 'state'}"))
    with serving(cfg) as srv:
        api = ("--api", srv.api)
        res = run_fedns("undrain", "us", *api)
        assert (res.returncode, res.stdout) == (0, "us was not drained (nothing changed)\n")
        res = run_fedns("drain", "mars", *api)
        assert res.returncode == 1 and "HTTP 404: unknown cluster 'mars'" in res.stderr
        assert "Traceback" not in res.stderr
        for args in (["us"], ["us", "default/nginx"]):
            assert run_fedns("drain", *args, *api).returncode == 0
        res = run_fedns("undrain", "us", "default/nginx", *api)
        assert res.returncode == 0, res.stderr
        assert res.stdout == ("undrained us default/nginx\n"
                              "still drained: us (to end: fedns undrain us)\n")
        res = run_fedns("undrain", "us", *api)
        assert (res.returncode, res.stdout) == (0, "undrained us\n")
        assert status(srv.api)["drains"] == {"clusters": [], "shards": []}


def test_undrain_of_a_cluster_removed_from_the_config(tmp_path: Path) -> None:
    """A drain left behind by a cluster removed from the config is listed by
    ``fedns status`` and ended by ``fedns undrain`` (not only by a hand edit)."""
    extra = f"state_dir: {tmp_path / 'state'}"
    cfg = write(tmp_path / "ok.yaml", static_config(extra=extra))
    with serving(cfg) as srv:
        api = ("--api", srv.api)
        assert run_fedns("drain", "asia", "--reason", "decommission", *api).returncode == 0
        text = static_config(extra=extra)
        write(cfg, text[:text.index("  - name: asia")] + text[text.index("records:"):])
        res = run_fedns("reload", *api)
        assert res.returncode == 0, res.stderr
        assert status(srv.api)["drains"] == {"clusters": ["asia"], "shards": []}
        res = run_fedns("undrain", "asia", *api)
        assert (res.returncode, res.stdout, res.stderr) == (0, "undrained asia\n", "")
        assert status(srv.api)["drains"] == {"clusters": [], "shards": []}
        res = run_fedns("drain", "asia", *api)
        assert res.returncode == 1 and "HTTP 404: unknown cluster 'asia'" in res.stderr
