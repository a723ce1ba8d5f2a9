"""README.md and docs/{geo,kubernetes,providers}.md cannot rot.

Every shell command those pages show — lines of ``sh``/``console`` blocks
and inline code spans that start with a command — is collected from the
text. Each one is either run here, or listed in ``NOT_RUNNABLE`` with the
reason; a command that is neither (a new one in the docs, or a changed one)
fails ``test_every_documented_command_is_run_or_excused``.

Where they run:
- against a live ``fedns demo`` started with the documented
  ``fedns demo --dns-port 15353 --http-port 18053 --backend-port 0`` (free
  ports substituted; ``fedns`` commands get ``FEDNS_API`` for its HTTP port);
  a ``# -> ADDRESS`` comment is the expected answer (waited for: failover
  takes probe rounds);
- offline, or as ``fedns serve``, on the README's own configuration snippet
  written to ``fedns.yaml`` (listen addresses and ``state_dir`` moved to
  loopback/tmp, plus a test-built GeoIP database for docs/geo.md's check).
docs/operations.md has its own test (test_docs_operations.py).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.dnsserver.mmdb import build_mmdb
from tests.e2e.procs import DIG, Fedns, eventually, status, write
from tests.ports import free_port
from tests.providers.conftest import EtcdServer, _etcd

ROOT = Path(__file__).resolve().parents[2]
DOCS = ("README.md", "docs/geo.md", "docs/kubernetes.md", "docs/providers.md")
COMMAND_WORDS = ("fedns", "dig", "curl", "kubectl", "geoipupdate", "apt-get", "docker",
                 "python", "pip", "kill", "bash", "nslookup", "etcdctl", "helm")
CRON = re.compile(r"^[\d*/,-]+(\s+[\d*/,-]+){4}\s+\S")

# -- collecting the commands ---------------------------------------------------------------


def _strip_comment(line: str) -> tuple[str, str]:
    """(command, comment) split at an unquoted `` # ``."""
    m = re.search(r"\s+#\s", line)
    if m is None:
        return line.strip(), ""
    return line[:m.start()].strip(), line[m.end():].strip()


@dataclass(frozen=True)
class Command:
    doc: str
    text: str  # as shown, without its comment
    comment: str = ""


def doc_commands() -> list[Command]:
    out: list[Command] = []
    for doc in DOCS:
        text = (ROOT / doc).read_text()
        for block in re.findall(r"^```(?:sh|bash|shell|console)\n(.*?)^```", text,
                                re.MULTILINE | re.DOTALL):
            if re.search(r"^\s*(for|while)\b", block, re.MULTILINE):
                out.append(Command(doc, block.strip()))  # a script: one command
                continue
            for line in block.replace("\\\n", " ").splitlines():
                cmd, comment = _strip_comment(line.removeprefix("$ "))
                if cmd:
                    out.append(Command(doc, cmd, comment))
        prose = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
        for m in re.finditer(r"`([^`\n]+)`", prose):
            span, words = m.group(1), m.group(1).split()
            # a lone word is a command only when the prose says to run it
            told = re.search(r"\b[Rr]un\s+$", prose[max(0, m.start() - 8):m.start()])
            if words and (words[0] in COMMAND_WORDS or CRON.match(span)) \
                    and (len(words) > 1 or told):
                out.append(Command(doc, span.strip()))
    return out


COMMANDS = doc_commands()

