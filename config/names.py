"""Small parsers for names, addresses and networks; each raises ValueError with a clear message."""

from __future__ import annotations

import ipaddress
import re

from config.model import Network

_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_HOSTPORT = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]+)):(?P<port>\d{1,5})$")


def check_label(label: str) -> str:
    """Return ``label`` lower-cased; raise if it is not a DNS label."""
    low = label.lower()
    if not _LABEL.match(low):
        raise ValueError(
            f"{label!r} is not a valid DNS label (letters, digits, '-', '_', at most 63)"
        )
    return low


def absolute(name: str, zone: str | None = None, *, wildcard: bool = False) -> str:
    """Normalise ``name`` to an absolute, lower-case name with a trailing dot.

    ``@`` is the zone itself; a name without a trailing dot is relative to
    ``zone`` (or, with no zone, taken as absolute).
    """
    text = name.strip().lower()
    if text == "@":
        if zone is None:
            raise ValueError("'@' needs a zone")
        return zone
    if not text.endswith("."):
        text = f"{text}.{zone}" if zone else text + "."
    if text == ".":
        return text
    if len(text) > 254:
        raise ValueError(f"{name!r} is longer than 253 characters")
    labels = text[:-1].split(".")
    for i, label in enumerate(labels):
        if wildcard and i == 0 and label == "*":
            continue
        if not label:
            raise ValueError(f"{name!r} has an empty label")
        if not _LABEL.match(label):
            raise ValueError(
                f"{name!r} is not a valid domain name "
                f"(label {label!r}: letters, digits, '-', '_', at most 63)"
            )
    return text


def in_zone(name: str, zone: str) -> bool:
    """True if absolute ``name`` is ``zone`` or below it."""
    return zone == "." or name == zone or name.endswith("." + zone)


WILDCARD_AT_APEX = "wildcard_at_apex"
INSIDE_GENERATED_NAMES = "inside_generated_names"


def _generated_depth(relative: list[str], federation: str) -> int | None:
    """Labels of ``relative`` (a name's labels above the apex, leftmost first)
    below the generated subtree ``F.svc[.AZ][.REGION]`` it is at or inside,
    or None when it is in none of them."""
    for k in (2, 3, 4):  # F.svc, F.svc.REGION, F.svc.AZ.REGION
        if len(relative) >= k and relative[-k] == federation and relative[-k + 1] == "svc":
            return len(relative) - k
    return None


def ingress_host_refusal(name: str, zone: str, federation: str) -> tuple[str, str] | None:
    """Why the absolute, in-zone Ingress host ``name`` (a wildcard only as an
    exact ``*`` first label) cannot become a geo-aware name: (reason,
    explanation), or None. The same rule for static and Kubernetes clusters:

    - ``wildcard_at_apex``: ``*.Z`` would answer every missing name of the
      zone (typos of region, AZ and ``svc`` labels included) with one Ingress;
    - ``inside_generated_names``: at or below ``F.svc[.AZ][.REGION].Z``, where
      fedns generates the Service names: it would add answers to a Service's
      region or AZ name or (a wildcard) answer for Services that do not
      exist. A concrete host that is exactly a global name ``S.N.F.svc.Z``
      is allowed: it merges with that Service (SPEC section 2)."""
    wildcard = name.startswith("*.")
    if wildcard and name[2:] == zone:
        return WILDCARD_AT_APEX, (f"{name} would answer every missing name of the zone "
                                  f"{zone}; use a wildcard below the apex")
    relative = name[: len(name) - len(zone)].rstrip(".").split(".") if name != zone else []
    depth = _generated_depth(relative, federation.lower())
    if depth is not None and (wildcard or not (depth == 2 and len(relative) == 4)):
        return INSIDE_GENERATED_NAMES, (
            f"{name} is inside the names fedns generates for services "
            f"(*.{federation}.svc[.AZ][.REGION].{zone}); of those only a global name "
            f"S.N.{federation}.svc.{zone} can be an Ingress host")
    return None


def ip(text: str) -> str:
    """Return the canonical form of an IPv4/IPv6 literal."""
    try:
        return ipaddress.ip_address(text.strip()).compressed
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address") from None


def network(text: str) -> Network:
    """Parse a CIDR; host bits must be clear (``10.0.0.1/8`` is an error, not ``10.0.0.0/8``)."""
    try:
        return ipaddress.ip_network(text.strip())
    except ValueError:
        pass
    try:
        loose = ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not a network in CIDR notation (e.g. 10.0.0.0/14)") from None
    raise ValueError(f"{text!r} has host bits set (did you mean {loose.with_prefixlen}?)")


def hostport(text: str, *, need_ip: bool) -> tuple[str, int]:
    """Parse ``host:port`` (IPv6 as ``[::1]:53``); with ``need_ip`` the host must be an IP."""
    m = _HOSTPORT.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not host:port (IPv6 in brackets, e.g. [::1]:53)")
    port = int(m["port"])
    if port > 65535:
        raise ValueError(f"{text!r}: port {port} is out of range 0-65535")
    if m["v6"] is not None:
        try:
            return ipaddress.IPv6Address(m["v6"]).compressed, port
        except ValueError:
            raise ValueError(f"{text!r}: {m['v6']!r} is not an IPv6 address") from None
    host = m["host"]
    try:
        return ipaddress.IPv4Address(host).compressed, port
    except ValueError:
        if need_ip:
            raise ValueError(f"{text!r}: host must be an IP address") from None
    return absolute(host)[:-1], port
