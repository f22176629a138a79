"""YAML text -> plain data, keeping where every key and value came from.

We compose the document into ruamel.yaml's node graph (with its C parser when available: a
50,000-address policy composes in about half a second instead of four) and construct plain
Python data from it with ruamel's safe constructor. The node graph is kept beside the data:
each node carries its start mark, so any problem found later (by pydantic or by the semantic
checks) can be pinned to its line and column. YAML 1.2 rules apply: `no` and `on` stay strings.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from gateway.policy.errors import PolicyError, Position, Problem

PathItem = str | int
Path = tuple[PathItem, ...]
START = Position(1, 1)


@dataclass(frozen=True)
class Source:
    """A parsed policy file: its plain data plus the position of every node in it."""

    file: str
    text: str
    data: Any
    root: Node

    def value_at(self, path: Sequence[PathItem]) -> Position:
        """Where the value at `path` starts (the deepest existing ancestor if it is missing)."""
        return _mark(self._walk(path, want_key=False))

    def key_at(self, path: Sequence[PathItem]) -> Position:
        """Where the key of the mapping entry at `path` is written."""
        return _mark(self._walk(path, want_key=True))

    def problem(self, path: Sequence[PathItem], message: str, *, at_key: bool = False) -> Problem:
        position = self.key_at(path) if at_key else self.value_at(path)
        return Problem(self.file, position, message)

    def warning(self, path: Sequence[PathItem], message: str, *, at_key: bool = False) -> Problem:
        position = self.key_at(path) if at_key else self.value_at(path)
        return Problem(self.file, position, message, severity="warning")

    def _walk(self, path: Sequence[PathItem], *, want_key: bool) -> Node:
        node = self.root
        for depth, item in enumerate(path):
            key_node, value_node = _child(node, item)
            if value_node is None:
                return node
            if want_key and depth == len(path) - 1 and key_node is not None:
                return key_node
            node = value_node
        return node


def _mark(node: Node) -> Position:
    mark = node.start_mark
    return Position(mark.line + 1, mark.column + 1) if mark is not None else START


def _child(node: Node, item: PathItem) -> tuple[Node | None, Node | None]:
    if isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value == str(item):
                return key_node, value_node
    elif isinstance(node, SequenceNode) and isinstance(item, int) and 0 <= item < len(node.value):
        return None, node.value[item]
    return None, None


def read_source(path: str | FsPath, what: str) -> str:
    """A file's text, or a PolicyError saying plainly why it cannot be read."""
    name = str(path)
    try:
        return FsPath(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PolicyError([Problem(name, START, "no such file")]) from None
    except IsADirectoryError:
        raise PolicyError([Problem(name, START, f"is a directory, not a {what}")]) from None
    except UnicodeDecodeError as exc:
        raise PolicyError([Problem(name, START, f"not UTF-8 text ({exc.reason})")]) from None
    except OSError as exc:
        raise PolicyError([Problem(name, START, f"cannot read: {exc.strerror}")]) from None


def parse(text: str, file: str) -> Source:
    """Parse YAML text; a syntax error becomes a located PolicyError."""
    yaml = YAML(typ="safe", pure=False)
    try:
        root = yaml.compose(text)
        data = yaml.constructor.construct_document(root) if root is not None else None
    except MarkedYAMLError as exc:
        raise PolicyError([_syntax_problem(exc, file)]) from None
    except YAMLError as exc:
        raise PolicyError([Problem(file, START, f"YAML error: {exc}")]) from None
    except ValueError as exc:  # e.g. a timestamp like 2026-13-45
        raise PolicyError([Problem(file, START, f"YAML value error: {exc}")]) from None
    if not isinstance(root, MappingNode) or not isinstance(data, dict):
        kind = "empty" if data is None else f"a {describe_kind(data)}"
        message = f"a policy is a mapping of sections (version, site, ...); this file is {kind}"
        raise PolicyError([Problem(file, START, message)])
    _reject_non_string_keys(root, file)
    return Source(file=file, text=text, data=data, root=root)


def _syntax_problem(exc: MarkedYAMLError, file: str) -> Problem:
    mark = exc.problem_mark or exc.context_mark
    position = Position(mark.line + 1, mark.column + 1) if mark else START
    what = (exc.problem or exc.context or "invalid YAML").strip()
    duplicate = re.match(r'found duplicate key "(.*?)"', what)
    if duplicate:
        first = exc.context_mark
        where = f" (the mapping starts at line {first.line + 1})" if first else ""
        return Problem(
            file, position, f"duplicate key '{duplicate[1]}'{where}: names must be unique"
        )
    context = ""
    if exc.context and exc.context_mark and exc.problem:
        start = exc.context_mark
        context = (
            f" ({exc.context.strip()} started at line {start.line + 1}, column {start.column + 1})"
        )
    return Problem(file, position, f"YAML syntax: {what}{context}")


def _reject_non_string_keys(root: Node, file: str) -> None:
    problems: list[Problem] = []
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:  # aliases make the graph a DAG; visit each node once
            continue
        seen.add(id(node))
        if isinstance(node, MappingNode):
            for key_node, value_node in node.value:
                if not (isinstance(key_node, ScalarNode) and str(key_node.tag).endswith(":str")):
                    problems.append(
                        Problem(file, _mark(key_node), "keys must be names, not numbers or lists")
                    )
                stack.append(value_node)
        elif isinstance(node, SequenceNode):
            stack.extend(node.value)
    if problems:
        raise PolicyError(problems)


def describe_kind(value: Any) -> str:
    """How a YAML author would name the type of a value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "number"
    if isinstance(value, float):
        return "decimal number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    if isinstance(value, datetime.date):
        return "date"
    return type(value).__name__
