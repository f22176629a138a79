"""`/api/v1/work-orders` and `/api/v1/units`: building units, step by step.

GET  /work-orders[?status&part_id]     POST /work-orders (lead)
GET  /work-orders/{id}                 POST /work-orders/{id}/close (lead)
POST /work-orders/{id}/units           start a unit (serial, station)
GET  /units[?work_order_id&serial&status]
GET  /units/{id}                       the unit with its steps and executions
POST /units/{id}/executions            record a step (answers; signature if the step signs)
POST /units/{id}/complete              every step passed -> completed
GET  /executions/{id}/signatures       verified signatures on a step execution
"""

from __future__ import annotations

import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import AwareDatetime, Field

from mes.api.common import (
    NO_NUL,
    Body,
    Id,
    Limit,
    Offset,
    Out,
    PathId,
    QueryId,
    Reason,
    ShortNote,
    SignatureIn,
    SignatureOut,
    view,
)
from mes.api.deps import DB, grant_for, need
from mes.api.process_models import OptionalWhy, PartRef
from mes.api.processes import checked_signatures
from mes.domain.actor import Actor
from mes.domain.lifecycle import UnitStatus, WorkOrderStatus
from mes.domain.roles import Permission as P
from mes.models.parts import Part
from mes.models.production import Unit, WorkOrder
from mes.services import units, workorders

router = APIRouter(tags=["production"])
AnswerValue = (
    Annotated[bool, Field(strict=True)]
    | Annotated[int, Field(strict=True, ge=-(10**15), le=10**15)]
    | Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-1e15, le=1e15)]
    | Annotated[str, Field(max_length=2000)]
)


