"""Work orders: made from a part's released revision (frozen into the order), followed,
closed.

GET  /manage/work-orders[?status]         list                   (work_orders.read)
GET  /manage/work-orders/new              the form               (work_orders.manage)
POST /manage/work-orders                  create                 (work_orders.manage)
GET  /manage/work-orders/{id}             the order and its units (work_orders.read)
POST /manage/work-orders/{id}/close       close, with a reason   (work_orders.manage)
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from mes.api.deps import request_session
from mes.domain.errors import MesError
from mes.domain.lifecycle import ProcessStatus, WorkOrderStatus
from mes.domain.roles import Permission as P
from mes.models.parts import Part
from mes.models.processes import Process
from mes.services import units, workorders
from mes.services.common import visible_parts
from mes.web.access import Form, WebUser, manage
from mes.web.flash import see_other
from mes.web.forms import Fields
from mes.web.lookups import names_of
from mes.web.render import page
from mes.web.routes.common import Id

router = APIRouter(prefix="/manage/work-orders", include_in_schema=False)
Manager = Annotated[WebUser, manage(P.WORK_ORDERS_MANAGE)]
FIELDS = {"number": "number", "quantity": "quantity", "note": "note", "part_id": "part_id"}


@router.get("")
def list_orders(
    request: Request,
    user: Annotated[WebUser, manage(P.WORK_ORDERS_READ)],
    status: WorkOrderStatus | None = None,
) -> Response:
    with request_session(request) as db:
        found = workorders.list_work_orders(db, user.actor, status=status, limit=500)
        return page(request, "manage/work_orders.html", user=user, orders=found,
                    status_filter=status.value if status else "",
                    statuses=[s.value for s in WorkOrderStatus])  # fmt: skip


def _released(db: Session, user: WebUser) -> list[tuple[Part, Process]]:
    stmt = (
        select(Part, Process)
        .join(Process, Process.part_id == Part.id)
        .where(visible_parts(user.actor), Process.status == ProcessStatus.RELEASED.value)
        .order_by(Part.number)
    )
    return [(part, process) for part, process in db.execute(stmt)]


def _new_form(
    request: Request, user: WebUser, fields: Fields | None = None, error: str | None = None,
    status: int = 200,
) -> Response:  # fmt: skip
    with request_session(request) as db:
        return page(request, "manage/work_order_new.html", user=user, status=status,
                    choices=_released(db, user), values=fields.values if fields else {},
                    problems=fields.problems if fields else {}, error=error)  # fmt: skip


@router.get("/new")
def new_order(request: Request, user: Manager) -> Response:
    return _new_form(request, user)


@router.post("")
def create_order(request: Request, form: Form, user: Manager) -> Response:
    fields = Fields(form)
    part_id = fields.integer("part_id", required=True)
    quantity = fields.integer("quantity", high=100_000, required=True)
    number = fields.optional("number", limit=32)
    note = fields.text("note", limit=500)
    if number is not None and not all(c.isalnum() or c in "._-" for c in number):
        fields.problem("number", "letters, digits and ._- only")
    if not fields.ok or part_id is None or quantity is None:
        return _new_form(request, user, fields, status=422)
    with request_session(request) as db:
        try:
            order = workorders.create_work_order(
                db, user.actor, part_id, quantity, number=number, note=note
            )
            db.commit()
        except MesError as exc:
            db.rollback()
            return _new_form(request, user, fields, fields.absorb(exc, FIELDS), exc.status)
        return see_other(f"/manage/work-orders/{order.id}", f"Work order {order.number} opened.")


def _detail(
    request: Request, user: WebUser, order_id: int, *, status: int = 200,
    error: str | None = None, values: dict[str, str] | None = None,
) -> Response:  # fmt: skip
    with request_session(request) as db:
        order, part = workorders.get_work_order(db, user.actor, order_id)
        process = db.get(Process, order.process_id)
        built = (
            units.list_units(db, user.actor, work_order_id=order.id, limit=500)
            if user.can(P.UNITS_READ)
            else []
        )
        names = names_of(db, [order.created_by_id, order.closed_by_id])
        return page(request, "manage/work_order.html", user=user, status=status, order=order,
                    part=part, process=process, units=built, names=names, error=error,
                    values=values or {}, problems={})  # fmt: skip


@router.get("/{order_id}")
def show_order(
    request: Request, order_id: Id, user: Annotated[WebUser, manage(P.WORK_ORDERS_READ)]
) -> Response:
    return _detail(request, user, order_id)


@router.post("/{order_id}/close")
def close_order(request: Request, order_id: Id, form: Form, user: Manager) -> Response:
    fields = Fields(form)
    why = fields.optional("why", limit=1000)
    if not fields.ok:
        return _detail(request, user, order_id, status=422, error="the reason is too long")
    with request_session(request) as db:
        try:
            order = workorders.close_work_order(db, user.actor, order_id, why)
            db.commit()
        except MesError as exc:
            db.rollback()
            return _detail(request, user, order_id, status=exc.status, error=exc.message)
        return see_other(f"/manage/work-orders/{order.id}", f"Work order {order.number} closed.")
