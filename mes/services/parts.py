"""Parts and lots: authored by engineers, read by everyone cleared for them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from mes import audit
from mes.domain.actor import Actor
from mes.domain.errors import Conflict, Forbidden, Invalid
from mes.domain.lifecycle import Tracking
from mes.domain.roles import Permission
from mes.domain.visibility import cleared_for_export_control
from mes.models.parts import Lot, Part
from mes.services.common import page, visible_part, visible_parts


@dataclass(frozen=True)
class PartInput:
    number: str
    revision: str
    description: str = ""
    tracking: Tracking = Tracking.SERIAL
    export_controlled: bool = False


def _check_export_flag(actor: Actor, export_controlled: bool) -> None:
    if export_controlled and not cleared_for_export_control(actor):
        raise Forbidden("only ITAR-authorised US persons may handle export-controlled parts")


def create_part(session: Session, actor: Actor, data: PartInput) -> Part:
    actor.require(Permission.PARTS_WRITE)
    _check_export_flag(actor, data.export_controlled)
    number, revision = data.number.strip(), data.revision.strip()
    if not number or not revision:
        raise Invalid("a part needs a number and a revision", [("number", "required")])
    clash = session.scalar(select(Part).where(Part.number == number, Part.revision == revision))
    if clash is not None:
        # Same answer whether or not the clash is visible: the number is taken either way,
        # and a number alone is no technical data.
        raise Conflict(f"part {number} revision {revision} exists already")
    part = Part(
        number=number,
        revision=revision,
        description=data.description.strip(),
        tracking=data.tracking.value,
        export_controlled=data.export_controlled,
        created_by_id=actor.person_id,
    )
    session.add(part)
    session.flush()
    audit.record(
        session,
        actor,
        "part.created",
        "part",
        part.id,
        after=audit.snapshot(part),
        export_controlled=part.export_controlled,
    )
    return part


def update_part(
    session: Session,
    actor: Actor,
    part_id: int,
    *,
    description: str | None = None,
    export_controlled: bool | None = None,
    why: str | None = None,
) -> Part:
    """Change a part's description or export-control flag (number, revision and tracking
    are its identity: a different one is a new part)."""
    actor.require(Permission.PARTS_WRITE)
    part = visible_part(session, actor, part_id)
    before = audit.snapshot(part)
    if description is not None:
        part.description = description.strip()
    if export_controlled is not None and export_controlled != part.export_controlled:
        _check_export_flag(actor, True)
        part.export_controlled = export_controlled
    after = audit.snapshot(part)
    if after != before:
        session.flush()
        audit.record(
            session,
            actor,
            "part.updated",
            "part",
            part.id,
            why=why,
            before=before,
            after=after,
            export_controlled=part.export_controlled or before["export_controlled"],
        )
    return part


def get_part(session: Session, actor: Actor, part_id: int) -> Part:
    actor.require(Permission.PARTS_READ)
    return visible_part(session, actor, part_id)


def list_parts(
    session: Session, actor: Actor, *, query: str | None = None, limit: int = 100, offset: int = 0
) -> Sequence[Part]:
    """Parts the actor may see, optionally matching `query` in number or description."""
    actor.require(Permission.PARTS_READ)
    limit, offset = page(limit, offset)
    stmt = select(Part).where(visible_parts(actor)).order_by(Part.number, Part.revision)
    if query:
        pattern = f"%{query.lower()}%"
        stmt = stmt.where(
            or_(func.lower(Part.number).like(pattern), func.lower(Part.description).like(pattern))
        )
    return session.scalars(stmt.limit(limit).offset(offset)).all()


def list_lots(
    session: Session, actor: Actor, part_id: int, *, limit: int = 100, offset: int = 0
) -> Sequence[Lot]:
    actor.require(Permission.UNITS_READ)
    visible_part(session, actor, part_id)
    limit, offset = page(limit, offset)
    stmt = select(Lot).where(Lot.part_id == part_id).order_by(Lot.lot_number)
    return session.scalars(stmt.limit(limit).offset(offset)).all()
