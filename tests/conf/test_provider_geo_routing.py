"""Cloud DNS ``routing: geo`` / ``geo_regions``: good values load, bad ones are
reported with clear messages at the right place (what ``fedns check`` prints),
mirroring Route53's ``routing: latency`` checks (test_provider_routing.py)."""

from __future__ import annotations

import pytest

from config.loader import load_text
from providers.geo import geo_regions
from tests.conf.test_loader import BASE, problems_of
from tests.conf.test_provider_routing import assert_one_problem_at


def gcp(extra: str) -> str:
    return BASE + f"providers:\n  - {{type: clouddns, project: p, managed_zone: m, {extra}}}\n"


def test_geo_regions_load_as_sorted_pairs() -> None:
    p, = load_text(gcp("routing: geo, geo_regions: "
                       "{US-East1: us-east4, europe-west1: europe-west1}")).providers
    assert p.get("routing") == "geo"
    assert p.get("geo_regions") == (("europe-west1", "europe-west1"), ("us-east1", "us-east4"))
    assert geo_regions(p) == (("europe-west1", "europe-west1"), ("us-east1", "us-east4"))
    plain, = load_text(gcp("routing: all")).providers
    assert plain.get("routing") == "all" and plain.get("geo_regions") is None
    assert geo_regions(plain) == ()


@pytest.mark.parametrize("extra, at, message", [
    ("routing: geo, geo_regions: {mars: us-east1}", "mars",
     "providers[0].geo_regions.mars: unknown region 'mars' (regions: us-east1, "
     "europe-west1)"),
    ("routing: geo, geo_regions: {us-east1: us-east-1}", "us-east-1}",
     "providers[0].geo_regions.us-east1: 'us-east-1' is not a Google Cloud region name"),
    ("routing: geo, geo_regions: {us-east1: Iowa}", "Iowa",
     "providers[0].geo_regions.us-east1: 'Iowa' is not a Google Cloud region name"),
    ("routing: geo, geo_regions: {us-east1: europe-west1, europe-west1: europe-west1}",
     "europe-west1}",
     "providers[0].geo_regions.europe-west1: Google Cloud region 'europe-west1' is already "
     "mapped from region 'us-east1' (Cloud DNS takes one geo policy item per location)"),
    ("routing: geo, geo_regions: {us-east1: us-east1, US-EAST1: us-east4}", "US-EAST1",
     "providers[0].geo_regions.US-EAST1: region 'us-east1' is mapped twice"),
    ("geo_regions: {us-east1: us-east1}", "geo_regions",
     "providers[0].geo_regions: geo_regions needs routing: geo (routing is 'all')"),
    ("routing: all, geo_regions: {us-east1: us-east1}", "geo_regions",
     "providers[0].geo_regions: geo_regions needs routing: geo (routing is 'all')"),
    ("routing: geo", "geo}",
     "providers[0].routing: 'geo' needs geo_regions (fedns region -> Google Cloud region)"),
    ("routing: geo, geo_regions: {}", "{}",
     "providers[0].geo_regions: needs at least one region mapped to a Google Cloud region"),
    ("routing: latency", "latency",
     "providers[0].routing: must be one of all, geo; got 'latency'"),
    ("routing: geo, delegate: true, geo_regions: {us-east1: us-east1}", "geo,",
     "providers[0].routing: 'geo' does not apply to a delegating provider"),
], ids=["unknown-region", "aws-style-region", "not-a-region", "location-twice",
        "region-twice", "regions-without-routing", "regions-with-routing-all",
        "routing-without-regions", "empty-regions", "latency-on-clouddns", "delegate"])
def test_bad_geo_routing_is_reported(extra: str, at: str, message: str) -> None:
    """One problem each, at the line of the provider and the column where
    ``at`` (the offending key or value) starts."""
    assert_one_problem_at(gcp(extra), "clouddns", at, message)


def test_geo_routing_is_clouddns_only() -> None:
    text = BASE + "providers:\n  - {type: route53, hosted_zone_id: Z1, routing: geo, " \
        "geo_regions: {us-east1: us-east1}}\n"
    msgs = [p.message for p in problems_of(text)]
    assert any("routing: must be one of all, latency; got 'geo'" in m for m in msgs), msgs
    assert any("unknown key 'geo_regions'" in m for m in msgs), msgs
