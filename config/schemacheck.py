"""JSON Schema validation of the parsed YAML, with errors mapped to file:line:col.

The schema (``schema.json``, draft 2020-12) is written once and also shipped
for editors. A subschema may carry ``errorMessage`` (with ``{value}``) to say
what is expected in words instead of jsonschema's generic text.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

import jsonschema  # type: ignore[import-untyped]
from jsonschema.exceptions import (  # type: ignore[import-untyped]
    ValidationError,
    best_match,
)

from config.yamltree import Path, Tree

SECRET_KEYS = frozenset({"api_token", "password", "secret", "token"})

_KINDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "nothing",
}


@cache
def schema() -> dict[str, Any]:
    """The config JSON Schema as shipped in the package."""
    text = resources.files("config").joinpath("schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@cache
def _validator() -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(schema())


def validate(tree: Tree) -> set[Path]:
    """Report every schema violation into ``tree``; return the paths whose values are bad."""
    bad: set[Path] = set()
    seen: set[tuple[Path, str]] = set()
    for error in _validator().iter_errors(tree.data):
        path: Path = tuple(error.absolute_path)
        for at_key, where, message in _explain(error, path):
            if (where, message) in seen:
                continue
            seen.add((where, message))
            pos = tree.key_pos(where) if at_key else tree.pos(where)
            tree.problem(pos, f"{show_path(where)}: {message}" if where else message)
            if error.validator not in ("required", "additionalProperties"):
                bad.add(where)
    return bad


def show_path(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.replace("_", "").replace("-", "").isalnum():
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]"
    return out


def _show(value: object, path: Path) -> str:
    if path and isinstance(path[-1], str) and path[-1] in SECRET_KEYS:
        return "(hidden)"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _kind(value: object) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    for name, cls in (("mapping", dict), ("list", list), ("string", str), ("number", int | float)):
        if isinstance(value, cls):
            return f"a {name}"
    return type(value).__name__


def _explain(error: ValidationError, path: Path) -> Iterator[tuple[bool, Path, str]]:
    """Yield (point at key?, path, message) for one jsonschema error."""
    kw = error.validator
    inst = error.instance
    sub = error.schema if isinstance(error.schema, dict) else {}
    if "propertyNames" in error.relative_schema_path:
        path = (*path, str(inst))
        at_key = True
    else:
        at_key = False
    if kw == "additionalProperties" and isinstance(inst, dict):
        allowed = sorted(sub.get("properties", {}))
        for key in inst:
            if key not in allowed:
                close = difflib.get_close_matches(key, allowed, n=1)
                hint = f"did you mean {close[0]!r}?" if close else "allowed: " + ", ".join(allowed)
                yield True, (*path, key), f"unknown key {key!r} ({hint})"
        return
    if kw == "required" and isinstance(inst, dict):
        missing = [k for k in error.validator_value if k not in inst]
        yield False, path, "missing required key " + ", ".join(repr(k) for k in missing)
        return
    custom = sub.get("errorMessage")
    if isinstance(custom, str) and kw not in ("type",):
        yield at_key, path, custom.replace("{value}", _show(inst, path))
        return
    if kw in ("anyOf", "oneOf") and error.context:
        inner = best_match(error.context)
        yield from _explain(inner, (*path, *inner.relative_path))
        return
    yield at_key, path, _message(error, path)


def _message(error: ValidationError, path: Path) -> str:
    kw, want, inst = error.validator, error.validator_value, error.instance
    if kw == "type":
        wanted = [want] if isinstance(want, str) else list(want)
        return f"expected {' or '.join(_KINDS.get(w, w) for w in wanted)}, got {_kind(inst)}"
    if kw == "enum":
        return f"must be one of {', '.join(map(str, want))}; got {_show(inst, path)}"
    if kw == "const":
        return f"must be {want!r}"
    if kw in ("minimum", "exclusiveMinimum"):
        sign = ">=" if kw == "minimum" else ">"
        return f"must be {sign} {want}, got {_show(inst, path)}"
    if kw in ("maximum", "exclusiveMaximum"):
        sign = "<=" if kw == "maximum" else "<"
        return f"must be {sign} {want}, got {_show(inst, path)}"
    if kw == "minItems":
        return f"needs at least {want} item(s)"
    if kw == "maxItems":
        return f"takes at most {want} item(s)"
    if kw == "minLength":
        return "must not be empty"
    if kw == "pattern":
        return f"{_show(inst, path)} does not match {want}"
    if kw is False or kw == "false":
        return "not allowed here"
    return str(error.message)
