"""Route53 ``routing`` / ``latency_regions``: good values load, bad ones are
reported with clear messages at the right place (what ``fedns check`` prints)."""

from __future__ import annotations

import pytest

from config.loader import load_text
from tests.conf.test_loader import BASE, problems_of


def r53(extra: str) -> str:
    return BASE + f"providers:\n  - {{type: route53, hosted_zone_id: Z1, {extra}}}\n"


def test_latency_regions_load_as_sorted_pairs() -> None:
    p, = load_text(r53("routing: latency, latency_regions: "
                       "{US-East1: us-east-1, europe-west1: eu-west-1}")).providers
    assert p.get("routing") == "latency"
    assert p.get("latency_regions") == (("europe-west1", "eu-west-1"), ("us-east1", "us-east-1"))
    plain, = load_text(r53("routing: all")).providers
    assert plain.get("routing") == "all" and plain.get("latency_regions") is None


@pytest.mark.parametrize("extra, at, message", [
    ("routing: latency, latency_regions: {mars: us-east-1}", "mars",
     "providers[0].latency_regions.mars: unknown region 'mars' (regions: us-east1, "
     "europe-west1)"),
    ("routing: latency, latency_regions: {us-east1: Virginia}", "Virginia",
     "providers[0].latency_regions.us-east1: 'Virginia' is not an AWS region name"),
    ("routing: latency, latency_regions: {us-east1: eu-west-1, europe-west1: eu-west-1}",
     "eu-west-1}",
     "providers[0].latency_regions.europe-west1: AWS region 'eu-west-1' is already mapped "
     "from region 'us-east1' (Route53 takes one latency record set per AWS region)"),
    ("routing: latency, latency_regions: {us-east1: us-east-1, US-EAST1: us-east-2}",
     "US-EAST1",
     "providers[0].latency_regions.US-EAST1: region 'us-east1' is mapped twice"),
    ("latency_regions: {us-east1: us-east-1}", "latency_regions",
     "providers[0].latency_regions: latency_regions needs routing: latency "
     "(routing is 'all')"),
    ("routing: all, latency_regions: {us-east1: us-east-1}", "latency_regions",
     "providers[0].latency_regions: latency_regions needs routing: latency "
     "(routing is 'all')"),
    ("routing: latency", "latency}",
     "providers[0].routing: 'latency' needs latency_regions (fedns region -> AWS region)"),
    ("routing: latency, latency_regions: {}", "{}",
     "providers[0].latency_regions: needs at least one region mapped to an AWS region"),
    ("routing: geo", "geo", "providers[0].routing: must be one of all, latency; got 'geo'"),
    ("routing: latency, delegate: true, latency_regions: {us-east1: us-east-1}", "latency,",
     "providers[0].routing: 'latency' does not apply to a delegating provider"),
], ids=["unknown-region", "not-an-aws-region", "aws-region-twice", "region-twice",
        "regions-without-routing", "regions-with-routing-all", "routing-without-regions",
        "empty-regions", "unknown-routing", "delegate"])
def test_bad_routing_is_reported(extra: str, at: str, message: str) -> None:
    """One problem each, at the line of the provider and the column where
    ``at`` (the offending key or value) starts."""
    assert_one_problem_at(r53(extra), "route53", at, message)


def assert_one_problem_at(text: str, ptype: str, at: str, message: str) -> None:
    """``text`` (a provider of type ``ptype`` on one line) loads with exactly one
    problem, ``message``, at that line and the column where ``at`` starts (a
    delegating provider gets the nameservers it needs first)."""
    if "delegate" in text:
        text = text.replace("providers:", "nameservers: {ns1: [192.0.2.53]}\nproviders:")
    probs = problems_of(text)
    assert len(probs) == 1, probs
    assert message in probs[0].message, probs
    lines = text.splitlines()
    line = next(i for i, x in enumerate(lines) if ptype in x)
    assert (probs[0].line, probs[0].column) == (line + 1, lines[line].index(at) + 1), probs


@pytest.mark.parametrize("block, message", [
    ("{type: clouddns, project: p, managed_zone: m, routing: latency}",
     "providers[0].routing: must be one of all, geo; got 'latency'"),
    ("{type: clouddns, project: p, managed_zone: m, latency_regions: {us-east1: us-east-1}}",
     "unknown key 'latency_regions'"),
    ("{type: coredns-etcd, endpoints: ['http://127.0.0.1:2379'], routing: latency}",
     "unknown key 'routing'"),
], ids=["clouddns-latency", "clouddns-latency-regions", "etcd"])
def test_latency_routing_is_route53_only(block: str, message: str) -> None:
    """(Cloud DNS has its own ``routing: geo``: tests/conf/test_provider_geo_routing.py.)"""
    probs = problems_of(BASE + f"providers:\n  - {block}\n")
    assert len(probs) == 1 and message in probs[0].message, probs
