"""Process revisions: list, first revision, and the life cycle with its signed release.

GET  /manage/processes[?part_id&status]       revisions you may see     (processes.read)
GET  /manage/processes/new[?part_id]          first revision of a part  (processes.author)
POST /manage/processes                        create it (a draft)       (processes.author)
GET  /manage/processes/{id}                   steps, actions, signatures (processes.read)
POST /manage/processes/{id}/submit            draft -> review           (processes.author)
POST /manage/processes/{id}/return            review -> draft, why      (processes.review)
POST /manage/processes/{id}/release           review -> released, e-signature: password,
                                              authenticator code, meaning "approved"
                                              (processes.release)
POST /manage/processes/{id}/obsolete          released -> obsolete, why (processes.obsolete)
POST /manage/processes/{id}/revise            new draft from this one   (processes.author)
POST /manage/processes/{id}/delete            delete a draft, why       (processes.author)

The signature's credentials are checked before this request's own transaction, and a
refusal still counts towards the lockout (`mes.api.deps.grant_for`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from mes.api.deps import grant_for, request_session
from mes.domain.content import ProcessContent
from mes.domain.errors import MesError, SignatureRejected
from mes.domain.lifecycle import ProcessStatus, Tracking
from mes.domain.roles import Permission as P
from mes.domain.signing import Meaning
from mes.models.parts import Part
from mes.models.processes import Process
from mes.services import processes, records
from mes.services.common import visible_parts
from mes.signatures import SignatureCredentials, SignatureGrant
from mes.web.access import Form, WebUser, manage
from mes.web.editing import KIND_NAMES, params_summary
from mes.web.flash import see_other
from mes.web.forms import Fields
from mes.web.lookups import names_of
from mes.web.render import page
from mes.web.routes.common import Id

router = APIRouter(prefix="/manage/processes", include_in_schema=False)
Author = Annotated[WebUser, manage(P.PROCESSES_AUTHOR)]
QueryId = Annotated[int | None, Query(ge=1, le=2**31 - 1)]


def part_names(db: Session, user: WebUser) -> dict[int, str]:
    """Names of the tracked parts the user may see (component choices and summaries)."""
    stmt = select(Part).where(visible_parts(user.actor), Part.tracking != Tracking.NONE.value)
    return {p.id: f"{p.number} rev {p.revision}" for p in db.scalars(stmt.order_by(Part.number))}


@router.get("")
def list_processes(
    request: Request,
    user: Annotated[WebUser, manage(P.PROCESSES_READ)],
    part_id: QueryId = None,
    status: ProcessStatus | None = None,
) -> Response:
    with request_session(request) as db:
        found = processes.list_processes(db, user.actor, part_id=part_id, status=status, limit=500)
        return page(request, "manage/processes.html", user=user, processes=found,
                    status_filter=status.value if status else "",
                    statuses=[s.value for s in ProcessStatus])  # fmt: skip


def _parts_without_process(db: Session, user: WebUser) -> list[Part]:
    """Parts the user may see that have no process revision yet (the first is made here;
    later ones are new revisions of an existing one)."""
    has_process = select(Process.id).where(Process.part_id == Part.id).exists()
    stmt = select(Part).where(visible_parts(user.actor), ~has_process).order_by(Part.number)
    return list(db.scalars(stmt))


def _new_form(
    request: Request, user: WebUser, fields: Fields | None = None, error: str | None = None,
    status: int = 200, part_id: int | None = None,
) -> Response:  # fmt: skip
    with request_session(request) as db:
        choices = _parts_without_process(db, user)
        values = fields.values if fields else {"part_id": str(part_id or "")}
        return page(request, "manage/process_new.html", user=user, status=status,
                    parts=choices, values=values, problems=fields.problems if fields else {},
                    error=error)  # fmt: skip


@router.get("/new")
def new_process(request: Request, user: Author, part_id: QueryId = None) -> Response:
    return _new_form(request, user, part_id=part_id)


@router.post("")
def create_process(request: Request, form: Form, user: Author) -> Response:
    fields = Fields(form)
    part_id = fields.integer("part_id", required=True)
    title = fields.text("title", limit=200, required=True)
    if not fields.ok or part_id is None:
        return _new_form(request, user, fields, status=422)
    with request_session(request) as db:
        try:
            process = processes.create_process(db, user.actor, part_id, ProcessContent(title))
            db.commit()
        except MesError as exc:
            db.rollback()
            message = fields.absorb(exc, {"title": "title"})
            return _new_form(request, user, fields, message, exc.status)
        return see_other(f"/manage/processes/{process.id}/edit", "Draft created: add its steps.")


def detail_page(
    request: Request, user: WebUser, process_id: int, *, status: int = 200,
    error: str | None = None, problems: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
) -> Response:  # fmt: skip
    with request_session(request) as db:
        process, part = processes.get_process(db, user.actor, process_id)
        signatures = records.signatures_of(db, user.actor, "process", process.id)
        names = names_of(db, [process.created_by_id, process.last_edited_by_id,
                              process.submitted_by_id, process.released_by_id])  # fmt: skip
        based_on = db.get(Process, process.based_on_id) if process.based_on_id else None
        summaries = {
            a.id: params_summary(a.kind, a.params, part_names(db, user))
            for s in process.steps
            for a in s.actions
        }
        return page(request, "manage/process.html", user=user, status=status, process=process,
                    part=part, signatures=signatures, names=names, based_on=based_on,
                    summaries=summaries, kinds=KIND_NAMES, error=error,
                    problems=problems or {}, values=values or {},
                    meaning=Meaning.APPROVED.value)  # fmt: skip


@router.get("/{process_id}")
def show_process(
    request: Request, process_id: Id, user: Annotated[WebUser, manage(P.PROCESSES_READ)]
) -> Response:
    return detail_page(request, user, process_id)


def _act(
    request: Request, user: WebUser, process_id: int, done: str, action: Callable[[Session], object]
) -> Response:
    """Run one life-cycle step; the detail page again with the refusal if it fails."""
    with request_session(request) as db:
        try:
            result = action(db)
            db.commit()
        except MesError as exc:
            db.rollback()
            return detail_page(request, user, process_id, status=exc.status, error=exc.message)
        target = result.id if isinstance(result, Process) else process_id
    return see_other(f"/manage/processes/{target}", done)


@router.post("/{process_id}/submit")
def submit(request: Request, process_id: Id, form: Form, user: Author) -> Response:
    return _act(request, user, process_id, "Submitted for review.",
                lambda db: processes.submit(db, user.actor, process_id))  # fmt: skip


def _reason(form: Form, name: str) -> str:
    """The reason typed in field `name` ('' when missing)."""
    return Fields(form).text(name, limit=1000)


@router.post("/{process_id}/return")
def return_to_draft(
    request: Request, process_id: Id, form: Form,
    user: Annotated[WebUser, manage(P.PROCESSES_REVIEW)],
) -> Response:  # fmt: skip
    why = _reason(form, "return_why")
    if not why:
        return detail_page(request, user, process_id, status=422,
                           problems={"return_why": "say why it goes back"})  # fmt: skip
    return _act(request, user, process_id, "Returned to draft.",
                lambda db: processes.return_to_draft(db, user.actor, process_id, why))  # fmt: skip


@router.post("/{process_id}/release")
def release(
    request: Request, process_id: Id, form: Form,
    user: Annotated[WebUser, manage(P.PROCESSES_RELEASE)],
) -> Response:  # fmt: skip
    fields = Fields(form)
    password, code = fields.secret("password"), fields.secret("totp", limit=16)
    comment = fields.text("comment", limit=1000)
    if not password:
        fields.problem("password", "required to sign")
    if not code:
        fields.problem("totp", "required to sign")
    if not fields.ok:
        return detail_page(request, user, process_id, status=422, problems=fields.problems,
                           values=fields.values)  # fmt: skip
    with request_session(request) as db:
        processes.get_process(db, user.actor, process_id)  # 404 before any credential check
    try:
        grant: SignatureGrant = grant_for(
            request, user.actor, SignatureCredentials(password=password, totp=code)
        )
    except SignatureRejected as exc:
        return detail_page(request, user, process_id, status=403, error=exc.message,
                           values=fields.values)  # fmt: skip
    return _act(request, user, process_id, "Released: signed and in force for new work orders.",
                lambda db: processes.release(db, user.actor, process_id, grant,
                                             comment))  # fmt: skip


@router.post("/{process_id}/obsolete")
def obsolete(
    request: Request, process_id: Id, form: Form,
    user: Annotated[WebUser, manage(P.PROCESSES_OBSOLETE)],
) -> Response:  # fmt: skip
    why = _reason(form, "obsolete_why")
    if not why:
        return detail_page(request, user, process_id, status=422,
                           problems={"obsolete_why": "say why"})  # fmt: skip
    return _act(request, user, process_id, "Made obsolete.",
                lambda db: processes.obsolete(db, user.actor, process_id, why))  # fmt: skip


@router.post("/{process_id}/revise")
def revise(request: Request, process_id: Id, form: Form, user: Author) -> Response:
    return _act(request, user, process_id, "New draft revision made from this one.",
                lambda db: processes.revise(db, user.actor, process_id))  # fmt: skip


@router.post("/{process_id}/delete")
def delete_draft(request: Request, process_id: Id, form: Form, user: Author) -> Response:
    why = _reason(form, "delete_why")
    if not why:
        return detail_page(request, user, process_id, status=422,
                           problems={"delete_why": "say why"})  # fmt: skip
    with request_session(request) as db:
        try:
            processes.delete_draft(db, user.actor, process_id, why)
            db.commit()
        except MesError as exc:
            db.rollback()
            return detail_page(request, user, process_id, status=exc.status, error=exc.message)
    return see_other("/manage/processes", "Draft deleted.")
