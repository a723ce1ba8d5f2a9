"""Smoke test of the bench harness (bench/compare.py and its modules).

Not a speed test: it checks that the query files carry what they claim (per-query
ECS, random case, framing dnsperf -B reads), that gdnsd and fedns are given
equivalent data, and that one short pinned-free dnsperf run against each server
completes and yields a CPU-time figure. Bounded: a few seconds of dnsperf.
"""

from __future__ import annotations

import random
import shutil
import socket
import struct
import sys
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype
import pytest
from dnslib import DNSRecord

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import benchdata as bd  # noqa: E402
import compare  # noqa: E402
import perfrun  # noqa: E402
import procs  # noqa: E402
import pyfloor  # noqa: E402


def read_binary(path: Path) -> list[bytes]:
    data = path.read_bytes()
    out, i = [], 0
    while i < len(data):
        (n,) = struct.unpack_from("!H", data, i)
        out.append(data[i + 2:i + 2 + n])
        i += 2 + n
    assert i == len(data)
    return out


def test_query_file_carries_per_query_ecs_and_case(tmp_path: Path) -> None:
    rng = random.Random(3)
    topo = bd.Topology(services=5, chains=3)
    prefixes = bd.ecs_prefixes(rng, 50)
    queries = bd.mix_geo(topo, rng, 300, prefixes)
    msgs = read_binary(bd.write_binary(tmp_path / "q.bin", queries))
    assert len(msgs) == len(queries)
    seen_ecs = set()
    for q, raw in zip(queries, msgs, strict=True):
        rec = DNSRecord.parse(raw)
        assert str(rec.q.qname) == q.name and rec.q.qtype == q.qtype
        opts = [o for rr in rec.ar if rr.rtype == bd.T_OPT for o in rr.rdata]
        assert [(o.code, o.data) for o in opts] == [(8, q.ecs)]
        seen_ecs.add(q.ecs)
    assert len(seen_ecs) > 30  # many prefixes, not one per run
    assert any(q.name != q.name.lower() for q in queries)
    for body in prefixes:  # every ECS prefix is public (fedns would ignore private ones)
        family, source = struct.unpack_from("!HB", body)
        if family == 1:
            assert source == 24 and body[4] in bd.PUBLIC_V4
        else:
            assert source == 56 and struct.unpack_from("!H", body, 4)[0] in bd.V6_BLOCKS


@pytest.mark.skipif(shutil.which("dnsperf") is None, reason="dnsperf missing")
def test_gdnsd_and_fedns_serve_the_same_static_data(tmp_path: Path) -> None:
    topo = bd.Topology(services=4, chains=2)
    config = bd.fedns_config(topo, procs.free_port(), procs.free_port(), None)
    zone_text = procs.fedns_zone_text(tmp_path, config)
    servers = []
    try:
        servers.append(procs.start_gdnsd(tmp_path, bd.ZONE, zone_text, procs.free_port(), None))
        servers.append(procs.start_fedns(tmp_path, config, None, bd.ZONE,
                                              probe_name=bd.global_names(topo)[0]))
        names = [n for n, t in bd.static_names(topo) if t == bd.T_A]
        assert names
        for name in names[::7]:
            answers = []
            for s in servers:
                q = dns.message.make_query(bd.random_case(name, random.Random(1)), "A")
                r = dns.query.udp(q, "127.0.0.1", port=s.port, timeout=2.0)
                # only the records at the name itself: fedns chases in-zone CNAMEs
                # into the same answer, gdnsd 3 does not
                answers.append(sorted((rr.rdtype, str(item).lower()) for rr in r.answer
                                      if rr.name.to_text().lower() == name for item in rr))
            assert answers[0] == answers[1], name
            assert answers[0], name
        rng = random.Random(4)
        qfile = bd.write_binary(tmp_path / "q.bin",
                                bd.mix_geo(topo, rng, 200, bd.ecs_prefixes(rng, 20)))
        for s in servers:
            c0 = s.cpu_seconds()
            r = perfrun.run(s.port, qfile, 1, qps=500, verbose=True,
                            args=perfrun.PerfArgs(cpu=None, timeout=2.0))
            assert r.completed > 100 and r.lost == 0, (s.name, r)
            assert len(r.latencies) == r.completed
            assert r.percentile(99) is not None
            assert s.cpu_seconds() >= c0
    finally:
        for s in servers:
            s.stop()


