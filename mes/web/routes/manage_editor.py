"""The process editor: a draft's title, steps and actions, one edit per post.

GET  /manage/processes/{id}/edit                        the editor (drafts only)
POST /manage/processes/{id}/edit                        one edit (`mes.web.editing.OPS`)
GET  /manage/processes/{id}/action?step=N&kind=K        form for a new action of kind K
GET  /manage/processes/{id}/action?step=N&pos=M         form to change action M of step N

All need `processes.author`. Each post carries the content hash the page was drawn from
(`base`): if the draft changed since, nothing is applied and the editor shows the current
content (two authors never overwrite each other silently). The whole content then goes
through `processes.replace_content`, which checks it exactly as the API's `PUT` does.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.orm import Session

from mes.api.deps import request_session
from mes.domain.actions import ActionKind
from mes.domain.errors import Conflict, Invalid, MesError
from mes.domain.lifecycle import ProcessStatus
from mes.domain.roles import Permission as P
from mes.domain.signing import Meaning
from mes.models.processes import Process
from mes.services import processes
from mes.web import editing
from mes.web.access import Form, WebUser, manage
from mes.web.flash import see_other
from mes.web.forms import Fields
from mes.web.render import page
from mes.web.routes.common import Id
from mes.web.routes.manage_processes import part_names

router = APIRouter(prefix="/manage/processes/{process_id}", include_in_schema=False)
Author = Annotated[WebUser, manage(P.PROCESSES_AUTHOR)]
Position = Annotated[int | None, Query(ge=1, le=1000)]
ACTION_FIELDS = {
    "label": "label",
    "params.pattern": "pattern",
    "params.match_unit": "match_unit",
    "params.part_id": "part_id",
    "params.min": "min",
    "params.max": "max",
    "params.unit": "unit",
    "params.max_length": "max_length",
    "params.meaning": "meaning",
}


def _draft(db: Session, user: WebUser, process_id: int) -> Process:
    process, _ = processes.get_process(db, user.actor, process_id)
    if process.status != ProcessStatus.DRAFT.value:
        raise Conflict(
            f"revision {process.revision} is {process.status}: only drafts are edited "
            "(make a new revision from a released one)"
        )
    return process


def editor_page(
    request: Request, user: WebUser, process_id: int, *, status: int = 200,
    error: str | None = None, problems: dict[str, str] | None = None,
    values: dict[str, str] | None = None, form_of: str = "",
) -> Response:  # fmt: skip
    """The editor; `values` and `problems` belong to the form named `form_of`."""
    with request_session(request) as db:
        process = _draft(db, user, process_id)
        names = part_names(db, user)
        summaries = {
            a.id: editing.params_summary(a.kind, a.params, names)
            for s in process.steps
            for a in s.actions
        }
        return page(request, "manage/editor.html", user=user, status=status, process=process,
                    summaries=summaries, kinds=editing.KIND_NAMES, error=error,
                    problems=problems or {}, values=values or {}, form_of=form_of)  # fmt: skip


@router.get("/edit")
def editor(request: Request, process_id: Id, user: Author) -> Response:
    return editor_page(request, user, process_id)


def action_page(
    request: Request, user: WebUser, process_id: int, step: int, kind: ActionKind,
    position: int | None, *, fields: Fields | None = None, error: str | None = None,
    status: int = 200,
) -> Response:  # fmt: skip
    with request_session(request) as db:
        process = _draft(db, user, process_id)
        if not 1 <= step <= len(process.steps):
            raise Invalid(f"there is no step {step}", [("step", "no such step")])
        current = process.steps[step - 1]
        values: dict[str, str] = {"required": "yes"}
        if position is not None:
            if not 1 <= position <= len(current.actions):
                raise Invalid(f"there is no action {position}", [("pos", "no such action")])
            values = _action_values(current.actions[position - 1].label,
                                    current.actions[position - 1].required,
                                    current.actions[position - 1].params)  # fmt: skip
        if fields is not None:
            values = fields.values
        return page(request, "manage/action_form.html", user=user, status=status,
                    process=process, step=current, kind=kind.value,
                    kind_name=editing.KIND_NAMES[kind], position=position, values=values,
                    problems=fields.problems if fields else {}, error=error,
                    parts=part_names(db, user), meanings=[m.value for m in Meaning])  # fmt: skip


def _action_values(label: str, required: bool, params: dict[str, object]) -> dict[str, str]:
    values = {"label": label, "required": "yes" if required else ""}
    for key, value in params.items():
        if isinstance(value, bool):
            values[key] = "yes" if value else ""
        elif isinstance(value, float):
            values[key] = f"{value:g}"
        elif value is not None:
            values[key] = str(value)
    return values


@router.get("/action")
def action_form(
    request: Request, process_id: Id, user: Author, step: Position = None,
    pos: Position = None, kind: ActionKind | None = None,
) -> Response:  # fmt: skip
    if step is None:
        raise Invalid("which step?", [("step", "required")])
    if pos is not None:
        with request_session(request) as db:
            process = _draft(db, user, process_id)
            if not 1 <= step <= len(process.steps):
                raise Invalid(f"there is no step {step}", [("step", "no such step")])
            actions = process.steps[step - 1].actions
            if not 1 <= pos <= len(actions):
                raise Invalid(f"there is no action {pos}", [("pos", "no such action")])
            kind = ActionKind(actions[pos - 1].kind)
    if kind is None:
        raise Invalid("which kind of action?", [("kind", "required")])
    return action_page(request, user, process_id, step, kind, pos)


@router.post("/edit")
def edit(request: Request, process_id: Id, form: Form, user: Author) -> Response:
    fields = Fields(form)
    base = fields.text("base", limit=64, keep=False)
    change = editing.read_edit(fields)
    kind = change.new_action.kind if change.new_action is not None else None
    step_no = change.step or 0

    def refused(error: str | None, status: int) -> Response:
        if kind is not None:
            position = change.action if change.op == "update_action" else None
            return action_page(request, user, process_id, step_no, kind, position,
                               fields=fields, error=error, status=status)  # fmt: skip
        form_of = f"step-{step_no}" if change.op == "update_step" else change.op
        return editor_page(request, user, process_id, status=status, error=error,
                           problems=fields.problems, values=fields.values,
                           form_of=form_of)  # fmt: skip

    if not fields.ok:
        return refused("Nothing was changed: check the marked fields.", 422)
    with request_session(request) as db:
        process = _draft(db, user, process_id)
        if base != process.content_hash:
            db.rollback()
            return editor_page(request, user, process_id, status=409,
                               error="This draft was changed by someone else since you opened "
                               "it; your edit was not applied. This is the draft as it is "
                               "now.")  # fmt: skip
        try:
            changed = editing.apply(processes.content_of(process), change)
            processes.replace_content(db, user.actor, process_id, changed)
            db.commit()
        except MesError as exc:
            db.rollback()
            message = fields.absorb(exc, ACTION_FIELDS if kind else {"title": "title"})
            return refused(message, exc.status)
    return see_other(f"/manage/processes/{process_id}/edit", "Saved.")
