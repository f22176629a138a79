"""`/api/v1/parts`: parts and their lots."""

from __future__ import annotations

import datetime
from typing import Annotated

from fastapi import APIRouter
from pydantic import Field

from mes.api.common import Body, Flag, Limit, Offset, Out, PathId, Reason, Search, ShortNote
from mes.api.deps import DB, need
from mes.domain.actor import Actor
from mes.domain.lifecycle import Tracking
from mes.domain.roles import Permission as P
from mes.services import parts

router = APIRouter(prefix="/parts", tags=["parts"])
PartNumber = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._/-]*$")
]
PartRevision = Annotated[
    str, Field(min_length=1, max_length=16, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]


class PartIn(Body):
    number: PartNumber
    revision: PartRevision
    description: ShortNote = ""
    tracking: Tracking = Tracking.SERIAL
    export_controlled: Flag = False


class PartPatch(Body):
    description: ShortNote | None = None
    export_controlled: Flag | None = None
    why: Reason | None = None


class PartOut(Out):
    id: int
    number: str
    revision: str
    description: str
    tracking: Tracking
    export_controlled: bool
    created_at: datetime.datetime


class LotOut(Out):
    id: int
    part_id: int
    lot_number: str
    first_seen_at: datetime.datetime


@router.get("")
def list_parts(
    db: DB,
    actor: Annotated[Actor, need(P.PARTS_READ)],
    q: Search = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[PartOut]:
    """Parts you may see; `q` searches number and description."""
    found = parts.list_parts(db, actor, query=q, limit=limit, offset=offset)
    return [PartOut.model_validate(p) for p in found]


@router.post("", status_code=201)
def create_part(body: PartIn, db: DB, actor: Annotated[Actor, need(P.PARTS_WRITE)]) -> PartOut:
    part = parts.create_part(
        db,
        actor,
        parts.PartInput(
            body.number, body.revision, body.description, body.tracking, body.export_controlled
        ),
    )
    db.commit()
    return PartOut.model_validate(part)


@router.get("/{part_id}")
def get_part(part_id: PathId, db: DB, actor: Annotated[Actor, need(P.PARTS_READ)]) -> PartOut:
    return PartOut.model_validate(parts.get_part(db, actor, part_id))


@router.patch("/{part_id}")
def update_part(
    part_id: PathId, body: PartPatch, db: DB, actor: Annotated[Actor, need(P.PARTS_WRITE)]
) -> PartOut:
    part = parts.update_part(
        db,
        actor,
        part_id,
        description=body.description,
        export_controlled=body.export_controlled,
        why=body.why,
    )
    db.commit()
    return PartOut.model_validate(part)


@router.get("/{part_id}/lots")
def list_lots(
    part_id: PathId,
    db: DB,
    actor: Annotated[Actor, need(P.UNITS_READ)],
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[LotOut]:
    found = parts.list_lots(db, actor, part_id, limit=limit, offset=offset)
    return [LotOut.model_validate(lot) for lot in found]
