"""``geo.cluster_local``: a client inside a member cluster gets its own ClusterIP.

What kube-dns's federation support did: pods of a cluster reach the local
copy of a federated Service through its cluster-local address while that
shard is healthy, and the global answer once it is not.
"""

from __future__ import annotations

from pathlib import Path

from tests.e2e.configs import GLOBAL
from tests.e2e.procs import Fedns, dig, eventually, run_fedns, write

CONFIG = """\
zone: example.com.
federation: myfed
ttl: 5
nameservers: {ns1.example.com.: [127.0.0.1]}
listen: {dns: ["127.0.0.1:0"], http: "127.0.0.1:0"}
geo: {cluster_local: true}
regions:
  us-east1: {location: [33.8, -84.4], zones: [us-east1-b]}
  europe-west1: {location: [50.4, 3.8], zones: [europe-west1-b]}
clusters:
  - name: us
    region: us-east1
    zone: us-east1-b
    networks: [127.0.1.0/24]
    services:
      - {name: nginx, namespace: default, addresses: [192.0.2.10], cluster_ip: 10.96.0.10}
  - name: eu
    region: europe-west1
    zone: europe-west1-b
    networks: [127.0.2.0/24]
    services:
      - {name: nginx, namespace: default, addresses: [192.0.2.20], cluster_ip: 10.96.0.20}
"""


def test_in_cluster_clients_get_their_own_cluster_ip(tmp_path: Path) -> None:
    cfg = write(tmp_path / "fedns.yaml", CONFIG)
    srv = Fedns("serve", "-c", str(cfg))
    try:
        srv.wait_started()
        srv.wait_ready()
        port = srv.dns_port
        assert dig(port, GLOBAL, source="127.0.1.10") == ["10.96.0.10"]
        assert dig(port, GLOBAL, source="127.0.2.10") == ["10.96.0.20"]
        # outside every cluster: load-balancer addresses, never a ClusterIP
        assert sorted(dig(port, GLOBAL, source="127.0.0.1")) == ["192.0.2.10", "192.0.2.20"]
        # the region name stays on load-balancer addresses for everyone
        region = "nginx.default.myfed.svc.us-east1.example.com."
        assert dig(port, region, source="127.0.1.10") == ["192.0.2.10"]
        # the local shard drained: its pods follow the global answer (nearest: eu)
        res = run_fedns("drain", "us", "default/nginx", "--api", srv.api)
        assert res.returncode == 0, res.stderr
        eventually(lambda: dig(port, GLOBAL, source="127.0.1.10"),
                   lambda ans: ans == ["192.0.2.20"], 5.0)
    finally:
        assert srv.stop() == 0, srv.output
