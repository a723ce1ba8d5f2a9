"""An exec credential plugin that never exits.

The official client runs exec plugins without a time limit; fedns runs them
through its wrapper (``healthwatch.kube.execplugin``), which kills a plugin,
and what it started, after ``exec_timeout``. Real plugins (small Python
scripts, ``tests.fakekube.auth.write_exec_plugin``) that hang on demand, the
real ``kubernetes`` client, and the token-checking simulated API server:

- the first load fails with a reason that names the plugin and the limit,
  and the source connects once the plugin answers again;
- a reload after a 401 fails the same way (log, counter, the cluster's
  error), and a later reload works;
- a reload after a file change fails without touching the credentials in use.
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from healthwatch.kube import KubeconfigError
from healthwatch.kube.client import load_client
from tests.fakekube.auth import ExecPlugin, write_exec_kubeconfig, write_exec_plugin
from tests.healthwatch.kube.harness import Harness, shard
from tests.healthwatch.kube.test_credentials import (
    NEW,
    OLD,
    OPTIONS,
    WITHIN,
    _auth_api,
    _no_token_logged,
    _start,
)

# Long enough for a working plugin (a Python script) to answer on a busy
# machine; a hanging one sleeps ten times as long (HANG_SECONDS).
EXEC_TIMEOUT = 3.0
EXEC_OPTIONS = replace(OPTIONS, exec_timeout=EXEC_TIMEOUT)
TIMED_OUT = f"did not finish within {EXEC_TIMEOUT:g} s"


def _timed_out(plugin: ExecPlugin) -> str:
    """The reason a load gives for ``plugin`` hanging, as a regex."""
    return re.escape(f"exec plugin {plugin.command!r} {TIMED_OUT}")


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a process that still runs (a zombie, dead but not
    yet reaped by its new parent, counts as gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="utf-8")
    except (FileNotFoundError, ProcessLookupError):
        return False
    state = next((line for line in status.splitlines() if line.startswith("State:")), "")
    return "zombie" not in state and "(dead)" not in state


def _running(pids: list[int]) -> list[int]:
    return [p for p in pids if _alive(p)]


def _exec_kubeconfig(directory: str, plugin: ExecPlugin, server: str) -> str:
    return write_exec_kubeconfig(os.path.join(directory, "exec.kubeconfig"), context="fed-a",
                                 server=server, command=plugin.command)


def test_exec_plugin_that_hangs_is_killed_with_what_it_started_and_the_load_fails_saying_so(
    tmp_path: Path,
) -> None:
    plugin = write_exec_plugin(tmp_path, OLD)
    plugin.hang()
    path = _exec_kubeconfig(str(tmp_path), plugin, "http://127.0.0.1:9")

    with pytest.raises(KubeconfigError, match=_timed_out(plugin)):
        load_client(path, "fed-a", EXEC_OPTIONS)

    hung = plugin.hung_processes()
    assert len(hung) == 2, hung  # the plugin, and the child it started
    deadline = time.monotonic() + WITHIN  # killed by now; gone once the kernel is done
    while _running(hung) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _running(hung) == []
    assert plugin.runs == 1


async def test_exec_plugin_that_hangs_at_start_is_reported_and_the_source_connects_later(
    kube: Harness,
) -> None:
    plugin = write_exec_plugin(kube.tmp, OLD)
    plugin.hang()
    api = await _auth_api(OLD)
    path = _exec_kubeconfig(kube.tmp, plugin, api.url)
    kube.api = api
    await kube.start(options=EXEC_OPTIONS, kubeconfig=path, context="fed-a")

    down = await kube.wait_for(lambda r: TIMED_OUT in (r.last_error or ""), within=WITHIN)
    assert not down.synced and not down.reachable
    assert re.search(_timed_out(plugin), down.last_error or ""), down.last_error

    plugin.hang(False)  # the plugin answers again: the next attempt connects
    await kube.wait_for(lambda r: r.synced and r.reachable and shard(r, "web") is not None,
                        within=WITHIN)
    assert api.presented(OLD)


async def test_exec_plugin_that_hangs_on_a_reload_after_a_401_is_reported_and_tried_again(
    kube: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    registry = CollectorRegistry()
    plugin = write_exec_plugin(kube.tmp, OLD)
    api = await _auth_api(OLD)
    path = _exec_kubeconfig(kube.tmp, plugin, api.url)
    await _start(kube, api, path, options=EXEC_OPTIONS, registry=registry, within=WITHIN)
    seen = len(kube.reports)

    plugin.hang()  # asked for a new token, the plugin hangs
    api.accept(NEW)  # the one it handed out is revoked
    api.drop_watches()
    down = await kube.wait_for(lambda r: TIMED_OUT in (r.last_error or ""), within=WITHIN)
    error = down.last_error or ""
    assert "HTTP 401 Unauthorized" in error and f"reloading credentials from {path} failed" \
        in error, error
    assert re.search(_timed_out(plugin), error), error
    failed = [m for m in caplog.messages if m.startswith("credentials_reload_failed")]
    assert failed and all("reason=unauthorized" in m and TIMED_OUT in m for m in failed), failed
    reloads = registry.get_sample_value("fedns_kube_credential_reloads_total",
                                        {"cluster": "a", "reason": "unauthorized"})
    assert reloads is not None and reloads >= 1

    # the plugin answers again, with a token that works: a later reload takes it
    plugin.set_token(NEW)
    plugin.hang(False)
    fixed = time.time()
    up = await kube.wait_for(lambda r: r.reachable and r.last_contact is not None
                             and r.last_contact > fixed, within=WITHIN)
    assert up.last_error is None
    assert all(shard(r, "web") is not None for r in kube.reports[seen:])
    await kube.eventually(lambda: not _running(plugin.hung_processes()), within=WITHIN)
    _no_token_logged(caplog)


async def test_exec_plugin_that_hangs_on_a_reload_after_a_file_change_keeps_the_credentials(
    kube: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    plugin = write_exec_plugin(kube.tmp, OLD)
    api = await _auth_api(OLD)
    path = _exec_kubeconfig(kube.tmp, plugin, api.url)
    await _start(kube, api, path, options=EXEC_OPTIONS, within=WITHIN)
    seen = len(kube.reports)

    plugin.hang()
    _exec_kubeconfig(kube.tmp, plugin, api.url)  # swapped: the file changed

    def failed() -> list[str]:
        return [m for m in caplog.messages if m.startswith("credentials_reload_failed")]

    await kube.eventually(lambda: bool(failed()), within=WITHIN)
    assert "reason=file_changed" in failed()[0] and TIMED_OUT in failed()[0], failed()
    api.drop_watches()  # reconnect: still with the working token
    presented = len(api.presented(OLD))
    await kube.eventually(lambda: len(api.presented(OLD)) > presented + 20, within=WITHIN)
    assert api.refused() == []
    assert all(r.reachable and shard(r, "web") is not None for r in kube.reports[seen:])

    # the plugin answers again: the next change is loaded
    plugin.hang(False)
    plugin.set_token(NEW)
    api.accept(OLD, NEW)
    _exec_kubeconfig(kube.tmp, plugin, api.url)
    await kube.eventually(lambda: bool(api.presented(NEW)), within=WITHIN)
    assert api.refused() == []
    await kube.eventually(lambda: not _running(plugin.hung_processes()), within=WITHIN)