# The README quickstart walkthrough, run in order against the demo.
DEMO_WALKTHROUGH = (
    "dig @127.0.0.1 -p 5353 +short nginx.default.demo.svc.example.com -b 127.0.2.10",
    "curl -X POST http://127.0.0.1:8053/demo/clusters/us-west/fail",
    "dig @127.0.0.1 -p 5353 +short nginx.default.demo.svc.example.com -b 127.0.2.10",
    "dig @127.0.0.1 -p 5353 +short shop.example.com -b 127.0.2.10",
    "curl -X POST http://127.0.0.1:8053/demo/clusters/us-west/restore",
    "fedns status",
    "fedns drain us-west ; fedns undrain us-west",
)
DEMO_COMMAND = "fedns demo --dns-port 15353 --http-port 18053 --backend-port 0"
# README "Running it": operator commands against the demo ...
OPERATOR = (
    "fedns status",
    "fedns drain CLUSTER [NAMESPACE/NAME]",
    "fedns undrain CLUSTER [NAMESPACE/NAME]",
    "fedns reload",
)
# ... and commands on the README's configuration snippet (plus docs/providers.md's
# coredns-etcd provider on a real etcd, so plan and sync have something to do).
OFFLINE = (
    "fedns check -c fedns.yaml",
    "fedns records -c fedns.yaml",
    "fedns records -c fedns.yaml --locality zone:us-east1-b",
    "fedns records -c fedns.yaml --all",
)
PROVIDER_COMMANDS = (
    "fedns plan -c fedns.yaml",
    "fedns plan -c FILE [--provider NAME] [--json]",
    "fedns sync -c FILE --once [--force] [--provider NAME]",
    "fedns sync -c fedns.yaml --once",
)
SERVE = "fedns serve -c fedns.yaml"
GEO_DIG = "dig @127.0.0.1 -p 5353 +subnet=81.2.69.0/24 nginx.default.myfed.svc.example.com"

NOT_RUNNABLE: dict[str, str] = {
    "pip install -e . && fedns demo":
        "installs the package (already installed here); the demo itself runs as "
        "the documented `fedns demo --dns-port ...` fixture",
    "bash .ci/run": "the whole CI suite, which includes this test",
    "docker build -t fedns:0.1.0 .":
        "no Docker here; the Dockerfile is checked by tests/e2e/test_dockerfile.py",
    "python bench/dnsperf_bench.py":
        "a minutes-long benchmark; its harness is smoke-tested by tests/bench/",
    "python bench/kube_bench.py":
        "a minutes-long benchmark (3 x 2,000 services); figures in docs/kubernetes.md",
    "apt-get install geoipupdate": "installs a Debian package",
    "geoipupdate": "downloads GeoLite2 with a MaxMind account and licence key",
    "17 4 * * 2,5 geoipupdate && kill -HUP $(pidof fedns)":
        "a crontab line: needs a MaxMind account; SIGHUP reload is run here on "
        "`fedns serve -c fedns.yaml`",
    **dict.fromkeys((
        "fedns check -c fedns.yaml --clusters [NAME ...]",
        "fedns check -c fedns.yaml --clusters",
        "fedns check -c fedns.yaml --clusters us eu --timeout 5",
        "fedns check -c fedns.yaml --clusters --json",
        "fedns check --clusters"),
        "asks real member clusters; the same CLI runs against simulated clusters in "
        "tests/cli/test_check_clusters.py"),
    "kubectl --context member-us apply -f config/deploy/member-rbac.yaml":
        "needs a real member cluster; config/deploy/member-rbac.yaml is validated by "
        "tests/e2e/test_deploy.py",
}
# kubernetes.md's kubeconfig script (reads tokens from real member clusters)
NOT_RUNNABLE_SCRIPTS = {"OUT=federation-kubeconfig": "reads ServiceAccount tokens from "
                        "real member clusters with kubectl"}


# Commands named in prose, each covered by one that runs here.
MENTIONS: dict[str, str] = {
    "fedns serve": "fedns serve -c fedns.yaml",
    "fedns demo": DEMO_COMMAND,
    "fedns plan": "fedns plan -c fedns.yaml",
    "fedns check": "fedns check -c fedns.yaml",
    "fedns sync --once": "fedns sync -c fedns.yaml --once",
}


def _excused(cmd: Command) -> bool:
    return cmd.text in NOT_RUNNABLE or cmd.text in MENTIONS or any(cmd.text.startswith(k)
                                           for k in NOT_RUNNABLE_SCRIPTS)


