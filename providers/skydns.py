"""The SkyDNS message layout CoreDNS' etcd plugin reads.

A name ``www.example.com.`` lives under ``<prefix>/com/example/www/``; each
value is one key ``<prefix>/com/example/www/<subkey>`` holding JSON
``{"host", "ttl", "text"?, "owner"}``.  The subkey is derived from the value,
so the same target always has the same key.  CoreDNS answers a name with
every key in its subtree (and with the key at the name itself only when the
subtree is empty), so fedns never writes a value at a name's own key and
never publishes a name that has other published names below it.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass

from providers.rrset import RRSet, absolute

SUPPORTED = ("A", "AAAA", "CNAME", "TXT")
SUBKEY_PREFIX = "fedns-"


def name_dir(prefix: str, name: str) -> str:
    """``/skydns`` + ``www.example.com.`` → ``/skydns/com/example/www``."""
    labels = [lab for lab in absolute(name).rstrip(".").split(".") if lab]
    return "/".join([prefix.rstrip("/"), *reversed(labels)])


def dir_name(prefix: str, path: str) -> str | None:
    """Inverse of ``name_dir``; None when ``path`` is not under ``prefix``."""
    base = prefix.rstrip("/") + "/"
    if not path.startswith(base):
        return None
    labels = [lab for lab in path[len(base):].split("/") if lab]
    if not labels:
        return "."
    return ".".join(reversed(labels)) + "."


def subkey(rtype: str, value: str) -> str:
    digest = hashlib.sha256(f"{rtype} {value}".encode()).hexdigest()[:16]
    return SUBKEY_PREFIX + digest


def txt_strings(value: str) -> list[str]:
    """The character-strings of a TXT value in presentation format."""
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        if value[i].isspace():
            i += 1
            continue
        buf = []
        if value[i] == '"':
            i += 1
            while i < n and value[i] != '"':
                if value[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(value[i])
                i += 1
            i += 1
        else:
            while i < n and not value[i].isspace():
                buf.append(value[i])
                i += 1
        out.append("".join(buf))
    return out


def quote_txt(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def unsupported(rr: RRSet) -> str | None:
    """Why ``rr`` cannot be published in this layout, or None."""
    if rr.rtype not in SUPPORTED:
        return f"coredns-etcd publishes only {', '.join(SUPPORTED)}"
    if "*" in absolute(rr.name).split("."):
        # CoreDNS reads '*' in a *query* as "anything below"; a key with a '*'
        # label answers only queries for that literal name, never foo.<name>
        return "coredns-etcd has no wildcard records ('*' is a query-side wildcard there)"
    if rr.rtype == "TXT" and any(len(txt_strings(v)) != 1 for v in rr.values):
        return "coredns-etcd holds one character-string per TXT value"
    return None


def encode(prefix: str, rr: RRSet, owner: str) -> dict[str, bytes]:
    """Every key/value fedns writes for ``rr`` (one key per target)."""
    d = name_dir(prefix, rr.name)
    out = {}
    for v in rr.values:
        msg: dict[str, object] = {"ttl": rr.ttl, "owner": owner}
        if rr.rtype == "TXT":
            msg["host"] = ""
            msg["text"] = txt_strings(v)[0]
        elif rr.rtype == "CNAME":
            msg["host"] = v.rstrip(".")  # never "text" here: it would turn it into TXT
        else:
            msg["host"] = v
        out[f"{d}/{subkey(rr.rtype, v)}"] = json.dumps(
            msg, sort_keys=True, separators=(",", ":")).encode()
    return out


@dataclass(frozen=True, slots=True)
class Entry:
    """One decoded etcd value, as CoreDNS would read it."""

    rtype: str
    value: str  # normalised presentation
    ttl: int | None
    owner: str | None


def decode(raw: bytes) -> Entry | None:
    """Decode a SkyDNS value; None when it is not a message CoreDNS can read."""
    try:
        msg = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(msg, dict):
        return None
    host = msg.get("host", "")
    text = msg.get("text", "")
    ttl = msg.get("ttl")
    owner = msg.get("owner")
    if not isinstance(host, str) or not isinstance(text, str):
        return None
    ttl_v = ttl if isinstance(ttl, int) and not isinstance(ttl, bool) else None
    owner_v = owner if isinstance(owner, str) else None
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        return Entry("A" if ip.version == 4 else "AAAA", str(ip), ttl_v, owner_v)
    if text:
        return Entry("TXT", quote_txt(text), ttl_v, owner_v)
    if host:
        return Entry("CNAME", absolute(host), ttl_v, owner_v)
    return None
