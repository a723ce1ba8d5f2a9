"""Log formatting: one line per event, ``key=value`` text or JSON.

Messages across fedns are shaped ``event key=value ...``. The text formatter
prefixes time, level and logger; the JSON formatter splits the message into
``event`` and its fields. Both redact secrets (any field whose key looks like
a token, password or secret, and ``Bearer`` credentials) and fold exception
tracebacks onto the same line.

Values are what the log calls produce with ``%s`` and ``%r``, so a value may
contain spaces: ``reason='probe ok'`` (a repr in quotes),
``error=ModuleNotFoundError("No module named 'x'")`` (brackets and quotes),
or ``error=bad name or type`` (plain words up to the next ``key=``). The
scanner keeps each of those whole. Fields can also be passed structured, as
``log.info("event", extra={"key": value})``: both formatters add them.
"""

from __future__ import annotations

import ast
import json
import logging
import re
import sys
import time
from typing import Any, Literal, TextIO

LogFormat = Literal["text", "json"]

_KEY = re.compile(r"[A-Za-z_][\w.-]*=")
_SECRET_KEY = re.compile(r"(token|password|passwd|secret|authorization|api[_-]?key)", re.I)
# A secret-looking key nested inside a value, e.g. ``error=Login(token='x')``.
_NESTED_SECRET = re.compile(
    r"(?<![\w.-])([\w.-]*(?:token|password|passwd|secret|authorization|api[_-]?key)[\w.-]*)="
    r"('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"|[^\s,)\]}]*)",
    re.I,
)
_BEARER = re.compile(r"(Bearer\s+)[^\s'\"]+", re.I)
_OPEN = {"(": ")", "[": "]", "{": "}"}
_QUOTE_AFTER = frozenset("([{=, :")
REDACTED = "***"

# Attributes every LogRecord has; anything else came in through ``extra=``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {
    "message", "asctime", "taskName"}


def _word_end(text: str, i: int) -> int:
    """End of the whitespace-free word starting at ``i``."""
    n = len(text)
    while i < n and not text[i].isspace():
        i += 1
    return i


def _token_end(text: str, i: int) -> int:
    """End of the token starting at ``i``: up to blank space outside quotes/brackets.

    A quote opens a string only at the token's start or after an opening
    bracket, ``=``, ``,``, ``:`` or a blank inside brackets, so an apostrophe
    in a word (``can't``) is just a letter. Unbalanced text falls back to the
    plain word.
    """
    start, n = i, len(text)
    stack: list[str] = []
    quote = ""
    while i < n:
        c = text[i]
        if quote:
            if c == "\\":
                i += 2
                continue
            if c == quote:
                quote = ""
        elif c in "\"'" and (i == start or (text[i - 1] in _QUOTE_AFTER and
                                              (stack or text[i - 1] != " "))):
            quote = c
        elif c in _OPEN:
            stack.append(_OPEN[c])
        elif stack and c == stack[-1]:
            stack.pop()
        elif c.isspace() and not stack:
            return i
        i += 1
    if quote or stack:
        return _word_end(text, start)
    return n


def _spans(text: str) -> list[tuple[str | None, int, int]]:
    """(key or None for bare words, value start, value end) in order.

    Bare words after a field extend that field's value (``reason=probe ok``).
    """
    out: list[tuple[str | None, int, int]] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        m = _KEY.match(text, i)
        if m:
            vstart = m.end()
            vend = _token_end(text, vstart) if vstart < n and not text[vstart].isspace() \
                else vstart
            out.append((m.group()[:-1], vstart, vend))
        else:
            vend = _token_end(text, i)
            if out and out[-1][0] is not None:
                key, vstart, _ = out[-1]
                out[-1] = (key, vstart, vend)
            else:
                out.append((None, i, vend))
        i = vend
    return out


def _unquote(value: str) -> str:
    """``'a b'`` / ``"a b"`` (a Python repr or a JSON string) -> ``a b``."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'" \
            and _token_end(value, 0) == len(value):
        try:
            out = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value[1:-1]
        if isinstance(out, str):
            return out
    return value


def redact(text: str) -> str:
    """Hide the values of secret-looking ``key=value`` fields and bearer tokens."""
    parts: list[str] = []
    pos = 0
    for key, start, end in _spans(text):
        if key is not None and _SECRET_KEY.search(key):
            parts.append(text[pos:start])
            parts.append(REDACTED)
            pos = end
    parts.append(text[pos:])
    text = _NESTED_SECRET.sub(lambda m: f"{m.group(1)}={REDACTED}", "".join(parts))
    return _BEARER.sub(lambda m: f"{m.group(1)}{REDACTED}", text)


def one_line(text: str) -> str:
    """Fold newlines so that one event stays one line."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def parse_fields(message: str) -> tuple[str, dict[str, str]]:
    """Split ``event k=v k2="v 2"`` into ``("event", {"k": "v", "k2": "v 2"})``.

    Quoted values lose their quotes; brackets and the quotes inside them stay.
    Text that is not ``key=value`` before the first field (a free-form
    message) is kept under ``msg``.
    """
    head, _, rest = message.partition(" ")
    if "=" in head:
        head, rest = "", message
    fields: dict[str, str] = {}
    leftover: list[str] = []
    for key, start, end in _spans(rest):
        if key is None:
            leftover.append(rest[start:end])
        else:
            fields.setdefault(key, _unquote(rest[start:end]))
    if leftover:
        fields.setdefault("msg", " ".join(leftover))
    return head, fields


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """Fields passed with ``extra=`` (record attributes no LogRecord has)."""
    return {k: v for k, v in vars(record).items()
            if k not in _STANDARD and not k.startswith("_")}


def _text_value(value: object) -> str:
    s = value if isinstance(value, str) else str(value)
    if not s or any(c.isspace() or c in "\"'=" for c in s):
        return json.dumps(s)
    return s


def _iso(created: float) -> str:
    t = time.gmtime(created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(created % 1 * 1000):03d}Z"


class TextFormatter(logging.Formatter):
    """``2024-01-01T00:00:00.000Z INFO dnsserver.app event key=value``."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        for key, value in extra_fields(record).items():
            msg += f" {key}={REDACTED if _SECRET_KEY.search(key) else _text_value(value)}"
        if record.exc_info:
            exc = self.formatException(record.exc_info)
            msg = f"{msg} exc={json.dumps(exc)}"
        line = f"{_iso(record.created)} {record.levelname} {record.name} {msg}"
        return one_line(redact(line))


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event and the event's fields."""

    def format(self, record: logging.LogRecord) -> str:
        event, fields = parse_fields(record.getMessage())
        out: dict[str, Any] = {
            "ts": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": event,
        }
        extra: dict[str, Any] = {**fields, **extra_fields(record)}
        for key, value in extra.items():
            if _SECRET_KEY.search(key):
                value = REDACTED
            elif isinstance(value, str):
                value = redact(value)
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
