"""CLI helpers: the status table, drain paths, zone rendering, argument parsing."""

from __future__ import annotations

import pytest

from dnsserver.cli import CliError, _drain_path, build_parser, format_status, render_zone
from healthwatch.snapshot import Record, Snapshot

STATUS = {
    "zone": "example.com.", "federation": "myfed", "ready": True, "stale": True,
    "snapshot": {"serial": 42, "age_seconds": 1.25},
    "clusters": [
        {"name": "us", "region": "us-east1", "zone": "us-east1-b", "source": "static",
         "synced": True, "reachable": True, "drained": True, "last_error": None},
        {"name": "eu", "region": "europe-west1", "zone": "europe-west1-b",
         "source": "kubernetes", "synced": False, "reachable": False, "drained": False,
         "last_contact": 1000.0, "last_error": "connection refused"},
    ],
    "shards": [
        {"service": "default/nginx", "cluster": "us", "zone": "us-east1-b",
         "addresses": ["192.0.2.10"], "hostnames": [], "ready": 2, "healthy": False,
         "reason": "cluster drained"},
        {"service": "default/nginx", "cluster": "eu", "zone": "europe-west1-b",
         "addresses": [], "hostnames": ["lb.example.net"], "ready": 1, "healthy": True,
         "reason": "probe ok"},
    ],
    "drains": {"clusters": ["us"], "shards": ["eu/default/nginx"]},
    "providers": [{"name": "route53", "ok": False, "last_error": "throttled",
                   "plan": {"create": 1}}],
}


def test_status_table_shows_health_reasons_drains_and_providers() -> None:
    text = format_status(STATUS, now=1042.4)
    lines = text.splitlines()
    assert "serial 42" in lines[0] and "age 1.2s" in lines[0] and "STALE" in lines[0]
    us = next(ln for ln in lines if ln.startswith("us ") and "static" in ln)
    assert us.split()[-2:] == ["yes", "-"]  # drained, no error
    eu = next(ln for ln in lines if ln.startswith("eu ") and "kubernetes" in ln)
    assert eu.endswith("connection refused")
    assert "42s ago" in eu and "ago" not in us  # a static cluster contacts nothing
    shard = next(ln for ln in lines if "192.0.2.10" in ln)
    assert "UNHEALTHY" in shard and shard.endswith("cluster drained")
    assert any("lb.example.net" in ln and "healthy" in ln for ln in lines)
    assert "clusters: us" in text and "shards: eu/default/nginx" in text
    prov = next(ln for ln in lines if ln.startswith("route53"))
    assert "throttled" in prov and '{"create":1}' in prov and " no " in f" {prov} "


def test_status_table_of_an_empty_server() -> None:
    text = format_status({"zone": "z.", "ready": False})
    assert "ready no" in text and "(none configured)" in text


@pytest.mark.parametrize(("cluster", "service", "path"), [
    ("us", None, "/v1/drains/us"),
    ("us", "default/nginx", "/v1/drains/us/default/nginx"),
    ("us", "ingress:web/shop", "/v1/drains/us/web/shop?kind=ingress"),
    ("a b", None, "/v1/drains/a%20b"),
])
def test_drain_paths(cluster: str, service: str | None, path: str) -> None:
    assert _drain_path(cluster, service) == path


@pytest.mark.parametrize("service", ["nginx", "/nginx", "default/", "a/b/c"])
def test_bad_service_names_are_refused(service: str) -> None:
    with pytest.raises(CliError):
        _drain_path("us", service)


def test_render_zone_views() -> None:
    rec = Record("example.com.", "NS", 30, "ns1.example.com.")
    us = Record("n.example.com.", "A", 5, "192.0.2.10")
    eu = Record("n.example.com.", "A", 5, "192.0.2.20")
    snap = Snapshot(serial=9, generated_at=0.0, zone="example.com.", ttl=5, records=(rec,),
                    geo={"n.example.com.": {"": (us, eu), "zone:a": (us,)}},
                    localities=("", "zone:a"))
    text = render_zone(snap, ["", "zone:a"])
    assert text.startswith("; zone example.com. serial 9")
    static, zone_a = text.split("; view: zone:a\n")
    assert us.zone_line() in static and eu.zone_line() in static
    assert us.zone_line() in zone_a and eu.zone_line() not in zone_a
    assert "$ORIGIN example.com.\n" in text


def test_parser_takes_log_options_before_or_after_the_command() -> None:
    p = build_parser()
    a = p.parse_args(["--log-format", "json", "check", "-c", "f"])
    assert (a.log_format, a.log_level) == ("json", None)  # main() picks by command
    b = p.parse_args(["check", "-c", "f", "--log-level", "debug"])
    assert (b.log_format, b.log_level) == ("text", "DEBUG")
    c = p.parse_args(["demo"])
    assert (c.dns_port, c.http_port) == (5353, 8053)
    with pytest.raises(SystemExit):
        p.parse_args(["records", "-c", "f", "--all", "--locality", "zone:a"])
