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
    ("k=v only", "", {"k": "v only"}),
    # %r of a string: the quotes go, the spaces stay in the value
    ("probe_result reason='probe ok' up=1", "probe_result", {"reason": "probe ok", "up": "1"}),
    # %r of an exception: brackets and the quotes inside them keep it whole
    ("""plugin_failed plugin=etcd error=ModuleNotFoundError("No module named 'etcd3'") n=2""",
     "plugin_failed",
     {"plugin": "etcd", "error": "ModuleNotFoundError(\"No module named 'etcd3'\")", "n": "2"}),
    ("lookup_failed error=OSError(111, 'Connect call failed', ('10.0.0.1', 53)) kept=2",
     "lookup_failed", {"error": "OSError(111, 'Connect call failed', ('10.0.0.1', 53))",
                       "kept": "2"}),
    # %s with spaces: plain words run to the next key=
    ("record_skipped name=x. error=bad name or type", "record_skipped",
     {"name": "x.", "error": "bad name or type"}),
    # an apostrophe inside a word is a letter, not a quote
    ("probe reason=can't connect n=2", "probe", {"reason": "can't connect", "n": "2"}),
    ("reload_rejected problem=Problem(file='/a b.yaml', line=3, message='bad \"x\"') n=1",
     "reload_rejected", {"problem": "Problem(file='/a b.yaml', line=3, message='bad \"x\"')",
                         "n": "1"}),
    ("empty a= b=1", "empty", {"a": "", "b": "1"}),
    # unbalanced brackets or quotes fall back to one word
    ("odd err=Foo('abc n=1", "odd", {"err": "Foo('abc", "n": "1"}),
    ("escaped s='it\\'s' t=1", "escaped", {"s": "it's", "t": "1"}),
])
def test_parse_fields(message: str, event: str, fields: dict[str, str]) -> None:
    assert parse_fields(message) == (event, fields)


@pytest.mark.parametrize(("text", "hidden"), [
    ("login api_token=abc123 ok=1", "abc123"),
    ('x password="p a s s" y=2', "p a s s"),
    ("hdr Authorization: Bearer eyJhbGciOi.x.y", "eyJhbGciOi.x.y"),
    ("aws_secret_access_key=AKIAxyz", "AKIAxyz"),
    ("x password='p a s s' y=2", "p a s s"),
    ("x client_secret=Secret(value='v 1') y=2", "v 1"),
    ("x error=LoginError(token='abc123') y=2", "abc123"),
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


def test_json_formatter_keeps_values_with_spaces_whole() -> None:
    exc = ModuleNotFoundError("No module named 'etcd3'")
    line = JsonFormatter().format(_record("plugin_failed plugin=%s error=%r reason=%r kept=%d",
                                          "etcd", exc, "probe ok", 3))
    doc = json.loads(line)
    assert doc["event"] == "plugin_failed"
    assert doc["error"] == repr(exc) and doc["reason"] == "probe ok"
    assert doc["plugin"] == "etcd" and doc["kept"] == "3" and "msg" not in doc


def test_extra_fields_are_structured_in_json_and_quoted_in_text() -> None:
    rec = _record("probe_result cluster=%s", "us")
    rec.reason = "probe ok"
    rec.latency = 0.25
    rec.api_token = "zzz"
    doc = json.loads(JsonFormatter().format(rec))
    assert doc["cluster"] == "us" and doc["reason"] == "probe ok"
    assert doc["latency"] == 0.25 and doc["api_token"] == "***"
    text = TextFormatter().format(rec)
    assert text.endswith('probe_result cluster=us reason="probe ok" latency=0.25 api_token=***')
    # and the text line parses back to the same fields
    _, fields = parse_fields(text.split(" ", 3)[3])
    assert fields["reason"] == "probe ok" and fields["latency"] == "0.25"


def test_extra_through_a_real_logger() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        buf = io.StringIO()
        setup("json", "info", stream=buf)
        logging.getLogger("x").warning("drained", extra={"cluster": "us", "why": "a b"})
        doc = json.loads(buf.getvalue().strip())
        assert doc["event"] == "drained" and doc["cluster"] == "us" and doc["why"] == "a b"
    finally:
        root.handlers[:], _ = saved[0], None
        root.setLevel(saved[1])
