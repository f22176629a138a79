"""A unit's full history for the Manage Page: every step execution and action record, who,
where and when, signatures (verified now), and its genealogy both ways.

Executions are listed in the order they were recorded. An execution that repeats a step
whose previous attempt failed says so, and the failed attempt stays listed with its values
and the reason it failed ("12.7 mm is above the maximum 12.5 mm"): nothing recorded is
ever hidden or changed. Genealogy trees come from the services' walks, which leave out
whatever the viewer is not cleared to see.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from mes.domain.actor import Actor
from mes.domain.genealogy import Node, TreeNode
from mes.domain.visibility import may_see
from mes.models.parts import Part
from mes.models.processes import Process, ProcessStep, StepAction
from mes.models.production import Genealogy, StepExecution, Unit, WorkOrder
from mes.models.quality import ESignature
from mes.services import genealogy, records
from mes.services.records import CheckedSignature
from mes.web.answers import failure_message
from mes.web.lookups import names_of, stations_of


@dataclass
class RecordRow:
    label: str
    kind: str
    value: object
    passed: bool
    message: str | None
    unit: str = ""


@dataclass
class ExecutionRow:
    execution: StepExecution
    step: ProcessStep
    person: str
    station: str
    rows: list[RecordRow]
    signatures: list[CheckedSignature]
    attempt: int
    after_failure: bool
    corrects: StepExecution | None = None


@dataclass
class TreeView:
    kind: str
    id: int
    label: str
    part: str
    status: str | None
    cycle: bool = False
    truncated: bool = False
    children: list[TreeView] = field(default_factory=list)


@dataclass
class RemovedLink:
    link: Genealogy
    child: str
    person: str


@dataclass
class UnitHistory:
    unit: Unit
    part: Part
    order: WorkOrder
    process: Process
    started_by: str
    started_at_station: str
    executions: list[ExecutionRow]
    components: TreeView
    where_used: TreeView
    removed: list[RemovedLink]


def tree_view(db: Session, root: TreeNode) -> TreeView:
    info = genealogy.describe(db, root.node)
    return TreeView(
        kind=info.kind,
        id=info.id,
        label=info.label,
        part=f"{info.part_number} rev {info.part_revision}",
        status=info.status,
        cycle=root.cycle,
        truncated=root.truncated,
        children=[tree_view(db, child) for child in root.children],
    )


def _signatures(db: Session, execution_ids: list[int]) -> dict[int, list[CheckedSignature]]:
    found: dict[int, list[CheckedSignature]] = {i: [] for i in execution_ids}
    if not execution_ids:
        return found
    stmt = (
        select(ESignature)
        .where(ESignature.record_type == "step_execution", ESignature.record_id.in_(execution_ids))
        .order_by(ESignature.id)
    )
    for signature in db.scalars(stmt):
        found[signature.record_id].append(CheckedSignature(signature, records.check(db, signature)))
    return found


def _executions(db: Session, unit: Unit, order: WorkOrder) -> list[ExecutionRow]:
    steps = {
        s.id: s
        for s in db.scalars(select(ProcessStep).where(ProcessStep.process_id == order.process_id))
    }
    actions: dict[int, StepAction] = {a.id: a for s in steps.values() for a in s.actions}
    executions = list(
        db.scalars(
            select(StepExecution).where(StepExecution.unit_id == unit.id).order_by(StepExecution.id)
        )
    )
    people = names_of(db, [e.person_id for e in executions])
    places = stations_of(db, [e.station_id for e in executions])
    signed = _signatures(db, [e.id for e in executions])
    by_id = {e.id: e for e in executions}
    last_outcome: dict[int, str] = {}
    attempts: dict[int, int] = {}
    rows: list[ExecutionRow] = []
    for execution in executions:
        step = steps[execution.step_id]
        attempts[step.id] = attempts.get(step.id, 0) + 1
        cells = []
        for record in execution.records:
            action = actions.get(record.action_id)
            params = action.params if action is not None else {}
            cells.append(
                RecordRow(
                    label=action.label if action is not None else f"action {record.action_id}",
                    kind=record.kind,
                    value=record.value,
                    passed=record.passed,
                    message=None
                    if record.passed
                    else failure_message(record.kind, params, record.value),
                    unit=str(params.get("unit") or "") if record.kind == "measure" else "",
                )
            )
        rows.append(
            ExecutionRow(
                execution=execution,
                step=step,
                person=people.get(execution.person_id, f"person {execution.person_id}"),
                station=places.get(execution.station_id, f"station {execution.station_id}"),
                rows=cells,
                signatures=signed.get(execution.id, []),
                attempt=attempts[step.id],
                after_failure=last_outcome.get(step.id) == "failed",
                corrects=by_id.get(execution.corrects_id) if execution.corrects_id else None,
            )
        )
        last_outcome[step.id] = execution.outcome
    return rows


def _removed(db: Session, actor: Actor, unit: Unit) -> list[RemovedLink]:
    """Components taken out of this unit (rework), the viewer may see."""
    stmt = select(Genealogy).where(
        Genealogy.parent_unit_id == unit.id, Genealogy.removes_id.is_not(None)
    )
    links = list(db.scalars(stmt.order_by(Genealogy.id)))
    people = names_of(db, [link.person_id for link in links])
    removed = []
    for link in links:
        node = (
            Node("unit", link.child_unit_id)
            if link.child_unit_id is not None
            else Node("lot", link.child_lot_id or 0)
        )
        info = genealogy.describe(db, node)
        part = db.get(Part, info.part_id)
        if part is None or not may_see(actor, part.export_controlled):
            continue
        label = f"{info.kind} {info.label} ({info.part_number} rev {info.part_revision})"
        removed.append(RemovedLink(link, label, people.get(link.person_id, "")))
    return removed


def unit_history(db: Session, actor: Actor, unit: Unit, part: Part) -> UnitHistory:
    """The history of a unit the actor may see (`units.get_unit` checked that)."""
    order = db.get(WorkOrder, unit.work_order_id)
    assert order is not None  # a foreign key
    process = db.get(Process, order.process_id)
    assert process is not None  # a foreign key
    people = names_of(db, [unit.started_by_id])
    places = stations_of(db, [unit.started_station_id])
    down = genealogy.components(db, actor, unit.id)
    up = genealogy.where_used(db, actor, Node("unit", unit.id))
    return UnitHistory(
        unit=unit,
        part=part,
        order=order,
        process=process,
        started_by=people.get(unit.started_by_id or 0, "—"),
        started_at_station=places.get(unit.started_station_id or 0, "—"),
        executions=_executions(db, unit, order),
        components=tree_view(db, down),
        where_used=tree_view(db, up),
        removed=_removed(db, actor, unit),
    )
