"""``server.also_notify``: the secondaries fedns sends NOTIFY to. Addresses
with an optional port (53 by default); every bad entry is reported at its
own line, with every other problem of the file."""

from __future__ import annotations

import pytest

from config.errors import ConfigError, Problem
from config.loader import load_text

BASE = """\
zone: example.com.
federation: myfed
"""


def problems_of(text: str) -> list[Problem]:
    with pytest.raises(ConfigError) as info:
        load_text(text, "t.yaml")
    return info.value.problems


def test_addresses_with_and_without_ports() -> None:
    cfg = load_text(BASE + """\
server:
  also_notify:
    - 192.0.2.1:53
    - "[2001:DB8::1]:5353"
    - 10.0.0.5
    - 2001:db8::2
    - "[2001:db8::3]"
""")
    assert cfg.server.also_notify == (("192.0.2.1", 53), ("2001:db8::1", 5353),
                                      ("10.0.0.5", 53), ("2001:db8::2", 53),
                                      ("2001:db8::3", 53))


def test_default_is_no_targets() -> None:
    assert load_text(BASE).server.also_notify == ()


def test_every_bad_entry_is_reported_at_its_line() -> None:
    problems = problems_of(BASE + """\
server:
  also_notify:
    - 192.0.2.1
    - ns1.example.com:53
    - 192.0.2.300
    - 192.0.2.2:0
    - 192.0.2.2:70000
    - 192.0.2.1:53
    - "[2001:db8::zz]:53"
    - 2001:db8::1:53:x
    - 7
ttl: -1
""")
    got = [(p.line, p.message) for p in problems]
    assert [line for line, _ in got] == [6, 7, 8, 9, 10, 11, 12, 13, 14]
    messages = dict(got)
    assert "host must be an IP address" in messages[6]
    assert "'192.0.2.300' is not an IP address" in messages[7]
    assert "port 0 is out of range 1-65535" in messages[8]
    assert "port 70000 is out of range 1-65535" in messages[9]
    assert "'192.0.2.1:53' is listed twice (first at line 5)" in messages[10]
    assert "is not an IPv6 address" in messages[11]
    assert "is not an IP address" in messages[12]
    assert messages[13].startswith("server.also_notify[8]")  # a number: the schema says so
    assert "ttl" in messages[14]
    for _, message in got[:8]:
        assert message.startswith("server.also_notify[")


def test_unknown_neighbour_key_still_an_error() -> None:
    problems = problems_of(BASE + "server: {also_notfy: [192.0.2.1]}\n")
    assert any("also_notfy" in p.message for p in problems)