RUN = {*DEMO_WALKTHROUGH, DEMO_COMMAND, *OPERATOR, *OFFLINE, *PROVIDER_COMMANDS, SERVE,
       GEO_DIG}


def test_every_documented_command_is_run_or_excused() -> None:
    shown = {c.text for c in COMMANDS}
    assert len(COMMANDS) >= 20, COMMANDS  # the collector still finds the docs' commands
    unknown = [f"{c.doc}: {c.text}" for c in COMMANDS if c.text not in RUN and not _excused(c)]
    assert not unknown, "documented commands neither run nor excused:\n" + "\n".join(unknown)
    assert set(MENTIONS.values()) <= RUN
    stale = sorted((RUN | set(NOT_RUNNABLE) | set(MENTIONS)) - shown)
    assert not stale, f"listed here but no longer in the docs: {stale}"
    for prefix in NOT_RUNNABLE_SCRIPTS:
        assert any(t.startswith(prefix) for t in shown), prefix


def test_collector() -> None:
    assert _strip_comment("dig x -b 1   # -> 127.0.2.1") == ("dig x -b 1", "-> 127.0.2.1")
    assert _strip_comment("fedns status") == ("fedns status", "")
    assert any(c.doc == "docs/geo.md" and c.text == GEO_DIG for c in COMMANDS)


# -- running them --------------------------------------------------------------------------


