"""Process revisions: authoring drafts, review, signed release, obsolescence, new revisions.

Rules (`mes.domain.lifecycle` has the state machine):
- A part has at most one open (draft or review) revision; the first is made with
  `create_process`, later ones with `revise`, which copies a released or obsolete revision.
- Only drafts change content; the content hash is recomputed on every change.
- Releasing needs quality's e-signature bound to the content hash, and a second person: whoever
  last edited or submitted the revision cannot release it. Releasing obsoletes the part's
  previously released revision.
- A process may consume only parts the author can see, that are tracked (lot or serial) and
  are not the part itself; a part that is not export-controlled cannot consume one that is
  (the assembly would carry the controlled data: flag the assembly first).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mes import audit
from mes.db import utc_now
from mes.domain.actions import ActionKind
from mes.domain.actor import Actor
from mes.domain.content import ActionSpec, ProcessContent, StepSpec, check_content, process_hash
from mes.domain.errors import Conflict, Forbidden, Invalid, NotFound
from mes.domain.lifecycle import ProcessStatus, Tracking, check_process_transition
from mes.domain.roles import Permission
from mes.domain.signing import Meaning
from mes.models.parts import Part
from mes.models.processes import Process, ProcessStep, StepAction
from mes.services.common import page, visible_part, visible_parts
from mes.signatures import SignatureGrant, check_grant, sign

OPEN_STATES = (ProcessStatus.DRAFT.value, ProcessStatus.REVIEW.value)


def content_of(process: Process) -> ProcessContent:
    """The revision's content as stored in its step and action rows."""
    return ProcessContent(
        title=process.title,
        steps=tuple(
            StepSpec(
                title=step.title,
                instructions=step.instructions,
                actions=tuple(
                    ActionSpec(ActionKind(a.kind), a.label, a.required, dict(a.params))
                    for a in step.actions
                ),
            )
            for step in process.steps
        ),
    )


def compute_hash(session: Session, process: Process) -> str:
    """The content hash recomputed from the rows (not the stored column)."""
    part = session.get(Part, process.part_id)
    assert part is not None  # a foreign key
    return process_hash(part.number, part.revision, process.revision, content_of(process))


def _snapshot(process: Process) -> dict[str, object]:
    return audit.snapshot(process, content=content_of(process).as_json())


def visible_process(session: Session, actor: Actor, process_id: int) -> tuple[Process, Part]:
    process = session.get(Process, process_id)
    if process is None:
        raise NotFound(f"no process revision {process_id}")
    try:
        part = visible_part(session, actor, process.part_id)
    except NotFound:
        raise NotFound(f"no process revision {process_id}") from None
    return process, part


def _check_components(session: Session, actor: Actor, part: Part, content: ProcessContent) -> None:
    for i, step in enumerate(content.steps):
        for j, action in enumerate(step.actions):
            if action.kind is not ActionKind.SCAN_COMPONENT:
                continue
            where = f"steps.{i}.actions.{j}.params.part_id"
            component_id = int(action.params["part_id"])
            component = visible_part(session, actor, component_id)
            if component.id == part.id:
                raise Invalid(f"{where}: a part cannot consume itself", [(where, "itself")])
            if component.tracking == Tracking.NONE.value:
                raise Invalid(
                    f"{where}: part {component.number} is not tracked (lot or serial needed)",
                    [(where, "untracked part")],
                )
            if component.export_controlled and not part.export_controlled:
                raise Invalid(
                    f"{where}: part {component.number} is export-controlled; a part that "
                    f"consumes it must be too (flag {part.number} first)",
                    [(where, "export-controlled component")],
                )


def _write_content(session: Session, process: Process, content: ProcessContent) -> None:
    process.steps.clear()
    session.flush()  # old rows go before new ones take their positions
    process.title = content.title
    for position, spec in enumerate(content.steps, 1):
        step = ProcessStep(position=position, title=spec.title, instructions=spec.instructions)
        step.actions = [
            StepAction(
                position=n,
                kind=a.kind.value,
                label=a.label,
                required=a.required,
                params=dict(a.params),
            )
            for n, a in enumerate(spec.actions, 1)
        ]
        process.steps.append(step)
    session.flush()
    process.content_hash = compute_hash(session, process)


