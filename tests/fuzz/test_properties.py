"""Property tests of the query path over random, structured and mutated packets.

For every packet, through the fast path and the full path (``harness.check``):
no exception, both paths give the same bytes, every reply parses with
dnspython, QR=1 and short packets get no reply, the question is echoed when
dnspython could read it, and UDP replies fit the negotiated size.
"""

from __future__ import annotations

import struct

import dns.edns
import dns.message
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fuzz import make_corpus
from tests.fuzz.harness import CLIENTS, Harness

SEEDS = make_corpus.valid() + make_corpus.malformed()
SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@pytest.fixture(scope="module")
def harness() -> Harness:
    return Harness()


clients = st.sampled_from(CLIENTS)
labels = st.one_of(
    st.sampled_from([b"www", b"example", b"com", b"nginx", b"default", b"myfed", b"svc",
                     b"us-east1", b"europe-west1-b", b"big", b"WWW", b"version", b"bind"]),
    st.binary(min_size=1, max_size=63))


@st.composite
def structured(draw: st.DrawFn) -> bytes:
    """A syntactically plausible query: header fields, name, type, class, OPT."""
    name_labels = draw(st.lists(labels, max_size=6))
    if draw(st.booleans()):
        name_labels += [b"example", b"com"]
    qname = b"".join(bytes((len(lab),)) + lab for lab in name_labels) + b"\x00"
    qtype = draw(st.one_of(st.sampled_from([1, 2, 5, 6, 16, 28, 41, 65, 251, 252, 255]),
                           st.integers(0, 65535)))
    qclass = draw(st.sampled_from([1, 1, 1, 3, 4, 254, 255, 0]))
    flags = draw(st.one_of(st.sampled_from([0x0000, 0x0100, 0x0110, 0x0120, 0x0800, 0x2000,
                                            0x2100, 0x1000, 0x7800]),
                           st.integers(0, 0x7FFF)))
    opt = b""
    if draw(st.booleans()):
        options = b""
        for _ in range(draw(st.integers(0, 3))):
            code = draw(st.sampled_from([8, 8, 10, 12, 100, 65001]))
            body = draw(st.binary(max_size=24))
            if code == 8 and draw(st.booleans()):
                fam = draw(st.sampled_from([1, 2]))
                src = draw(st.integers(0, 32 if fam == 1 else 128))
                addr = draw(st.binary(min_size=(src + 7) // 8, max_size=(src + 7) // 8))
                body = struct.pack("!HBB", fam, src, draw(st.integers(0, 3))) + addr
            options += struct.pack("!HH", code, len(body)) + body
        payload = draw(st.sampled_from([0, 1, 511, 512, 1232, 1400, 4096, 65535]))
        ttl = (draw(st.sampled_from([0, 0, 1])) << 16) | draw(st.sampled_from([0, 0x8000]))
        opt = b"\x00\x00\x29" + struct.pack("!HIH", payload, ttl, len(options)) + options
    qd = draw(st.sampled_from([1, 1, 1, 0, 2]))
    header = struct.pack("!HHHHHH", draw(st.integers(0, 65535)), flags, qd, 0, 0,
                         1 if opt else 0)
    return header + qname + struct.pack("!HH", qtype, qclass) + opt


@st.composite
def mutated(draw: st.DrawFn) -> bytes:
    """A seed packet with a few byte-level mutations (flip, cut, insert, overwrite)."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "cut", "insert", "set", "count"]))
        if op == "flip" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "cut" and data:
            data = data[:draw(st.integers(0, len(data)))]
        elif op == "insert":
            i = draw(st.integers(0, len(data)))
            data[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "set" and data:
            i = draw(st.integers(0, len(data) - 1))
            data[i] = draw(st.sampled_from([0x00, 0x3F, 0x40, 0xC0, 0xFF, 0x29]))
        elif op == "count" and len(data) >= 12:
            i = draw(st.sampled_from([4, 6, 8, 10]))
            data[i:i + 2] = struct.pack("!H", draw(st.sampled_from([0, 1, 2, 255, 65535])))
    return bytes(data)


@SETTINGS
@given(data=st.binary(max_size=600), client=clients, tcp=st.booleans())
def test_random_bytes(harness: Harness, data: bytes, client: str, tcp: bool) -> None:
    harness.check(data, client, tcp)


@SETTINGS
@given(data=structured(), client=clients, tcp=st.booleans())
def test_structured_queries(harness: Harness, data: bytes, client: str, tcp: bool) -> None:
    harness.check(data, client, tcp)


@SETTINGS
@given(data=mutated(), client=clients, tcp=st.booleans())
def test_mutated_seeds(harness: Harness, data: bytes, client: str, tcp: bool) -> None:
    harness.check(data, client, tcp)


@SETTINGS
@given(data=st.one_of(structured(), mutated()), client=clients)
def test_qr_set_is_never_answered(harness: Harness, data: bytes, client: str) -> None:
    if len(data) >= 3:
        data = data[:2] + bytes((data[2] | 0x80,)) + data[3:]
    assert harness.check(data, client) is None


@SETTINGS
@given(name=st.sampled_from(make_corpus.NAMES), rtype=st.sampled_from(make_corpus.TYPES[:-1]),
       payload=st.integers(0, 65535), do=st.booleans(), client=clients,
       ecs=st.sampled_from([None, ("198.51.100.0", 24), ("203.0.113.0", 24),
                            ("2001:db8:1::", 48), ("0.0.0.0", 0)]))
def test_valid_queries_get_a_sized_answer(harness: Harness, name: str, rtype: str, payload: int,
                                          do: bool, client: str,
                                          ecs: tuple[str, int] | None) -> None:
    options = [dns.edns.ECSOption(*ecs)] if ecs else []
    q = dns.message.make_query(name, rtype, use_edns=0, payload=payload, want_dnssec=do,
                               options=options)
    reply = harness.check(q.to_wire(), client)
    assert reply is not None
    msg = dns.message.from_wire(reply)
    assert q.is_response(msg)
    assert len(reply) <= min(max(512, payload), 1232)