@dataclass
class Live:
    dns_port: int
    http_port: int
    env: dict[str, str]

    def localize(self, command: str) -> str:
        return (command.replace("-p 5353", f"-p {self.dns_port}")
                .replace("127.0.0.1:8053", f"127.0.0.1:{self.http_port}"))

    def sh(self, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        if DIG is None and command.startswith("dig"):
            pytest.skip("dig is not installed")
        return subprocess.run(["bash", "-c", self.localize(command)], capture_output=True,
                              text=True, timeout=timeout, env=self.env, cwd=self.env["PWD"])


@pytest.fixture(scope="module")
def shim(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """An environment whose ``fedns`` is this checkout's CLI."""
    bindir = tmp_path_factory.mktemp("bin")
    exe = bindir / "fedns"
    exe.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -m dnsserver.cli "$@"\n')
    exe.chmod(0o755)
    return {**os.environ, "PATH": f"{bindir}:{os.environ['PATH']}",
            "PYTHONPATH": str(ROOT), "PWD": str(bindir)}


@pytest.fixture(scope="module")
def demo(shim: dict[str, str]) -> Iterator[Live]:
    dns_port, http_port = free_port(), free_port()
    argv = shlex.split(DEMO_COMMAND.replace("15353", str(dns_port))
                       .replace("18053", str(http_port)))
    srv = Fedns(*argv[1:])
    try:
        srv.wait_started(timeout=30)
        assert (srv.dns_port, srv.http_port) == (dns_port, http_port)
        srv.wait_ready(timeout=30)
        srv.wait_healthy(timeout=30)
        yield Live(dns_port, http_port, {**shim, "FEDNS_API": srv.api})
    finally:
        assert srv.stop() == 0, srv.output


def _expected(comment: str) -> str | None:
    m = re.match(r"->\s*(\S+)", comment)
    return m.group(1) if m else None


def test_readme_quickstart_walkthrough(demo: Live) -> None:
    readme = [c for c in COMMANDS if c.doc == "README.md"]
    start = [c.text for c in readme].index(DEMO_WALKTHROUGH[0])
    walk = readme[start:start + len(DEMO_WALKTHROUGH)]
    assert [c.text for c in walk] == list(DEMO_WALKTHROUGH)
    for cmd in walk:
        want = _expected(cmd.comment)
        if want is not None:  # an answer the doc promises, after failover settles
            eventually(lambda c=cmd: demo.sh(c.text).stdout.split(),
                       lambda out, w=want: out == [w], timeout=15)
            continue
        res = demo.sh(cmd.text)
        assert res.returncode == 0, f"{cmd.text}: {res.stdout}{res.stderr}"
        if cmd.text.startswith("curl"):
            assert res.stdout.strip(), cmd.text
        if cmd.text == "fedns status":
            for word in ("CLUSTERS", "SHARDS", "us-east", "us-west", "eu", "default/nginx"):
                assert word in res.stdout, (word, res.stdout)
    # the walkthrough left the demo as it found it
    eventually(lambda: status(f"http://127.0.0.1:{demo.http_port}")["shards"],
               lambda s: all(x["healthy"] for x in s), timeout=15)
    assert demo.sh(DEMO_WALKTHROUGH[0]).stdout.split() == ["127.0.2.1"]


def test_readme_operator_commands(demo: Live) -> None:
    api = f"http://127.0.0.1:{demo.http_port}"
    res = demo.sh("fedns status")
    assert res.returncode == 0 and "healthy" in res.stdout and "probe ok" in res.stdout
    # every shard of the running demo has its own row, with its reason
    rows = res.stdout.splitlines()
    shards = status(api)["shards"]
    assert len(shards) >= 3
    for shard in shards:
        assert any(shard["service"] in row and f" {shard['cluster']} " in row
                   and shard["reason"] in row for row in rows), (shard, res.stdout)
    for template in ("fedns drain CLUSTER [NAMESPACE/NAME]",
                     "fedns undrain CLUSTER [NAMESPACE/NAME]"):
        for service in ("", " default/nginx"):
            cmd = template.replace("CLUSTER", "us-west").replace(" [NAMESPACE/NAME]", service)
            res = demo.sh(cmd)
            assert res.returncode == 0, f"{cmd}: {res.stderr}"
            drains = status(api)["drains"]
            drained = ("us-west" in drains["clusters"]) if not service else \
                ("us-west/default/nginx" in drains["shards"])
            assert drained == cmd.startswith("fedns drain"), (cmd, drains)
    assert status(api)["drains"] == {"clusters": [], "shards": []}
    res = demo.sh("fedns reload")
    assert res.returncode == 0 and "reloaded" in res.stdout, res.stdout + res.stderr
    assert status(api)["config"]["last_reload"]["ok"] is True


def _readme_config() -> str:
    text = (ROOT / "README.md").read_text()
    [block] = [b for b in re.findall(r"^```yaml\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
               if b.startswith("zone:")]
    return str(block)


def _etcd_provider_line() -> str:
    text = (ROOT / "docs" / "providers.md").read_text()
    [line] = re.findall(r"^\s*- \{type: coredns-etcd, .*\}$", text, re.MULTILINE)
    return line.strip()


@pytest.fixture(scope="module")
def etcd() -> Iterator[EtcdServer]:
    yield from _etcd()


@pytest.fixture(scope="module")
def readme_config(shim: dict[str, str], etcd: EtcdServer) -> Path:
    provider = _etcd_provider_line()
    assert '"http://127.0.0.1:2379"' in provider, provider
    provider = provider.replace("http://127.0.0.1:2379", etcd.url)
    path = Path(shim["PWD"]) / "fedns.yaml"
    return write(path, _readme_config() + f"providers:\n  {provider}\n")


def test_readme_offline_commands(shim: dict[str, str], readme_config: Path) -> None:
    live = Live(0, 0, shim)
    for cmd in OFFLINE:
        res = live.sh(cmd)
        assert res.returncode == 0, f"{cmd}: {res.stdout}{res.stderr}"
        out = res.stdout + res.stderr
        if cmd.startswith("fedns check"):
            assert "ok" in out and "2 regions" in out, out
        elif cmd.startswith("fedns records"):
            assert "$ORIGIN example.com." in out and "IN\tSOA" in out, out
            views = re.findall(r"^; view: (\S+)", out, re.MULTILINE)
            if "--all" in cmd:
                assert {"zone:us-east1-b", "region:europe-west1"} <= set(views), views
            elif "--locality" in cmd:
                assert views == ["zone:us-east1-b"], views
            assert "192.0.2.10" in out  # the us shard is in every view


def test_provider_commands_on_a_real_etcd(shim: dict[str, str], readme_config: Path) -> None:
    live = Live(0, 0, shim)
    concrete = [
        "fedns plan -c fedns.yaml",
        "fedns sync -c fedns.yaml --once --provider coredns-etcd",
        "fedns sync -c fedns.yaml --once",  # idempotent
        "fedns plan -c fedns.yaml --provider coredns-etcd --json",
    ]
    outs = []
    for cmd in concrete:
        res = live.sh(cmd, timeout=90)
        assert res.returncode == 0, f"{cmd}: {res.stdout}{res.stderr}"
        outs.append(res.stdout)
    assert "nginx" in outs[0] and "create" in outs[0].lower(), outs[0]
    assert "provider coredns-etcd: in sync" in outs[1] and "in sync (0 changes" in outs[2]
    after = json.loads(outs[3])
    assert isinstance(after, list) and len(after) == 1 and after[0]["refused"] in (None, False, "")
    assert "nginx" not in json.dumps(after)  # synced: nothing left to create


def test_readme_serve_with_the_geo_check(shim: dict[str, str], tmp_path: Path) -> None:
    text = _readme_config()
    for old in ('"0.0.0.0:53"', '"127.0.0.1:8053"', "/var/lib/fedns"):
        assert old in text, f"README config changed: {old} (update this test)"
    mmdb = build_mmdb(tmp_path / "city.mmdb")
    local = (text.replace('"0.0.0.0:53"', '"127.0.0.1:0"')
             .replace('"127.0.0.1:8053"', '"127.0.0.1:0"')
             .replace("/var/lib/fedns", str(tmp_path / "state"))
             + f"geo: {{database: {mmdb}}}\n")
    cfg = write(tmp_path / "fedns.yaml", local)
    argv = shlex.split(SERVE.replace("fedns.yaml", str(cfg)))
    srv = Fedns(*argv[1:])
    try:
        srv.wait_started()
        srv.wait_ready()
        live = Live(srv.dns_port, srv.http_port, shim)
        # docs/geo.md's check: a British client, located by ECS, with its scope.
        # GB -> europe-west1 (nearest), which has no shard -> its fallback us-east1.
        res = live.sh(GEO_DIG)
        assert res.returncode == 0, res.stderr
        assert "status: NOERROR" in res.stdout
        assert re.search(r"CLIENT-SUBNET: 81\.2\.69\.0/24/(0|24)$", res.stdout, re.MULTILINE), \
            res.stdout
        # The README's shard is probed at 192.0.2.10:8080 (TEST-NET, never answers).
        # Once it is down nothing is healthy: serve_all, the same answer for every
        # client, so the scope must be 0.
        eventually(lambda: status(srv.api)["shards"],
                   lambda sh: bool(sh) and not any(x["healthy"] for x in sh), timeout=15)
        res = live.sh(GEO_DIG)
        assert "CLIENT-SUBNET: 81.2.69.0/24/0" in res.stdout, res.stdout
        answers = re.findall(r"^nginx\.default\.myfed\.svc\.example\.com\.\s+\d+\s+IN\s+A\s+(\S+)",
                             res.stdout, re.MULTILINE)
        assert answers == ["192.0.2.10"], res.stdout
        # "SIGHUP reloads, SIGTERM stops"
        srv.signal(signal.SIGHUP)
        srv.wait_for(lambda o: "reload_applied" in o, 10, "reload_applied")
        time.sleep(0.1)
    finally:
        code = srv.stop()
    assert code == 0, srv.output
    assert "stopped" in srv.output and "Traceback" not in srv.output