class WorkOrderIn(Body):
    part_id: Id
    quantity: Annotated[int, Field(ge=1, le=100_000, strict=True)]
    number: Annotated[str | None, Field(max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")] = (
        None
    )
    note: ShortNote = ""


class WorkOrderOut(Out):
    id: int
    number: str
    part: PartRef
    process_id: int
    quantity: int
    status: WorkOrderStatus
    note: str
    created_at: datetime.datetime
    closed_at: datetime.datetime | None


class UnitIn(Body):
    serial: Annotated[str | None, Field(min_length=1, max_length=128)] = None
    station_id: Id | None = None


class UnitOut(Out):
    id: int
    part: PartRef
    work_order_id: int
    serial: str
    status: UnitStatus
    started_at: datetime.datetime
    started_station_id: int | None
    completed_at: datetime.datetime | None


class AnswerIn(Body):
    action_id: Id
    value: AnswerValue


class ExecutionIn(Body):
    step_id: Id
    answers: Annotated[list[AnswerIn], Field(max_length=50)] = Field(default_factory=list)
    started_at: AwareDatetime | None = None
    station_id: Id | None = None
    corrects_id: Id | None = None
    reason: Reason | None = None
    signature: SignatureIn | None = None


class RecordOut(Out):
    id: int
    action_id: int
    kind: str
    value: Any
    passed: bool
    signature_id: int | None


class ExecutionOut(Out):
    id: int
    unit_id: int
    step_id: int
    station_id: int
    person_id: int
    started_at: datetime.datetime
    recorded_at: datetime.datetime
    outcome: str
    corrects_id: int | None
    correction_reason: str | None
    records: list[RecordOut]


class StepStateOut(Out):
    step_id: int
    position: int
    title: str
    passed: bool
    executions: list[ExecutionOut]


class UnitDetail(UnitOut):
    process_id: int
    next_step_id: int | None
    steps: list[StepStateOut]


def _order(order: Any, part: Part) -> WorkOrderOut:
    return view(WorkOrderOut, order, part=PartRef.model_validate(part))


def _unit(unit: Unit, part: Part) -> UnitOut:
    return view(UnitOut, unit, part=PartRef.model_validate(part))


def _unit_detail(db: DB, unit: Unit, part: Part) -> UnitDetail:
    states = units.progress(db, unit)
    pending = next((s.step.id for s in states if not s.passed), None)
    order = db.get(WorkOrder, unit.work_order_id)
    assert order is not None  # a foreign key
    return view(
        UnitDetail,
        unit,
        part=PartRef.model_validate(part),
        process_id=order.process_id,
        next_step_id=pending if unit.status == UnitStatus.IN_PROGRESS.value else None,
        steps=[
            StepStateOut(
                step_id=s.step.id,
                position=s.step.position,
                title=s.step.title,
                passed=s.passed,
                executions=[ExecutionOut.model_validate(e) for e in s.history],
            )
            for s in states
        ],
    )


@router.get("/work-orders")
def list_work_orders(
    db: DB,
    actor: Annotated[Actor, need(P.WORK_ORDERS_READ)],
    status: WorkOrderStatus | None = None,
    part_id: QueryId = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[WorkOrderOut]:
    found = workorders.list_work_orders(
        db, actor, status=status, part_id=part_id, limit=limit, offset=offset
    )
    return [_order(o, p) for o, p in found]


@router.post("/work-orders", status_code=201)
def create_work_order(
    body: WorkOrderIn, db: DB, actor: Annotated[Actor, need(P.WORK_ORDERS_MANAGE)]
) -> WorkOrderOut:
    """A work order with the part's released process revision frozen into it."""
    order = workorders.create_work_order(
        db, actor, body.part_id, body.quantity, number=body.number, note=body.note
    )
    db.commit()
    return _order(*workorders.get_work_order(db, actor, order.id))


@router.get("/work-orders/{work_order_id}")
def get_work_order(
    work_order_id: PathId, db: DB, actor: Annotated[Actor, need(P.WORK_ORDERS_READ)]
) -> WorkOrderOut:
    return _order(*workorders.get_work_order(db, actor, work_order_id))


@router.post("/work-orders/{work_order_id}/close")
def close_work_order(
    work_order_id: PathId,
    body: OptionalWhy,
    db: DB,
    actor: Annotated[Actor, need(P.WORK_ORDERS_MANAGE)],
) -> WorkOrderOut:
    workorders.close_work_order(db, actor, work_order_id, body.why)
    db.commit()
    return _order(*workorders.get_work_order(db, actor, work_order_id))


@router.post("/work-orders/{work_order_id}/units", status_code=201)
def start_unit(
    work_order_id: PathId, body: UnitIn, db: DB, actor: Annotated[Actor, need(P.UNITS_RUN)]
) -> UnitOut:
    unit = units.start_unit(
        db, actor, work_order_id, serial=body.serial, station_id=body.station_id
    )
    db.commit()
    return _unit(*units.get_unit(db, actor, unit.id))


@router.get("/units")
def list_units(
    db: DB,
    actor: Annotated[Actor, need(P.UNITS_READ)],
    work_order_id: QueryId = None,
    serial: Annotated[str | None, Query(max_length=128, pattern=NO_NUL)] = None,
    status: UnitStatus | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[UnitOut]:
    found = units.list_units(
        db,
        actor,
        work_order_id=work_order_id,
        serial=serial,
        status=status,
        limit=limit,
        offset=offset,
    )
    return [_unit(u, p) for u, p in found]


@router.get("/units/{unit_id}")
def get_unit(unit_id: PathId, db: DB, actor: Annotated[Actor, need(P.UNITS_READ)]) -> UnitDetail:
    return _unit_detail(db, *units.get_unit(db, actor, unit_id))


@router.post("/units/{unit_id}/executions", status_code=201)
def record_step(
    unit_id: PathId,
    body: ExecutionIn,
    request: Request,
    db: DB,
    actor: Annotated[Actor, need(P.UNITS_RUN)],
) -> ExecutionOut:
    """Record one step; a step with a `sign` action needs `signature`."""
    grant = grant_for(request, actor, body.signature.credentials()) if body.signature else None
    execution = units.record_step(
        db,
        actor,
        unit_id,
        units.StepInput(
            step_id=body.step_id,
            answers=tuple(units.Answer(a.action_id, a.value) for a in body.answers),
            started_at=body.started_at,
            station_id=body.station_id,
            corrects_id=body.corrects_id,
            reason=body.reason,
        ),
        grant,
    )
    db.commit()
    return ExecutionOut.model_validate(execution)


@router.post("/units/{unit_id}/complete")
def complete_unit(unit_id: PathId, db: DB, actor: Annotated[Actor, need(P.UNITS_RUN)]) -> UnitOut:
    units.complete_unit(db, actor, unit_id)
    db.commit()
    return _unit(*units.get_unit(db, actor, unit_id))


@router.get("/executions/{execution_id}/signatures")
def execution_signatures(
    execution_id: PathId, db: DB, actor: Annotated[Actor, need(P.UNITS_READ)]
) -> list[SignatureOut]:
    return checked_signatures(db, actor, "step_execution", execution_id)
