"""Log formatting: one line per event, ``key=value`` text or JSON.

Messages across fedns are shaped ``event key=value ...``. The text formatter
prefixes time, level and logger; the JSON formatter splits the message into
``event`` and its fields. Both redact secrets (any field whose key looks like
a token, password or secret, and ``Bearer`` credentials) and fold exception
tracebacks onto the same line.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any, Literal, TextIO

LogFormat = Literal["text", "json"]

_FIELD = re.compile(r'([A-Za-z_][\w.-]*)=("(?:[^"\\]|\\.)*"|\S*)')
_SECRET_KEY = re.compile(r"(token|password|passwd|secret|authorization|api[_-]?key)", re.I)
_SECRET_FIELD = re.compile(
    r'(?P<key>(?<![\w.-])[\w.-]*(?:token|password|passwd|secret|authorization|api[_-]?key)'
    r'[\w.-]*)=(?P<val>"(?:[^"\\]|\\.)*"|\S*)',
    re.I,
)
_BEARER = re.compile(r"(Bearer\s+)\S+", re.I)
REDACTED = "***"


def redact(text: str) -> str:
    """Hide the values of secret-looking ``key=value`` fields and bearer tokens."""
    text = _SECRET_FIELD.sub(lambda m: f"{m.group('key')}={REDACTED}", text)
    return _BEARER.sub(lambda m: f"{m.group(1)}{REDACTED}", text)


def one_line(text: str) -> str:
    """Fold newlines so that one event stays one line."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def parse_fields(message: str) -> tuple[str, dict[str, str]]:
    """Split ``event k=v k2="v 2"`` into ``("event", {"k": "v", "k2": "v 2"})``.

    Text that is not ``key=value`` (a free-form message) is kept under ``msg``.
    """
    head, _, rest = message.partition(" ")
    if "=" in head:
        head, rest = "", message
    fields: dict[str, str] = {}
    leftover: list[str] = []
    pos = 0
    for m in _FIELD.finditer(rest):
        gap = rest[pos:m.start()].strip()
        if gap:
            leftover.append(gap)
        value = m.group(2)
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        fields[m.group(1)] = value
        pos = m.end()
    tail = rest[pos:].strip()
    if tail:
        leftover.append(tail)
    if leftover:
        fields.setdefault("msg", " ".join(leftover))
    return head, fields


def _iso(created: float) -> str:
    t = time.gmtime(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(created % 1 * 1000):03d}Z"


class TextFormatter(logging.Formatter):
    """``2024-01-01T00:00:00.000Z INFO dnsserver.app event key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        if record.exc_info:
            exc = self.formatException(record.exc_info)
            msg = f"{msg} exc={json.dumps(exc)}"
        line = f"{_iso(record.created)} {record.levelname} {record.name} {msg}"
        return one_line(redact(line))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event and the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        event, fields = parse_fields(redact(record.getMessage()))
        out: dict[str, Any] = {
            "ts": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": event,
        }
        for key, value in fields.items():
            if _SECRET_KEY.search(key):
                value = REDACTED
            out.setdefault(key, value)
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out, separators=(",", ":"), default=str)


def setup(fmt: LogFormat = "text", level: str = "INFO", stream: TextIO | None = None) -> None:
    """Configure the root logger once for the process (idempotent)."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # aiohttp's access log is one line per request; keep it unless debugging.
    logging.getLogger("aiohttp.access").setLevel(
        logging.DEBUG if level.upper() == "DEBUG" else logging.WARNING
    )