def test_python_floor_answers_each_query_and_ignores_junk(tmp_path: Path) -> None:
    floor = procs.start_pyfloor(tmp_path, procs.free_port(), None)
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(2.0)
            s.sendto(b"\x01\x02\x03", ("127.0.0.1", floor.port))  # junk: no reply, no crash
            replies = []
            for qid in (10, 11):
                q = dns.message.make_query("WwW.Floor.Example.", "AAAA", id=qid)
                s.sendto(q.to_wire(), ("127.0.0.1", floor.port))
                replies.append(s.recv(512))
        first, second = (dns.message.from_wire(r) for r in replies)
        assert (first.id, second.id) == (10, 11)
        assert replies[0][2:] == replies[1][2:]  # the second came from the dict
        assert first.question[0].name.to_text() == "WwW.Floor.Example."
        assert [str(rr) for rrset in first.answer for rr in rrset] == ["127.0.0.1"]
        assert floor.proc.poll() is None
        assert pyfloor.made_up_reply(b"\x00" * 12) is None  # no question
        assert pyfloor.made_up_reply(replies[0]) is None  # a reply (QR set)
    finally:
        floor.stop()


def test_floor_figures_are_reported_without_a_verdict() -> None:
    def row(server: str, mix: str, mode: str, qps: float, p99: float | None) -> compare.Row:
        return compare.Row(server, mix, mode, None, qps, 1000, 0.0, 5.0, 0.03,
                           0.03 if p99 else None, p99)

    rows = [row("gdnsd", "static", "max", 100_000, None),
            row("fedns", "geo-ecs", "max", 95_000, None),
            row("pyfloor", "geo-ecs", "max", 120_000, None),
            row("gdnsd", "static", "Q5000", 5000, 0.040),
            row("fedns", "geo-ecs", "Q5000", 5000, 0.060),
            row("pyfloor", "geo-ecs", "Q5000", 5000, 0.050)]
    opts = compare.parse_args(["--rates", "", "--servers", "gdnsd,fedns,pyfloor"])
    got = {label: (value, ok) for label, value, _, ok in compare.acceptance(rows, None, opts)}
    assert got["max qps fedns geo-ecs / gdnsd static"] == (0.95, True)
    assert got["p99 at Q5000 fedns geo-ecs / gdnsd static"][1] is False
    assert got["p99 at Q5000 Python floor geo-ecs / gdnsd static"] == (1.25, None)
    assert got["max qps Python floor geo-ecs / gdnsd static"] == (1.2, None)
    assert got["p99 at Q5000 fedns geo-ecs / Python floor geo-ecs"] == (
        pytest.approx(1.2), None)
    lines: list[str] = []
    compare.print_table(rows, lines.append)
    p99 = [ln for ln in lines if ln.startswith("geo-ecs  Q5000    p99 ms")]
    assert p99 and p99[0].split()[-2:] == ["0.050", "-"]  # no gdnsd geo-ecs row here


