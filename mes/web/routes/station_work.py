"""The operator's work at a station: pick a work order, scan a unit, do its steps.

GET  /station/{code}/work-orders                       open work orders
GET  /station/{code}/work-orders/{id}                  its units; scan or type a serial
POST /station/{code}/work-orders/{id}/units            start the unit (or continue it)
GET  /station/{code}/units/{id}                        the unit's current step
POST /station/{code}/units/{id}/steps/{step_id}        record the step (all answers at once)
POST /station/{code}/units/{id}/complete               every step passed -> completed
GET  /station/{code}/units/{id}/fail                   fail the unit: why
POST /station/{code}/units/{id}/fail                   raises a nonconformance (unit held)

Every route needs an operator session bound to this station with `units.run`; the
services check again and hide what the operator is not cleared for (404).
"""

from __future__ import annotations

import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mes.api.deps import grant_for, request_session
from mes.domain.actions import pattern_matches
from mes.domain.errors import Conflict, Invalid, MesError, NotFound, SignatureRejected
from mes.domain.lifecycle import UnitStatus, WorkOrderStatus
from mes.models.processes import ProcessStep
from mes.models.production import Unit, WorkOrder
from mes.services import quality, units, workorders
from mes.services.units import SERIAL, StepInput
from mes.signatures import SignatureCredentials, SignatureGrant
from mes.web import answers as answer_forms
from mes.web.access import Form, StationUser, StationUserDep
from mes.web.flash import see_other
from mes.web.forms import Fields
from mes.web.render import page
from mes.web.station_view import needs_serial, serial_patterns, unit_view

router = APIRouter(prefix="/station/{code}", include_in_schema=False)
Id = Annotated[int, Path(ge=1, le=2**31 - 1)]


def _counts(db: Session, order_ids: list[int]) -> dict[int, dict[str, int]]:
    counts: dict[int, dict[str, int]] = {i: {} for i in order_ids}
    if not order_ids:
        return counts
    rows = db.execute(
        select(Unit.work_order_id, Unit.status, func.count())
        .where(Unit.work_order_id.in_(order_ids))
        .group_by(Unit.work_order_id, Unit.status)
    )
    for order_id, status, count in rows:
        counts[order_id][status] = count
    return counts


def _steps(db: Session, order: WorkOrder) -> list[ProcessStep]:
    return list(
        db.scalars(
            select(ProcessStep)
            .where(ProcessStep.process_id == order.process_id)
            .order_by(ProcessStep.position)
        )
    )


@router.get("/work-orders")
def work_orders(request: Request, user: StationUserDep) -> Response:
    with request_session(request) as db:
        found = workorders.list_work_orders(db, user.actor, status=WorkOrderStatus.OPEN)
        counts = _counts(db, [o.id for o, _ in found])
        return page(request, "station/work_orders.html", user=user, orders=found, counts=counts)


def _order_page(
    request: Request,
    db: Session,
    user: StationUser,
    order_id: int,
    *,
    status: int = 200,
    values: dict[str, str] | None = None,
    problems: dict[str, str] | None = None,
    error: str | None = None,
) -> Response:
    order, part = workorders.get_work_order(db, user.actor, order_id)
    in_progress = db.scalars(
        select(Unit)
        .where(Unit.work_order_id == order.id, Unit.status == UnitStatus.IN_PROGRESS.value)
        .order_by(Unit.id.desc())
        .limit(50)
    ).all()
    return page(
        request,
        "station/work_order.html",
        user=user,
        status=status,
        order=order,
        part=part,
        counts=_counts(db, [order.id])[order.id],
        in_progress=in_progress,
        serial_required=needs_serial(part.tracking),
        patterns=serial_patterns(_steps(db, order)),
        values=values or {},
        problems=problems or {},
        error=error,
    )


