"""Reading a GeoIP2/GeoLite2 City or Country database (MMDB).

``GeoDatabase`` opens and checks the file once (a missing, corrupt or
wrong-type database is a config-time error) and answers
``address -> GeoRecord``: coordinates, country, continent and the database's
own network prefix for that address. It uses ``maxminddb`` directly (the C
extension when present) rather than building ``geoip2`` model objects per
lookup; the records are the same ones ``geoip2.database.Reader.city()`` reads.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import maxminddb

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Database types we understand: GeoIP2/GeoLite2/DB-IP City, Country, Enterprise.
_SUPPORTED_TYPES = ("City", "Country", "Enterprise")
# Looked up once at open time so a corrupt data section fails early.
_PROBES = ("8.8.8.8", "81.2.69.160", "1.0.0.1", "2001:4860:4860::8888")


class GeoError(Exception):
    """Root of the geo errors (GeoIP database and client locality)."""


class GeoDatabaseError(GeoError):
    """The configured database cannot be used."""

    def __init__(self, *, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"geo.database {path!r}: {reason}")


class GeoLookupError(GeoError):
    """One lookup failed (corrupt data past the parts checked at open time)."""

    def __init__(self, *, address: str, reason: str) -> None:
        self.address = address
        self.reason = reason
        super().__init__(f"geoip lookup of {address} failed: {reason}")


@dataclass(frozen=True, slots=True)
class GeoRecord:
    """What the database knows about one client network."""

    country: str | None  # ISO 3166-1 alpha-2 ("GB"), else the registered country
    continent: str | None  # "EU", "NA", "AS", ...
    latitude: float | None
    longitude: float | None
    prefix_len: int  # the database network holding the address (IPv4 lengths for IPv4)


class GeoSource(Protocol):
    """Anything that maps an address to a ``GeoRecord`` (tests wrap the database)."""

    def lookup(self, address: Address) -> GeoRecord | None: ...


class GeoDatabase:
    """A read-only open MMDB. Lookups are thread-safe (memory-mapped, no state)."""

    def __init__(self, path: str) -> None:
        self.path = path
        if not os.path.isfile(path):
            raise GeoDatabaseError(path=path, reason="no such file")
        try:
            reader = maxminddb.open_database(path)
        except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
            raise GeoDatabaseError(path=path, reason=f"not a readable MMDB ({exc})") from exc
        meta = reader.metadata()
        self.database_type: str = str(meta.database_type)
        self.ip_version: int = int(meta.ip_version)
        self.build_epoch: int = int(meta.build_epoch)
        if not any(t in self.database_type for t in _SUPPORTED_TYPES):
            reader.close()
            raise GeoDatabaseError(
                path=path,
                reason=f"database type {self.database_type!r} is not a City or Country database",
            )
        self._reader = reader
        for probe in _PROBES:
            try:
                self.lookup(ipaddress.ip_address(probe))
            except GeoLookupError as exc:
                reader.close()
                raise GeoDatabaseError(path=path, reason=f"corrupt data ({exc.reason})") from exc

    def lookup(self, address: Address) -> GeoRecord | None:
        """The record for ``address``, or None when the database has none
        (including IPv6 addresses in an IPv4-only database)."""
        if address.version == 6 and self.ip_version == 4:
            return None
        try:
            raw, prefix_len = self._reader.get_with_prefix_len(address)
        except (maxminddb.InvalidDatabaseError, ValueError, TypeError, KeyError) as exc:
            reason = str(exc) or type(exc).__name__
            raise GeoLookupError(address=str(address), reason=reason) from exc
        if raw is None:
            return None
        if not isinstance(raw, Mapping):
            raise GeoLookupError(address=str(address), reason="record is not a map")
        return _record(raw, int(prefix_len))

    def close(self) -> None:
        self._reader.close()


def _record(raw: Mapping[str, Any], prefix_len: int) -> GeoRecord:
    country = (_code(raw.get("country"), "iso_code")
               or _code(raw.get("registered_country"), "iso_code"))
    continent = _code(raw.get("continent"), "code")
    lat = lon = None
    loc = raw.get("location")
    if isinstance(loc, Mapping):
        la, lo = loc.get("latitude"), loc.get("longitude")
        if (isinstance(la, int | float) and isinstance(lo, int | float)
                and -90.0 <= la <= 90.0 and -180.0 <= lo <= 180.0):
            lat, lon = float(la), float(lo)
    return GeoRecord(country=country, continent=continent, latitude=lat, longitude=lon,
                     prefix_len=prefix_len)


def _code(section: object, key: str) -> str | None:
    if isinstance(section, Mapping):
        value = section.get(key)
        if isinstance(value, str) and value:
            return value.upper()
    return None
