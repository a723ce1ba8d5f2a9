"""docs/operations.md cannot rot.

Every ``$ command`` in its ``console`` blocks is run against a live
``fedns demo`` (free ports substituted for 5353/8053). Each command must exit
0, and every output line the doc shows under it must appear in the real
output. The production snippets the doc shows (parent-zone records,
kube-dns ``stubDomains``, the CoreDNS server block) are parsed and checked
against ``config/deploy/fedns.yaml``, so the addresses and names in them match the
shipped config.
"""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "operations.md"
DEPLOY_CONFIG = ROOT / "config" / "deploy" / "fedns.yaml"


def blocks(lang: str) -> list[str]:
    text = DOC.read_text()
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def console_commands() -> list[tuple[str, list[str]]]:
    """(command, expected output lines) in document order."""
    out: list[tuple[str, list[str]]] = []
    for block in blocks("console"):
        for line in block.splitlines():
            if line.startswith("$ "):
                out.append((line[2:].strip(), []))
            elif line.strip():
                assert out, f"output before any command: {line!r}"
                out[-1][1].append(line.strip())
    return out


def deploy_config() -> dict[str, object]:
    data = yaml.safe_load(DEPLOY_CONFIG.read_text())
    assert isinstance(data, dict)
    return data


def glue() -> dict[str, list[str]]:
    ns = deploy_config()["nameservers"]
    assert isinstance(ns, dict)
    return {str(k): [str(a) for a in v] for k, v in ns.items()}


# -- production snippets agree with config/deploy/fedns.yaml -----------------------------------


def test_parent_zone_records_match_the_configured_nameservers() -> None:
    [zone_block] = blocks("zone")
    zone = str(deploy_config()["zone"])
    ns_records: set[str] = set()
    a_records: dict[str, list[str]] = {}
    for line in zone_block.splitlines():
        name, ttl, klass, rtype, value = line.split()
        assert klass == "IN" and int(ttl) > 0
        if rtype == "NS":
            assert name == zone
            ns_records.add(value)
        elif rtype == "A":
            ipaddress.IPv4Address(value)
            a_records.setdefault(name, []).append(value)
        else:
            pytest.fail(f"unexpected record {line!r}")
    assert ns_records == set(glue())
    assert a_records == glue()  # in-zone nameservers need glue, and the same glue


def test_stub_domains_and_corefile_forward_to_the_nameservers() -> None:
    zone = str(deploy_config()["zone"]).rstrip(".")
    addresses = sorted(a for addrs in glue().values() for a in addrs)
    [kube_dns] = [yaml.safe_load(b) for b in blocks("yaml") if "stubDomains" in b]
    assert kube_dns["kind"] == "ConfigMap"
    assert kube_dns["metadata"] == {"name": "kube-dns", "namespace": "kube-system"}
    stub = json.loads(kube_dns["data"]["stubDomains"])
    assert sorted(stub[zone]) == addresses
    [corefile] = blocks("corefile")
    assert corefile.startswith(f"{zone}:53 {{")
    assert corefile.count("{") == corefile.count("}")
    forward = re.search(r"^\s*forward \. (.+?) \{", corefile, re.MULTILINE)
    assert forward is not None
    assert sorted(forward.group(1).split()) == addresses


def test_yaml_snippets_parse() -> None:
    for block in blocks("yaml"):
        assert yaml.safe_load(block) is not None


# -- console commands against a live demo --------------------------------------------


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def demo() -> Iterator[tuple[int, int]]:
    dns_port, http_port = free_port(), free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dnsserver.cli", "demo", "--dns-port", str(dns_port),
         "--http-port", str(http_port), "--backend-port", "0", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not ready(f"http://127.0.0.1:{http_port}/readyz"):
            if proc.poll() is not None or time.monotonic() > deadline:
                out = proc.stdout.read().decode(errors="replace") if proc.poll() else ""
                pytest.fail(f"demo did not become ready (exit {proc.poll()}): {out[-2000:]}")
            time.sleep(0.1)
        # every shard healthy, so the documented answers are the steady state
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/v1/status",
                                        timeout=2) as resp:
                shards = json.loads(resp.read())["shards"]
            if shards and all(s["healthy"] for s in shards):
                break
            time.sleep(0.1)
        yield dns_port, http_port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def localize(command: str, dns_port: int, http_port: int) -> list[str]:
    command = (command.replace("-p 5353", f"-p {dns_port}")
               .replace("-port=5353", f"-port={dns_port}")
               .replace("127.0.0.1:8053", f"127.0.0.1:{http_port}"))
    argv = shlex.split(command)
    if argv[0] == "fedns":
        argv = [sys.executable, "-m", "dnsserver.cli", *argv[1:]]
    return argv


def test_doc_shows_the_key_checks() -> None:
    cmds = " ".join(c for c, _ in console_commands())
    for needle in ("dig @127.0.0.1 -p 5353", "nslookup", "fedns status", "fedns drain",
                   "fedns undrain", "+tcp"):
        assert needle in cmds, needle


COMMANDS = console_commands()


@pytest.mark.parametrize(("command", "expected"), COMMANDS,
                         ids=[f"{i}:{c[:50]}" for i, (c, _) in enumerate(COMMANDS)])
def test_console_command_runs_as_documented(
    demo: tuple[int, int], command: str, expected: list[str]
) -> None:
    argv = localize(command, *demo)
    if argv[0] != sys.executable and shutil.which(argv[0]) is None:
        pytest.fail(f"{argv[0]} is not installed (needed by docs/operations.md)")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, f"{command}: exit {proc.returncode}\n{proc.stdout}{proc.stderr}"
    got = [line.strip() for line in proc.stdout.splitlines()]
    for line in expected:
        pattern = line_pattern(line)
        assert any(pattern.fullmatch(g) for g in got), \
            f"{command}: expected {line!r} in output:\n{proc.stdout}"


def line_pattern(line: str) -> re.Pattern[str]:
    """A documented output line; ``...`` stands for anything, runs of blanks for any."""
    parts = [re.escape(p.strip()) for p in line.split("...")]
    body = r"\s*.*?\s*".join(parts)
    return re.compile(re.sub(r"(\\\s|\\\t|\s)+", r"\\s+", body))


def test_line_pattern() -> None:
    assert line_pattern("status: NOERROR, id: ...").fullmatch("status: NOERROR, id: 4711")
    assert line_pattern("a ... b ... c").fullmatch("a  x   b c")
    assert line_pattern("Name:\tx").fullmatch("Name:   x")
    assert not line_pattern("status: NOERROR").fullmatch("status: NXDOMAIN")


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
@pytest.mark.parametrize(("marker", "check"), [("scrape_configs:", "config")])
def test_prometheus_snippets_pass_promtool(
    tmp_path: Path, marker: str, check: str
) -> None:
    [snippet] = [b for b in blocks("yaml") if b.startswith(marker)]
    path = tmp_path / f"{check}.yml"
    path.write_text(snippet)
    proc = subprocess.run(["promtool", "check", check, str(path)], capture_output=True,
                          text=True, timeout=30)
    if "field kubernetes_sd_configs not found" in proc.stdout + proc.stderr:
        pytest.skip("this promtool is built without Kubernetes service discovery (Debian)")
    assert proc.returncode == 0, proc.stdout + proc.stderr
