"""A step's form at the station: fields per action, answers from a post, and messages.

Pure: no database, no request. Each action of a step is one field named `a<action id>`:
a tick box (confirm, sign), pass/fail buttons, a number (measure), a text (scan serial,
scan component, note). `read_answers` turns a post into the answers `units.record_step`
takes and, for what is malformed or missing, a message next to the field (the service
judges again; this only makes the message precise and keeps what was typed).
`failure_message` says why a recorded answer failed its limits, in the words the
operator needs: "12.7 mm is above the maximum 12.5 mm".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from mes.domain.actions import MAX_SCAN, ActionKind, pattern_matches
from mes.domain.errors import Invalid, MesError
from mes.services.units import Answer
from mes.web.forms import parse_number

TICKED = ("yes", "on", "true")


class ActionLike(Protocol):
    @property
    def id(self) -> int: ...

    @property
    def kind(self) -> str: ...

    @property
    def label(self) -> str: ...

    @property
    def required(self) -> bool: ...

    @property
    def params(self) -> dict[str, Any]: ...


def field_name(action_id: int) -> str:
    return f"a{action_id}"


@dataclass
class ReadAnswers:
    answers: list[Answer] = field(default_factory=list)
    values: dict[str, str] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)


def _limits(params: Mapping[str, Any]) -> tuple[float | None, float | None, str]:
    low, high = params.get("min"), params.get("max")
    return (
        float(low) if isinstance(low, int | float) else None,
        float(high) if isinstance(high, int | float) else None,
        str(params.get("unit") or ""),
    )


def show(value: float) -> str:
    return f"{value:g}"


def limits_text(params: Mapping[str, Any]) -> str:
    """'12.3 to 12.5 mm', 'at least 4.5 V', 'at most 3 N·m' or 'in mm'."""
    low, high, unit = _limits(params)
    if low is not None and high is not None:
        return f"{show(low)} to {show(high)} {unit}".strip()
    if low is not None:
        return f"at least {show(low)} {unit}".strip()
    if high is not None:
        return f"at most {show(high)} {unit}".strip()
    return f"in {unit}" if unit else ""


def measure_message(value: float, params: Mapping[str, Any]) -> str | None:
    """Why `value` fails its limits (None: it is within them)."""
    low, high, unit = _limits(params)
    suffix = f" {unit}" if unit else ""
    if low is not None and value < low:
        return f"{show(value)}{suffix} is below the minimum {show(low)}{suffix}"
    if high is not None and value > high:
        return f"{show(value)}{suffix} is above the maximum {show(high)}{suffix}"
    return None


def failure_message(kind: str, params: Mapping[str, Any], value: object) -> str | None:
    """Why a recorded answer failed (None: it passed, or the kind cannot fail)."""
    if kind == ActionKind.MEASURE.value and isinstance(value, int | float):
        return measure_message(float(value), params)
    if kind == ActionKind.PASS_FAIL.value and value is False:
        return "marked as failed"
    return None


def _scan(kind: ActionKind, params: Mapping[str, Any], text: str, unit_serial: str) -> str | None:
    if len(text) > MAX_SCAN:
        return f"a scan has at most {MAX_SCAN} characters"
    pattern = params.get("pattern")
    if isinstance(pattern, str) and pattern:
        try:
            matches = pattern_matches(pattern, text)
        except Invalid:
            matches = True  # the service reports a broken pattern
        if not matches:
            return f"“{text}” does not match the expected form ({pattern})"
    if kind is ActionKind.SCAN_SERIAL and params.get("match_unit") and text != unit_serial:
        return f"scanned “{text}”, but this unit is “{unit_serial}”: check the label"
    return None


MISSING = {
    ActionKind.CONFIRM: "tick the box to confirm",
    ActionKind.SIGN: "tick the box to sign",
    ActionKind.PASS_FAIL: "choose pass or fail",
    ActionKind.MEASURE: "enter the measured value",
    ActionKind.SCAN_SERIAL: "scan or type the serial",
    ActionKind.SCAN_COMPONENT: "scan the component's serial or lot number",
    ActionKind.NOTE: "write a note",
}


def _answer(action: ActionLike, raw: str, unit_serial: str) -> tuple[object | None, str | None]:
    """(value, problem); value None and no problem: not answered (optional)."""
    kind = ActionKind(action.kind)
    text = raw.strip()
    if kind in (ActionKind.CONFIRM, ActionKind.SIGN):
        return (True, None) if text.lower() in TICKED else (None, None)
    if not text:
        return None, None
    if kind is ActionKind.PASS_FAIL:
        if text not in ("pass", "fail"):
            return None, "choose pass or fail"
        return text == "pass", None
    if kind is ActionKind.MEASURE:
        number = parse_number(text)
        if number is None:
            return None, "enter a number, like 12.5"
        return number, None
    if kind is ActionKind.NOTE:
        limit = int(action.params.get("max_length", 500))
        if len(text) > limit:
            return None, f"at most {limit} characters"
        return text, None
    problem = _scan(kind, action.params, text, unit_serial)
    return (None, problem) if problem else (text, None)


def read_answers(
    actions: Sequence[ActionLike], form: Mapping[str, str], unit_serial: str
) -> ReadAnswers:
    """The answers of a posted step form, and a message per field that needs one."""
    read = ReadAnswers()
    for action in actions:
        name = field_name(action.id)
        raw = form.get(name) or ""
        raw = raw if isinstance(raw, str) else ""
        kind = ActionKind(action.kind)
        if kind in (ActionKind.CONFIRM, ActionKind.SIGN):
            read.values[name] = "yes" if raw.strip().lower() in TICKED else ""
        else:
            read.values[name] = raw[:2000]
        value, problem = _answer(action, raw[:2000], unit_serial)
        if problem:
            read.problems[name] = problem
        elif value is None and action.required:
            read.problems[name] = MISSING[kind]
        elif value is not None:
            read.answers.append(Answer(action.id, value))
    return read


def _field_of(where: str, answers: Sequence[Answer]) -> str | None:
    parts = where.split(".")
    if len(parts) >= 2 and parts[0] == "answers" and parts[1].isdigit():
        index = int(parts[1])
        if index < len(answers):
            return field_name(answers[index].action_id)
    return None


def located(error: MesError, answers: Sequence[Answer]) -> dict[str, str]:
    """A service's refusal as messages per field: its located problems, or a message that
    starts with the location (`answers.1.value: no unit 'X' of part P`)."""
    found: dict[str, str] = {}
    for where, message in error.problems:
        name = _field_of(where, answers)
        if name is not None:
            found[name] = message
    if not found and ": " in error.message:
        where, message = error.message.split(": ", 1)
        name = _field_of(where, answers)
        if name is not None:
            found[name] = message
    return found
