"""Build small GeoIP2-City-shaped MMDB files at test time (nothing downloaded).

The records have the fields ``geoip2.database.Reader.city()`` reads:
``country.iso_code``, ``continent.code`` and ``location.latitude/longitude``.
The networks are real allocations of the named countries, but only the
country matters to the tests.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mmdb_writer
import netaddr


@dataclass(frozen=True, slots=True)
class Place:
    networks: tuple[str, ...]
    country: str | None
    continent: str | None
    location: tuple[float, float] | None = None
    registered_country: str | None = None


# Capitals (roughly) so distances are realistic.
PLACES: tuple[Place, ...] = (
    Place(("81.2.69.0/24", "2a02:8010::/32"), "GB", "EU", (51.5, -0.13)),
    Place(("5.9.0.0/16", "2a01:4f8::/32"), "DE", "EU", (52.52, 13.40)),
    Place(("2.0.0.0/16",), "FR", "EU", (48.86, 2.35)),
    Place(("8.0.0.0/9", "2001:4860::/32"), "US", "NA", (37.75, -97.82)),
    Place(("1.0.16.0/20", "2001:268::/32"), "JP", "AS", (35.69, 139.69)),
    Place(("177.0.0.0/16",), "BR", "SA", (-23.55, -46.63)),
    Place(("1.128.0.0/16", "2001:8000::/20"), "AU", "OC", (-33.87, 151.21)),
    Place(("41.0.0.0/16",), "ZA", "AF", None),  # country only, no coordinates
    Place(("196.0.0.0/16",), None, None, None, registered_country="KE"),
    Place(("100.64.0.0/16",), None, None, (0.0, 0.0)),  # coordinates only
)


def _content(place: Place) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if place.country is not None:
        out["country"] = {"iso_code": place.country, "names": {"en": place.country}}
    if place.registered_country is not None:
        out["registered_country"] = {"iso_code": place.registered_country}
    if place.continent is not None:
        out["continent"] = {"code": place.continent, "names": {"en": place.continent}}
    if place.location is not None:
        out["location"] = {"latitude": float(place.location[0]),
                           "longitude": float(place.location[1]),
                           "accuracy_radius": 100}
    return out


def build_mmdb(path: Path, places: Iterable[Place] = PLACES, *,
               database_type: str = "GeoLite2-City", ip_version: int = 6) -> Path:
    """Write ``places`` to ``path`` and return it."""
    writer = mmdb_writer.MMDBWriter(
        ip_version=ip_version,
        ipv4_compatible=ip_version == 6,
        database_type=database_type,
        languages=["en"],
        description="fedns test database",
    )
    for place in places:
        nets = [n for n in place.networks
                if ip_version == 6 or netaddr.IPNetwork(n).version == 4]
        if nets:
            writer.insert_network(netaddr.IPSet(nets), _content(place))
    writer.to_db_file(str(path))
    return path
