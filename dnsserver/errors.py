"""Errors of the DNS server package (one root: ``DnsServerError``).

The protocol layer uses two of them as control flow while parsing a query:
``DropPacket`` (no reply at all) and ``MalformedQuery`` (reply FORMERR). Neither
ever escapes ``dnsserver.handler``.
"""

from __future__ import annotations


class DnsServerError(Exception):
    """Root of every error raised by ``dnsserver``."""


class DropPacket(DnsServerError):
    """The packet gets no reply (short header, QR=1, ...)."""

    def __init__(self, *, reason: str) -> None:
        super().__init__(f"drop packet reason={reason}")
        self.reason = reason


class MalformedQuery(DnsServerError):
    """The query is malformed: the reply is FORMERR.

    ``question`` is the question (name as sent + type + class) when it was
    parseable, so the FORMERR reply can echo it.
    """

    def __init__(self, *, reason: str, qid: int, flags: int,
                 question: bytes | None = None) -> None:
        super().__init__(f"malformed query reason={reason}")
        self.reason = reason
        self.qid = qid
        self.flags = flags
        self.question = question


class BindError(DnsServerError):
    """A listen address could not be bound."""

    def __init__(self, *, address: str, port: int, cause: str) -> None:
        super().__init__(f"cannot bind address={address} port={port} cause={cause}")
        self.address = address
        self.port = port
        self.cause = cause