@router.get("/work-orders/{order_id}")
def work_order(request: Request, order_id: Id, user: StationUserDep) -> Response:
    with request_session(request) as db:
        return _order_page(request, db, user, order_id)


def _serial_problem(serial: str, patterns: list[str]) -> str | None:
    if not SERIAL.fullmatch(serial):
        return "letters, digits and ._/:#+- only, up to 128 characters"
    for pattern in patterns:
        if not pattern_matches(pattern, serial):
            return f"“{serial}” does not match this part's serials ({pattern})"
    return None


@router.post("/work-orders/{order_id}/units")
def start_unit(request: Request, order_id: Id, form: Form, user: StationUserDep) -> Response:
    fields = Fields(form)
    serial = fields.text("serial", limit=128)
    with request_session(request) as db:
        order, part = workorders.get_work_order(db, user.actor, order_id)
        if serial:
            existing = db.scalar(select(Unit).where(Unit.part_id == part.id, Unit.serial == serial))
            if existing is not None and existing.work_order_id == order.id:
                if existing.status == UnitStatus.IN_PROGRESS.value:
                    return see_other(f"/station/{user.station_code}/units/{existing.id}")
                fields.problem("serial", f"unit {serial} is {existing.status.replace('_', ' ')}")
            problem = _serial_problem(serial, serial_patterns(_steps(db, order)))
            if problem:
                fields.problem("serial", problem)
        elif needs_serial(part.tracking):
            fields.problem("serial", "scan or type the unit's serial")
        if not fields.ok:
            return _order_page(request, db, user, order_id, status=422,
                               values=fields.values, problems=fields.problems)  # fmt: skip
        try:
            unit = units.start_unit(db, user.actor, order.id, serial=serial or None)
            db.commit()
        except (Invalid, Conflict) as exc:
            db.rollback()
            message = fields.absorb(exc, {"serial": "serial"})
            return _order_page(request, db, user, order_id, status=exc.status,
                               values=fields.values, problems=fields.problems,
                               error=message)  # fmt: skip
        return see_other(f"/station/{user.station_code}/units/{unit.id}")


def _unit_page(
    request: Request,
    db: Session,
    user: StationUser,
    unit_id: int,
    *,
    status: int = 200,
    typed: dict[str, str] | None = None,
    problems: dict[str, str] | None = None,
    error: str | None = None,
) -> Response:
    unit, part = units.get_unit(db, user.actor, unit_id)
    order = db.get(WorkOrder, unit.work_order_id)
    assert order is not None  # a foreign key
    view = unit_view(db, unit, typed=typed, problems=problems)
    return page(
        request,
        "station/unit.html",
        user=user,
        status=status,
        unit=unit,
        part=part,
        order=order,
        view=view,
        error=error,
        pin_problem=(problems or {}).get("pin"),
        opened_at=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    )


@router.get("/units/{unit_id}")
def unit_page(request: Request, unit_id: Id, user: StationUserDep) -> Response:
    with request_session(request) as db:
        return _unit_page(request, db, user, unit_id)


def _started_at(raw: str | None) -> datetime.datetime | None:
    try:
        value = datetime.datetime.fromisoformat(raw or "")
    except ValueError:
        return None
    if value.tzinfo is None:
        return None
    now = datetime.datetime.now(datetime.UTC)
    if not now - units.MAX_STEP_AGE < value <= now:
        return None
    return value


