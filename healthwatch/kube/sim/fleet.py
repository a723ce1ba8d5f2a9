"""Several simulated member clusters sharing one kubeconfig (for ``fedns demo``).

    fleet = SimFleet(workdir)
    await fleet.start(["us-east", "eu"])
    fleet.cluster_config("us-east")   # {"source": "kubernetes", "kubeconfig": ..., "context": ...}
    fleet.publish_service("us-east", "nginx", lb_ip="127.0.1.1", ready=2,
                          probe="http://:8080/healthz")
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from healthwatch.kube.sim.kubeconfig import write_kubeconfig
from healthwatch.kube.sim.objects import FEDERATE, endpoint_slice, node, service
from healthwatch.kube.sim.server import FakeKubeAPI


class SimFleet:
    def __init__(self, workdir: str) -> None:
        self.workdir = workdir
        self.apis: dict[str, FakeKubeAPI] = {}
        self.kubeconfig = os.path.join(workdir, "kubeconfig")

    async def start(self, names: Iterable[str]) -> None:
        for name in names:
            api = FakeKubeAPI(name=name)
            await api.start()
            self.apis[name] = api
        write_kubeconfig(
            self.kubeconfig, [api.kubeconfig_entry(f"sim-{n}") for n, api in self.apis.items()]
        )

    async def stop(self) -> None:
        for api in self.apis.values():
            await api.kill()

    def cluster_config(self, name: str) -> dict[str, Any]:
        """The keys a ``source: kubernetes`` cluster entry needs in the YAML config."""
        return {"source": "kubernetes", "kubeconfig": self.kubeconfig, "context": f"sim-{name}"}

    def add_node(self, cluster: str, name: str, *, region: str, zone: str) -> None:
        self.apis[cluster].apply("nodes", node(name, region=region, zone=zone))

    def publish_service(
        self,
        cluster: str,
        name: str,
        namespace: str = "default",
        *,
        lb_ip: str,
        ready: int = 1,
        port: int = 80,
        probe: str | None = None,
    ) -> None:
        """A federated LoadBalancer Service with ``ready`` ready endpoints."""
        annotations = dict(FEDERATE)
        if probe:
            annotations["fedns.io/probe"] = probe
        api = self.apis[cluster]
        api.apply(
            "services",
            service(name, namespace, lb_ips=[lb_ip], ports=(port,), annotations=annotations),
        )
        api.apply("endpointslices", endpoint_slice(name, namespace, ready=ready))

    def set_ready(self, cluster: str, name: str, namespace: str = "default", *, ready: int) -> None:
        """Replace the Service's endpoints: ``ready`` ready, the rest (of 2) not ready."""
        slice_ = endpoint_slice(name, namespace, ready=ready, not_ready=max(0, 2 - ready))
        self.apis[cluster].apply("endpointslices", slice_)
