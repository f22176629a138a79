"""Running units through their work order's frozen process, step by step.

A step is recorded in one go (`record_step`): every answer is judged first, and only if all
are acceptable is anything written: one `StepExecution`, an `ActionRecord` per answer, a
genealogy link per component scanned, and the operator's signature if the step asks for one.
Steps are done in order; a failed step can be done again (a new execution); a passed step is
changed only by a correction, a new execution naming the one it corrects, with a reason,
by a lead or quality. Nothing recorded is ever updated or deleted.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.orm import Session, lazyload
from sqlalchemy.orm.attributes import set_committed_value

from mes import audit
from mes.db import utc_now
from mes.domain.actions import ActionKind, Evaluation, evaluate
from mes.domain.actor import Actor
from mes.domain.errors import Conflict, Invalid, NotFound, SignatureRejected
from mes.domain.genealogy import Node
from mes.domain.lifecycle import Outcome, Tracking, UnitStatus, WorkOrderStatus
from mes.domain.roles import Permission
from mes.domain.signing import Meaning, content_hash
from mes.models.parts import Part
from mes.models.people import Station
from mes.models.processes import ProcessStep, StepAction
from mes.models.production import ActionRecord, Genealogy, StepExecution, Unit, WorkOrder
from mes.services.common import page, visible_part, visible_parts
from mes.services.genealogy import resolve_component
from mes.services.workorders import visible_work_order
from mes.signatures import SignatureGrant, check_grant, sign

SERIAL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:#+-]{0,127}")
MAX_STEP_AGE = datetime.timedelta(hours=24)
CLOCK_SKEW = datetime.timedelta(minutes=1)  # station clocks follow the appliance's NTP


@dataclass(frozen=True)
class Answer:
    action_id: int
    value: object


@dataclass(frozen=True)
class StepInput:
    step_id: int
    answers: tuple[Answer, ...] = ()
    started_at: datetime.datetime | None = None
    station_id: int | None = None
    corrects_id: int | None = None
    reason: str | None = None


@dataclass
class StepState:
    step: ProcessStep
    latest: StepExecution | None = None
    history: list[StepExecution] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.latest is not None and self.latest.outcome == Outcome.PASSED.value


def visible_unit(session: Session, actor: Actor, unit_id: int) -> tuple[Unit, Part]:
    unit = session.get(Unit, unit_id)
    if unit is None:
        raise NotFound(f"no unit {unit_id}")
    try:
        return unit, visible_part(session, actor, unit.part_id)
    except NotFound:
        raise NotFound(f"no unit {unit_id}") from None


def resolve_station(session: Session, actor: Actor, station_id: int | None) -> Station:
    """The station the work happens at: the session's, or the one named if it has none."""
    if actor.station_id is not None and station_id not in (None, actor.station_id):
        raise Conflict("this session is bound to another station")
    chosen = actor.station_id if actor.station_id is not None else station_id
    if chosen is None:
        raise Invalid("a station is needed", [("station_id", "required")])
    station = session.get(Station, chosen)
    if station is None or not station.active:
        raise NotFound(f"no active station {chosen}")
    return station


def start_unit(
    session: Session,
    actor: Actor,
    work_order_id: int,
    *,
    serial: str | None = None,
    station_id: int | None = None,
) -> Unit:
    """A new unit on an open work order; serial-tracked parts need a serial, others get one."""
    actor.require(Permission.UNITS_RUN)
    order, part = visible_work_order(session, actor, work_order_id)
    if order.status != WorkOrderStatus.OPEN.value:
        raise Conflict(f"work order {order.number} is {order.status}")
    station = resolve_station(session, actor, station_id)
    count = session.scalar(
        select(func.count()).where(
            Unit.work_order_id == order.id, Unit.status != UnitStatus.SCRAPPED.value
        )
    )
    if (count or 0) >= order.quantity:
        raise Conflict(f"work order {order.number} has all {order.quantity} units started")
    if serial is None:
        if part.tracking == Tracking.SERIAL.value:
            raise Invalid(
                f"part {part.number} is serial-tracked: a serial is needed",
                [("serial", "required")],
            )
        total = session.scalar(select(func.count()).where(Unit.work_order_id == order.id)) or 0
        serial = f"{order.number}-{total + 1:04d}"
    serial = serial.strip()
    if not SERIAL.fullmatch(serial):
        raise Invalid(
            f"serial {serial!r}: letters, digits and ._/:#+- only, up to 128",
            [("serial", "bad serial")],
        )
    if session.scalar(select(Unit.id).where(Unit.part_id == part.id, Unit.serial == serial)):
        raise Conflict(f"part {part.number} has a unit with serial {serial} already")
    unit = Unit(
        part_id=part.id,
        work_order_id=order.id,
        serial=serial,
        started_by_id=actor.person_id,
        started_station_id=station.id,
    )
    session.add(unit)
    session.flush()
    audit.record(
        session,
        actor,
        "unit.started",
        "unit",
        unit.id,
        after=audit.snapshot(unit),
        export_controlled=part.export_controlled,
    )
    return unit


