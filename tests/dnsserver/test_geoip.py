"""GeoDatabase: reading City/Country MMDBs built at test time; config-time errors."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import geoip2.database
import pytest

from dnsserver.geoip import GeoDatabase, GeoDatabaseError, GeoRecord
from tests.dnsserver.mmdb import PLACES, Place, build_mmdb


@pytest.fixture(scope="module")
def city_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_mmdb(tmp_path_factory.mktemp("geo") / "city.mmdb")


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("81.2.69.160", GeoRecord("GB", "EU", 51.5, -0.13, 24)),
        ("5.9.1.2", GeoRecord("DE", "EU", 52.52, 13.40, 16)),
        ("8.8.8.8", GeoRecord("US", "NA", 37.75, -97.82, 9)),
        ("1.0.16.1", GeoRecord("JP", "AS", 35.69, 139.69, 20)),
        ("177.0.255.255", GeoRecord("BR", "SA", -23.55, -46.63, 16)),
        ("2a01:4f8:1:2::3", GeoRecord("DE", "EU", 52.52, 13.40, 32)),
        ("2001:4860:4860::8888", GeoRecord("US", "NA", 37.75, -97.82, 32)),
        ("41.0.3.4", GeoRecord("ZA", "AF", None, None, 16)),  # no coordinates
        ("196.0.0.1", GeoRecord("KE", None, None, None, 16)),  # registered country only
        ("100.64.1.1", GeoRecord(None, None, 0.0, 0.0, 16)),
    ],
)
def test_lookup(city_db: Path, address: str, expected: GeoRecord) -> None:
    db = GeoDatabase(str(city_db))
    try:
        assert db.lookup(ipaddress.ip_address(address)) == expected
    finally:
        db.close()


@pytest.mark.parametrize("address", ["203.0.113.9", "192.168.1.1", "2001:db8::1"])
def test_lookup_missing(city_db: Path, address: str) -> None:
    db = GeoDatabase(str(city_db))
    assert db.lookup(ipaddress.ip_address(address)) is None


def test_geoip2_reader_reads_test_database(city_db: Path) -> None:
    """The helper's records are what the official geoip2 City reader expects."""
    with geoip2.database.Reader(str(city_db)) as reader:
        city = reader.city("81.2.69.160")
        assert city.country.iso_code == "GB"
        assert city.continent.code == "EU"
        assert (city.location.latitude, city.location.longitude) == (51.5, -0.13)
        assert str(city.traits.network) == "81.2.69.0/24"
        assert reader.city("2a01:4f8::1").country.iso_code == "DE"


def test_metadata(city_db: Path) -> None:
    db = GeoDatabase(str(city_db))
    assert db.database_type == "GeoLite2-City"
    assert db.ip_version == 6
    assert db.build_epoch > 0


def test_ipv4_only_database_answers_none_for_ipv6(tmp_path: Path) -> None:
    path = build_mmdb(tmp_path / "v4.mmdb", ip_version=4)
    db = GeoDatabase(str(path))
    assert db.lookup(ipaddress.ip_address("2a01:4f8::1")) is None
    rec = db.lookup(ipaddress.ip_address("81.2.69.1"))
    assert rec is not None and rec.country == "GB"


def test_country_database_accepted(tmp_path: Path) -> None:
    places = [Place(p.networks, p.country, p.continent) for p in PLACES]
    path = build_mmdb(tmp_path / "country.mmdb", places, database_type="GeoLite2-Country")
    rec = GeoDatabase(str(path)).lookup(ipaddress.ip_address("8.8.4.4"))
    assert rec == GeoRecord("US", "NA", None, None, 9)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(GeoDatabaseError, match="no such file") as info:
        GeoDatabase(str(tmp_path / "absent.mmdb"))
    assert info.value.path.endswith("absent.mmdb")


def test_not_an_mmdb(tmp_path: Path) -> None:
    path = tmp_path / "garbage.mmdb"
    path.write_bytes(b"this is not a MaxMind database\n" * 100)
    with pytest.raises(GeoDatabaseError, match="not a readable MMDB"):
        GeoDatabase(str(path))


def test_truncated_database(tmp_path: Path, city_db: Path) -> None:
    path = tmp_path / "truncated.mmdb"
    path.write_bytes(city_db.read_bytes()[:200])
    with pytest.raises(GeoDatabaseError):
        GeoDatabase(str(path))


def test_directory_is_not_a_database(tmp_path: Path) -> None:
    with pytest.raises(GeoDatabaseError, match="no such file"):
        GeoDatabase(str(tmp_path))


def test_wrong_database_type(tmp_path: Path) -> None:
    path = build_mmdb(tmp_path / "asn.mmdb", database_type="GeoLite2-ASN")
    with pytest.raises(GeoDatabaseError, match="not a City or Country database"):
        GeoDatabase(str(path))


def test_corrupt_data_section(tmp_path: Path, city_db: Path) -> None:
    """Overwriting the data section makes the probe lookups fail at open time."""
    raw = bytearray(city_db.read_bytes())
    meta = raw.rfind(b"\xab\xcd\xefMaxMind.com")
    # the data section follows the search tree and a 16-byte zero separator
    sep = raw.find(bytes(16))
    assert 0 < sep < meta
    for i in range(sep + 16, meta):
        raw[i] = 0xFF
    path = tmp_path / "corrupt.mmdb"
    path.write_bytes(bytes(raw))
    with pytest.raises(GeoDatabaseError, match="corrupt data"):
        GeoDatabase(str(path))
