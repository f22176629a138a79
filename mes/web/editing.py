"""The process editor's edits, as pure functions on a revision's content.

The editor works without JavaScript: each form posts one edit (`op`) with the step and
action positions it applies to and the content hash the page was drawn from. The route
reads the draft's current content, checks the hash (someone else may have saved in the
meantime: then nothing is applied and the page says so), applies the edit here, and hands
the whole content to `processes.replace_content`, which checks it as the API's `PUT` does.

Positions are 1-based, as the screens show them. An edit naming a step or action that is
not there is `Invalid`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

from mes.domain.actions import MAX_NOTE, MAX_PATTERN, MAX_UNIT, ActionKind, Json
from mes.domain.content import MAX_INSTRUCTIONS, MAX_TITLE, ActionSpec, ProcessContent, StepSpec
from mes.domain.errors import Invalid
from mes.domain.signing import Meaning
from mes.web.answers import limits_text
from mes.web.forms import Fields

OPS = (
    "title",
    "add_step",
    "update_step",
    "move_step",
    "delete_step",
    "add_action",
    "update_action",
    "move_action",
    "delete_action",
)
KIND_NAMES = {
    ActionKind.CONFIRM: "Confirm (tick box)",
    ActionKind.SCAN_SERIAL: "Scan the unit's serial",
    ActionKind.SCAN_COMPONENT: "Scan a component (serial or lot)",
    ActionKind.MEASURE: "Measure (number with limits)",
    ActionKind.PASS_FAIL: "Pass / fail",
    ActionKind.NOTE: "Note (free text)",
    ActionKind.SIGN: "Sign (operator's PIN)",
}


def _index(items: tuple[object, ...], position: int | None, what: str) -> int:
    if position is None or not 1 <= position <= len(items):
        raise Invalid(f"there is no {what} {position}", [(what, "no such position")])
    return position - 1


def _moved(items: tuple[object, ...], index: int, direction: str) -> list[object]:
    target = index - 1 if direction == "up" else index + 1
    moved = list(items)
    if 0 <= target < len(moved):
        moved[index], moved[target] = moved[target], moved[index]
    return moved


def _with_steps(content: ProcessContent, steps: list[object]) -> ProcessContent:
    return replace(content, steps=tuple(s for s in steps if isinstance(s, StepSpec)))


def _with_actions(step: StepSpec, actions: list[object]) -> StepSpec:
    return replace(step, actions=tuple(a for a in actions if isinstance(a, ActionSpec)))


def action_params(kind: ActionKind, fields: Fields) -> dict[str, Json]:
    """The parameters of an action of `kind` from the editor's form (problems noted)."""
    if kind is ActionKind.SCAN_SERIAL:
        return {
            "pattern": fields.text("pattern", limit=MAX_PATTERN, required=True),
            "match_unit": fields.flag("match_unit"),
        }
    if kind is ActionKind.SCAN_COMPONENT:
        return {
            "part_id": fields.integer("part_id", required=True),
            "pattern": fields.optional("pattern", limit=MAX_PATTERN),
        }
    if kind is ActionKind.MEASURE:
        return {
            "min": fields.number("min"),
            "max": fields.number("max"),
            "unit": fields.text("unit", limit=MAX_UNIT, required=True),
        }
    if kind is ActionKind.NOTE:
        return {"max_length": fields.integer("max_length", high=MAX_NOTE) or 500}
    if kind is ActionKind.SIGN:
        return {"meaning": fields.choice("meaning", [m.value for m in Meaning])}
    return {}


def action_from_form(kind: ActionKind, fields: Fields) -> ActionSpec:
    label = fields.text("label", limit=MAX_TITLE, required=True)
    required = fields.flag("required")
    return ActionSpec(kind, label, required, action_params(kind, fields))


def step_from_form(fields: Fields) -> StepSpec:
    return StepSpec(
        title=fields.text("title", limit=MAX_TITLE, required=True),
        instructions=fields.text("instructions", limit=MAX_INSTRUCTIONS),
    )


@dataclass(frozen=True)
class Edit:
    """One edit from the editor's form."""

    op: str
    step: int | None = None
    action: int | None = None
    direction: str = "down"
    title: str = ""
    new_step: StepSpec | None = None
    new_action: ActionSpec | None = None


def read_edit(fields: Fields) -> Edit:
    """The edit a form posts (problems noted in `fields`)."""
    op = fields.choice("op", OPS) or ""
    kind: ActionKind | None = None
    if op in ("add_action", "update_action"):
        kind = ActionKind(fields.choice("kind", [k.value for k in ActionKind]) or "confirm")
    return Edit(
        op=op,
        step=fields.integer("step", high=1000),
        action=fields.integer("pos", high=1000),
        direction=fields.choice("direction", ["up", "down"], required=False) or "down",
        title=fields.text("title", limit=MAX_TITLE, required=True) if op == "title" else "",
        new_step=step_from_form(fields) if op in ("add_step", "update_step") else None,
        new_action=action_from_form(kind, fields) if kind is not None else None,
    )


def apply(content: ProcessContent, edit: Edit) -> ProcessContent:
    """`content` after one edit."""
    op = edit.op
    steps: tuple[object, ...] = content.steps
    if op == "title":
        return replace(content, title=edit.title)
    if op == "add_step":
        assert edit.new_step is not None
        return _with_steps(content, [*steps, edit.new_step])
    i = _index(steps, edit.step, "step")
    current = content.steps[i]
    if op == "update_step":
        assert edit.new_step is not None
        updated = replace(
            current, title=edit.new_step.title, instructions=edit.new_step.instructions
        )
        return _with_steps(content, [*steps[:i], updated, *steps[i + 1 :]])
    if op == "move_step":
        return _with_steps(content, _moved(steps, i, edit.direction))
    if op == "delete_step":
        return _with_steps(content, [*steps[:i], *steps[i + 1 :]])
    actions: tuple[object, ...] = current.actions
    if op == "add_action":
        assert edit.new_action is not None
        changed = _with_actions(current, [*actions, edit.new_action])
    else:
        j = _index(actions, edit.action, "action")
        if op == "update_action":
            assert edit.new_action is not None
            changed = _with_actions(current, [*actions[:j], edit.new_action, *actions[j + 1 :]])
        elif op == "move_action":
            changed = _with_actions(current, _moved(actions, j, edit.direction))
        elif op == "delete_action":
            changed = _with_actions(current, [*actions[:j], *actions[j + 1 :]])
        else:
            raise Invalid(f"unknown edit {op!r}", [("op", "unknown")])
    return _with_steps(content, [*steps[:i], changed, *steps[i + 1 :]])


def params_summary(kind: str, params: Mapping[str, Json], part_names: Mapping[int, str]) -> str:
    """A line describing an action's parameters, for the editor and the history."""
    if kind == ActionKind.SCAN_SERIAL.value:
        own = ", must be this unit's serial" if params.get("match_unit") else ""
        return f"pattern {params.get('pattern')}{own}"
    if kind == ActionKind.SCAN_COMPONENT.value:
        part_id = params.get("part_id")
        name = part_names.get(part_id, f"part {part_id}") if isinstance(part_id, int) else "?"
        pattern = params.get("pattern")
        return f"{name}" + (f", pattern {pattern}" if pattern else "")
    if kind == ActionKind.MEASURE.value:
        return limits_text(params)
    if kind == ActionKind.NOTE.value:
        return f"up to {params.get('max_length', 500)} characters"
    if kind == ActionKind.SIGN.value:
        return f"meaning: {params.get('meaning')}"
    return ""
