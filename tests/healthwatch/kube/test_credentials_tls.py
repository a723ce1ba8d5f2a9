"""A client certificate embedded in a kubeconfig Secret is rotated: the new
certificate lives in the connection pool, so the source needs a new pool, not
only a new token. HTTPS simulated API server (``CertAuthAPI``) and the real
``kubernetes`` client."""

from __future__ import annotations

import os
import time

import pytest

from tests.healthwatch.kube.harness import Harness, shard
from tests.healthwatch.kube.test_credentials import OPTIONS

pytest.importorskip("cryptography")

from tests.fakekube import endpoint_slice, service
from tests.fakekube.tls import CertAuthAPI, Pki, write_cert_kubeconfig

RESOURCES = ("services", "endpointslices", "ingresses")


async def test_rotated_client_certificate_is_presented_on_new_connections(
    kube: Harness,
) -> None:
    pki = Pki.create()
    api = CertAuthAPI(pki, name="a", accepted={"fedns-1"})
    await api.start()
    api.apply("services", service("web", lb_ips=["192.0.2.10"]))
    api.apply("endpointslices", endpoint_slice("web", ready=2))
    path = os.path.join(kube.tmp, "secret.kubeconfig")
    write_cert_kubeconfig(path, context="fed-a", api=api, client=pki.client("fedns-1"))
    kube.api = api
    await kube.start(options=OPTIONS, kubeconfig=path, context="fed-a")
    await kube.wait_for(lambda r: r.synced and r.reachable and shard(r, "web") is not None)
    seen = len(kube.reports)

    # the old certificate is revoked as the Secret holding the new one is swapped in
    rotated = time.time()
    api.accept("fedns-2")
    write_cert_kubeconfig(path, context="fed-a", api=api, client=pki.client("fedns-2"))
    api.drop_watches()

    def renewed() -> bool:
        paths = {p.rstrip("/").rsplit("/", 1)[-1] for p in api.presented("fedns-2", since=rotated)}
        return paths >= {"version", *RESOURCES}

    await kube.eventually(renewed, within=5.0)
    await kube.wait_for(lambda r: r.reachable, within=5.0)
    assert all(shard(r, "web") is not None for r in kube.reports[seen:])
