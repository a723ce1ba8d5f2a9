"""Load and validate a fedns config: every problem at once, each with file:line:col.

Steps: YAML -> plain data with positions (``yamltree``) -> JSON Schema
(``schemacheck``, schema.json) -> model values and semantic checks
(``build``). Any problem raises ConfigError listing all of them.
"""

from __future__ import annotations

import os

from config.advice import ConfigWarning, warnings
from config.build import build
from config.errors import ConfigError, Problem
from config.model import Config
from config.node import Ctx
from config.schemacheck import schema, validate
from config.yamltree import parse

__all__ = ["ConfigError", "Problem", "advice", "load", "load_text", "schema"]


def load(path: str) -> Config:
    """Read and validate the config file at ``path``.

    Relative file paths inside it (geo.database, kubeconfig, state_dir) are
    resolved against the file's directory.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError([Problem(path, 1, 1, f"cannot read config: {reason}")]) from None
    return load_text(text, path, base_dir=os.path.dirname(os.path.abspath(path)))


def load_text(text: str, path: str = "<text>", base_dir: str | None = None) -> Config:
    """Validate config ``text``; ``path`` is only used in messages."""
    tree = parse(text, path)
    if tree.data is None:
        raise ConfigError(tree.problems or [Problem(path, 1, 1, "the config is empty")])
    bad = validate(tree)
    config = build(Ctx(tree, bad, base_dir))
    if tree.problems:
        raise ConfigError(tree.problems)
    return config


def advice(config: Config, path: str) -> list[ConfigWarning]:
    """``config.advice.warnings`` of ``config``, loaded from ``path``, whose
    text is read again only to give the warnings their lines (when it cannot
    be read now, or changed meanwhile, they carry no line or a stale one)."""
    try:
        with open(path, encoding="utf-8") as f:
            text: str | None = f.read()
    except (OSError, UnicodeDecodeError):
        text = None
    return warnings(config, text)
