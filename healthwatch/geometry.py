"""Distances between regions and the fallback order derived from them."""

from __future__ import annotations

import math

from config.model import Config

EARTH_RADIUS_KM = 6371.0088


def distance_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle (haversine) distance between two ``(lat, lon)`` points in degrees."""
    lat1, lon1 = math.radians(a[0]), math.radians(a[1])
    lat2, lon2 = math.radians(b[0]), math.radians(b[1])
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2)
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def fallback_order(config: Config, region: str) -> tuple[str, ...]:
    """Regions to try after ``region``: its configured ``fallback`` first, then
    every other configured region by distance from it (ties by name).

    An unknown ``region`` yields every region by name.
    """
    home = config.region(region)
    if home is None:
        return tuple(sorted(r.name for r in config.regions))
    known = {r.name for r in config.regions}
    out: list[str] = []
    for name in home.fallback:
        if name != region and name in known and name not in out:
            out.append(name)
    rest = sorted(
        (r for r in config.regions if r.name != region and r.name not in out),
        key=lambda r: (distance_km(home.location, r.location), r.name),
    )
    out.extend(r.name for r in rest)
    return tuple(out)


def nearest_region(config: Config, lat: float, lon: float) -> str | None:
    """The configured region closest to ``(lat, lon)`` (ties by name), or None."""
    best: tuple[float, str] | None = None
    for r in config.regions:
        cand = (distance_km((lat, lon), r.location), r.name)
        if best is None or cand < best:
            best = cand
    return None if best is None else best[1]
