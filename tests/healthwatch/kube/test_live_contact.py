"""/v1/status shows a quiet cluster's live last contact, not its last report's.

A source reports only when what it saw changes; its heartbeat reaches the API
every ``heartbeat_interval`` in between. The Snapshot keeps the contact time
of the last report, so on a healthy cluster where nothing changes it grows
old. ``Engine.last_contacts`` reads the live value, and ``/v1/status``
(``dnsserver.app.live_contacts``) shows the newer of the two.
"""

from __future__ import annotations

import asyncio
import os

from config.model import Cluster, Config
from dnsserver.app import live_contacts
from healthwatch.engine import Engine
from healthwatch.kube import KubeSource
from tests.fakekube import FakeKubeAPI, service, write_kubeconfig
from tests.healthwatch.kube.harness import FAST


async def test_quiet_cluster_contact_advances_between_reports(tmp_path: object) -> None:
    api = FakeKubeAPI(name="a")
    await api.start()
    api.apply("services", service("web", lb_ips=["192.0.2.10"]))
    path = write_kubeconfig(os.path.join(str(tmp_path), "kubeconfig"),
                            [api.kubeconfig_entry("fed-a")])
    cluster = Cluster(name="a", region="r", zone="z", source="kubernetes",
                      kubeconfig=path, context="fed-a")
    config = Config(zone="example.com.", federation="fed", clusters=(cluster,))
    engine = Engine(config, source_factory=lambda c, cfg: KubeSource(c, cfg, FAST))
    await engine.start()
    try:
        for _ in range(500):  # up to 10 s
            if (engine.ready and engine.snapshot.clusters
                    and engine.snapshot.clusters[0].last_contact is not None):
                break
            await asyncio.sleep(0.02)
        snap = engine.snapshot
        reported = snap.clusters[0].last_contact
        assert reported is not None

        async def heartbeats() -> float:
            while True:
                live = engine.last_contacts().get("a")
                if live is not None and live > reported + 0.3:
                    return live
                await asyncio.sleep(0.02)

        # several heartbeats (0.1 s apart) later, with nothing changed in the cluster
        live = await asyncio.wait_for(heartbeats(), 10.0)
        assert engine.snapshot.serial == snap.serial  # no report, no new Snapshot
        assert engine.snapshot.clusters[0].last_contact == reported
        shown = live_contacts(snap.to_dict()["clusters"], engine.last_contacts())
        assert shown[0]["last_contact"] >= live
    finally:
        await engine.stop()
        await api.kill()


def test_live_contact_never_moves_a_cluster_back_or_invents_one() -> None:
    clusters = [{"name": "a", "last_contact": 200.0}, {"name": "b", "last_contact": None},
                {"name": "c", "last_contact": 50.0}]
    shown = live_contacts(clusters, {"a": 100.0, "b": 150.0})
    assert [c["last_contact"] for c in shown] == [200.0, 150.0, 50.0]
    assert clusters[1]["last_contact"] is None  # the Snapshot's dicts are not changed
