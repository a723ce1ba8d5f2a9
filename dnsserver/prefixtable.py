"""Longest-prefix match of an address against a fixed set of CIDRs.

One table per address family. Lookup probes one dict per prefix length present,
longest first, so its cost grows with the number of distinct lengths, not with
the number of networks. Besides the matching locality it returns the *scope*:
how many leading bits of the address the answer depended on, as EDNS Client
Subnet (RFC 7871) needs it. That is the matched length, made longer when a more
specific network lies inside the matched one (the answer would differ there).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Conflict:
    """Two entries for the same CIDR; the first one kept its locality."""

    network: int
    length: int
    kept: str
    dropped: str


class PrefixTable:
    """Immutable after construction; safe to share between threads."""

    __slots__ = ("_by_len", "_inner", "_lengths", "bits", "conflicts", "size")

    def __init__(self, bits: int, entries: Iterable[tuple[int, int, str]]) -> None:
        """``entries`` are ``(network as int, prefix length, locality)``, in
        priority order: for a CIDR listed twice the first entry wins.

        Host bits beyond the prefix are ignored.
        """
        if bits not in (32, 128):
            raise ValueError(f"bits must be 32 or 128, not {bits}")
        self.bits = bits
        by_len: dict[int, dict[int, str]] = {}
        conflicts: list[Conflict] = []
        for net, length, locality in entries:
            if not 0 <= length <= bits:
                raise ValueError(f"prefix length {length} out of range for {bits}-bit addresses")
            key = net >> (bits - length)
            level = by_len.setdefault(length, {})
            kept = level.setdefault(key, locality)
            if kept != locality:
                conflicts.append(Conflict(key << (bits - length), length, kept, locality))
        # _inner[s]: the /s blocks (as shifted keys) that strictly contain an entry
        # longer than s. The scope of an answer grows while the address's block
        # is one of them.
        inner: dict[int, set[int]] = {}
        for length, level in by_len.items():
            for key in level:
                net = key << (bits - length)
                for s in range(length):
                    inner.setdefault(s, set()).add(net >> (bits - s))
        self._by_len = by_len
        self._lengths = tuple(sorted(by_len, reverse=True))
        self._inner = {s: frozenset(keys) for s, keys in inner.items()}
        self.conflicts = tuple(conflicts)
        self.size = sum(len(level) for level in by_len.values())

    def lookup(self, address: int) -> tuple[str | None, int]:
        """``(locality, scope)`` of the longest matching entry, or ``(None, scope)``
        when nothing matches; then ``scope`` is how many bits it took to rule
        every entry out (0 for an empty table).
        """
        bits = self.bits
        found: str | None = None
        length = 0
        for length in self._lengths:
            found = self._by_len[length].get(address >> (bits - length))
            if found is not None:
                break
        else:
            length = 0
        return found, self.scope_from(address, length)

    def scope_from(self, address: int, length: int) -> int:
        """The first ``s >= length`` whose block around ``address`` holds no longer entry."""
        bits = self.bits
        inner = self._inner
        s = length
        while s < bits:
            blocks = inner.get(s)
            if blocks is None or (address >> (bits - s)) not in blocks:
                break
            s += 1
        return s

    def covering(self, address: int, length: int) -> str | None:
        """The locality of an entry no longer than ``length`` that contains
        ``address/length`` (longest first), or None."""
        bits = self.bits
        for plen in self._lengths:
            if plen <= length:
                found = self._by_len[plen].get(address >> (bits - plen))
                if found is not None:
                    return found
        return None

    def split_blocks(self, prefix: int) -> frozenset[int]:
        """The ``/prefix`` blocks (as ``address >> (bits - prefix)``) that contain
        an entry longer than ``prefix``: a per-``/prefix`` cache must not hold them."""
        return self._inner.get(prefix, frozenset())
