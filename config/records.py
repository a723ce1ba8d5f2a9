"""Static record rdata: parsed with dnslib's zone parser, names made absolute.

``canonical(rtype, value, zone)`` returns the rdata in presentation format
(names of A/AAAA/CNAME/DNAME/NS/PTR/MX/SRV made absolute; an unquoted TXT value
is one string), or raises ValueError saying what is wrong.
"""

from __future__ import annotations

from dnslib import QTYPE, RR

from config import names

# Types that fedns generates itself or that make no sense as static data.
FORBIDDEN = frozenset(
    {"SOA", "ANY", "AXFR", "IXFR", "OPT", "TSIG", "TKEY", "RRSIG", "NSEC", "NSEC3", "SIG", "A6"}
)
KNOWN = frozenset(str(t) for t in QTYPE.forward.values()) - FORBIDDEN

# rtype -> (number of fields, indexes of fields that are domain names); strictly checked.
_SHAPES: dict[str, tuple[int, tuple[int, ...]]] = {
    "A": (1, ()),
    "AAAA": (1, ()),
    "CNAME": (1, (0,)),
    "DNAME": (1, (0,)),
    "NS": (1, (0,)),
    "PTR": (1, (0,)),
    "MX": (2, (1,)),
    "SRV": (4, (3,)),
}


def canonical(rtype: str, value: str, zone: str) -> str:
    """Validate ``value`` as rdata of ``rtype``; return it with absolute names."""
    if rtype not in KNOWN:
        if rtype in FORBIDDEN:
            raise ValueError(f"type {rtype} cannot be a static record")
        raise ValueError(f"unknown record type {rtype!r}")
    text = value.strip()
    if not text:
        raise ValueError("empty value")
    if rtype in ("TXT", "SPF") and not text.startswith('"'):
        text = _quote(text)  # an unquoted value is one string, as users mean it
    shape = _SHAPES.get(rtype)
    if shape is not None:
        text = _strict(rtype, text, zone, *shape)
    try:
        rrs = RR.fromZone(f"@ 0 IN {rtype} {text}", origin=zone)
    except Exception as exc:  # dnslib raises many types for bad rdata
        raise ValueError(f"invalid {rtype} value {value!r}: {_short(exc)}") from None
    if len(rrs) != 1:
        raise ValueError(f"invalid {rtype} value {value!r}")
    return text  # dnslib's own rendering loses TXT escapes, so keep the checked input


def _strict(rtype: str, text: str, zone: str, count: int, name_fields: tuple[int, ...]) -> str:
    fields = text.split()
    if len(fields) != count:
        raise ValueError(f"invalid {rtype} value {text!r}: expected {count} field(s)")
    if rtype in ("A", "AAAA"):
        canon = names.ip(fields[0])
        if (":" in canon) != (rtype == "AAAA"):
            raise ValueError(f"invalid {rtype} value {text!r}: wrong address family")
        return canon
    for i, field in enumerate(fields):
        if i in name_fields:
            fields[i] = names.absolute(field, zone)
        elif not field.isdigit() or int(field) > 65535:
            raise ValueError(f"invalid {rtype} value {text!r}: {field!r} is not a number 0-65535")
    return " ".join(fields)


def _quote(text: str) -> str:
    raw = text.encode()
    chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)]
    return " ".join(
        '"' + c.decode(errors="replace").replace("\\", "\\\\").replace('"', '\\"') + '"'
        for c in chunks
    )


def _short(exc: Exception) -> str:
    msg = str(exc) or type(exc).__name__
    return msg if len(msg) < 120 else msg[:117] + "..."