def progress(session: Session, unit: Unit, *, with_records: bool = True) -> list[StepState]:
    """Each step of the unit's frozen process with its executions (latest last). Without
    `with_records`, neither the steps' actions nor the executions' records are loaded
    (checking the order of steps needs neither; they still load if touched)."""
    order = session.get(WorkOrder, unit.work_order_id)
    assert order is not None
    step_query = select(ProcessStep).where(ProcessStep.process_id == order.process_id)
    if not with_records:
        step_query = step_query.options(lazyload(ProcessStep.actions))
    steps = session.scalars(step_query.order_by(ProcessStep.position)).all()
    states = {step.id: StepState(step) for step in steps}
    query = select(StepExecution).where(StepExecution.unit_id == unit.id)
    if not with_records:
        query = query.options(lazyload(StepExecution.records))
    executions = session.scalars(query.order_by(StepExecution.id))
    for execution in executions:
        state = states.get(execution.step_id)
        if state is not None:
            state.history.append(execution)
            state.latest = execution
    return [states[step.id] for step in steps]


def execution_hash(execution: StepExecution, records: Sequence[ActionRecord]) -> str:
    """What a step signature is bound to: the execution and its answers."""
    return content_hash(
        {
            "unit_id": execution.unit_id,
            "step_id": execution.step_id,
            "station_id": execution.station_id,
            "person_id": execution.person_id,
            "started_at": audit.jsonable(execution.started_at),
            "outcome": execution.outcome,
            "corrects_id": execution.corrects_id,
            "correction_reason": execution.correction_reason,
            "answers": sorted(
                [[r.action_id, r.kind, r.value, bool(r.passed)] for r in records],
                key=lambda a: int(a[0]),
            ),
        }
    )


def _check_order(states: list[StepState], step_id: int, data: StepInput, actor: Actor) -> None:
    index = next(i for i, s in enumerate(states) if s.step.id == step_id)
    state = states[index]
    if data.corrects_id is not None:
        actor.require(Permission.EXECUTIONS_CORRECT)
        if not data.reason or not data.reason.strip():
            raise Invalid("a correction needs a reason", [("reason", "required")])
        if state.latest is None or state.latest.id != data.corrects_id:
            raise Conflict("only the latest execution of this step on this unit can be corrected")
        return
    for earlier in states[:index]:
        if not earlier.passed:
            raise Conflict(f"step {earlier.step.position} ({earlier.step.title}) is not passed yet")
    if state.passed:
        raise Conflict(f"step {state.step.position} is passed already (a correction changes it)")


def _judge(
    session: Session, actor: Actor, unit: Unit, step: ProcessStep, answers: Sequence[Answer]
) -> list[tuple[StepAction, Evaluation, Node | None]]:
    actions = {a.id: a for a in step.actions}
    seen: set[int] = set()
    judged: list[tuple[StepAction, Evaluation, Node | None]] = []
    for i, answer in enumerate(answers):
        where = f"answers.{i}"
        action = actions.get(answer.action_id)
        if action is None:
            raise Invalid(
                f"{where}: action {answer.action_id} is not in this step",
                [(where, "unknown action")],
            )
        if action.id in seen:
            raise Invalid(f"{where}: action {action.id} answered twice", [(where, "duplicate")])
        seen.add(action.id)
        kind = ActionKind(action.kind)
        result = evaluate(
            kind, action.params, answer.value, unit_serial=unit.serial, where=f"{where}.value"
        )
        node = None
        if kind is ActionKind.SCAN_COMPONENT:
            node = resolve_component(
                session,
                actor,
                unit,
                int(action.params["part_id"]),
                str(result.value),
                f"{where}.value",
            )
        judged.append((action, result, node))
    missing = [a.label for a in step.actions if a.required and a.id not in seen]
    if missing:
        raise Invalid(
            "required actions not answered: " + ", ".join(missing),
            [("answers", f"missing {label}") for label in missing],
        )
    return judged


