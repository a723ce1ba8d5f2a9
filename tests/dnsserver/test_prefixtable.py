"""PrefixTable: longest-prefix match and the ECS scope of each answer."""

from __future__ import annotations

import ipaddress
import random

import pytest

from dnsserver.prefixtable import PrefixTable


def _v4(entries: list[tuple[str, str]]) -> PrefixTable:
    nets = [(ipaddress.IPv4Network(n), loc) for n, loc in entries]
    return PrefixTable(32, [(int(n.network_address), n.prefixlen, loc) for n, loc in nets])


def _a(text: str) -> int:
    return int(ipaddress.ip_address(text))


TABLE = [
    ("10.0.0.0/8", "A"),
    ("10.1.0.0/16", "B"),
    ("10.1.2.128/25", "C"),
    ("192.0.2.0/24", "D"),
]


@pytest.mark.parametrize(
    ("address", "locality", "scope"),
    [
        ("10.200.0.1", "A", 9),  # /8 matched; 10.0/9 holds the /16, 10.128/9 does not
        ("10.9.0.1", "A", 13),  # 9 = 00001001, 1 = 00000001: apart at bit 8+5
        ("10.1.9.9", "B", 21),  # 9 = 00001001, 2 = 00000010: apart at bit 16+5
        ("10.1.2.1", "B", 25),  # same /24 as the /25 but the other half
        ("10.1.2.200", "C", 25),
        ("192.0.2.77", "D", 24),
        ("192.0.3.1", None, 24),  # ruled out only at the last bit of 192.0.2/24
        ("8.8.8.8", None, 7),  # 8 = 00001000, 10 = 00001010: apart at bit 7
        ("200.1.1.1", None, 5),  # 200 = 11001000, 192 = 11000000: apart at bit 5
    ],
)
def test_lookup(address: str, locality: str | None, scope: int) -> None:
    assert _v4(TABLE).lookup(_a(address)) == (locality, scope)


def test_empty_table() -> None:
    assert PrefixTable(32, []).lookup(_a("1.2.3.4")) == (None, 0)
    assert PrefixTable(128, []).lookup(_a("2001:db8::1")) == (None, 0)


def test_host_bits_ignored_and_first_duplicate_wins() -> None:
    t = _v4([("10.0.0.0/8", "A")])
    t2 = PrefixTable(32, [(_a("10.9.9.9"), 8, "A"), (_a("10.0.0.0"), 8, "B")])
    assert t2.lookup(_a("10.1.1.1")) == t.lookup(_a("10.1.1.1")) == ("A", 8)
    assert len(t2.conflicts) == 1
    c = t2.conflicts[0]
    assert (c.network, c.length, c.kept, c.dropped) == (_a("10.0.0.0"), 8, "A", "B")


def test_same_cidr_same_locality_is_no_conflict() -> None:
    t = _v4([("10.0.0.0/8", "A"), ("10.0.0.0/8", "A")])
    assert t.conflicts == () and t.size == 1


def test_split_blocks() -> None:
    t = _v4(TABLE)
    assert t.split_blocks(24) == frozenset({_a("10.1.2.0") >> 8})
    assert t.split_blocks(8) == frozenset({10, 192})  # /8s holding longer entries
    assert t.split_blocks(30) == frozenset()


def test_ipv6() -> None:
    t = PrefixTable(128, [(_a("2001:db8::"), 32, "X"), (_a("2001:db8:1:2::"), 64, "Y")])
    assert t.lookup(_a("2001:db8:1:2::5")) == ("Y", 64)
    assert t.lookup(_a("2001:db8:ffff::1"))[0] == "X"
    assert t.lookup(_a("2001:db9::1"))[0] is None


def test_rejects_bad_lengths() -> None:
    with pytest.raises(ValueError):
        PrefixTable(32, [(0, 33, "A")])
    with pytest.raises(ValueError):
        PrefixTable(64, [])


def _naive(entries: list[tuple[int, int, str]], addr: int) -> tuple[str | None, int]:
    def within(net: int, length: int, a: int, s: int) -> bool:
        return length >= s and (net >> (32 - s)) == (a >> (32 - s))

    best: tuple[int, str] | None = None
    for net, length, loc in entries:
        if (addr >> (32 - length)) == (net >> (32 - length)) and (best is None or length > best[0]):
            best = (length, loc)
    start = best[0] if best else 0
    s = start
    while any(within(net, length, addr, s) and length > s for net, length, _ in entries):
        s += 1
    return (best[1] if best else None), s


def test_matches_naive_definition_on_random_tables() -> None:
    """Scope = the shortest prefix (>= the match) whose block holds no longer entry."""
    rng = random.Random(7)
    for _ in range(30):
        entries: dict[tuple[int, int], str] = {}
        for i in range(rng.randint(1, 12)):
            length = rng.randint(4, 30)
            net = (0x0A000000 | rng.getrandbits(24)) >> (32 - length) << (32 - length)
            entries.setdefault((net, length), f"L{i}")
        flat = [(n, plen, loc) for (n, plen), loc in entries.items()]
        table = PrefixTable(32, flat)
        for _ in range(40):
            addr = 0x0A000000 | rng.getrandbits(24)
            if rng.random() < 0.5:  # near an entry
                net, length, _ = rng.choice(flat)
                addr = net | rng.getrandbits(32 - length)
            assert table.lookup(addr) == _naive(flat, addr)


def test_scope_is_sound() -> None:
    """Every address sharing the returned scope gets the same locality."""
    rng = random.Random(11)
    table = _v4(TABLE)
    for _ in range(200):
        addr = rng.choice([0x0A000000, 0xC0000200, 0]) | rng.getrandbits(18)
        loc, scope = table.lookup(addr)
        for _ in range(20):
            other = (addr >> (32 - scope) << (32 - scope) if scope else 0) | (
                rng.getrandbits(32 - scope) if scope < 32 else 0)
            assert table.lookup(other)[0] == loc
