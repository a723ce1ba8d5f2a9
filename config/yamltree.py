"""YAML text -> plain data plus the source position of every key and value.

Booleans follow YAML 1.2 (only true/false), so a country code like ``NO``
stays a string. Duplicate keys and non-string keys are problems, not
silent overwrites.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import yaml

from config.errors import Problem

Path = tuple[str | int, ...]

_BOOL = "tag:yaml.org,2002:bool"


# libyaml's parser when present (about 10x faster); both give node marks.
_Base: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[valid-type,misc]
    pass


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@dataclass(frozen=True, slots=True)
class Pos:
    line: int  # 1-based
    column: int  # 1-based


@dataclass(slots=True)
class Tree:
    """The parsed document and where each path starts (value and, for mapping entries, key)."""

    file: str
    data: object = None
    values: dict[Path, Pos] = field(default_factory=dict)
    keys: dict[Path, Pos] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)

    def pos(self, path: Path) -> Pos:
        """Position of the value at ``path``, else of its nearest existing ancestor."""
        while path not in self.values and path:
            path = path[:-1]
        return self.values.get(path, Pos(1, 1))

    def key_pos(self, path: Path) -> Pos:
        return self.keys.get(path) or self.pos(path)

    def problem(self, pos: Pos, message: str) -> None:
        self.problems.append(Problem(self.file, pos.line, pos.column, message))


def _pos(mark: yaml.Mark | None) -> Pos:
    return Pos(mark.line + 1, mark.column + 1) if mark is not None else Pos(1, 1)


def parse(text: str, file: str) -> Tree:
    """Parse one YAML document; YAML errors become problems with their position."""
    tree = Tree(file)
    try:
        loader = _Loader(text)
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        tree.problem(Pos(line, 1), f"YAML: character {exc.character!r} is not allowed")
        return tree
    try:
        node = loader.get_single_node()
        if node is None:
            tree.problem(Pos(1, 1), "the config is empty")
            return tree
        tree.data = _convert(loader, node, (), tree, _Walk())
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        what = " ".join(p for p in (exc.context, exc.problem) if p)
        ctx = exc.context_mark
        if ctx is not None and mark is not None and ctx.line != mark.line:
            what = f"{exc.context} (opened at line {ctx.line + 1}): {exc.problem}"
        tree.problem(_pos(mark), f"YAML syntax: {what}")
    except yaml.reader.ReaderError as exc:
        line = text[: exc.position].count("\n") + 1
        tree.problem(Pos(line, 1), f"YAML: character {exc.character!r} is not allowed")
    except yaml.YAMLError as exc:
        tree.problem(Pos(1, 1), f"YAML syntax: {exc}")
    except _TooBig as exc:
        tree.data = None
        tree.problem(exc.pos, f"YAML: more than {MAX_NODES} values (alias expansion?)")
    finally:
        if "loader" in locals():
            loader.dispose()
    return tree


MAX_NODES = 200_000  # bounds alias expansion ("billion laughs")


class _TooBig(Exception):
    def __init__(self, pos: Pos) -> None:
        self.pos = pos


@dataclass(slots=True)
class _Walk:
    count: int = 0
    stack: set[int] = field(default_factory=set)


def _convert(loader: _Loader, node: yaml.Node, path: Path, tree: Tree, walk: _Walk) -> object:
    tree.values[path] = _pos(node.start_mark)
    walk.count += 1
    if walk.count > MAX_NODES:
        raise _TooBig(_pos(node.start_mark))
    if id(node) in walk.stack:
        tree.problem(_pos(node.start_mark), "YAML: recursive alias")
        return None
    if isinstance(node, yaml.ScalarNode):
        return _scalar(loader, node, tree)
    walk.stack.add(id(node))
    try:
        return _collection(loader, node, path, tree, walk)
    finally:
        walk.stack.discard(id(node))


def _collection(loader: _Loader, node: yaml.Node, path: Path, tree: Tree, walk: _Walk) -> object:
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)  # resolve '<<' merge keys
        out: dict[str, object] = {}
        for key_node, value_node in node.value:
            key = _scalar(loader, key_node, tree) if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                tree.problem(_pos(key_node.start_mark), "keys must be strings")
                continue
            sub = (*path, key)
            if key in out:
                first = tree.keys[sub]
                tree.problem(
                    _pos(key_node.start_mark),
                    f"duplicate key {key!r} (first given at line {first.line})",
                )
                continue
            tree.keys[sub] = _pos(key_node.start_mark)
            out[key] = _convert(loader, value_node, sub, tree, walk)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_convert(loader, item, (*path, i), tree, walk) for i, item in enumerate(node.value)]
    return None


def _scalar(loader: _Loader, node: yaml.Node, tree: Tree) -> object:
    try:
        return loader.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as exc:
        tree.problem(_pos(node.start_mark), f"YAML: {exc.problem}")
        return None
