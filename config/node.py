"""Typed, problem-aware access to the parsed YAML for the builders.

Schema validation runs first; a value it already reported is "bad" and its
accessor returns None, so each problem is reported once and the builders can
still check everything else.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field

from config.duration import DurationError, parse_duration
from config.schemacheck import show_path
from config.yamltree import Path, Tree


@dataclass(slots=True)
class Ctx:
    tree: Tree
    bad: set[Path]
    base_dir: str | None = None
    zone: str | None = None  # absolute; None when the zone itself is invalid
    federation: str | None = None
    region_zones: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def error(self, path: Path, message: str, *, at_key: bool = False) -> None:
        pos = self.tree.key_pos(path) if at_key else self.tree.pos(path)
        self.tree.problem(pos, f"{show_path(path)}: {message}" if path else message)

    def ok(self, path: Path) -> bool:
        return not any(path[:i] in self.bad for i in range(len(path) + 1))

    def file_path(self, text: str) -> str:
        """A path from the config, relative ones resolved against the config's directory."""
        text = os.path.expanduser(text)
        if self.base_dir is None or os.path.isabs(text):
            return text
        return os.path.normpath(os.path.join(self.base_dir, text))


@dataclass(slots=True)
class Node:
    """A mapping at ``path``; accessors return None for missing or already-reported values."""

    ctx: Ctx
    data: object
    path: Path

    def at(self, key: str | int) -> Path:
        return (*self.path, key)

    def raw(self, key: str) -> object:
        if not isinstance(self.data, dict) or not self.ctx.ok(self.at(key)):
            return None
        return self.data.get(key)

    def has(self, key: str) -> bool:
        return isinstance(self.data, dict) and self.data.get(key) is not None

    def text(self, key: str) -> str | None:
        v = self.raw(key)
        return v if isinstance(v, str) else None

    def integer(self, key: str) -> int | None:
        v = self.raw(key)
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    def number(self, key: str) -> float | None:
        v = self.raw(key)
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

    def flag(self, key: str) -> bool | None:
        v = self.raw(key)
        return v if isinstance(v, bool) else None

    def duration(self, key: str) -> float | None:
        v = self.raw(key)
        if v is None:
            return None
        try:
            return parse_duration(v)
        except DurationError as exc:
            self.ctx.error(self.at(key), str(exc))
            return None

    def texts(self, key: str) -> Iterator[tuple[Path, str]]:
        """The string items of a list, each with its path."""
        v = self.raw(key)
        if isinstance(v, list):
            for i, item in enumerate(v):
                path = (*self.at(key), i)
                if isinstance(item, str) and self.ctx.ok(path):
                    yield path, item

    def nodes(self, key: str) -> Iterator[Node]:
        """The mapping items of a list."""
        v = self.raw(key)
        if isinstance(v, list):
            for i, item in enumerate(v):
                path = (*self.at(key), i)
                if isinstance(item, dict) and self.ctx.ok(path):
                    yield Node(self.ctx, item, path)

    def node(self, key: str) -> Node | None:
        v = self.raw(key)
        return Node(self.ctx, v, self.at(key)) if isinstance(v, dict) else None

    def entries(self) -> Iterator[tuple[str, object, Path]]:
        """(key, value, path) of this mapping's entries that are not already reported."""
        if isinstance(self.data, dict):
            for key, value in self.data.items():
                if self.ctx.ok(self.at(key)):
                    yield key, value, self.at(key)
