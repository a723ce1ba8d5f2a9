"""A simulated API server that requires a bearer token from a settable set,
plus kubeconfig and exec-plugin writers for credentials that change.

    api = TokenAuthAPI(name="a", accepted={"t1"})  # None (default): no auth at all
    api.accept("t2")                               # rotate: "t1" now answers 401

A request whose ``Authorization`` header is not ``Bearer <one of accepted>``
gets ``401 Unauthorized`` with a Kubernetes ``Status`` body, as a real API
server answers an expired or revoked token. Watches opened before a rotation
stay open (as on a real API server: a stream is authenticated once, when it
starts); ``drop_watches()`` ends them.
"""

from __future__ import annotations

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
    return replace_file(path, _kubeconfig(context, server, {"token": token}))


def write_exec_kubeconfig(path: str | os.PathLike[str], *, context: str, server: str,
                          command: str, args: Iterable[str] = ()) -> str:
    """Write a kubeconfig whose ``context`` gets its credentials from an exec plugin."""
    user = {"exec": {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "command": command,
        "args": list(args),
        "interactiveMode": "Never",
    }}
    return replace_file(path, _kubeconfig(context, server, user))


_PLUGIN = '''#!{python}
"""Test exec credential plugin: prints an ExecCredential whose token is the
content of {token_file!r} (and no expirationTimestamp); appends a line to
{runs_file!r} at every run."""
import json
with open({runs_file!r}, "a") as f:
    f.write("run\\n")
with open({token_file!r}) as f:
    token = f.read().strip()
print(json.dumps({{
    "apiVersion": "client.authentication.k8s.io/v1beta1",
    "kind": "ExecCredential",
    "status": {{"token": token}},
}}))
'''


@dataclass(frozen=True, slots=True)
class ExecPlugin:
    """An executable credential plugin written by ``write_exec_plugin``."""

    command: str
    token_file: str
    runs_file: str

    def set_token(self, token: str) -> None:
        replace_file(self.token_file, token + "\n")

    @property
    def runs(self) -> int:
        try:
            return Path(self.runs_file).read_text(encoding="utf-8").count("run\n")
        except FileNotFoundError:
            return 0


def write_exec_plugin(directory: str | os.PathLike[str], token: str) -> ExecPlugin:
    """Write an exec plugin (a small Python script, run with this interpreter)
    that hands out the token last given to ``set_token`` (first: ``token``)
    and never reports an expiry."""
    base = Path(directory)
    plugin = ExecPlugin(str(base / "cred-plugin"), str(base / "cred-plugin.token"),
                        str(base / "cred-plugin.runs"))
    plugin.set_token(token)
    script = _PLUGIN.format(python=sys.executable, token_file=plugin.token_file,
                            runs_file=plugin.runs_file)
    Path(plugin.command).write_text(script, encoding="utf-8")
    os.chmod(plugin.command, os.stat(plugin.command).st_mode | stat.S_IXUSR)
    return plugin


def _kubeconfig(context: str, server: str, user: dict[str, object]) -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": server}}],
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
    "AuthRecord",
    "ExecPlugin",
    "TokenAuthAPI",
    "replace_file",
    "write_exec_kubeconfig",
    "write_exec_plugin",
    "write_token_kubeconfig",
]
