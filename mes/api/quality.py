"""`/api/v1/nonconformances`: raise (holds the unit), disposition (quality, e-signature).

GET  /nonconformances[?status&unit_id]   POST /nonconformances
GET  /nonconformances/{id}               with its verified signatures
POST /nonconformances/{id}/disposition   {disposition, note, signature}
"""

from __future__ import annotations

import datetime
from typing import Annotated

from fastapi import APIRouter, Request
from pydantic import Field

from mes.api.common import (
    Body,
    Description,
    Id,
    Limit,
    Note,
    Offset,
    Out,
    PathId,
    QueryId,
    SignatureIn,
    SignatureOut,
    view,
)
from mes.api.deps import DB, grant_for, need
from mes.api.processes import checked_signatures
from mes.domain.actor import Actor
from mes.domain.lifecycle import Disposition, NcStatus
from mes.domain.roles import Permission as P
from mes.models.production import Unit
from mes.models.quality import Nonconformance
from mes.services import quality

router = APIRouter(prefix="/nonconformances", tags=["quality"])


class NcIn(Body):
    unit_id: Id
    description: Description
    execution_id: Id | None = None


class DispositionIn(Body):
    disposition: Disposition
    note: Note = ""
    signature: SignatureIn


class NcOut(Out):
    id: int
    unit_id: int
    unit_serial: str
    execution_id: int | None
    description: str
    status: NcStatus
    raised_at: datetime.datetime
    raised_by_id: int
    disposition: Disposition | None
    disposition_note: str
    dispositioned_at: datetime.datetime | None
    dispositioned_by_id: int | None
    signature_id: int | None
    signatures: list[SignatureOut] = Field(default_factory=list)


def _nc(nc: Nonconformance, unit: Unit, signatures: list[SignatureOut] | None = None) -> NcOut:
    return view(NcOut, nc, unit_serial=unit.serial, signatures=signatures or [])


@router.get("")
def list_ncs(
    db: DB,
    actor: Annotated[Actor, need(P.NC_READ)],
    status: NcStatus | None = None,
    unit_id: QueryId = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[NcOut]:
    found = quality.list_ncs(db, actor, status=status, unit_id=unit_id, limit=limit, offset=offset)
    return [_nc(nc, unit) for nc, unit, _ in found]


@router.post("", status_code=201)
def raise_nc(body: NcIn, db: DB, actor: Annotated[Actor, need(P.NC_RAISE)]) -> NcOut:
    """Record a nonconformance; the unit is held until it is dispositioned."""
    nc = quality.raise_nc(db, actor, body.unit_id, body.description, execution_id=body.execution_id)
    db.commit()
    found, unit, _ = quality.get_nc(db, actor, nc.id)
    return _nc(found, unit)


@router.get("/{nc_id}")
def get_nc(nc_id: PathId, db: DB, actor: Annotated[Actor, need(P.NC_READ)]) -> NcOut:
    nc, unit, _ = quality.get_nc(db, actor, nc_id)
    return _nc(nc, unit, checked_signatures(db, actor, "nonconformance", nc.id))


@router.post("/{nc_id}/disposition")
def disposition(
    nc_id: PathId,
    body: DispositionIn,
    request: Request,
    db: DB,
    actor: Annotated[Actor, need(P.NC_DISPOSITION)],
) -> NcOut:
    """Disposition with an e-signature (meaning: dispositioned) bound to the record."""
    grant = grant_for(request, actor, body.signature.credentials())
    quality.disposition_nc(db, actor, nc_id, body.disposition, body.note, grant)
    db.commit()
    nc, unit, _ = quality.get_nc(db, actor, nc_id)
    return _nc(nc, unit, checked_signatures(db, actor, "nonconformance", nc.id))
