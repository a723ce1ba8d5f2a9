"""Client address -> locality (SPEC section 3.1). Owned by the geo work.

The query path calls ``Locator.locate`` once per query; implementations must
be a cache lookup for any prefix seen before.
"""

from __future__ import annotations

from typing import Protocol


class Locator(Protocol):
    def locate(self, address: bytes, source_prefix: int | None) -> tuple[str, int]:
        """Map a client to ``(locality, scope_prefix)``.

        ``address`` is the packed IPv4 (4 bytes) or IPv6 (16 bytes) client
        address: the ECS address when the query carried a usable ECS option,
        else the packet's source address. ``source_prefix`` is the ECS SOURCE
        PREFIX-LENGTH (None without ECS). ``scope_prefix`` is how many leading
        bits of the address the locality depended on (0 for unknown).
        """
        ...