@pytest.mark.parametrize("shebang", ["#!{exe}", "#!/usr/bin/env {exe}", "#!/usr/bin/env bash"])
def test_the_interpreter_that_runs_fedns_is_named(tmp_path: Path, shebang: str,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """``fedns_python`` reads the ``fedns`` script's ``#!`` line (a pyenv shim,
    a shell script, falls back to this interpreter) and reports its version
    and how it links libpython."""
    python = tmp_path / "python3"  # not this process's own path
    python.symlink_to(sys.executable)
    script = tmp_path / "fedns"
    script.write_text(shebang.format(exe=python) + "\nprint('fedns')\n")
    monkeypatch.setattr(procs, "fedns_exe", lambda: str(script))
    info = procs.fedns_python()
    assert info["path"] == (sys.executable if "bash" in shebang else str(python))
    assert info["version"] == sys.version.split()[0]
    assert info["libpython"] in ("static", "shared")


def test_a_round_the_host_made_busy_is_measured_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """``measured`` repeats a round in which other processes took more than
    ``--busy`` of the server's CPU, at most ``--busy-repeats`` times, and keeps
    every attempt in the raw rows."""
    others = iter([0.45, 0.20, 0.02, 0.30, 0.50, 0.40])

    def fake_measure(server: object, mix: str, qfile: Path, seconds: float, qps: int | None,
                     args: object, cpu: int | None, verbose: bool = False) -> compare.Row:
        return compare.Row("fedns", mix, "Q5000", qps, 5000, 40000, 0.0, 15.0, 0.03, 0.027,
                           0.040, next(others))

    monkeypatch.setattr(compare, "measure", fake_measure)
    opts = compare.parse_args([])
    raw: list[compare.Row] = []
    lines: list[str] = []
    server = object()

    def once() -> compare.Row:
        return compare.measured(server, "geo-ecs", Path("q"), 5000, opts,  # type: ignore[arg-type]
                                None, 0, True, raw, lines.append)  # type: ignore[arg-type]

    assert once().cpu0_other == 0.02  # 45 %, 20 %: measured again; 2 %: kept
    assert [r.busy for r in raw] == [True, True, False]
    assert once().cpu0_other == 0.40  # still busy after two repeats: the last one counts
    assert [r.busy for r in raw[3:]] == [True, True, False]
    assert sum("(busy: measured again)" in ln for ln in lines) == 4


def test_acceptance_is_judged_from_the_paired_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """The paired rounds run gdnsd on static and fedns/pyfloor on geo-ecs in the
    same rounds, and the acceptance lines use them over the per-mix rounds
    (which measure the two mixes minutes apart)."""
    seen: list[tuple[str, str, str, int | None]] = []

    def fake_measure(server: procs.ServerProc, mix: str, qfile: Path, seconds: float,
                     qps: int | None, args: object, cpu: int | None,
                     verbose: bool = False) -> compare.Row:
        seen.append((server.name, mix, qfile.name, qps))
        p99 = {"gdnsd": 0.040, "fedns": 0.044, "pyfloor": 0.042}[server.name]
        return compare.Row(server.name, mix, "max" if qps is None else f"Q{qps}", qps,
                           qps or 150_000, 1000, 0.0, 5.0, 0.03, 0.027, p99)

    monkeypatch.setattr(compare, "measure", fake_measure)
    servers = [procs.ServerProc(name, None, 0, Path("log"))  # type: ignore[arg-type]
               for name in ("gdnsd", "fedns", "pyfloor")]
    files = {m: Path(f"{m}.bin") for m in ("static", "geo-ecs", "geo")}
    opts = compare.parse_args(["--rounds", "2", "--rates", "100000,200000"])
    medians = compare.paired(servers, files, opts, None, 0, [], lambda s: None)  # type: ignore[arg-type]
    assert {(n, f) for n, _, f, _ in seen} == {
        ("gdnsd", "static.bin"), ("fedns", "geo-ecs.bin"), ("pyfloor", "geo-ecs.bin")}
    assert sorted({q or 0 for *_, q in seen}) == [0, 5000, 200000]
    assert len(seen) == 3 * 2 * 3 and all(m == compare.PAIRED for _, m, _, _ in seen)
    per_mix = [compare.Row("gdnsd", "static", "Q5000", 5000, 5000, 1000, 0.0, 5.0, 0.03,
                           0.027, 0.030),
               compare.Row("fedns", "geo-ecs", "Q5000", 5000, 5000, 1000, 0.0, 5.0, 0.03,
                           0.027, 0.060)]
    got = {label: (value, ok) for label, value, _, ok
           in compare.acceptance(per_mix + medians, None, opts)}
    assert got["p99 at Q5000 fedns geo-ecs / gdnsd static"] == (pytest.approx(1.1), True)
    assert got["p99 at Q5000 fedns geo-ecs / Python floor geo-ecs"][0] == pytest.approx(
        0.044 / 0.042)
    alone = {label: ok for label, _, _, ok in compare.acceptance(per_mix, None, opts)}
    assert alone["p99 at Q5000 fedns geo-ecs / gdnsd static"] is False  # 2.0 without them
