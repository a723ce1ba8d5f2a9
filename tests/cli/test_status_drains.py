"""``fedns status`` names the source of every drain (the API's, the config's,
an annotation's), and ``fedns undrain`` tells which remaining drains it can end
and which only the config or an annotation can."""

from __future__ import annotations

from typing import Any

from dnsserver.cli import _undrain_note, format_status

NOW = 1_800_000_000.0


def _drain(target: str, source: str, reason: str = "", **kw: Any) -> dict[str, Any]:
    cluster, _, service = target.partition("/")
    return {"target": target, "cluster": cluster, "service": service or None,
            "source": source, "reason": reason, "since": NOW - 60, "until": None, "by": "",
            **kw}


def _drain_rows(doc: dict[str, Any]) -> list[list[str]]:
    text = format_status(doc, now=NOW)
    block = text.split("DRAINS", 1)[1].split("PROVIDERS", 1)[0].splitlines()
    header = next(i for i, ln in enumerate(block) if "TARGET" in ln)
    assert block[header].split()[:3] == ["TARGET", "SOURCE", "SINCE"]
    return [ln.split() for ln in block[header + 1:] if ln.strip()]


def test_one_row_per_target_and_source() -> None:
    doc = {"zone": "z.", "ready": True,
           "drains": {"clusters": ["us"], "shards": ["eu/default/nginx"]},
           "drain_details": [
               _drain("us", "api", "now", by="10.0.0.7"),
               _drain("us", "config", "planned", until=NOW + 3600),
               _drain("eu/default/nginx", "annotation", "bad canary"),
           ]}
    rows = _drain_rows(doc)
    assert [r[:2] for r in rows] == [["us", "api"], ["us", "config"],
                                     ["eu/default/nginx", "annotation"]]
    assert rows[0][-2:] == ["10.0.0.7", "now"]
    assert rows[2][-2:] == ["bad", "canary"]


def test_a_server_from_before_sources_shows_the_api() -> None:
    """A status document without ``source`` (an older server): its drains are the API's."""
    detail = _drain("us", "api", "x")
    del detail["source"]
    rows = _drain_rows({"zone": "z.", "ready": True, "drain_details": [detail]})
    assert rows[0][:2] == ["us", "api"]


def test_undrain_note_offers_commands_only_for_api_drains() -> None:
    note = _undrain_note("us default/nginx", {
        "was_drained": True, "still_drained": ["us", "us (config)"]})
    lines = note.splitlines()
    assert lines[0] == "undrained us default/nginx"
    assert "still drained: us, us (config)" in lines[1]
    assert "fedns undrain us)" in lines[1] or "fedns undrain us;" in lines[1]
    assert "fedns undrain us (config)" not in note
    assert "the config" in note and "reload" in note

    note = _undrain_note("eu", {"was_drained": False,
                                "still_drained": ["eu/default/nginx (annotation)"]})
    assert "fedns undrain" not in note
    assert "fedns.io/drain" in note