def record_step(
    session: Session,
    actor: Actor,
    unit_id: int,
    data: StepInput,
    grant: SignatureGrant | None = None,
) -> StepExecution:
    """Record one step of a unit (see the module's docstring)."""
    actor.require(Permission.UNITS_RUN)
    unit, part = visible_unit(session, actor, unit_id)
    if unit.status != UnitStatus.IN_PROGRESS.value:
        raise Conflict(f"unit {unit.serial} is {unit.status}")
    order = session.get(WorkOrder, unit.work_order_id)
    assert order is not None
    if order.status != WorkOrderStatus.OPEN.value:
        raise Conflict(f"work order {order.number} is {order.status}")
    station = resolve_station(session, actor, data.station_id)
    step = session.get(ProcessStep, data.step_id)
    if step is None or step.process_id != order.process_id:
        raise NotFound(f"no step {data.step_id} in this unit's process revision")
    _check_order(progress(session, unit, with_records=False), step.id, data, actor)
    judged = _judge(session, actor, unit, step, data.answers)
    signing = any(ActionKind(a.kind) is ActionKind.SIGN for a, _, _ in judged)
    if signing and grant is None:
        raise SignatureRejected("this step is signed: enter your credentials")
    if signing and grant is not None:
        check_grant(actor, grant)
    now = utc_now()
    if data.started_at is not None and not (
        now - MAX_STEP_AGE <= data.started_at <= now + CLOCK_SKEW
    ):
        raise Invalid(
            "started_at: must lie within the last 24 hours, not in the future",
            [("started_at", "out of range")],
        )
    execution = StepExecution(
        unit_id=unit.id,
        step_id=step.id,
        station_id=station.id,
        person_id=actor.person_id,
        started_at=data.started_at or now,
        recorded_at=now,
        outcome=(Outcome.PASSED if all(r.passed for _, r, _ in judged) else Outcome.FAILED).value,
        corrects_id=data.corrects_id,
        correction_reason=data.reason,
        content_hash="",
    )
    records = [
        ActionRecord(action_id=a.id, kind=a.kind, value=r.value, passed=r.passed, recorded_at=now)
        for a, r, _ in judged
    ]
    execution.content_hash = execution_hash(execution, records)
    session.add(execution)
    session.flush()
    signature_id = None
    if signing:
        assert grant is not None
        meaning = next(
            Meaning(a.params["meaning"]) for a, _, _ in judged if a.kind == ActionKind.SIGN.value
        )
        signature_id = sign(
            session,
            actor,
            grant,
            meaning=meaning,
            record_type="step_execution",
            record_id=execution.id,
            record_content_hash=execution.content_hash,
            export_controlled=part.export_controlled,
        ).id
    for record, (action, _, node) in zip(records, judged, strict=True):
        record.execution_id = execution.id
        if action.kind == ActionKind.SIGN.value:
            record.signature_id = signature_id
        session.add(record)
        if node is not None:
            session.add(
                Genealogy(
                    parent_unit_id=unit.id,
                    child_unit_id=node.id if node.kind == "unit" else None,
                    child_lot_id=node.id if node.kind == "lot" else None,
                    step_id=step.id,
                    execution_id=execution.id,
                    person_id=actor.person_id,
                )
            )
    session.flush()
    set_committed_value(execution, "records", records)  # as loaded: no query to read them
    audit.record(
        session,
        actor,
        "unit.step_recorded",
        "step_execution",
        execution.id,
        why=data.reason,
        after=audit.snapshot(execution, answers=[audit.snapshot(r) for r in records]),
        export_controlled=part.export_controlled,
    )
    return execution


def complete_unit(session: Session, actor: Actor, unit_id: int) -> Unit:
    """In progress -> completed, once every step's latest execution passed."""
    actor.require(Permission.UNITS_RUN)
    unit, part = visible_unit(session, actor, unit_id)
    if unit.status != UnitStatus.IN_PROGRESS.value:
        raise Conflict(f"unit {unit.serial} is {unit.status}")
    states = progress(session, unit, with_records=False)
    open_steps = [s.step.position for s in states if not s.passed]
    if open_steps:
        raise Conflict(f"steps not passed yet: {', '.join(map(str, open_steps))}")
    before = audit.snapshot(unit)
    unit.status, unit.completed_at = UnitStatus.COMPLETED.value, utc_now()
    session.flush()
    audit.record(
        session,
        actor,
        "unit.completed",
        "unit",
        unit.id,
        before=before,
        after=audit.snapshot(unit),
        export_controlled=part.export_controlled,
    )
    return unit


def get_unit(session: Session, actor: Actor, unit_id: int) -> tuple[Unit, Part]:
    actor.require(Permission.UNITS_READ)
    return visible_unit(session, actor, unit_id)


def list_units(
    session: Session,
    actor: Actor,
    *,
    work_order_id: int | None = None,
    serial: str | None = None,
    status: UnitStatus | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Sequence[tuple[Unit, Part]]:
    actor.require(Permission.UNITS_READ)
    limit, offset = page(limit, offset)
    stmt = (
        select(Unit, Part)
        .join(Part, Part.id == Unit.part_id)
        .where(visible_parts(actor))
        .order_by(Unit.id.desc())
    )
    if work_order_id is not None:
        stmt = stmt.where(Unit.work_order_id == work_order_id)
    if serial is not None:
        stmt = stmt.where(Unit.serial == serial)
    if status is not None:
        stmt = stmt.where(Unit.status == status.value)
    return [(u, p) for u, p in session.execute(stmt.limit(limit).offset(offset))]
