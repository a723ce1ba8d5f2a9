"""DNS names between presentation text and wire form: a presentation name to
lower-cased wire bytes (``name_to_wire``) or to case-kept labels (``text_to_labels``),
wire bytes to labels (``wire_to_labels``) and labels back to escaped text
(``escaped_text``), and where a wire name's labels start (``suffix_at_label``)."""

from __future__ import annotations

import functools

from dnsserver import wire


@functools.lru_cache(maxsize=1 << 12)  # small: a large zone's names cost MBs here
def name_to_wire(name: str) -> bytes:
    """Presentation name (absolute, with trailing dot) -> lower-cased wire bytes."""
    labels = [lab.encode("ascii").lower() for lab in name.rstrip(".").split(".") if lab]
    if any(len(lab) > 63 for lab in labels) or sum(len(lab) + 1 for lab in labels) + 1 > 255:
        raise ValueError(f"invalid domain name {name!r}")
    return wire.name_wire(labels)


def wire_to_labels(name: bytes) -> tuple[bytes, ...]:
    labels = []
    i = 0
    while name[i]:
        labels.append(name[i + 1:i + 1 + name[i]])
        i += 1 + name[i]
    return tuple(labels)


def text_to_labels(name: str) -> wire.Name:
    """A presentation name's wire labels (case kept, as dnslib's ``DNSLabel``)."""
    labels = tuple(lab.encode("ascii") for lab in name.rstrip(".").split("."))
    if labels == (b"",):
        return ()
    if any(not lab or len(lab) > 63 for lab in labels) or \
            sum(len(lab) + 1 for lab in labels) + 1 > 255:
        raise ValueError(f"invalid domain name {name!r}")
    return labels


def escaped_text(labels: tuple[bytes, ...]) -> str:
    """Wire labels as a presentation name (RFC 1035 5.1 escapes)."""
    out = []
    for lab in labels:
        text = []
        for b in lab:
            if b in b".\\()\";$@ " or b < 0x21 or b > 0x7E:
                text.append(f"\\{b:03d}" if b < 0x21 or b > 0x7E else "\\" + chr(b))
            else:
                text.append(chr(b))
        out.append("".join(text) + ".")
    return "".join(out) or "."


def suffix_at_label(name: bytes, n: int) -> bool:
    """Do the last ``n`` bytes of ``name`` start at a label boundary?"""
    i = 0
    cut = len(name) - n
    while i < cut:
        i += 1 + name[i]
    return i == cut
