"""``fedns check --clusters``: the real CLI process asks simulated member
clusters on 127.0.0.1 (healthwatch/kube/preflight.py has the detailed cases);
here the wiring: the offline check first, then the preflight, the worse exit
status of the two, ``--json`` under ``preflight``, and argument errors
before any output."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dnsserver.cli import EXIT_FAIL, EXIT_OK, EXIT_WARNINGS
from tests.e2e.procs import run_fedns, write
from tests.fakekube import (
    FakeKubeAPI,
    KubeconfigEntry,
    endpoint_slice,
    service,
    write_kubeconfig,
)
from tests.ports import free_port

CONFIG = """\
zone: example.com.
federation: fed
listen: {{dns: ["127.0.0.1:0"], http: "127.0.0.1:0"}}
regions:
  us-east1: {{location: [33.8, -84.4], zones: [us-east1-b]}}
kubernetes: {{connect_timeout: 1s, request_timeout: 2s}}
clusters:
  - {{name: good, source: kubernetes, kubeconfig: {kubeconfig}, context: good,
     region: us-east1, zone: us-east1-b}}
  - {{name: gone, source: kubernetes, kubeconfig: {kubeconfig}, context: gone,
     region: us-east1, zone: us-east1-b}}
  - {{name: static, region: us-east1, zone: us-east1-b,
     services: [{{name: web, namespace: default, addresses: [192.0.2.1]}}]}}
"""


@pytest.fixture
async def config(tmp_path: Path) -> AsyncIterator[Path]:
    """A config with a simulated cluster ``good`` (one federated Service), a
    cluster ``gone`` whose API port is closed, and a static one."""
    good = FakeKubeAPI(name="good")
    await good.start()
    good.apply("services", service("web", lb_ips=["192.0.2.10"]))
    good.apply("endpointslices", endpoint_slice("web", ready=2))
    kubeconfig = write_kubeconfig(os.path.join(tmp_path, "kubeconfig"),
                                  [good.kubeconfig_entry("good"),
                                   KubeconfigEntry("gone", f"http://127.0.0.1:{free_port()}")])
    try:
        yield write(tmp_path / "fedns.yaml", CONFIG.format(kubeconfig=kubeconfig))
    finally:
        await good.kill()


async def check(*args: str) -> tuple[int, str, str]:
    """``fedns check ARGS`` in a thread, so the simulated API keeps answering."""
    res = await asyncio.to_thread(run_fedns, "check", *args, timeout=60.0)
    return res.returncode, res.stdout, res.stderr


async def test_a_reachable_cluster_passes_after_the_offline_check(config: Path) -> None:
    rc, out, err = await check("-c", str(config), "--clusters", "good")
    assert rc == EXIT_OK, out + err
    assert out.startswith(f"{config}: ok: zone example.com.")
    offline, _, preflight = out.partition("\n\n")  # the offline check, then the preflight
    assert "failover budget" in offline and "list services" not in offline, out
    assert "good" in preflight and "list services" in preflight, out
    assert "gone" not in preflight  # only the clusters named


async def test_an_unreachable_cluster_fails_the_check_and_is_named(config: Path) -> None:
    rc, out, err = await check("-c", str(config), "--clusters", "--timeout", "2")
    assert rc == EXIT_FAIL, out + err
    assert "good" in out and "gone" in out, out


async def test_json_carries_the_preflight_next_to_the_budget(config: Path) -> None:
    rc, out, err = await check("-c", str(config), "--clusters", "good", "--json")
    assert rc == EXIT_OK, err
    doc = json.loads(out)
    assert doc["ok"] is True and "budget" in doc, doc.keys()
    [cluster] = doc["preflight"]["clusters"]
    assert cluster["cluster"] == "good", cluster


@pytest.mark.parametrize("args, message", [
    (("--clusters", "nope"), "unknown cluster 'nope'"),
    (("--clusters", "static"), "source: static"),
    (("--clusters", "good", "--timeout", "0"), "timeout must be a positive number"),
    (("--timeout", "5"), "--timeout applies to --clusters only"),
])
async def test_bad_arguments_fail_before_any_output(config: Path, args: tuple[str, ...],
                                                    message: str) -> None:
    rc, out, err = await check("-c", str(config), *args)
    assert rc not in (EXIT_OK, EXIT_WARNINGS), (out, err)
    assert out == "", out
    assert message in err, err