def _open_revision(session: Session, part_id: int) -> Process | None:
    return session.scalar(
        select(Process).where(Process.part_id == part_id, Process.status.in_(OPEN_STATES))
    )


def create_process(
    session: Session, actor: Actor, part_id: int, content: ProcessContent
) -> Process:
    """The first revision of a part's process, as a draft."""
    actor.require(Permission.PROCESSES_AUTHOR)
    part = visible_part(session, actor, part_id)
    existing = session.scalar(select(func.count()).where(Process.part_id == part.id))
    if existing:
        raise Conflict(
            f"part {part.number} has process revisions already: make a new revision from one"
        )
    content = check_content(content)
    _check_components(session, actor, part, content)
    process = Process(
        part_id=part.id,
        revision=1,
        title=content.title,
        status=ProcessStatus.DRAFT.value,
        content_hash="",
        created_by_id=actor.person_id,
        last_edited_by_id=actor.person_id,
    )
    session.add(process)
    _write_content(session, process, content)
    audit.record(
        session,
        actor,
        "process.created",
        "process",
        process.id,
        after=_snapshot(process),
        export_controlled=part.export_controlled,
    )
    return process


def replace_content(
    session: Session, actor: Actor, process_id: int, content: ProcessContent
) -> Process:
    """Replace a draft's title, steps and actions."""
    actor.require(Permission.PROCESSES_AUTHOR)
    process, part = visible_process(session, actor, process_id)
    if process.status != ProcessStatus.DRAFT.value:
        raise Conflict(
            f"revision {process.revision} is {process.status}: only drafts change "
            "(make a new revision)"
        )
    content = check_content(content)
    _check_components(session, actor, part, content)
    before = _snapshot(process)
    _write_content(session, process, content)
    process.last_edited_by_id = actor.person_id
    audit.record(
        session,
        actor,
        "process.edited",
        "process",
        process.id,
        before=before,
        after=_snapshot(process),
        export_controlled=part.export_controlled,
    )
    return process


def _transition(
    session: Session,
    actor: Actor,
    process: Process,
    part: Part,
    target: ProcessStatus,
    action: str,
    why: str | None,
    **fields: object,
) -> None:
    check_process_transition(process.status, target)
    before = audit.snapshot(process)
    process.status = target.value
    if target is ProcessStatus.OBSOLETE:
        process.obsoleted_at = utc_now()
    for name, value in fields.items():
        setattr(process, name, value)
    session.flush()
    audit.record(
        session,
        actor,
        action,
        "process",
        process.id,
        why=why,
        before=before,
        after=audit.snapshot(process),
        export_controlled=part.export_controlled,
    )


def submit(session: Session, actor: Actor, process_id: int, why: str | None = None) -> Process:
    """Draft -> review: the content is frozen for the reviewer."""
    actor.require(Permission.PROCESSES_AUTHOR)
    process, part = visible_process(session, actor, process_id)
    if process.status == ProcessStatus.DRAFT.value and not process.steps:
        raise Conflict("a process revision without steps cannot be submitted")
    _transition(
        session,
        actor,
        process,
        part,
        ProcessStatus.REVIEW,
        "process.submitted",
        why,
        submitted_at=utc_now(),
        submitted_by_id=actor.person_id,
    )
    return process


def return_to_draft(session: Session, actor: Actor, process_id: int, why: str) -> Process:
    """Review -> draft, with the reviewer's reason."""
    actor.require(Permission.PROCESSES_REVIEW)
    process, part = visible_process(session, actor, process_id)
    _transition(session, actor, process, part, ProcessStatus.DRAFT, "process.returned", why)
    return process


