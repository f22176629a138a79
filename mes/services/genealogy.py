"""Genealogy: which units and lots went into a unit, and where a unit or lot went.

Links are made when a station scans a component (`mes.services.units.record_step`) and are
never changed: taking a component out in rework appends a row that removes the link. A link
is *active* while no row removes it. Walks hide anything the person may not see: for them an
export-controlled parent is simply not there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, select
from sqlalchemy.orm import Session, aliased

from mes import audit
from mes.domain.actor import Actor
from mes.domain.errors import Conflict, Invalid, NotFound
from mes.domain.genealogy import Edge, Node, TreeNode, reaches, walk
from mes.domain.lifecycle import Tracking, UnitStatus
from mes.domain.roles import Permission
from mes.domain.visibility import may_see
from mes.models.parts import Lot, Part
from mes.models.production import Genealogy, Unit
from mes.services.common import visible_part

MAX_DEPTH = 50


def _active() -> tuple[ColumnElement[bool], ...]:
    """Conditions selecting active links (not a removal, and not removed)."""
    removal = aliased(Genealogy)
    return (
        Genealogy.removes_id.is_(None),
        ~select(removal.id).where(removal.removes_id == Genealogy.id).exists(),
    )


def active_links_down(session: Session, unit_id: int) -> list[Genealogy]:
    stmt = select(Genealogy).where(Genealogy.parent_unit_id == unit_id, *_active())
    return list(session.scalars(stmt.order_by(Genealogy.id)))


def _links_up(session: Session, node: Node) -> list[Genealogy]:
    column = Genealogy.child_unit_id if node.kind == "unit" else Genealogy.child_lot_id
    stmt = select(Genealogy).where(column == node.id, *_active())
    return list(session.scalars(stmt.order_by(Genealogy.id)))


def _child(link: Genealogy) -> Node:
    if link.child_unit_id is not None:
        return Node("unit", link.child_unit_id)
    assert link.child_lot_id is not None  # the one_child constraint
    return Node("lot", link.child_lot_id)


def _down(session: Session) -> Callable[[Node], list[Edge]]:
    def neighbours(node: Node) -> list[Edge]:
        if node.kind != "unit":
            return []
        links = active_links_down(session, node.id)
        return [Edge(_child(link), link.id, link.step_id) for link in links]

    return neighbours


@dataclass(frozen=True)
class NodeInfo:
    kind: str
    id: int
    part_id: int
    part_number: str
    part_revision: str
    label: str  # serial or lot number
    status: str | None  # units only


def describe(session: Session, node: Node) -> NodeInfo:
    if node.kind == "unit":
        unit = session.get(Unit, node.id)
        assert unit is not None
        part = session.get(Part, unit.part_id)
        assert part is not None
        return NodeInfo(
            "unit", unit.id, part.id, part.number, part.revision, unit.serial, unit.status
        )
    lot = session.get(Lot, node.id)
    assert lot is not None
    part = session.get(Part, lot.part_id)
    assert part is not None
    return NodeInfo("lot", lot.id, part.id, part.number, part.revision, lot.lot_number, None)


def _visible(session: Session, actor: Actor, node: Node) -> bool:
    part = session.get(Part, describe(session, node).part_id)
    return part is not None and may_see(actor, part.export_controlled)


def _visible_node(session: Session, actor: Actor, node: Node) -> None:
    record = session.get(Unit if node.kind == "unit" else Lot, node.id)
    if record is None or not _visible(session, actor, node):
        raise NotFound(f"no {node.kind} {node.id}")


def components(session: Session, actor: Actor, unit_id: int, depth: int = MAX_DEPTH) -> TreeNode:
    """What the unit is made of, recursively (down)."""
    actor.require(Permission.UNITS_READ)
    start = Node("unit", unit_id)
    _visible_node(session, actor, start)
    down = _down(session)

    def neighbours(node: Node) -> list[Edge]:
        return [e for e in down(node) if _visible(session, actor, e.node)]

    return walk(start, neighbours, max_depth=min(depth, MAX_DEPTH))


def where_used(session: Session, actor: Actor, node: Node, depth: int = MAX_DEPTH) -> TreeNode:
    """Which units consumed this unit or lot, recursively (up)."""
    actor.require(Permission.UNITS_READ)
    _visible_node(session, actor, node)

    def neighbours(current: Node) -> list[Edge]:
        edges = [
            Edge(Node("unit", link.parent_unit_id), link.id, link.step_id)
            for link in _links_up(session, current)
        ]
        return [e for e in edges if _visible(session, actor, e.node)]

    return walk(node, neighbours, max_depth=min(depth, MAX_DEPTH))


def resolve_component(
    session: Session, actor: Actor, parent: Unit, component_part_id: int, scanned: str, where: str
) -> Node:
    """The unit or lot a scan names, checked for use in `parent`; lots are registered on
    first sight. Refused: invisible or unknown parts and units (not found), units not
    completed or already built into something, and anything that would close a cycle."""
    part = visible_part(session, actor, component_part_id, "component part")
    if part.tracking == Tracking.LOT.value:
        lot = session.scalar(select(Lot).where(Lot.part_id == part.id, Lot.lot_number == scanned))
        if lot is None:
            lot = Lot(part_id=part.id, lot_number=scanned, first_seen_by_id=actor.person_id)
            session.add(lot)
            session.flush()
            audit.record(
                session,
                actor,
                "lot.registered",
                "lot",
                lot.id,
                after=audit.snapshot(lot),
                export_controlled=part.export_controlled,
            )
        return Node("lot", lot.id)
    if part.tracking != Tracking.SERIAL.value:
        raise Invalid(f"{where}: part {part.number} is not tracked", [(where, "untracked")])
    child = session.scalar(select(Unit).where(Unit.part_id == part.id, Unit.serial == scanned))
    if child is None:
        raise NotFound(f"{where}: no unit {scanned!r} of part {part.number}")
    if child.id == parent.id:
        raise Conflict(f"{where}: a unit cannot contain itself")
    if child.status != UnitStatus.COMPLETED.value:
        raise Conflict(f"{where}: unit {scanned!r} is {child.status}, not completed")
    if _links_up(session, Node("unit", child.id)):
        raise Conflict(f"{where}: unit {scanned!r} is already built into another unit")
    if reaches(Node("unit", child.id), Node("unit", parent.id), _down(session)):
        raise Conflict(f"{where}: unit {scanned!r} contains this unit (a cycle)")
    return Node("unit", child.id)


def detach(session: Session, actor: Actor, link_id: int, reason: str) -> Genealogy:
    """Take a component out of a unit (rework): a new row removes the link."""
    actor.require(Permission.EXECUTIONS_CORRECT)
    link = session.get(Genealogy, link_id)
    if link is None:
        raise NotFound(f"no genealogy link {link_id}")
    parent = session.get(Unit, link.parent_unit_id)
    assert parent is not None
    part = session.get(Part, parent.part_id)
    if part is None or not may_see(actor, part.export_controlled):
        raise NotFound(f"no genealogy link {link_id}")
    if link.removes_id is not None or link not in active_links_down(session, parent.id):
        raise Conflict(f"genealogy link {link_id} is not active")
    if parent.status != UnitStatus.IN_PROGRESS.value:
        raise Conflict(f"unit {parent.serial} is {parent.status}: components change in rework")
    removal = Genealogy(
        parent_unit_id=link.parent_unit_id,
        child_unit_id=link.child_unit_id,
        child_lot_id=link.child_lot_id,
        step_id=link.step_id,
        person_id=actor.person_id,
        removes_id=link.id,
        reason=reason,
    )
    session.add(removal)
    session.flush()
    audit.record(
        session,
        actor,
        "genealogy.detached",
        "genealogy",
        removal.id,
        why=reason,
        after=audit.snapshot(removal),
        export_controlled=part.export_controlled,
    )
    return removal
