#!/usr/bin/env python3
"""The Python floor: the least a Python UDP server can do per query.

    python bench/pyfloor.py PORT [--host 127.0.0.1]

A blocking socket and one loop: ``recvfrom``, one dict lookup keyed by the
query without its ID, ``sendto``. A query seen for the first time gets a
made-up reply (its own question and one A record, 127.0.0.1), which is then
stored; after a warm-up pass over a query file, every query costs a
``recvfrom``, two slices, one dict lookup, one concatenation and a
``sendto``, and nothing else: no validation, no EDNS, no locality.

``compare.py --servers gdnsd,fedns,pyfloor`` runs it next to the other two
on the same CPU with the same query files. Its figures are a bound, not a
competitor: whatever separates it from gdnsd (interpreter, socket wrappers,
a cold cache after each idle gap) no Python server can avoid, and whatever
separates fedns from it is fedns's own per-query work.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import struct
import sys

CACHE_MAX = 1 << 20
# one A record for the question at offset 12: name pointer, A, IN, TTL 30, 127.0.0.1
ANSWER = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 30, 4) + bytes((127, 0, 0, 1))


def made_up_reply(query: bytes) -> bytes | None:
    """Reply minus its ID: flags (QR, AA, RD copied), QD=1, AN=1, the
    question as sent, one A record; None for a datagram with no question."""
    end = query.find(b"\x00", 12) + 5
    if len(query) < 17 or end < 17 or end > len(query) or query[2] & 0x80:
        return None
    flags = bytes((0x84 | (query[2] & 0x01), 0x00))
    return flags + b"\x00\x01\x00\x01\x00\x00\x00\x00" + query[12:end] + ANSWER


def serve(sock: socket.socket) -> None:
    cache: dict[bytes, bytes] = {}
    recvfrom, sendto = sock.recvfrom, sock.sendto
    while True:
        data, addr = recvfrom(4096)
        reply = cache.get(data[2:])
        if reply is None:
            made = made_up_reply(data)
            if made is None:
                continue
            if len(cache) >= CACHE_MAX:
                cache.clear()
            reply = cache[data[2:]] = made
        sendto(data[:2] + reply, addr)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("port", type=int)
    ap.add_argument("--host", default="127.0.0.1")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sock = socket.socket(socket.AF_INET6 if ":" in args.host else socket.AF_INET,
                         socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((args.host, args.port))
    with contextlib.suppress(KeyboardInterrupt):
        serve(sock)
    return 0


if __name__ == "__main__":
    sys.exit(main())
