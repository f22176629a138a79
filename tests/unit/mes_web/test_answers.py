"""The station's per-action validation (pure): a precise message for each kind of action,
and the editor's edits on process content."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from mes.domain.actions import ActionKind
from mes.domain.content import ActionSpec, ProcessContent, StepSpec
from mes.domain.errors import Invalid, NotFound
from mes.services.units import Answer
from mes.web import editing
from mes.web.answers import (
    failure_message,
    limits_text,
    located,
    measure_message,
    read_answers,
)
from mes.web.forms import Fields, parse_number


@dataclass
class Action:
    id: int
    kind: str
    label: str = "x"
    required: bool = True
    params: dict[str, Any] = field(default_factory=dict)


SERIAL = "SN-0001"


def one(action: Action, raw: str | None) -> tuple[list[Answer], dict[str, str]]:
    form = {} if raw is None else {f"a{action.id}": raw}
    read = read_answers([action], form, SERIAL)
    return read.answers, read.problems


@pytest.mark.parametrize(
    ("action", "raw", "value", "problem"),
    [
        (Action(1, "confirm"), "yes", True, None),
        (Action(1, "confirm"), None, None, "tick the box to confirm"),
        (Action(1, "confirm", required=False), None, None, None),
        (Action(1, "sign", params={"meaning": "performed"}), None, None, "tick the box to sign"),
        (Action(1, "pass_fail"), "pass", True, None),
        (Action(1, "pass_fail"), "fail", False, None),
        (Action(1, "pass_fail"), "maybe", None, "choose pass or fail"),
        (Action(1, "pass_fail"), "", None, "choose pass or fail"),
        (Action(1, "measure", params={"min": 1, "max": 2, "unit": "V"}), "1.5", 1.5, None),
        (Action(1, "measure", params={"unit": "V"}), "1,5", 1.5, None),
        (Action(1, "measure", params={"unit": "V"}), "abc", None, "enter a number, like 12.5"),
        (Action(1, "measure", params={"unit": "V"}), "nan", None, "enter a number, like 12.5"),
        (Action(1, "measure", params={"unit": "V"}), "1e99", None, "enter a number, like 12.5"),
        (Action(1, "measure", params={"unit": "V"}), " ", None, "enter the measured value"),
        (
            Action(1, "scan_serial", params={"pattern": "SN-[0-9]{4}"}),
            "SN-12",
            None,
            "“SN-12” does not match the expected form (SN-[0-9]{4})",
        ),
        (
            Action(1, "scan_serial", params={"pattern": "SN-.*", "match_unit": True}),
            "SN-0002",
            None,
            "scanned “SN-0002”, but this unit is “SN-0001”: check the label",
        ),
        (
            Action(1, "scan_serial", params={"pattern": ".*", "match_unit": True}),
            SERIAL,
            SERIAL,
            None,
        ),
        (Action(1, "scan_component", params={"part_id": 3}), " LOT-7 ", "LOT-7", None),
        (
            Action(1, "scan_component", params={"part_id": 3}),
            None,
            None,
            "scan the component's serial or lot number",
        ),
        (
            Action(1, "scan_component", params={"part_id": 3}),
            "x" * 129,
            None,
            "a scan has at most 128 characters",
        ),
        (Action(1, "note", params={"max_length": 5}), "short", "short", None),
        (Action(1, "note", params={"max_length": 5}), "too long", None, "at most 5 characters"),
        (Action(1, "note", required=False), "", None, None),
    ],
)
def test_each_kind_of_action(
    action: Action, raw: str | None, value: object, problem: str | None
) -> None:
    answers, problems = one(action, raw)
    if problem is None:
        assert problems == {}
        assert answers == ([] if value is None else [Answer(1, value)])
    else:
        assert problems == {"a1": problem}
        assert answers == []


def test_measure_messages_name_value_limit_and_unit() -> None:
    params = {"min": 12.3, "max": 12.5, "unit": "mm"}
    assert measure_message(12.7, params) == "12.7 mm is above the maximum 12.5 mm"
    assert measure_message(12.1, params) == "12.1 mm is below the minimum 12.3 mm"
    assert measure_message(12.5, params) is None  # inclusive
    assert measure_message(12.3, params) is None
    assert limits_text(params) == "12.3 to 12.5 mm"
    assert limits_text({"min": 4.5, "unit": "V"}) == "at least 4.5 V"
    assert limits_text({"max": 3, "unit": "N·m"}) == "at most 3 N·m"
    assert failure_message("pass_fail", {}, False) == "marked as failed"
    assert failure_message("measure", params, 12.4) is None
    assert failure_message("confirm", {}, True) is None


def test_values_are_kept_for_the_form_again() -> None:
    actions = [Action(1, "measure", params={"unit": "V"}), Action(2, "confirm")]
    read = read_answers(actions, {"a1": "oops", "a2": "yes"}, SERIAL)
    assert read.values == {"a1": "oops", "a2": "yes"}
    assert read.problems == {"a1": "enter a number, like 12.5"}


def test_service_refusals_land_next_to_their_field() -> None:
    answers = [Answer(7, "x"), Answer(9, "LOT")]
    invalid = Invalid("answers.1.value: bad", [("answers.1.value", "bad")])
    assert located(invalid, answers) == {"a9": "bad"}
    missing = NotFound("answers.0.value: no unit 'X' of part P")
    assert located(missing, answers) == {"a7": "no unit 'X' of part P"}
    assert located(NotFound("no unit 3"), answers) == {}


def test_numbers_as_typed_on_the_floor() -> None:
    assert parse_number("12,5") == 12.5
    assert parse_number(" 1 000.5 ") == 1000.5
    assert parse_number("1.2,3") is None
    assert parse_number("inf") is None


def content() -> ProcessContent:
    return ProcessContent(
        "Build",
        (
            StepSpec(
                "A", "", (ActionSpec(ActionKind.CONFIRM, "a1"), ActionSpec(ActionKind.NOTE, "a2"))
            ),
            StepSpec("B", "do B"),
        ),
    )


def test_editor_edits() -> None:
    base = content()
    E = editing.Edit
    assert editing.apply(base, E("title", title="New")).title == "New"
    moved = editing.apply(base, E("move_step", step=2, direction="up"))
    assert [s.title for s in moved.steps] == ["B", "A"]
    assert editing.apply(base, E("move_step", step=1, direction="up")) == base
    added = editing.apply(base, E("add_step", new_step=StepSpec("C", "")))
    assert [s.title for s in added.steps] == ["A", "B", "C"]
    gone = editing.apply(base, E("delete_step", step=1))
    assert [s.title for s in gone.steps] == ["B"]
    updated = editing.apply(base, E("update_step", step=2, new_step=StepSpec("B2", "x")))
    assert updated.steps[1].title == "B2" and updated.steps[1].instructions == "x"
    swap = editing.apply(base, E("move_action", step=1, action=1, direction="down"))
    assert [a.label for a in swap.steps[0].actions] == ["a2", "a1"]
    spec = ActionSpec(ActionKind.MEASURE, "m", True, {"unit": "V"})
    assert editing.apply(base, E("add_action", step=2, new_action=spec)).steps[1].actions == (spec,)
    changed = editing.apply(base, E("update_action", step=1, action=2, new_action=spec))
    assert changed.steps[0].actions[1] == spec
    dropped = editing.apply(base, E("delete_action", step=1, action=1))
    assert [a.label for a in dropped.steps[0].actions] == ["a2"]
    for bad in (E("delete_step", step=3), E("delete_action", step=1, action=3)):
        with pytest.raises(Invalid):
            editing.apply(base, bad)


def test_action_parameters_from_the_form() -> None:
    fields = Fields({"label": "Bore", "required": "yes", "min": "12,3", "max": "", "unit": "mm"})
    spec = editing.action_from_form(ActionKind.MEASURE, fields)
    assert fields.ok
    assert spec == ActionSpec(
        ActionKind.MEASURE, "Bore", True, {"min": 12.3, "max": None, "unit": "mm"}
    )
    missing = Fields({"label": "", "pattern": ""})
    editing.action_from_form(ActionKind.SCAN_SERIAL, missing)
    assert set(missing.problems) == {"label", "pattern"}
