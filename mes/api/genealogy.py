"""Genealogy, both ways: what a unit is made of, and where a unit or lot went.

GET  /units/{id}/components[?depth]     down: the unit's components, recursively
GET  /units/{id}/where-used[?depth]     up: the units that consumed this unit
GET  /lots/{id}/where-used[?depth]      up: the units that consumed this lot
POST /genealogy/{link_id}/detach        take a component out (rework; lead or quality)
"""

from __future__ import annotations

import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from mes.api.common import Body, Out, PathId, Reason
from mes.api.deps import DB, need
from mes.domain.actor import Actor
from mes.domain.genealogy import Node, TreeNode
from mes.domain.roles import Permission as P
from mes.services import genealogy

router = APIRouter(tags=["genealogy"])
Depth = Annotated[int, Query(ge=1, le=genealogy.MAX_DEPTH)]


class TreeOut(BaseModel):
    kind: str
    id: int
    part_id: int
    part_number: str
    part_revision: str
    label: str
    status: str | None
    link_id: int | None = None
    step_id: int | None = None
    cycle: bool = False
    truncated: bool = False
    children: list[TreeOut] = Field(default_factory=list)


class DetachIn(Body):
    reason: Reason


class LinkOut(Out):
    id: int
    parent_unit_id: int
    child_unit_id: int | None
    child_lot_id: int | None
    step_id: int | None
    removes_id: int | None
    reason: str | None
    recorded_at: datetime.datetime


def tree(db: Session, root: TreeNode) -> TreeOut:
    info = genealogy.describe(db, root.node)
    return TreeOut(
        kind=info.kind,
        id=info.id,
        part_id=info.part_id,
        part_number=info.part_number,
        part_revision=info.part_revision,
        label=info.label,
        status=info.status,
        link_id=root.via.link_id if root.via else None,
        step_id=root.via.step_id if root.via else None,
        cycle=root.cycle,
        truncated=root.truncated,
        children=[tree(db, child) for child in root.children],
    )


@router.get("/units/{unit_id}/components")
def components(
    unit_id: PathId,
    db: DB,
    actor: Annotated[Actor, need(P.UNITS_READ)],
    depth: Depth = genealogy.MAX_DEPTH,
) -> TreeOut:
    return tree(db, genealogy.components(db, actor, unit_id, depth))


@router.get("/units/{unit_id}/where-used")
def unit_where_used(
    unit_id: PathId,
    db: DB,
    actor: Annotated[Actor, need(P.UNITS_READ)],
    depth: Depth = genealogy.MAX_DEPTH,
) -> TreeOut:
    return tree(db, genealogy.where_used(db, actor, Node("unit", unit_id), depth))


@router.get("/lots/{lot_id}/where-used")
def lot_where_used(
    lot_id: PathId,
    db: DB,
    actor: Annotated[Actor, need(P.UNITS_READ)],
    depth: Depth = genealogy.MAX_DEPTH,
) -> TreeOut:
    return tree(db, genealogy.where_used(db, actor, Node("lot", lot_id), depth))


@router.post("/genealogy/{link_id}/detach", status_code=201)
def detach(
    link_id: PathId, body: DetachIn, db: DB, actor: Annotated[Actor, need(P.EXECUTIONS_CORRECT)]
) -> LinkOut:
    removal = genealogy.detach(db, actor, link_id, body.reason)
    db.commit()
    return LinkOut.model_validate(removal)
