"""Wildcard synthesis (RFC 4592): a wildcard's records answering another
name, packed with the query name as owner (``Synthesized``, ``owned_by``)."""

from __future__ import annotations

from dataclasses import dataclass

from dnsserver import wire
from dnsserver.names import escaped_text, wire_to_labels
from healthwatch.snapshot import Record


@dataclass(frozen=True, slots=True)
class Synthesized(Record):
    """A wildcard's record answering another name (RFC 4592 synthesis): packed
    as ``source`` with the owner ``owner`` (the lower-cased query name's
    labels, so the packer points it at the question)."""

    owner: wire.Name = ()
    source: Record | None = None


def owned_by(recs: tuple[Record, ...], owner: bytes | None) -> tuple[Record, ...]:
    """``recs``, or when ``owner`` (a wire name) is given, the same records
    synthesized for it (RFC 4592)."""
    if owner is None:
        return recs
    labels = wire_to_labels(owner)
    text = escaped_text(labels)
    return tuple(Synthesized(text, rec.rtype, rec.ttl, rec.value, labels, rec) for rec in recs)
