"""Nonconformances: a unit that does not conform is held until quality dispositions it.

Raising one puts the unit on hold (nothing more is recorded on it); the disposition is signed
by quality, the signature bound to the nonconformance as dispositioned, and the unit moves on
(`mes.domain.lifecycle.unit_status_after`).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from mes import audit
from mes.db import utc_now
from mes.domain.actor import Actor
from mes.domain.errors import Conflict, NotFound
from mes.domain.lifecycle import Disposition, NcStatus, UnitStatus, unit_status_after
from mes.domain.roles import Permission
from mes.domain.signing import Meaning, content_hash
from mes.models.parts import Part
from mes.models.production import StepExecution, Unit
from mes.models.quality import Nonconformance
from mes.services.common import page, visible_parts
from mes.services.units import visible_unit
from mes.signatures import SignatureGrant, check_grant, sign


def nc_hash(nc: Nonconformance) -> str:
    """What a disposition signature is bound to."""
    return content_hash(
        {
            "unit_id": nc.unit_id,
            "execution_id": nc.execution_id,
            "description": nc.description,
            "raised_by_id": nc.raised_by_id,
            "raised_at": audit.jsonable(nc.raised_at),
            "status": nc.status,
            "disposition": nc.disposition,
            "disposition_note": nc.disposition_note,
            "dispositioned_by_id": nc.dispositioned_by_id,
            "dispositioned_at": audit.jsonable(nc.dispositioned_at),
        }
    )


def visible_nc(session: Session, actor: Actor, nc_id: int) -> tuple[Nonconformance, Unit, Part]:
    nc = session.get(Nonconformance, nc_id)
    if nc is None:
        raise NotFound(f"no nonconformance {nc_id}")
    try:
        unit, part = visible_unit(session, actor, nc.unit_id)
    except NotFound:
        raise NotFound(f"no nonconformance {nc_id}") from None
    return nc, unit, part


def raise_nc(
    session: Session,
    actor: Actor,
    unit_id: int,
    description: str,
    *,
    execution_id: int | None = None,
) -> Nonconformance:
    actor.require(Permission.NC_RAISE)
    unit, part = visible_unit(session, actor, unit_id)
    if unit.status in (UnitStatus.ON_HOLD.value, UnitStatus.SCRAPPED.value):
        raise Conflict(f"unit {unit.serial} is {unit.status}")
    if execution_id is not None:
        execution = session.get(StepExecution, execution_id)
        if execution is None or execution.unit_id != unit.id:
            raise NotFound(f"no step execution {execution_id} on unit {unit.serial}")
    before = audit.snapshot(unit)
    nc = Nonconformance(
        unit_id=unit.id,
        execution_id=execution_id,
        description=description.strip(),
        unit_status_before=unit.status,
        raised_by_id=actor.person_id,
        raised_at=utc_now(),
    )
    unit.status = UnitStatus.ON_HOLD.value
    session.add(nc)
    session.flush()
    audit.record(
        session,
        actor,
        "nonconformance.raised",
        "nonconformance",
        nc.id,
        after=audit.snapshot(nc),
        export_controlled=part.export_controlled,
    )
    audit.record(
        session,
        actor,
        "unit.held",
        "unit",
        unit.id,
        why=f"nonconformance {nc.id}",
        before=before,
        after=audit.snapshot(unit),
        export_controlled=part.export_controlled,
    )
    return nc


def disposition_nc(
    session: Session,
    actor: Actor,
    nc_id: int,
    disposition: Disposition,
    note: str,
    grant: SignatureGrant,
) -> Nonconformance:
    """Decide what happens to the held unit, signed by quality."""
    actor.require(Permission.NC_DISPOSITION)
    nc, unit, part = visible_nc(session, actor, nc_id)
    if nc.status != NcStatus.OPEN.value:
        raise Conflict(f"nonconformance {nc.id} is {nc.status} already")
    check_grant(actor, grant)
    before_nc, before_unit = audit.snapshot(nc), audit.snapshot(unit)
    nc.disposition, nc.disposition_note = disposition.value, note.strip()
    nc.status = NcStatus.DISPOSITIONED.value
    nc.dispositioned_at, nc.dispositioned_by_id = utc_now(), actor.person_id
    signature = sign(
        session,
        actor,
        grant,
        meaning=Meaning.DISPOSITIONED,
        record_type="nonconformance",
        record_id=nc.id,
        record_content_hash=nc_hash(nc),
        comment=note.strip(),
        export_controlled=part.export_controlled,
    )
    nc.signature_id = signature.id
    unit.status = unit_status_after(disposition, nc.unit_status_before).value
    session.flush()
    audit.record(
        session,
        actor,
        "nonconformance.dispositioned",
        "nonconformance",
        nc.id,
        why=note,
        before=before_nc,
        after=audit.snapshot(nc),
        export_controlled=part.export_controlled,
    )
    audit.record(
        session,
        actor,
        "unit.released_from_hold",
        "unit",
        unit.id,
        why=f"nonconformance {nc.id}: {disposition.value}",
        before=before_unit,
        after=audit.snapshot(unit),
        export_controlled=part.export_controlled,
    )
    return nc


def get_nc(session: Session, actor: Actor, nc_id: int) -> tuple[Nonconformance, Unit, Part]:
    actor.require(Permission.NC_READ)
    return visible_nc(session, actor, nc_id)


def list_ncs(
    session: Session,
    actor: Actor,
    *,
    status: NcStatus | None = None,
    unit_id: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Sequence[tuple[Nonconformance, Unit, Part]]:
    actor.require(Permission.NC_READ)
    limit, offset = page(limit, offset)
    stmt = (
        select(Nonconformance, Unit, Part)
        .join(Unit, Unit.id == Nonconformance.unit_id)
        .join(Part, Part.id == Unit.part_id)
        .where(visible_parts(actor))
        .order_by(Nonconformance.id.desc())
    )
    if status is not None:
        stmt = stmt.where(Nonconformance.status == status.value)
    if unit_id is not None:
        stmt = stmt.where(Nonconformance.unit_id == unit_id)
    return [(n, u, p) for n, u, p in session.execute(stmt.limit(limit).offset(offset))]