@router.post("/units/{unit_id}/steps/{step_id}")
def record_step(
    request: Request, unit_id: Id, step_id: Id, form: Form, user: StationUserDep
) -> Response:
    fields = Fields(form)
    pin = fields.secret("pin", limit=64)
    grant: SignatureGrant | None = None
    sign_error: str | None = None
    if pin:  # checked before this request's own transaction (SQLite: one writer)
        try:
            grant = grant_for(request, user.actor, SignatureCredentials(pin=pin))
        except SignatureRejected as exc:
            sign_error = exc.message
    typed = {k: v for k, v in form.items() if isinstance(v, str) and k.startswith("a")}
    with request_session(request) as db:
        unit, _ = units.get_unit(db, user.actor, unit_id)
        order = db.get(WorkOrder, unit.work_order_id)
        step = db.get(ProcessStep, step_id)
        if step is None or order is None or step.process_id != order.process_id:
            raise NotFound(f"no step {step_id} in this unit's process revision")
        read = answer_forms.read_answers(step.actions, typed, unit.serial)
        if sign_error is not None:
            read.problems["pin"] = sign_error
        elif any(a.kind == "sign" for a in step.actions) and not pin:
            read.problems.setdefault("pin", "enter your PIN to sign")
        if read.problems:
            return _unit_page(request, db, user, unit_id, status=422, typed=read.values,
                              problems=read.problems,
                              error="Nothing was recorded: check the marked fields.")  # fmt: skip
        data = StepInput(
            step_id=step_id,
            answers=tuple(read.answers),
            started_at=_started_at(fields.raw("started_at")),
        )
        try:
            execution = units.record_step(db, user.actor, unit_id, data, grant)
            db.commit()
        except MesError as exc:
            db.rollback()
            located = answer_forms.located(exc, read.answers)
            return _unit_page(request, db, user, unit_id, status=exc.status,
                              typed=read.values, problems=located,
                              error=f"Nothing was recorded: {exc.message}")  # fmt: skip
        position, title = step.position, step.title
        failures = [
            f"{a.label}: {answer_forms.failure_message(a.kind, a.params, r.value) or 'failed'}"
            for r in execution.records
            for a in step.actions
            if a.id == r.action_id and not r.passed
        ]
    target = f"/station/{user.station_code}/units/{unit_id}"
    if execution.outcome == "passed":
        return see_other(target, f"Step {position} ({title}) recorded: passed.")
    text = f"Step {position} ({title}) failed and was recorded: {'; '.join(failures)}. Do it again."
    return see_other(target, text, "error")


@router.post("/units/{unit_id}/complete")
def complete(request: Request, unit_id: Id, form: Form, user: StationUserDep) -> Response:
    with request_session(request) as db:
        try:
            unit = units.complete_unit(db, user.actor, unit_id)
            db.commit()
        except Conflict as exc:
            db.rollback()
            return _unit_page(request, db, user, unit_id, status=409, error=exc.message)
        serial, order_id = unit.serial, unit.work_order_id
    return see_other(
        f"/station/{user.station_code}/work-orders/{order_id}", f"Unit {serial} completed."
    )


@router.get("/units/{unit_id}/fail")
def fail_form(request: Request, unit_id: Id, user: StationUserDep) -> Response:
    with request_session(request) as db:
        unit, part = units.get_unit(db, user.actor, unit_id)
        return page(request, "station/fail.html", user=user, unit=unit, part=part,
                    values={}, problems={}, error=None)  # fmt: skip


@router.post("/units/{unit_id}/fail")
def fail(request: Request, unit_id: Id, form: Form, user: StationUserDep) -> Response:
    fields = Fields(form)
    description = fields.text("description", limit=2000, required=True)
    with request_session(request) as db:
        unit, part = units.get_unit(db, user.actor, unit_id)
        error = None
        if fields.ok:
            try:
                nc = quality.raise_nc(db, user.actor, unit_id, description)
                db.commit()
            except (Invalid, Conflict) as exc:
                db.rollback()
                error = fields.absorb(exc, {"description": "description"})
            else:
                return see_other(
                    f"/station/{user.station_code}/work-orders/{unit.work_order_id}",
                    f"Unit {unit.serial} is on hold: nonconformance {nc.id} raised.",
                    "warn",
                )
        return page(request, "station/fail.html", user=user, unit=unit, part=part,
                    status=422 if error is None else 409, values=fields.values,
                    problems=fields.problems, error=error)  # fmt: skip
