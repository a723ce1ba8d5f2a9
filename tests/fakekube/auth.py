"""A simulated API server that requires a bearer token from a settable set,
plus kubeconfig and exec-plugin writers for credentials that change.

    api = TokenAuthAPI(name="a", accepted={"t1"})  # None (default): no auth at all
    api.accept("t2")                               # rotate: "t1" now answers 401

A request whose ``Authorization`` header is not ``Bearer <one of accepted>``
gets ``401 Unauthorized`` with a Kubernetes ``Status`` body, as a real API
server answers an expired or revoked token. Watches opened before a rotation
stay open (as on a real API server: a stream is authenticated once, when it
starts); ``drop_watches()`` ends them.

The exec plugin (``write_exec_plugin``) hands out a settable token or client
certificate, counts its runs, and can be made to hang (``hang()``), leaving a
child process behind as a shell script's commands would.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import stat
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import yaml
from aiohttp import web

from healthwatch.kube.sim import FakeKubeAPI
from healthwatch.kube.sim.faults import status_body


@dataclass(frozen=True, slots=True)
class AuthRecord:
    at: float  # time.time() of the request
    path: str
    token: str | None  # the bearer token presented (None: no or another scheme)
    accepted: bool


class TokenAuthAPI(FakeKubeAPI):
    """``FakeKubeAPI`` plus bearer-token authentication; everything else is unchanged."""

    def __init__(self, name: str = "sim", accepted: Iterable[str] | None = None) -> None:
        super().__init__(name=name)
        self.accepted: frozenset[str] | None = None if accepted is None else frozenset(accepted)
        self.auth_log: list[AuthRecord] = []

    def accept(self, *tokens: str) -> None:
        """From now on only ``tokens`` are accepted (none given: every request is refused)."""
        self.accepted = frozenset(tokens)

    def refused(self, since: float = 0.0) -> list[AuthRecord]:
        return [r for r in self.auth_log if not r.accepted and r.at >= since]

    def presented(self, token: str) -> list[AuthRecord]:
        return [r for r in self.auth_log if r.token == token]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        if self.accepted is None:
            return await super()._handle(request)
        header = request.headers.get("Authorization", "")
        token = header[len("Bearer "):] if header.startswith("Bearer ") else None
        ok = token is not None and token in self.accepted
        self.auth_log.append(AuthRecord(time.time(), request.path, token, ok))
        if not ok:
            return web.json_response(status_body(401, "Unauthorized", "Unauthorized"), status=401)
        return await super()._handle(request)


def write_token_kubeconfig(path: str | os.PathLike[str], *, context: str, server: str,
                           token: str) -> str:
    """Write a kubeconfig whose ``context`` logs in with ``token``, atomically:
    a new file renamed over ``path``, as the kubelet swaps a rotated Secret."""
    return replace_file(path, kubeconfig_text(context, {"server": server}, {"token": token}))


def write_exec_kubeconfig(path: str | os.PathLike[str], *, context: str, server: str,
                          command: str, args: Iterable[str] = (),
                          ca_pem: bytes | None = None) -> str:
    """Write a kubeconfig whose ``context`` gets its credentials from an exec
    plugin (and, with ``ca_pem``, trusts that CA for an HTTPS ``server``)."""
    user: dict[str, object] = {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "command": command,
        "args": list(args),
        "interactiveMode": "Never",
    }}
    cluster: dict[str, object] = {"server": server}
    if ca_pem is not None:
        cluster["certificate-authority-data"] = base64.standard_b64encode(ca_pem).decode()
    return replace_file(path, kubeconfig_text(context, cluster, user))


_PLUGIN = '''#!{python}
"""Test exec credential plugin: prints an ExecCredential whose status is the
JSON object in {status_file!r} (no expirationTimestamp); appends a line to
{runs_file!r} at every run. While {hang_file!r} exists it hangs instead: it
starts a child that sleeps {hang:g} s (as the commands of a shell script
would), appends both process ids to {pids_file!r}, waits for the child and
exits 3."""
import json
import os
import subprocess
import sys
with open({runs_file!r}, "a") as f:
    f.write("run\\n")
if os.path.exists({hang_file!r}):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep({hang!r})"])
    with open({pids_file!r}, "a") as f:
        f.write(f"{{os.getpid()}} {{child.pid}}\\n")
    child.wait()
    sys.exit(3)
with open({status_file!r}) as f:
    status = json.load(f)
print(json.dumps({{
    "apiVersion": "client.authentication.k8s.io/v1beta1",
    "kind": "ExecCredential",
    "status": status,
}}))
'''

# How long a hanging plugin sleeps: far beyond any test's exec timeout, yet
# bounded, so that a plugin nobody kills (a failing test) stops by itself.
HANG_SECONDS = 30.0


@dataclass(frozen=True, slots=True)
class ExecPlugin:
    """An executable credential plugin written by ``write_exec_plugin``."""

    command: str
    status_file: str
    runs_file: str

    @property
    def hang_file(self) -> str:
        return f"{self.command}.hang"

    @property
    def pids_file(self) -> str:
        return f"{self.command}.pids"

    def set_token(self, token: str) -> None:
        self.set_status({"token": token})

    def set_status(self, status: dict[str, str]) -> None:
        """Hand out ``status`` (an ExecCredential status: a token, or client
        certificate and key data) from the next run on."""
        replace_file(self.status_file, json.dumps(status))

    def hang(self, hanging: bool = True) -> None:
        """Make the next runs hang (see ``_PLUGIN``), or answer again."""
        if hanging:
            replace_file(self.hang_file, "")
        else:
            with contextlib.suppress(FileNotFoundError):
                os.remove(self.hang_file)

    def hung_processes(self) -> list[int]:
        """The process ids of every hanging run so far: the plugin and its child."""
        try:
            text = Path(self.pids_file).read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [int(pid) for pid in text.split()]

    @property
    def runs(self) -> int:
        try:
            return Path(self.runs_file).read_text(encoding="utf-8").count("run\n")
        except FileNotFoundError:
            return 0


def write_exec_plugin(directory: str | os.PathLike[str], token: str) -> ExecPlugin:
    """Write an exec plugin (a small Python script, run with this interpreter)
    that hands out the token last given to ``set_token`` (first: ``token``),
    or the status given to ``set_status``, and never reports an expiry."""
    base = Path(directory)
    plugin = ExecPlugin(str(base / "cred-plugin"), str(base / "cred-plugin.status"),
                        str(base / "cred-plugin.runs"))
    plugin.set_token(token)
    script = _PLUGIN.format(python=sys.executable, status_file=plugin.status_file,
                            runs_file=plugin.runs_file, hang_file=plugin.hang_file,
                            pids_file=plugin.pids_file, hang=HANG_SECONDS)
    Path(plugin.command).write_text(script, encoding="utf-8")
    os.chmod(plugin.command, os.stat(plugin.command).st_mode | stat.S_IXUSR)
    return plugin


def kubeconfig_text(context: str, cluster: dict[str, object], user: dict[str, object]) -> str:
    """A kubeconfig (YAML) with one ``context`` made of one ``cluster`` and one ``user`` entry."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": cluster}],
        "users": [{"name": context, "user": user}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "current-context": context,
    }
    return yaml.safe_dump(doc, sort_keys=False)


def replace_file(path: str | os.PathLike[str], text: str) -> str:
    """Write ``text`` to a new file and rename it over ``path`` (an atomic swap)."""
    target = os.fspath(path)
    tmp = f"{target}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, target)
    return target


__all__ = [
    "HANG_SECONDS",
    "AuthRecord",
    "ExecPlugin",
    "TokenAuthAPI",
    "kubeconfig_text",
    "replace_file",
    "write_exec_kubeconfig",
    "write_exec_plugin",
    "write_token_kubeconfig",
]
