"""The TXT ownership registry (external-dns style) for Route53 and Cloud DNS.

Each record set fedns owns has a marker: a TXT record set at a derived name
(``_fedns-a.www.example.com.`` marks ``www.example.com. A``) whose single
value names the owner.  The marker never shares a record set with the data it
marks, so a foreign TXT at a federated name stays byte-identical.  A marker
that does not parse, or names another owner, marks nothing: the data stays
foreign.  (etcd needs no registry: the ``owner`` field lives in each value.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from providers.rrset import RRKey, RRSet, make_rrset

PREFIX = "_fedns-"
_VALUE = re.compile(r'^"heritage=fedns,fedns/owner=([A-Za-z0-9_.:-]+),fedns/record=([A-Z0-9]+)"$')


def marker_name(name: str, rtype: str) -> str:
    """The marker's name for ``(name, rtype)``; wildcards keep ``*`` leftmost-free."""
    tag = PREFIX + rtype.lower()
    if name.startswith("*."):
        return f"{tag}-wildcard.{name[2:]}"
    return f"{tag}.{name}"


def marker_value(owner: str, rtype: str) -> str:
    return f'"heritage=fedns,fedns/owner={owner},fedns/record={rtype}"'


def marker(key: RRKey, owner: str, ttl: int) -> RRSet:
    return make_rrset(marker_name(*key), "TXT", ttl, [marker_value(owner, key[1])])


def marked_key(rr: RRSet) -> tuple[RRKey, str] | None:
    """If ``rr`` is a well-formed marker: (the key it marks, its owner)."""
    if rr.rtype != "TXT" or len(rr.values) != 1:
        return None
    label, _, rest = rr.name.partition(".")
    if not label.startswith(PREFIX) or not rest:
        return None
    m = _VALUE.match(rr.values[0])
    if m is None:
        return None
    owner, rtype = m.group(1), m.group(2)
    tag = label[len(PREFIX):]
    if tag == rtype.lower():
        return (rest, rtype), owner
    if tag == rtype.lower() + "-wildcard":
        return ("*." + rest, rtype), owner
    return None


@dataclass(frozen=True, slots=True)
class Registry:
    """Observed record sets split by ownership."""

    owned: Mapping[RRKey, RRSet]  # data fedns owns (markers hidden)
    foreign: frozenset[RRKey]  # everything else, never touched
    markers: Mapping[RRKey, RRSet]  # our marker sets, by the key they mark


def split(observed: Iterable[RRSet], owner: str) -> Registry:
    rrsets = {rr.key: rr for rr in observed}
    ours: dict[RRKey, RRSet] = {}
    for rr in rrsets.values():
        found = marked_key(rr)
        if found is not None and found[1] == owner:
            ours[found[0]] = rr
    marker_keys = {m.key for m in ours.values()}
    owned: dict[RRKey, RRSet] = {}
    foreign: set[RRKey] = set()
    for key, rr in rrsets.items():
        if key in marker_keys:
            continue
        if key in ours:
            owned[key] = rr
        else:
            foreign.add(key)
    return Registry(owned, frozenset(foreign), ours)
