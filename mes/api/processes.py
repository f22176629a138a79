"""`/api/v1/processes`: process revisions, from draft to released to obsolete.

GET    /processes[?part_id&status]        revisions you may see
POST   /processes                         first revision of a part (draft)
GET    /processes/{id}                    with steps, actions and verified signatures
PUT    /processes/{id}/content            replace a draft's title, steps and actions
POST   /processes/{id}/submit             draft -> review
POST   /processes/{id}/return             review -> draft (quality, with a reason)
POST   /processes/{id}/release            review -> released (quality, e-signature)
POST   /processes/{id}/obsolete           released -> obsolete (quality, with a reason)
POST   /processes/{id}/revisions          new draft revision copied from this one
DELETE /processes/{id}                    delete a draft (with a reason)
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request

from mes.api.common import Deleted, Limit, Offset, PathId, QueryId, SignatureOut, view
from mes.api.deps import DB, grant_for, need
from mes.api.process_models import (
    ContentIn,
    OptionalWhy,
    PartRef,
    ProcessIn,
    ProcessOut,
    ProcessSummary,
    ReleaseIn,
    StepOut,
    Why,
)
from mes.domain.actor import Actor
from mes.domain.lifecycle import ProcessStatus
from mes.domain.roles import Permission as P
from mes.models.parts import Part
from mes.models.processes import Process
from mes.services import processes, records

router = APIRouter(prefix="/processes", tags=["processes"])


def summary(process: Process, part: Part) -> ProcessSummary:
    return view(ProcessSummary, process, part=PartRef.model_validate(part))


def checked_signatures(
    db: DB, actor: Actor, record_type: str, record_id: int
) -> list[SignatureOut]:
    """The record's signatures, each verified against the record as it is now."""
    return [
        view(SignatureOut, c.signature, valid=c.check.ok, problems=list(c.check.problems))
        for c in records.signatures_of(db, actor, record_type, record_id)
    ]


def detail(db: DB, actor: Actor, process: Process, part: Part) -> ProcessOut:
    return view(
        ProcessOut,
        process,
        part=PartRef.model_validate(part),
        steps=[StepOut.model_validate(step) for step in process.steps],
        signatures=checked_signatures(db, actor, "process", process.id),
    )


@router.get("")
def list_processes(
    db: DB,
    actor: Annotated[Actor, need(P.PROCESSES_READ)],
    part_id: QueryId = None,
    status: ProcessStatus | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[ProcessSummary]:
    found = processes.list_processes(
        db, actor, part_id=part_id, status=status, limit=limit, offset=offset
    )
    return [summary(p, part) for p, part in found]


@router.post("", status_code=201)
def create_process(
    body: ProcessIn, db: DB, actor: Annotated[Actor, need(P.PROCESSES_AUTHOR)]
) -> ProcessOut:
    process = processes.create_process(db, actor, body.part_id, body.to_domain())
    db.commit()
    _, part = processes.get_process(db, actor, process.id)
    return detail(db, actor, process, part)


@router.get("/{process_id}")
def get_process(
    process_id: PathId, db: DB, actor: Annotated[Actor, need(P.PROCESSES_READ)]
) -> ProcessOut:
    process, part = processes.get_process(db, actor, process_id)
    return detail(db, actor, process, part)


@router.put("/{process_id}/content")
def replace_content(
    process_id: PathId, body: ContentIn, db: DB, actor: Annotated[Actor, need(P.PROCESSES_AUTHOR)]
) -> ProcessOut:
    process = processes.replace_content(db, actor, process_id, body.to_domain())
    db.commit()
    return detail(db, actor, *processes.get_process(db, actor, process.id))


@router.post("/{process_id}/submit")
def submit(
    process_id: PathId,
    body: OptionalWhy,
    db: DB,
    actor: Annotated[Actor, need(P.PROCESSES_AUTHOR)],
) -> ProcessSummary:
    process = processes.submit(db, actor, process_id, body.why)
    db.commit()
    return summary(*processes.get_process(db, actor, process.id))


@router.post("/{process_id}/return")
def return_to_draft(
    process_id: PathId, body: Why, db: DB, actor: Annotated[Actor, need(P.PROCESSES_REVIEW)]
) -> ProcessSummary:
    process = processes.return_to_draft(db, actor, process_id, body.why)
    db.commit()
    return summary(*processes.get_process(db, actor, process.id))


@router.post("/{process_id}/release")
def release(
    process_id: PathId,
    body: ReleaseIn,
    request: Request,
    db: DB,
    actor: Annotated[Actor, need(P.PROCESSES_RELEASE)],
) -> ProcessOut:
    """Release with an e-signature (meaning: approved) bound to the content hash."""
    grant = grant_for(request, actor, body.signature.credentials())
    process = processes.release(db, actor, process_id, grant, body.comment)
    db.commit()
    return detail(db, actor, *processes.get_process(db, actor, process.id))


@router.post("/{process_id}/obsolete")
def obsolete(
    process_id: PathId, body: Why, db: DB, actor: Annotated[Actor, need(P.PROCESSES_OBSOLETE)]
) -> ProcessSummary:
    process = processes.obsolete(db, actor, process_id, body.why)
    db.commit()
    return summary(*processes.get_process(db, actor, process.id))


@router.post("/{process_id}/revisions", status_code=201)
def revise(
    process_id: PathId, db: DB, actor: Annotated[Actor, need(P.PROCESSES_AUTHOR)]
) -> ProcessOut:
    process = processes.revise(db, actor, process_id)
    db.commit()
    return detail(db, actor, *processes.get_process(db, actor, process.id))


@router.delete("/{process_id}")
def delete_draft(
    process_id: PathId, body: Why, db: DB, actor: Annotated[Actor, need(P.PROCESSES_AUTHOR)]
) -> Deleted:
    processes.delete_draft(db, actor, process_id, body.why)
    db.commit()
    return Deleted()
