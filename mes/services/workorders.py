"""Work orders: `quantity` units of a part, built with the revision released at creation.

The process revision is frozen into the work order when it is made: releasing a newer
revision, or obsoleting this one, changes nothing for units of this order. Leads open and
close work orders; a closed order starts no more units.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from mes import audit
from mes.db import utc_now
from mes.domain.actor import Actor
from mes.domain.errors import Conflict, NotFound
from mes.domain.lifecycle import ProcessStatus, WorkOrderStatus
from mes.domain.roles import Permission
from mes.models.parts import Part
from mes.models.processes import Process
from mes.models.production import WorkOrder
from mes.services.common import page, visible_part, visible_parts


def visible_work_order(
    session: Session, actor: Actor, work_order_id: int
) -> tuple[WorkOrder, Part]:
    order = session.get(WorkOrder, work_order_id)
    if order is None:
        raise NotFound(f"no work order {work_order_id}")
    try:
        part = visible_part(session, actor, order.part_id)
    except NotFound:
        raise NotFound(f"no work order {work_order_id}") from None
    return order, part


def create_work_order(
    session: Session,
    actor: Actor,
    part_id: int,
    quantity: int,
    *,
    number: str | None = None,
    note: str = "",
) -> WorkOrder:
    """A new open work order with the part's released revision frozen into it."""
    actor.require(Permission.WORK_ORDERS_MANAGE)
    part = visible_part(session, actor, part_id)
    process = session.scalar(
        select(Process).where(
            Process.part_id == part.id, Process.status == ProcessStatus.RELEASED.value
        )
    )
    if process is None:
        raise Conflict(f"part {part.number} has no released process revision")
    number = number.strip() if number else f"WO-{utc_now():%y%m%d}-{secrets.token_hex(3).upper()}"
    if session.scalar(select(WorkOrder.id).where(WorkOrder.number == number)) is not None:
        raise Conflict(f"work order {number} exists already")
    order = WorkOrder(
        number=number,
        part_id=part.id,
        process_id=process.id,
        quantity=quantity,
        note=note.strip(),
        created_by_id=actor.person_id,
    )
    session.add(order)
    session.flush()
    audit.record(
        session,
        actor,
        "work_order.created",
        "work_order",
        order.id,
        after=audit.snapshot(order, process_revision=process.revision),
        export_controlled=part.export_controlled,
    )
    return order


def close_work_order(
    session: Session, actor: Actor, work_order_id: int, why: str | None
) -> WorkOrder:
    actor.require(Permission.WORK_ORDERS_MANAGE)
    order, part = visible_work_order(session, actor, work_order_id)
    if order.status != WorkOrderStatus.OPEN.value:
        raise Conflict(f"work order {order.number} is {order.status}")
    before = audit.snapshot(order)
    order.status, order.closed_at = WorkOrderStatus.CLOSED.value, utc_now()
    order.closed_by_id = actor.person_id
    session.flush()
    audit.record(
        session,
        actor,
        "work_order.closed",
        "work_order",
        order.id,
        why=why,
        before=before,
        after=audit.snapshot(order),
        export_controlled=part.export_controlled,
    )
    return order


def get_work_order(session: Session, actor: Actor, work_order_id: int) -> tuple[WorkOrder, Part]:
    actor.require(Permission.WORK_ORDERS_READ)
    return visible_work_order(session, actor, work_order_id)


def list_work_orders(
    session: Session,
    actor: Actor,
    *,
    status: WorkOrderStatus | None = None,
    part_id: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Sequence[tuple[WorkOrder, Part]]:
    actor.require(Permission.WORK_ORDERS_READ)
    limit, offset = page(limit, offset)
    stmt = (
        select(WorkOrder, Part)
        .join(Part, Part.id == WorkOrder.part_id)
        .where(visible_parts(actor))
        .order_by(WorkOrder.id.desc())
    )
    if status is not None:
        stmt = stmt.where(WorkOrder.status == status.value)
    if part_id is not None:
        stmt = stmt.where(WorkOrder.part_id == part_id)
    return [(o, p) for o, p in session.execute(stmt.limit(limit).offset(offset))]
