"""``fedns sync --once`` reports each record the provider rejected once.

The rejection is real: the google-cloud-dns client sends the change to the
Cloud DNS wire fake (``fake_clouddns``), which validates it as the API does
and answers 400 for an A record whose value is not an address; the backend
then retries name by name and reports that one record set (the rest lands).
No config can express such a record (the loader validates A values), so the
command gets its Snapshot from the test (``cmd_sync``'s snapshot factory);
everything else is the command as the CLI runs it: a YAML file, the loader,
the factory's Cloud DNS backend and syncer, the command's own printing.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest

from config.model import Config
from healthwatch.snapshot import Record, Snapshot
from providers import commands
from providers.factory import make_syncer
from providers.metrics import ProviderMetrics
from tests.providers.fake_clouddns import FakeCloudDns
from tests.providers.helpers import ZONE, config, fed_snapshot, provider

BAD = "bad." + ZONE

CONFIG = """\
zone: {zone}
federation: fed
ttl: 30
nameservers: {{ns1: [192.0.2.53]}}
providers:
  - {{type: clouddns, project: proj, managed_zone: federation, endpoint_url: "{url}",
     timeout: 2s, attempts: 1, backoff: 10ms}}
"""


@pytest.fixture
def fake() -> Iterator[FakeCloudDns]:
    f = FakeCloudDns("proj", "federation", ZONE)
    yield f
    f.close()


def _with_bad_record() -> Snapshot:
    base = fed_snapshot()
    return Snapshot(base.serial, 0.0, ZONE, base.ttl,
                    (*base.records, Record(BAD, "A", 30, "x::y")), base.geo, base.localities)


def test_sync_once_reports_a_rejected_record_once(
        fake: FakeCloudDns, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        caplog: pytest.LogCaptureFixture) -> None:
    cfg = tmp_path / "fedns.yaml"
    cfg.write_text(CONFIG.format(zone=ZONE, url=fake.url))

    async def snapshot(config: Config) -> Snapshot:
        assert config.zone == ZONE
        return _with_bad_record()

    caplog.set_level(logging.INFO)
    code = commands.cmd_sync(argparse.Namespace(config=str(cfg), once=True, force=False,
                                                provider=None, json=False), snapshot)
    out, err = capsys.readouterr()
    logs = "\n".join(r.getMessage() for r in caplog.records)
    everything = "\n".join((out, err, logs))
    assert code == commands.EXIT_FAIL, everything
    # the record really was rejected by the API (400), and the rest was published
    assert (BAD, "A") not in fake.rrsets
    assert ("web.default.fed.svc." + ZONE, "A") in fake.rrsets
    # (the plan printed first lists the record as a planned create, no report)
    lines = [line for line in everything.splitlines() if BAD in line and "reject" in line]
    assert len(lines) == 1, everything
    assert "rejected create" in lines[0] and "400" in lines[0], lines
    assert lines[0] in err.splitlines()  # the command's own report, on stderr


async def test_background_loop_logs_each_rejected_record_once(
        fake: FakeCloudDns, caplog: pytest.LogCaptureFixture) -> None:
    """``fedns serve``'s syncer loop keeps the structured ``record_rejected``
    line (nothing else reports there), one per rejected record and pass."""
    p = provider("clouddns", project="proj", managed_zone="federation", endpoint_url=fake.url,
                 timeout=2.0, attempts=1, backoff=0.01, debounce=0.0)
    metrics = ProviderMetrics(None)
    syncer = make_syncer(config(p), p, metrics)
    caplog.set_level(logging.INFO)
    await syncer.start()
    try:
        syncer.publish(_with_bad_record())
        for _ in range(200):  # bounded: 10 s for the loop's one pass
            if _rejected(caplog) and syncer.status()["state"] == "partial":
                break
            await asyncio.sleep(0.05)
        assert syncer.status()["state"] == "partial", syncer.status()
    finally:
        await syncer.stop()
    rejected = _rejected(caplog)
    assert len(rejected) == 1, rejected
    assert rejected[0].startswith(f"record_rejected name={BAD} type=A action=create reason=400")
    assert metrics.errors.labels("clouddns", "record")._value.get() == 1


def _rejected(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "record_rejected" in r.getMessage()]
