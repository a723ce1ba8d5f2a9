"""Log formatting: one line per event, fields parsed, secrets redacted."""

from __future__ import annotations

import io
import json
import logging

import pytest

from dnsserver.logs import JsonFormatter, TextFormatter, parse_fields, redact, setup


def _record(msg: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("bad\nthing")
        except ValueError:
            import sys

            exc_info = sys.exc_info()
    return logging.LogRecord("dnsserver.test", logging.WARNING, __file__, 1, msg, args,
                             exc_info)


@pytest.mark.parametrize(("message", "event", "fields"), [
    ("started zone=example.com. clusters=3", "started", {"zone": "example.com.",
                                                        "clusters": "3"}),
    ('reload_rejected problem="a b: c" n=1', "reload_rejected", {"problem": "a b: c", "n": "1"}),
    ("stopped", "stopped", {}),
    ("free text here", "free", {"msg": "text here"}),
    ("k=v only", "", {"k": "v", "msg": "only"}),
])
def test_parse_fields(message: str, event: str, fields: dict[str, str]) -> None:
    assert parse_fields(message) == (event, fields)


@pytest.mark.parametrize(("text", "hidden"), [
    ("login api_token=abc123 ok=1", "abc123"),
    ('x password="p a s s" y=2', "p a s s"),
    ("hdr Authorization: Bearer eyJhbGciOi.x.y", "eyJhbGciOi.x.y"),
    ("aws_secret_access_key=AKIAxyz", "AKIAxyz"),
])
def test_redact_hides_secrets(text: str, hidden: str) -> None:
    out = redact(text)
    assert hidden not in out and "***" in out


def test_redact_keeps_ordinary_fields() -> None:
    assert redact("drain cluster=us service=default/nginx") == \
        "drain cluster=us service=default/nginx"


def test_text_formatter_is_one_line_with_exception() -> None:
    line = TextFormatter().format(_record("failed token=%s why=%s", "sekrit", "x", exc=True))
    assert "\n" not in line
    assert "WARNING dnsserver.test failed token=*** why=x" in line
    assert "sekrit" not in line and "ValueError" in line


def test_json_formatter_fields_and_redaction() -> None:
    line = JsonFormatter().format(_record("drained cluster=%s api_token=%s", "us", "zzz",
                                          exc=True))
    assert "\n" not in line
    doc = json.loads(line)
    assert doc["event"] == "drained" and doc["cluster"] == "us"
    assert doc["level"] == "warning" and doc["logger"] == "dnsserver.test"
    assert doc["api_token"] == "***" and "zzz" not in line
    assert "ValueError" in doc["exc"]


def test_setup_installs_one_handler() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        buf = io.StringIO()
        setup("json", "debug", stream=buf)
        setup("json", "info", stream=buf)
        assert len(root.handlers) == 1
        logging.getLogger("x").info("hello who=%s", "me")
        assert json.loads(buf.getvalue().strip())["who"] == "me"
    finally:
        root.handlers[:], _ = saved[0], None
        root.setLevel(saved[1])
