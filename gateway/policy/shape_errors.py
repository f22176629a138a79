"""Pydantic validation errors -> one clear, located sentence each.

pydantic's own messages ("Input should be a valid list") are written for programmers. A
security engineer editing YAML needs the key path, what was expected, what was found and,
for a typo, what was probably meant.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel
from pydantic_core import ErrorDetails

from gateway.policy.errors import Problem, did_you_mean, quoted_list
from gateway.policy.model import (
    DURATION_PATTERN,
    IFNAME_PATTERN,
    NAME_PATTERN,
    RATE_PATTERN,
    WG_KEY_PATTERN,
)
from gateway.policy.source import PathItem, Source, describe_kind

EXPECTED = {
    "string_type": "a string",
    "int_type": "a whole number",
    "bool_type": "true or false",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "float_type": "a number",
}

PATTERN_HINTS = {
    NAME_PATTERN: "is not a valid name: use lowercase letters, digits and '-', starting with a "
    "letter (40 characters at most)",
    IFNAME_PATTERN: "is not a valid interface name (1-15 characters, no spaces or '/')",
    RATE_PATTERN: "is not a rate: write it like '10/second', '600/minute' or '50/hour'",
    WG_KEY_PATTERN: "is not a WireGuard public key (44 characters of base64 ending in '=')",
    DURATION_PATTERN: "is not a duration: write it like '90s', '15m', '4h' or '2d'",
}

# pydantic appends these to a location to say which part of a union or validator failed.
_INTERNAL_LOC = ("[key]",)


def dotted(path: Sequence[PathItem]) -> str:
    """('rules', 2, 'allow') -> 'rules[2].allow'."""
    out = ""
    for item in path:
        out += f"[{item}]" if isinstance(item, int) else (f".{item}" if out else item)
    return out


def fold_typos(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """Drop "missing key 'from'" when the same mapping has an unknown key 'form' for it."""
    missing = {(tuple(e["loc"][:-1]), str(e["loc"][-1])) for e in errors if e["type"] == "missing"}
    explained: set[tuple[tuple[Any, ...], str]] = set()
    for error in errors:
        if error["type"] == "extra_forbidden":
            parent = tuple(error["loc"][:-1])
            names = [name for loc, name in missing if loc == parent]
            match = difflib.get_close_matches(str(error["loc"][-1]), names, n=1, cutoff=0.6)
            if match:
                explained.add((parent, match[0]))
    return [
        e
        for e in errors
        if not (e["type"] == "missing" and (tuple(e["loc"][:-1]), str(e["loc"][-1])) in explained)
    ]


def translate_all(
    errors: list[ErrorDetails], base: Sequence[PathItem], source: Source, model: Any
) -> list[Problem]:
    return [translate(e, base, source, model) for e in fold_typos(errors)]


def translate(error: ErrorDetails, base: Sequence[PathItem], source: Source, model: Any) -> Problem:
    """One pydantic error at `base` + its loc, validated against type `model`."""
    loc = [item for item in error["loc"] if item not in _INTERNAL_LOC]
    path: tuple[PathItem, ...] = (*base, *loc)
    where = dotted(path)
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}

    if kind == "extra_forbidden":
        key = str(path[-1])
        allowed = allowed_keys(model, loc[:-1])
        hint = did_you_mean(key, allowed) or f" (expected one of {quoted_list(allowed)})"
        parent = dotted(path[:-1]) or "the policy"
        return source.problem(path, f"unknown key '{key}' in {parent}{hint}", at_key=True)
    if kind == "missing":
        parent = dotted(path[:-1]) or "the policy"
        return source.problem(path[:-1], f"{parent}: missing required key '{path[-1]}'")
    if "[key]" in error["loc"]:
        return source.problem(path, f"'{path[-1]}' {PATTERN_HINTS[NAME_PATTERN]}", at_key=True)
    if kind in EXPECTED:
        got = f"{describe_kind(value)} {_short(value)}".rstrip()
        return source.problem(path, f"{where}: expected {EXPECTED[kind]}, got {got}")
    if kind == "string_pattern_mismatch":
        hint = PATTERN_HINTS.get(str(ctx.get("pattern")), f"does not match {ctx.get('pattern')}")
        return source.problem(path, f"{where}: {_short(value)} {hint}")
    if kind == "literal_error" and path == ("version",):
        return source.problem(
            path, f"unsupported policy version {value!r}: this PlantGate reads version 1"
        )
    if kind == "literal_error":
        options = [
            o.strip(" '") for o in str(ctx.get("expected", "")).replace(" or ", ",").split(",")
        ]
        hint = did_you_mean(str(value), options)
        return source.problem(
            path, f"{where}: expected {ctx.get('expected')}, got {_short(value)}{hint}"
        )
    if kind == "value_error":
        message = str(ctx.get("error", error["msg"]))
        return source.problem(path, f"{where}: {message}")
    if kind == "too_short":
        return source.problem(path, f"{where}: must not be empty (list at least one entry)")
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = {
            "greater_than_equal": "at least",
            "greater_than": "more than",
            "less_than_equal": "at most",
            "less_than": "less than",
        }[kind]
        limit = next(iter(ctx.values()), "?")
        return source.problem(
            path, f"{where}: {_short(value)} is out of range (must be {bound} {limit})"
        )
    return source.problem(path, f"{where}: {error['msg']}")


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    if isinstance(value, dict | list):
        return ""
    return text if len(text) <= 60 else text[:57] + "..."


def allowed_keys(model: Any, loc: Sequence[Any]) -> list[str]:
    """The keys a mapping at `loc` inside `model` may have (aliases, as written in YAML)."""
    target = _type_at(model, loc)
    if isinstance(target, type) and issubclass(target, BaseModel):
        return [f.alias or name for name, f in target.model_fields.items()]
    return []


def _type_at(annotation: Any, loc: Sequence[Any]) -> Any:
    current = _unwrap(annotation)
    for item in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = _field_by_key(current, str(item))
            if field is None:
                return None
            current = _unwrap(field)
        elif typing.get_origin(current) in (list, tuple):
            current = _unwrap(typing.get_args(current)[0])
        elif typing.get_origin(current) is dict:
            current = _unwrap(typing.get_args(current)[1])
        else:
            return None
    return current


def _field_by_key(model: type[BaseModel], key: str) -> Any:
    for name, field in model.model_fields.items():
        if key in (name, field.alias):
            return field.annotation
    return None


def _unwrap(annotation: Any) -> Any:
    """Strip Annotated[...] and Optional[...] to the type that holds the keys."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = args[0] if len(args) == 1 else annotation
            if len(args) != 1:
                return annotation
        else:
            return annotation