def release(
    session: Session, actor: Actor, process_id: int, grant: SignatureGrant, comment: str = ""
) -> Process:
    """Review -> released, signed by quality; the previous released revision is obsoleted."""
    actor.require(Permission.PROCESSES_RELEASE)
    process, part = visible_process(session, actor, process_id)
    check_process_transition(process.status, ProcessStatus.RELEASED)
    check_grant(actor, grant)
    if actor.person_id in (process.last_edited_by_id, process.submitted_by_id):
        raise Forbidden("a revision is released by someone other than its author or submitter")
    digest = compute_hash(session, process)
    if digest != process.content_hash:
        raise Conflict("the revision's content does not match its recorded hash: not released")
    signature = sign(
        session,
        actor,
        grant,
        meaning=Meaning.APPROVED,
        record_type="process",
        record_id=process.id,
        record_content_hash=digest,
        comment=comment,
        export_controlled=part.export_controlled,
    )
    previous = session.scalars(
        select(Process).where(
            Process.part_id == part.id, Process.status == ProcessStatus.RELEASED.value
        )
    ).all()
    for old in previous:
        _transition(
            session,
            actor,
            old,
            part,
            ProcessStatus.OBSOLETE,
            "process.superseded",
            f"superseded by revision {process.revision}",
        )
    _transition(
        session,
        actor,
        process,
        part,
        ProcessStatus.RELEASED,
        "process.released",
        comment or None,
        released_at=signature.signed_at,
        released_by_id=actor.person_id,
        release_signature_id=signature.id,
    )
    return process


def obsolete(session: Session, actor: Actor, process_id: int, why: str) -> Process:
    """Released -> obsolete: no new work orders (existing ones keep it)."""
    actor.require(Permission.PROCESSES_OBSOLETE)
    process, part = visible_process(session, actor, process_id)
    _transition(session, actor, process, part, ProcessStatus.OBSOLETE, "process.obsoleted", why)
    return process


def revise(session: Session, actor: Actor, process_id: int) -> Process:
    """A new draft revision copied from a released or obsolete one."""
    actor.require(Permission.PROCESSES_AUTHOR)
    source, part = visible_process(session, actor, process_id)
    if source.status in OPEN_STATES:
        raise Conflict(f"revision {source.revision} is still {source.status}: edit it instead")
    open_one = _open_revision(session, part.id)
    if open_one is not None:
        raise Conflict(f"part {part.number} has revision {open_one.revision} open already")
    latest = session.scalar(select(func.max(Process.revision)).where(Process.part_id == part.id))
    process = Process(
        part_id=part.id,
        revision=(latest or 0) + 1,
        title=source.title,
        status=ProcessStatus.DRAFT.value,
        content_hash="",
        based_on_id=source.id,
        created_by_id=actor.person_id,
        last_edited_by_id=actor.person_id,
    )
    session.add(process)
    _write_content(session, process, content_of(source))
    audit.record(
        session,
        actor,
        "process.revised",
        "process",
        process.id,
        why=f"new revision from revision {source.revision}",
        after=_snapshot(process),
        export_controlled=part.export_controlled,
    )
    return process


def delete_draft(session: Session, actor: Actor, process_id: int, why: str) -> None:
    actor.require(Permission.PROCESSES_AUTHOR)
    process, part = visible_process(session, actor, process_id)
    if process.status != ProcessStatus.DRAFT.value:
        raise Conflict(f"revision {process.revision} is {process.status}: only drafts are deleted")
    before = _snapshot(process)
    session.delete(process)
    session.flush()
    audit.record(
        session,
        actor,
        "process.deleted",
        "process",
        process_id,
        why=why,
        before=before,
        export_controlled=part.export_controlled,
    )


def get_process(session: Session, actor: Actor, process_id: int) -> tuple[Process, Part]:
    actor.require(Permission.PROCESSES_READ)
    return visible_process(session, actor, process_id)


def list_processes(
    session: Session,
    actor: Actor,
    *,
    part_id: int | None = None,
    status: ProcessStatus | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Sequence[tuple[Process, Part]]:
    actor.require(Permission.PROCESSES_READ)
    limit, offset = page(limit, offset)
    stmt = (
        select(Process, Part)
        .join(Part, Part.id == Process.part_id)
        .where(visible_parts(actor))
        .order_by(Part.number, Process.revision)
    )
    if part_id is not None:
        stmt = stmt.where(Process.part_id == part_id)
    if status is not None:
        stmt = stmt.where(Process.status == status.value)
    return [(p, part) for p, part in session.execute(stmt.limit(limit).offset(offset))]
