"""Client certificates and CAs that change under a running fedns. HTTPS
simulated API server (``CertAuthAPI``) and the real ``kubernetes`` client.

- A client certificate embedded in a kubeconfig Secret is rotated: the new
  certificate lives in the connection pool, so the source needs a new pool,
  not only a new token.
- The TLS handshake fails (a client certificate the server no longer
  accepts, a server certificate from a CA the client does not trust yet) and
  no 401 ever comes: the failure triggers the same rate-limited reload as a
  401, so a fresh certificate from the exec plugin, or a CA in a kubeconfig
  whose change the file check missed, is picked up without a restart.
"""

from __future__ import annotations

import logging
import os
import time

import pytest
from prometheus_client import CollectorRegistry

from tests.healthwatch.kube.harness import Harness, shard
from tests.healthwatch.kube.test_credentials import (
    OPTIONS,
    RELOAD_EVERY,
    WITHIN,
    _reloads,
    _runs_counted,
)

pytest.importorskip("cryptography")

from tests.fakekube import endpoint_slice, service
from tests.fakekube.auth import write_exec_kubeconfig, write_exec_plugin
from tests.fakekube.tls import (
    CertAuthAPI,
    Pki,
    cert_kubeconfig_text,
    exec_status,
    rewrite_unnoticed,
    write_cert_kubeconfig,
)

RESOURCES = ("services", "endpointslices", "ingresses")


async def _cert_api(pki: Pki, *accepted: str) -> CertAuthAPI:
    api = CertAuthAPI(pki, name="a", accepted=accepted)
    await api.start()
    api.apply("services", service("web", lb_ips=["192.0.2.10"]))
    api.apply("endpointslices", endpoint_slice("web", ready=2))
    return api


async def _start(kube: Harness, api: CertAuthAPI, path: str,
                 registry: CollectorRegistry | None = None) -> None:
    kube.api = api  # the harness kills it at the end
    await kube.start(options=OPTIONS, kubeconfig=path, context="fed-a", registry=registry)
    await kube.wait_for(lambda r: r.synced and r.reachable and shard(r, "web") is not None,
                        within=WITHIN)


def _renewed(api: CertAuthAPI, common_name: str, since: float) -> bool:
    """Whether the heartbeat and every watch came back with ``common_name``'s certificate."""
    paths = {p.rstrip("/").rsplit("/", 1)[-1] for p in api.presented(common_name, since=since)}
    return paths >= {"version", *RESOURCES}


async def test_rotated_client_certificate_is_presented_on_new_connections(
    kube: Harness,
) -> None:
    pki = Pki.create()
    api = await _cert_api(pki, "fedns-1")
    path = os.path.join(kube.tmp, "secret.kubeconfig")
    write_cert_kubeconfig(path, context="fed-a", api=api, client=pki.client("fedns-1"))
    await _start(kube, api, path)
    seen = len(kube.reports)

    # the old certificate is revoked as the Secret holding the new one is swapped in
    rotated = time.time()
    api.accept("fedns-2")
    write_cert_kubeconfig(path, context="fed-a", api=api, client=pki.client("fedns-2"))
    api.drop_watches()

    await kube.eventually(lambda: _renewed(api, "fedns-2", rotated), within=WITHIN)
    await kube.wait_for(lambda r: r.reachable, within=WITHIN)
    assert all(shard(r, "web") is not None for r in kube.reports[seen:])


async def test_client_certificate_refused_in_the_handshake_reloads_and_the_plugin_renews_it(
    kube: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    pki, renewed_pki = Pki.create(), Pki.create()
    api = await _cert_api(pki, "fedns-1", "fedns-2")
    plugin = write_exec_plugin(kube.tmp, "unused")
    plugin.set_status(exec_status(pki.client("fedns-1")))
    path = write_exec_kubeconfig(os.path.join(kube.tmp, "exec.kubeconfig"), context="fed-a",
                                 server=api.url, command=plugin.command, ca_pem=pki.ca_pem)
    registry = CollectorRegistry()
    await _start(kube, api, path, registry)
    assert plugin.runs == 1
    seen = len(kube.reports)

    # the plugin would now hand out a certificate of the new client CA, and the
    # API server stops accepting the old one (as if it expired): the handshake
    # fails, no 401 is ever answered, no file changes
    plugin.set_status(exec_status(renewed_pki.client("fedns-2")))
    await api.rotate(clients=renewed_pki)
    # from here on the server refuses the old certificate (a request on a
    # connection made before the restart may still have carried it)
    rotated = time.time()

    await kube.eventually(lambda: _renewed(api, "fedns-2", rotated), within=WITHIN)
    await kube.wait_for(lambda r: r.reachable and r.last_contact is not None
                        and r.last_contact > rotated, within=WITHIN)
    assert api.presented("fedns-1", since=rotated) == set()  # the old one never got through
    # every run after the first load was a reload for a TLS error, at most one per interval
    await _runs_counted(kube, plugin, lambda: len(_reloads(caplog, "tls_error")))
    assert 2 <= plugin.runs <= (time.time() - rotated) / RELOAD_EVERY + 2, plugin.runs
    assert registry.get_sample_value("fedns_kube_credential_reloads_total",
                                     {"cluster": "a", "reason": "tls_error"}) == plugin.runs - 1
    assert all(shard(r, "web") is not None for r in kube.reports[seen:])


async def test_server_certificate_of_a_new_ca_reloads_a_kubeconfig_changed_unnoticed(
    kube: Harness,
) -> None:
    pki, new_ca = Pki.create(), Pki.create()
    api = await _cert_api(pki, "fedns-1")
    client = pki.client("fedns-1")
    path = os.path.join(kube.tmp, "secret.kubeconfig")
    write_cert_kubeconfig(path, context="fed-a", api=api, client=client, room=256)
    await _start(kube, api, path)
    seen = len(kube.reports)

    # the API server's certificate is now signed by a new CA, which fedns does
    # not trust yet: its handshakes fail
    rotated = time.time()
    await api.rotate(pki=new_ca)
    await kube.wait_for(lambda r: not r.reachable, within=WITHIN)
    # the new CA arrives in the kubeconfig, written by a tool that keeps the
    # file's inode, size and mtime: the file check cannot see it
    rewrite_unnoticed(path, cert_kubeconfig_text(context="fed-a", api=api, client=client))

    await kube.eventually(lambda: _renewed(api, "fedns-1", rotated), within=WITHIN)
    await kube.wait_for(lambda r: r.reachable, within=WITHIN)
    assert all(shard(r, "web") is not None for r in kube.reports[seen:])
