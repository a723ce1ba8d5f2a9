"""Keep one cluster's API credentials current while its watches run.

A kubeconfig's credentials change under a running fedns: a Secret mounted as
a file is rotated (the kubelet swaps the file), an exec plugin's token expires
or is revoked without the plugin having reported an expiry, a client
certificate expires or the API server's CA is rotated. The official client
then gets 401, or fails the TLS handshake, for ever. ``Credentials`` loads the
kubeconfig again and moves the new configuration and connection pool into the
``ApiClient`` that every watcher and the heartbeat already hold
(``SwappableApiClient``): calls made after the swap use the new token, client
certificate or CA, streams already open finish on their old connections, and
nothing that was listed is dropped. When to reload is the owner's decision
(``KubeSource``): this module only loads, swaps, tells whether the files
changed, and tells when a request was refused in a way that new credentials
may cure (``Refusal``). Its methods block (file reads, exec plugins, each
limited to ``exec_timeout``): call them off the event loop.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any, Literal

import urllib3
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from healthwatch.kube.client import kube_entry, kubeconfig_path
from healthwatch.kube.options import KubeOptions

ClientFactory = Callable[[str | None, str | None, KubeOptions], client.ApiClient]
# Why a request was refused in a way that new credentials may cure: a 401
# (token expired or revoked), or a failed TLS handshake (client certificate
# expired or no longer accepted, a server certificate from a CA not trusted yet).
Refusal = Literal["unauthorized", "tls_error"]
# (device, inode, size, mtime in ns) of each watched file; None: missing or unreadable
Stamp = tuple[tuple[int, int, int, int] | None, ...]

# The keys of a kubeconfig's user and cluster entries that name files whose
# content is read at load time (the client does not read them again).
_USER_FILES = ("tokenFile", "client-certificate", "client-key")
_CLUSTER_FILES = ("certificate-authority",)


class SwappableApiClient(client.ApiClient):  # type: ignore[misc]  # kubernetes is untyped
    """An ``ApiClient`` whose configuration and connection pool can be replaced
    while other threads use it, and that calls ``on_refused`` (on the calling
    thread; it must not block) with the ``Refusal`` whenever a request is
    answered 401 or fails its TLS handshake. The error is raised as before."""

    configuration: Any
    rest_client: Any

    def __init__(self, loaded: client.ApiClient,
                 on_refused: Callable[[Refusal], None]) -> None:
        super().__init__(loaded.configuration)
        self._on_refused = on_refused
        self.adopt(loaded)

    def adopt(self, loaded: client.ApiClient) -> None:
        """Use ``loaded``'s configuration (credentials) and connection pool
        (client certificate, CA) from now on. Idle connections of the old pool
        are closed; connections in use (open watch streams) are closed when
        their stream ends."""
        old = self.rest_client
        self.configuration = loaded.configuration
        self.rest_client = loaded.rest_client
        if old is not loaded.rest_client:
            old.pool_manager.clear()

    def request(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().request(*args, **kwargs)
        except Exception as e:
            refusal = refusal_of(e)
            if refusal is not None:
                self._on_refused(refusal)
            raise


def refusal_of(error: BaseException) -> Refusal | None:
    """The ``Refusal`` that ``error`` of an API request is, if any. The client
    turns urllib3's ``SSLError`` into an ``ApiException`` of status 0, raised
    while handling it; urllib3 itself raises it bare, or (with retries) as the
    reason of a ``MaxRetryError``. Other connection failures (refused, reset,
    timed out) are not refusals: new credentials would not cure them."""
    if isinstance(error, ApiException):
        if error.status == 401:
            return "unauthorized"
        if error.status == 0 and _tls_failure(error.__context__):
            return "tls_error"
        return None
    return "tls_error" if _tls_failure(error) else None


def _tls_failure(error: BaseException | None) -> bool:
    if isinstance(error, urllib3.exceptions.MaxRetryError):
        error = error.reason
    return isinstance(error, urllib3.exceptions.SSLError)


class Credentials:
    """The ``SwappableApiClient`` of one kubeconfig context, and the files its
    credentials were read from."""

    def __init__(self, path: str | None, context: str | None, options: KubeOptions,
                 factory: ClientFactory, on_refused: Callable[[Refusal], None]) -> None:
        self._given = path  # as configured (None: $KUBECONFIG or ~/.kube/config)
        self.path = kubeconfig_path(path)
        self._context = context
        self._options = options
        self._factory = factory
        self._on_refused = on_refused
        self._lock = threading.Lock()  # one load at a time
        self._files: tuple[str, ...] = (self.path,)
        self._stamp: Stamp = ()
        self.api: SwappableApiClient | None = None

    def load(self) -> SwappableApiClient:
        """The first load. Raises KubeconfigError."""
        with self._lock:
            files, stamp = self._look()
            api = SwappableApiClient(self._load(), self._on_refused)
            self._files, self._stamp, self.api = files, stamp, api
            return api

    def reload(self, *, only_if_changed: bool = False) -> bool:
        """Load the kubeconfig again and swap the result into ``api``; False if
        ``only_if_changed`` and the files are as at the last load. Raises
        KubeconfigError, and then keeps the credentials in use (a file caught
        half-written must not replace working credentials); the files are
        taken as seen either way, so one bad version is tried once."""
        with self._lock:
            assert self.api is not None, "reload() before load()"
            files, stamp = self._look()
            if only_if_changed and stamp == self._stamp:
                return False
            self._files, self._stamp = files, stamp
            loaded = self._load()
            self.api.adopt(loaded)
            return True

    def changed(self) -> bool:
        """Whether a watched file changed since the last load (a few stat calls)."""
        return bool(self._stamp) and _stamp(self._files) != self._stamp

    def _load(self) -> client.ApiClient:
        return self._factory(self._given, self._context, self._options)

    def _look(self) -> tuple[tuple[str, ...], Stamp]:
        files = credential_files(self.path, self._context)
        return files, _stamp(files)


def credential_files(path: str, context: str | None) -> tuple[str, ...]:
    """``path`` and the files that ``context``'s user and cluster entries name
    (token file, client certificate and key, CA), relative names resolved
    against the kubeconfig's directory as the client does. Best effort: a
    kubeconfig that does not parse watches itself only (loading it reports why)."""
    files = [path]
    try:
        with open(path, encoding="utf-8") as f:
            doc: Any = yaml.safe_load(f)
    except (OSError, yaml.YAMLError):
        return tuple(files)
    if not isinstance(doc, dict):
        return tuple(files)
    wanted = context or doc.get("current-context")
    ctx = kube_entry(doc, "contexts", "context", wanted)
    base = os.path.dirname(os.path.abspath(path))
    for section, key, keys, ref in (("users", "user", _USER_FILES, "user"),
                                     ("clusters", "cluster", _CLUSTER_FILES, "cluster")):
        entry = kube_entry(doc, section, key, ctx.get(ref))
        for name in keys:
            value = entry.get(name)
            if isinstance(value, str) and value:
                files.append(os.path.normpath(os.path.join(base, value)))
    return tuple(files)


def _stamp(files: tuple[str, ...]) -> Stamp:
    out: list[tuple[int, int, int, int] | None] = []
    for name in files:
        try:
            st = os.stat(name)  # follows symlinks: a swapped Secret volume changes the inode
        except OSError:
            out.append(None)
        else:
            out.append((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


__all__ = ["ClientFactory", "Credentials", "Refusal", "SwappableApiClient", "credential_files",
           "refusal_of"]
