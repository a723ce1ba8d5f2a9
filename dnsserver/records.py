"""Compiling Snapshot records to the packer's packed wire RRs
(``compile_record``): owner and rdata names as labels, fixed parts (type,
class, TTL) and rdata as bytes, shared between records by an ``Interner``;
type names to type codes (``qtype_code``, ``code_of``)."""

from __future__ import annotations

import socket

from dnslib import QTYPE, RR, DNSBuffer

from dnsserver import wire
from dnsserver.names import text_to_labels
from healthwatch.snapshot import Record

# rdata with names that the packer compresses (as dnslib does); other types'
# rdata is packed once to position-independent bytes
_NAME_RDATA = frozenset(("CNAME", "NS", "PTR"))
_INTERN_MAX = 16384  # names and parts the Interner keeps


def qtype_code(rtype: str) -> int | None:
    code = QTYPE.reverse.get(rtype.upper())
    if code is None and rtype.upper().startswith("TYPE") and rtype[4:].isdigit():
        return int(rtype[4:])
    return int(code) if code is not None else None


_CODES: dict[str, int] = {}


def code_of(rtype: str) -> int:
    """``qtype_code`` of a servable record's type (memoised)."""
    code = _CODES.get(rtype)
    if code is None:
        code = qtype_code(rtype)
        assert code is not None, rtype
        if len(_CODES) < 1024:
            _CODES[rtype] = code
    return code


class Interner:
    """Shares the parts of packed records between records: one labels tuple
    per name, one bytes object per label and per fixed part (type, class,
    TTL). A large zone repeats them in every record; kept once they cost a
    fraction of the memory. Bounded: forgets everything past ``_INTERN_MAX``
    names or parts (sharing is then best effort)."""

    __slots__ = ("_bytes", "_names")

    def __init__(self) -> None:
        self._names: dict[str, wire.Name] = {}
        self._bytes: dict[bytes, bytes] = {}

    def labels(self, name: str) -> wire.Name:
        hit = self._names.get(name)
        if hit is None:
            parts = self._bytes
            if len(self._names) >= _INTERN_MAX or len(parts) >= _INTERN_MAX:
                self._names.clear()  # bounded: sharing is best effort
                parts.clear()
            hit = tuple(parts.setdefault(lab, lab) for lab in text_to_labels(name))
            hit = self._names.setdefault(name, hit)
        return hit

    def part(self, data: bytes) -> bytes:
        if len(self._bytes) >= _INTERN_MAX:
            self._bytes.clear()
        return self._bytes.setdefault(data, data)


class _Flat(DNSBuffer):  # type: ignore[misc]
    """A dnslib buffer that never compresses: rdata bytes valid at any offset."""

    def encode_name(self, name: object) -> None:
        self.encode_name_nocompress(name)


def compile_record(rec: Record, interner: Interner | None = None) -> wire.PackedRR:
    """A Record as the packer takes it; raises on bad rdata. With
    ``interner``, equal names and fixed parts are shared between records."""
    labels = text_to_labels if interner is None else interner.labels
    code = qtype_code(rec.rtype)
    if code is None:
        raise ValueError(f"unknown type {rec.rtype}")
    fixed = code.to_bytes(2, "big") + b"\x00\x01" + (rec.ttl & 0xFFFFFFFF).to_bytes(4, "big")
    if interner is not None:
        fixed = interner.part(fixed)
    owner = labels(rec.name)
    value = rec.value.strip()
    rdata: wire.RData
    if rec.rtype == "A":
        rdata = (socket.inet_pton(socket.AF_INET, value),)
    elif rec.rtype == "AAAA":
        rdata = (socket.inet_pton(socket.AF_INET6, value),)
    elif rec.rtype in _NAME_RDATA:
        rdata = (labels(value),)
    elif rec.rtype == "MX":
        pref, target = value.split()
        rdata = (int(pref).to_bytes(2, "big"), labels(target))
    elif rec.rtype == "SOA":
        mname, rname, *nums = value.split()
        if len(nums) != 5:
            raise ValueError("SOA needs 5 numbers")
        rdata = (labels(mname), labels(rname),
                 b"".join(int(x).to_bytes(4, "big") for x in nums))
    else:
        rr = RR.fromZone(f"{rec.name} {rec.ttl} IN {rec.rtype} {rec.value}")[0]
        buf = _Flat()
        rr.rdata.pack(buf)
        rdata = (bytes(buf.data),)
    return owner, fixed, rdata
