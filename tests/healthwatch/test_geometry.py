"""Great-circle distances and region fallback order."""

from __future__ import annotations

import pytest

from config.model import Region
from healthwatch.geometry import distance_km, fallback_order, nearest_region
from tests.healthwatch.helpers import make_config


@pytest.mark.parametrize(("a", "b", "km"), [
    ((0.0, 0.0), (0.0, 0.0), 0.0),
    ((0.0, 0.0), (0.0, 180.0), 20015.1),          # half the equator
    ((51.5074, -0.1278), (40.7128, -74.0060), 5570.2),   # London - New York
    ((90.0, 0.0), (-90.0, 0.0), 20015.1),
    ((10.0, 179.5), (10.0, -179.5), 109.5),       # across the antimeridian
])
def test_distance(a: tuple[float, float], b: tuple[float, float], km: float) -> None:
    assert distance_km(a, b) == pytest.approx(km, abs=1.0)
    assert distance_km(a, b) == pytest.approx(distance_km(b, a))


def test_fallback_order_configured_then_distance_then_name() -> None:
    cfg = make_config()
    assert fallback_order(cfg, "us-west1") == ("us-east1", "europe-west1", "asia-east1")
    assert fallback_order(cfg, "europe-west1") == ("asia-east1", "us-east1", "us-west1")
    assert fallback_order(cfg, "nowhere") == (
        "asia-east1", "europe-west1", "us-east1", "us-west1")


def test_fallback_ties_by_name_and_bad_fallback_entries_skipped() -> None:
    cfg = make_config(regions=(
        Region("home", (0.0, 0.0), fallback=("home", "missing")),
        Region("b-east", (0.0, 10.0)),
        Region("a-west", (0.0, -10.0)),
    ))
    assert fallback_order(cfg, "home") == ("a-west", "b-east")


def test_nearest_region() -> None:
    cfg = make_config()
    assert nearest_region(cfg, 48.85, 2.35) == "europe-west1"      # Paris
    assert nearest_region(cfg, 37.77, -122.42) == "us-west1"        # San Francisco
    assert nearest_region(cfg, 35.68, 139.69) == "asia-east1"       # Tokyo
    assert nearest_region(make_config(regions=()), 0.0, 0.0) is None
