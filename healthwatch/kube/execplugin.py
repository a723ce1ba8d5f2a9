"""Run kubeconfig exec credential plugins with a time limit.

The official client runs an exec plugin (``users[].user.exec``, as EKS, GKE
and OIDC logins use) with ``Popen(...).communicate()`` and no timeout. A
plugin that never exits would hold the thread loading the kubeconfig, the
lock of that cluster's ``Credentials`` and its reload task for ever: the
cluster would never get new credentials again, or never start.

The seam: the client takes the plugin's ``command`` and ``args`` from the
kubeconfig it is given. ``client.load_client`` hands it the parsed kubeconfig
with every exec entry rewritten by ``wrap_exec_plugins``: the command becomes
this file, run as a script by the same interpreter, and the original command
and arguments follow the limit. The client runs the wrapper exactly as it
would have run the plugin (its environment with ``KUBERNETES_EXEC_INFO`` and
the entry's ``env``, the kubeconfig's directory as working directory, the
same stdin); the wrapper runs the plugin as its child in a process group of
its own, passes its output and exit status through, and when the limit
passes kills the whole group (a shell script's commands too, which may hold
the output pipe open) and fails with a message naming the plugin and the
limit. The same holds when the client runs the plugin again by itself to
refresh a token that reported an expiry.

Other seams were worse: the client has no timeout or hook for plugins; its
loader finds ``ExecProvider`` as a module global, so replacing it would
change every client in the process; subclassing the loader would copy its
plugin method; running plugins ourselves would re-implement the
ExecCredential protocol and lose the client's refresh of expiring tokens;
giving up on a load left running in a thread would leave the plugin and the
thread behind for ever.

The client logs a failing plugin's stderr and goes on without credentials,
so the wrapper also writes why it failed to a verdict file that the loader
names (``Verdicts``), which makes the ``KubeconfigError`` say so. The file
exists only while one load runs: a later run by the client (a token refresh)
finds it gone and writes nothing.

As a script this module imports the standard library only, and runs with
``-S -P`` (no site packages, not its own directory on ``sys.path``), so it
starts in a few milliseconds and cannot pick up fedns's modules by name.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from types import FrameType, TracebackType
from typing import Any

_SCRIPT = os.path.abspath(__file__)
TIMED_OUT = 124  # the wrapper's exit status after killing a plugin (as timeout(1))
NOT_STARTED = 127  # ... when the plugin could not be started


# -- the loader's side -----------------------------------------------------------------


def wrap_exec_plugins(doc: Mapping[str, Any], timeout: float,
                      verdicts: str | None) -> dict[str, Any]:
    """A copy of the kubeconfig ``doc`` whose exec plugins run through the
    wrapper with ``timeout`` seconds, writing why one failed to the file
    ``verdicts`` (None: nowhere). ``doc`` is not changed; entries that are not
    well-formed exec plugins are left for the client to report."""
    users = doc.get("users")
    if not isinstance(users, list):
        return dict(doc)
    return {**doc, "users": [_wrap_user(item, timeout, verdicts) for item in users]}


def _wrap_user(item: Any, timeout: float, verdicts: str | None) -> Any:
    if not isinstance(item, dict) or not isinstance(item.get("user"), dict):
        return item
    user: dict[str, Any] = item["user"]
    plugin = user.get("exec")
    if not isinstance(plugin, dict) or not isinstance(plugin.get("command"), str):
        return item
    args = plugin.get("args") or []
    if not isinstance(args, list):
        return item
    wrapped = {**plugin, "command": sys.executable,
               "args": wrapper_args(timeout, verdicts, plugin["command"], args)}
    return {**item, "user": {**user, "exec": wrapped}}


def wrapper_args(timeout: float, verdicts: str | None, command: str,
                 args: Sequence[Any]) -> list[str]:
    """The interpreter's arguments that run ``command args`` through the wrapper."""
    return ["-S", "-P", _SCRIPT, repr(float(timeout)), verdicts or "", command,
            *(str(a) for a in args)]


class Verdicts:
    """The file to which the wrapper writes why a plugin failed, for one load.

    ``path`` is None when no temporary file can be made (a read-only file
    system): loading works the same, only the error is less precise."""

    def __init__(self) -> None:
        self.path: str | None = None

    def __enter__(self) -> Verdicts:
        try:
            fd, self.path = tempfile.mkstemp(prefix="fedns-exec-", suffix=".txt")
        except OSError:
            return self
        os.close(fd)
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                os.remove(self.path)
            self.path = None

    def read(self) -> str | None:
        """The last verdict written, if a plugin failed in the wrapper's hands."""
        if self.path is None:
            return None
        try:
            with open(self.path, encoding="utf-8") as f:
                text = f.read().strip()
        except OSError:
            return None
        return text.splitlines()[-1] if text else None


# -- the wrapper (this file run as a script) ----------------------------------------------


def main(argv: Sequence[str]) -> int:
    """``TIMEOUT VERDICTS COMMAND [ARG...]`` (as ``wrapper_args`` writes them):
    run COMMAND, pass its output and exit status through; kill it and what it
    started after TIMEOUT seconds."""
    if len(argv) < 3:
        print("usage: execplugin TIMEOUT VERDICTS COMMAND [ARG...]", file=sys.stderr)
        return 2
    timeout, verdicts, command = float(argv[0]), argv[1], list(argv[2:])
    try:
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 process_group=0)
    except OSError as e:
        return _fail(verdicts, f"exec plugin {command[0]!r} could not be started: "
                               f"{e.strerror or e}", NOT_STARTED)
    _kill_on_signals(child)
    try:
        out, err = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(child)
        return _fail(verdicts, f"exec plugin {command[0]!r} did not finish within "
                               f"{timeout:g} s; killed", TIMED_OUT)
    sys.stdout.buffer.write(out)
    sys.stderr.buffer.write(err)
    return child.returncode if child.returncode >= 0 else 128 - child.returncode


def _kill_group(child: subprocess.Popen[bytes]) -> None:
    """Kill the plugin and everything in its process group, and reap the plugin
    (not its pipes: a process that left the group may still hold them)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.wait(timeout=1.0)


def _kill_on_signals(child: subprocess.Popen[bytes]) -> None:
    """A wrapper told to stop takes the plugin's group with it (the group is
    no longer the one that receives the terminal's or the parent's signals)."""
    def stop(signum: int, _frame: FrameType | None) -> None:
        _kill_group(child)
        os._exit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, stop)


def _fail(verdicts: str, reason: str, status: int) -> int:
    """Tell the client (stderr, which it logs) and the loader (the verdict
    file, if it still exists: never created here) why the plugin failed."""
    print(reason, file=sys.stderr)
    if verdicts:
        with contextlib.suppress(OSError):
            fd = os.open(verdicts, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
            try:
                os.write(fd, (reason + "\n").encode())
            finally:
                os.close(fd)
    return status


__all__ = ["NOT_STARTED", "TIMED_OUT", "Verdicts", "main", "wrap_exec_plugins", "wrapper_args"]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
