"""config/schema.json: a valid draft 2020-12 schema that accepts the shipped example."""

from __future__ import annotations

from pathlib import Path

import jsonschema
import pytest
import yaml

from config.schemacheck import schema

ROOT = Path(__file__).parents[2]


def test_schema_is_valid_draft_2020_12() -> None:
    s = schema()
    assert s["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(s)


def test_schema_accepts_example() -> None:
    data = yaml.safe_load((ROOT / "config" / "example.yaml").read_text())
    errors = list(jsonschema.Draft202012Validator(schema()).iter_errors(data))
    assert errors == []


def test_example_points_editors_at_schema() -> None:
    first = (ROOT / "config" / "example.yaml").read_text().splitlines()[0]
    assert first == "# yaml-language-server: $schema=./schema.json"


@pytest.mark.parametrize(
    "data",
    [
        {"zone": "example.com."},
        {"zone": "example.com.", "federation": "f", "nope": 1},
        {"zone": "example.com.", "federation": "f", "health": {"interval": "soon"}},
        {"zone": "example.com.", "federation": "f", "providers": [{"type": "route53"}]},
        {
            "zone": "example.com.",
            "federation": "f",
            "clusters": [{"name": "c", "services": [{"name": "s", "namespace": "n", "probe": {}}]}],
        },
    ],
)
def test_schema_rejects(data: dict[str, object]) -> None:
    assert list(jsonschema.Draft202012Validator(schema()).iter_errors(data))
