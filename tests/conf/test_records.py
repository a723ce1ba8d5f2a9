"""config.records and config.names: rdata and name checks, table-driven."""

from __future__ import annotations

import pytest

from config import names
from config.records import canonical

ZONE = "example.com."

GOOD = [
    ("A", "192.0.2.1", "192.0.2.1"),
    ("AAAA", "2001:DB8::1", "2001:db8::1"),
    ("CNAME", "www", "www.example.com."),
    ("CNAME", "a.example.net.", "a.example.net."),
    ("MX", "10 @", "10 example.com."),
    ("SRV", "0 5 443 web", "0 5 443 web.example.com."),
    ("TXT", "v=spf1 -all", '"v=spf1 -all"'),
    ("TXT", '"a" "b"', '"a" "b"'),
    ("CAA", '0 issue "letsencrypt.org"', '0 issue "letsencrypt.org"'),
    ("NS", "ns.other.net.", "ns.other.net."),
]
BAD = [
    ("A", "192.0.2", "not an IP address"),
    ("A", "2001:db8::1", "wrong address family"),
    ("A", "192.0.2.1 192.0.2.2", "expected 1 field"),
    ("MX", "mail", "expected 2 field"),
    ("MX", "x mail", "not a number"),
    ("SRV", "0 5 99999 web", "not a number 0-65535"),
    ("CNAME", "bad name", "expected 1 field"),
    ("SOA", "x", "cannot be a static record"),
    ("NOPE", "x", "unknown record type"),
    ("SSHFP", "1 1 zz", "invalid SSHFP value"),
    ("TXT", "  ", "empty value"),
]


@pytest.mark.parametrize(("rtype", "value", "want"), GOOD)
def test_canonical(rtype: str, value: str, want: str) -> None:
    assert canonical(rtype, value, ZONE) == want


@pytest.mark.parametrize(("rtype", "value", "message"), BAD)
def test_canonical_refuses(rtype: str, value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        canonical(rtype, value, ZONE)


@pytest.mark.parametrize(
    ("text", "want"),
    [("[::1]:53", ("::1", 53)), ("127.0.0.1:0", ("127.0.0.1", 0)), ("Host.Local:80", None)],
)
def test_hostport(text: str, want: tuple[str, int] | None) -> None:
    if want is None:
        with pytest.raises(ValueError, match="host must be an IP"):
            names.hostport(text, need_ip=True)
        assert names.hostport(text, need_ip=False) == ("host.local", 80)
    else:
        assert names.hostport(text, need_ip=True) == want


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("a..b.", "empty label"),
        ("-a.", "not a valid domain name"),
        ("a" * 64 + ".", "not a valid"),
        (("a" * 60 + ".") * 5, "longer than 253"),
    ],
)
def test_bad_names(name: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        names.absolute(name)
