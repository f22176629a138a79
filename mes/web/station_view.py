"""What the station's unit page shows: the steps of the frozen revision, where the unit is,
and the current step's fields with their values and messages.

After a failed attempt (a measurement out of limits is recorded, and fails the step) the
step is shown again with each failed answer's message beside its field and the typed
values filled in from the recorded attempt, so the operator corrects what was wrong.
Tick boxes are never pre-ticked: a confirmation is given again on each attempt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from mes.domain.actions import ActionKind
from mes.domain.lifecycle import Tracking
from mes.models.processes import ProcessStep, StepAction
from mes.models.production import StepExecution, Unit
from mes.services.units import StepState, progress
from mes.web.answers import failure_message, field_name, limits_text


@dataclass
class FieldView:
    name: str
    action: StepAction
    value: str = ""
    problem: str | None = None

    @property
    def kind(self) -> str:
        return self.action.kind

    @property
    def params(self) -> dict[str, Any]:
        return self.action.params

    @property
    def limits(self) -> str:
        return limits_text(self.action.params) if self.kind == ActionKind.MEASURE.value else ""


@dataclass
class StepView:
    state: StepState
    attempts: int
    failed_before: bool

    @property
    def step(self) -> ProcessStep:
        return self.state.step


@dataclass
class UnitView:
    unit: Unit
    steps: list[StepView]
    current: StepView | None
    fields: list[FieldView] = field(default_factory=list)
    signs: bool = False
    last_failure: list[str] = field(default_factory=list)

    @property
    def all_passed(self) -> bool:
        return all(s.state.passed for s in self.steps)


def _prefill(execution: StepExecution | None) -> dict[int, str]:
    """What a failed attempt recorded, per action id, to fill the fields again."""
    values: dict[int, str] = {}
    if execution is None or execution.outcome != "failed":
        return values
    for record in execution.records:
        if record.kind in (ActionKind.CONFIRM.value, ActionKind.SIGN.value):
            continue  # a confirmation is given again on each attempt
        if record.kind == ActionKind.PASS_FAIL.value:
            values[record.action_id] = "pass" if record.value is True else "fail"
        elif isinstance(record.value, int | float) and not isinstance(record.value, bool):
            values[record.action_id] = f"{record.value:g}"
        elif isinstance(record.value, str):
            values[record.action_id] = record.value
    return values


def unit_view(
    db: Session,
    unit: Unit,
    *,
    typed: dict[str, str] | None = None,
    problems: dict[str, str] | None = None,
) -> UnitView:
    """The page's content; `typed` and `problems` come from a refused post (kept as typed)."""
    states = progress(db, unit)
    steps = [
        StepView(s, len(s.history), s.latest is not None and s.latest.outcome == "failed")
        for s in states
    ]
    current = next((s for s in steps if not s.state.passed), None)
    view = UnitView(unit, steps, current)
    if current is None or unit.status != "in_progress":
        return view
    latest = current.state.latest
    recorded_values = _prefill(latest)
    if latest is not None and latest.outcome == "failed":
        actions = {a.id: a for a in current.step.actions}
        for record in latest.records:
            action = actions.get(record.action_id)
            if action is None or record.passed:
                continue
            message = failure_message(record.kind, action.params, record.value)
            view.last_failure.append(f"{action.label}: {message or 'failed'}")
    for action in current.step.actions:
        name = field_name(action.id)
        value = typed.get(name, "") if typed is not None else recorded_values.get(action.id, "")
        problem = (problems or {}).get(name)
        if problem is None and typed is None and latest is not None and latest.outcome == "failed":
            failed = [r for r in latest.records if r.action_id == action.id and not r.passed]
            if failed:
                problem = failure_message(failed[0].kind, action.params, failed[0].value)
                problem = problem or "failed"
        view.fields.append(FieldView(name, action, value, problem))
        view.signs = view.signs or action.kind == ActionKind.SIGN.value
    return view


def serial_patterns(steps: list[ProcessStep]) -> list[str]:
    """Patterns the unit's own serial must match: scan_serial actions that check the label."""
    return [
        str(a.params["pattern"])
        for s in steps
        for a in s.actions
        if a.kind == ActionKind.SCAN_SERIAL.value and a.params.get("match_unit")
    ]


def needs_serial(tracking: str) -> bool:
    return tracking == Tracking.SERIAL.value
