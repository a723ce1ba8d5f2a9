"""Issue 4: live reload under load loses no query; an invalid reload changes nothing.

A real ``fedns serve`` answers a bounded dnspython load (4 senders x 750
queries paced over ~6 s, each with a 2 s timeout and no retry: every single
query must be answered). While it runs, the config is reloaded twice — first
a valid change (the us shard's address), then a file with three mistakes —
once by SIGHUP and once by ``fedns reload`` (POST /v1/reload).
"""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dns.exception
import dns.message
import dns.query
import dns.rcode
import pytest

from tests.e2e.configs import GLOBAL, static_config
from tests.e2e.procs import Fedns, eventually, run_fedns, serving, status, write

OLD, NEW = "192.0.2.10", "192.0.2.99"
US_CLIENT = "127.0.1.10"
SENDERS, PER_SENDER, SECONDS = 4, 750, 6.0
QUERY_TIMEOUT = 2.0


@dataclass
class Result:
    """One sender's answers in order: (monotonic time, addresses or error text)."""

    answers: list[tuple[float, tuple[str, ...]]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def sender(port: int, result: Result, start: float) -> None:
    step = SECONDS / PER_SENDER
    for i in range(PER_SENDER):
        delay = start + i * step - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        name = GLOBAL if i % 5 else "www.example.com."
        q = dns.message.make_query(name, "A", use_edns=0)
        try:
            r = dns.query.udp(q, "127.0.0.1", port=port, timeout=QUERY_TIMEOUT,
                              source=US_CLIENT)
        except (dns.exception.Timeout, OSError) as exc:
            result.errors.append(f"query {i}: {exc!r}")
            continue
        if r.rcode() != dns.rcode.NOERROR:
            result.errors.append(f"query {i}: rcode {dns.rcode.to_text(r.rcode())}")
            continue
        got = tuple(sorted(rd.to_text() for rrset in r.answer for rd in rrset))
        if name == GLOBAL:
            result.answers.append((time.monotonic(), got))
        elif got != ("192.0.2.80",):
            result.errors.append(f"query {i}: www answered {got}")


class Load:
    """SENDERS threads of paced dnspython queries; ``join`` returns their results."""

    def __init__(self, port: int) -> None:
        self.results = [Result() for _ in range(SENDERS)]
        start = time.monotonic() + 0.05
        self.threads = [threading.Thread(target=sender, args=(port, r, start), daemon=True)
                        for r in self.results]
        for t in self.threads:
            t.start()

    def join(self) -> list[Result]:
        for t in self.threads:
            t.join(timeout=SECONDS + PER_SENDER * 0.01 + 30)
            assert not t.is_alive(), "load did not finish"
        return self.results


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[Fedns, Path]]:
    cfg = write(tmp_path / "fedns.yaml",
                static_config(extra=f"state_dir: {tmp_path / 'state'}"))
    with serving(cfg) as srv:
        yield srv, cfg
    assert "Traceback" not in srv.output, srv.output


def invalid(text: str) -> str:
    """Three mistakes on three lines; the file stays YAML."""
    out = text.replace("ttl: 5\n", "ttl: 5\nbogus_key: 1\n", 1)
    out = out.replace("region: europe-west1\n", "region: europe-west9\n", 1)
    return out.replace("ready: 2}", "ready: lots}", 1)


def serial(srv: Fedns) -> int:
    return int(status(srv.api)["snapshot"]["serial"])


def count(srv: Fedns, word: str) -> int:
    return len(re.findall(rf"\b{word}\b", srv.output))


def reload_by(method: str, srv: Fedns) -> Callable[[], None]:
    def sighup() -> None:
        srv.signal(signal.SIGHUP)

    def cli() -> None:
        run_fedns("reload", "--api", srv.api, timeout=30)

    return sighup if method == "sighup" else cli


@pytest.mark.parametrize("method", ["sighup", "cli"])
def test_reload_under_load_loses_no_query_and_rejects_invalid_configs(
        server: tuple[Fedns, Path], tmp_path: Path, method: str) -> None:
    srv, cfg = server
    good = cfg.read_text()
    reload = reload_by(method, srv)
    bad = invalid(good.replace(OLD, NEW))
    # the problems the loader finds; every one of them must reach the server's log
    check = run_fedns("check", "-c", str(write(tmp_path / "bad.yaml", bad)))
    problems = [ln.split(":", 1)[1] for ln in check.stderr.splitlines()
                if ln.startswith(str(tmp_path / "bad.yaml"))]
    assert check.returncode != 0 and len(problems) >= 3, check.stderr
    serial_before = serial(srv)

    load = Load(srv.dns_port)
    time.sleep(SECONDS * 0.25)
    # 1. a valid change, visible afterwards
    applied = count(srv, "reload_applied")
    write(cfg, good.replace(OLD, NEW))
    t_valid = time.monotonic()
    reload()
    srv.wait_for(lambda o: len(re.findall(r"\breload_applied\b", o)) > applied, 10,
                 "reload_applied")
    eventually(lambda: serial(srv), lambda s: s > serial_before, timeout=5)
    time.sleep(SECONDS * 0.2)
    # 2. an invalid file: nothing changes, every problem is logged
    serial_valid = serial(srv)
    rejected = count(srv, "reload_rejected")
    write(cfg, bad)
    t_invalid = time.monotonic()
    if method == "cli":
        res = run_fedns("reload", "--api", srv.api, timeout=30)
        assert res.returncode != 0
        for p in problems:
            assert p in res.stderr, (p, res.stderr)
    else:
        reload()
    srv.wait_for(lambda o: "action=keep_old_config" in o[o.rfind("reload_applied"):], 10,
                 "reload rejection")
    results = load.join()

    errors = [e for r in results for e in r.errors]
    assert not errors, errors[:10]
    answers = [a for r in results for a in r.answers]
    assert len(answers) == SENDERS * PER_SENDER * 4 // 5  # every GLOBAL query answered
    assert {a for _, a in answers} <= {(OLD,), (NEW,)}
    assert any(a == (OLD,) for _, a in answers) and any(a == (NEW,) for _, a in answers)
    for r in results:
        # atomic: once a sender saw the new address it never sees the old one again
        seen = [a for _, a in r.answers]
        first_new = seen.index((NEW,))
        assert all(a == (NEW,) for a in seen[first_new:]), "old answer after the new one"
        assert all(a == (OLD,) for a in seen[:first_new])
        assert all(a == (OLD,) for t, a in r.answers if t < t_valid)
        # the invalid reload changed nothing
        assert all(a == (NEW,) for t, a in r.answers if t > t_invalid)
    assert serial(srv) == serial_valid
    assert count(srv, "reload_rejected") > rejected
    log = srv.output[srv.output.rfind("reload_applied"):]
    for p in problems:
        assert p.strip() in log, (p, log)
    last = status(srv.api)["config"]["last_reload"]
    assert last["ok"] is False and len(last["problems"]) == len(problems)
