"""Step actions: what each kind asks of the operator, and how an answer is judged.

Kinds and their parameters (checked when an engineer authors them, so a released process
never holds one that cannot be judged):

- `confirm`: the operator confirms (value `true`).
- `scan_serial` `{pattern, match_unit}`: a scanned serial that must match `pattern`; with
  `match_unit` it must also be the unit's own serial (the label is on the right unit).
- `scan_component` `{part_id, pattern?}`: a scanned serial (serial-tracked component) or lot
  number (lot-tracked) of a part consumed at this step; it becomes a genealogy link.
- `measure` `{min?, max?, unit}`: a number; outside [min, max] the step fails (and the value
  is still recorded).
- `pass_fail`: `true` passes, `false` fails the step (and is recorded).
- `note` `{max_length}`: free text.
- `sign` `{meaning}`: the operator signs the step with re-entered credentials.

Why RE2 for serial patterns: patterns come from people and values from barcode scanners;
Python's backtracking engine can take exponential time on patterns like `(a+)+$`. RE2 runs
in time linear in the input and refuses constructs (backreferences, look-around) that would
need backtracking, so no pattern an engineer writes can stall a station.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import re2

from mes.domain.errors import Invalid
from mes.domain.signing import Meaning

MAX_PATTERN = 200
MAX_SCAN = 128
MAX_NOTE = 2000
MAX_UNIT = 16
Json = Any  # a JSON value (dict, list, str, int, float, bool, None)


class ActionKind(StrEnum):
    CONFIRM = "confirm"
    SCAN_SERIAL = "scan_serial"
    SCAN_COMPONENT = "scan_component"
    MEASURE = "measure"
    PASS_FAIL = "pass_fail"
    NOTE = "note"
    SIGN = "sign"


def _re2_options() -> Any:
    options = re2.Options()
    options.log_errors = False  # a bad pattern is our error to report, not a log line
    options.max_mem = 1 << 20
    return options


_OPTIONS = _re2_options()


def compile_pattern(pattern: str, where: str = "pattern") -> Any:
    """An RE2 pattern; Invalid if too long or not RE2 syntax."""
    if not pattern or len(pattern) > MAX_PATTERN:
        raise Invalid(
            f"{where}: a pattern has 1 to {MAX_PATTERN} characters",
            [(where, f"1 to {MAX_PATTERN} characters")],
        )
    try:
        return re2.compile(pattern, options=_OPTIONS)
    except re2.error as exc:
        detail = exc.args[0].decode() if exc.args and isinstance(exc.args[0], bytes) else exc
        raise Invalid(f"{where}: not a usable pattern ({detail})", [(where, str(detail))]) from None


def pattern_matches(pattern: str, value: str) -> bool:
    """Whether all of `value` matches `pattern` (linear time)."""
    return compile_pattern(pattern).fullmatch(value) is not None


def _problem(where: str, message: str) -> Invalid:
    return Invalid(f"{where}: {message}", [(where, message)])


def _number(raw: object, where: str) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise _problem(where, "expected a finite number")
    try:
        value = float(raw)
    except OverflowError:
        value = math.inf
    if not math.isfinite(value):
        raise _problem(where, "expected a finite number")
    return value


_ALLOWED_KEYS: dict[ActionKind, frozenset[str]] = {
    ActionKind.CONFIRM: frozenset(),
    ActionKind.SCAN_SERIAL: frozenset({"pattern", "match_unit"}),
    ActionKind.SCAN_COMPONENT: frozenset({"part_id", "pattern"}),
    ActionKind.MEASURE: frozenset({"min", "max", "unit"}),
    ActionKind.PASS_FAIL: frozenset(),
    ActionKind.NOTE: frozenset({"max_length"}),
    ActionKind.SIGN: frozenset({"meaning"}),
}


def normalize_params(kind: ActionKind, params: Mapping[str, object], where: str) -> dict[str, Json]:
    """The parameters of one action, checked and with defaults filled in; Invalid otherwise."""
    unknown = sorted(set(params) - _ALLOWED_KEYS[kind])
    if unknown:
        raise _problem(f"{where}.{unknown[0]}", f"not a parameter of a {kind} action")
    if kind is ActionKind.SCAN_SERIAL:
        pattern = params.get("pattern")
        if not isinstance(pattern, str):
            raise _problem(f"{where}.pattern", "a scan_serial action needs a pattern")
        compile_pattern(pattern, f"{where}.pattern")
        match_unit = params.get("match_unit", False)
        if not isinstance(match_unit, bool):
            raise _problem(f"{where}.match_unit", "expected true or false")
        return {"pattern": pattern, "match_unit": match_unit}
    if kind is ActionKind.SCAN_COMPONENT:
        part_id = params.get("part_id")
        if isinstance(part_id, bool) or not isinstance(part_id, int) or part_id < 1:
            raise _problem(f"{where}.part_id", "a scan_component action needs a part id")
        pattern = params.get("pattern")
        if pattern is not None:
            if not isinstance(pattern, str):
                raise _problem(f"{where}.pattern", "expected a pattern")
            compile_pattern(pattern, f"{where}.pattern")
        return {"part_id": part_id, "pattern": pattern}
    if kind is ActionKind.MEASURE:
        low = _number(params.get("min"), f"{where}.min")
        high = _number(params.get("max"), f"{where}.max")
        if low is not None and high is not None and low > high:
            raise _problem(f"{where}.min", f"min {low:g} is above max {high:g}")
        unit = params.get("unit")
        if not isinstance(unit, str) or not unit.strip() or len(unit) > MAX_UNIT:
            raise _problem(f"{where}.unit", f"a measurement needs a unit (1 to {MAX_UNIT} chars)")
        return {"min": low, "max": high, "unit": unit.strip()}
    if kind is ActionKind.NOTE:
        limit = params.get("max_length", 500)
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_NOTE:
            raise _problem(f"{where}.max_length", f"expected 1 to {MAX_NOTE}")
        return {"max_length": limit}
    if kind is ActionKind.SIGN:
        try:
            meaning = Meaning(str(params.get("meaning")))
        except ValueError:
            options = ", ".join(m.value for m in Meaning)
            raise _problem(f"{where}.meaning", f"expected one of {options}") from None
        return {"meaning": meaning.value}
    return {}


@dataclass(frozen=True)
class Evaluation:
    """An accepted answer: the value to record and whether it passes."""

    value: Json
    passed: bool


def evaluate(
    kind: ActionKind, params: Mapping[str, Any], value: object, *, unit_serial: str, where: str
) -> Evaluation:
    """Judge one answer. Malformed answers (wrong type, a scan not matching its pattern) are
    refused with Invalid, nothing recorded, so the operator can rescan; answers that are
    well-formed but out of limits are recorded as failing."""
    if kind in (ActionKind.CONFIRM, ActionKind.SIGN):
        if value is not True:
            raise _problem(where, "expected true (confirmed)")
        return Evaluation(True, True)
    if kind is ActionKind.PASS_FAIL:
        if not isinstance(value, bool):
            raise _problem(where, "expected true (pass) or false (fail)")
        return Evaluation(value, value)
    if kind is ActionKind.MEASURE:
        number = _number(value, where)
        if number is None:
            raise _problem(where, "expected a number")
        low, high = params.get("min"), params.get("max")
        passed = (low is None or number >= low) and (high is None or number <= high)
        return Evaluation(number, passed)
    if not isinstance(value, str) or not value.strip():
        raise _problem(where, "expected text")
    text = value.strip()
    if kind is ActionKind.NOTE:
        limit = int(params.get("max_length", 500))
        if len(text) > limit:
            raise _problem(where, f"at most {limit} characters")
        return Evaluation(text, True)
    if len(text) > MAX_SCAN:
        raise _problem(where, f"a scan has at most {MAX_SCAN} characters")
    pattern = params.get("pattern")
    if pattern is not None and not pattern_matches(str(pattern), text):
        raise _problem(where, f"{text!r} does not match the pattern {pattern!r}")
    if kind is ActionKind.SCAN_SERIAL and params.get("match_unit") and text != unit_serial:
        raise _problem(where, f"scanned {text!r}, but this unit is {unit_serial!r}")
    return Evaluation(text, True)
