"""Parts: list, create, edit (description and export-control flag).

GET  /manage/parts[?q&page]    parts you may see          (parts.read)
GET  /manage/parts/new         the form                   (parts.write)
POST /manage/parts             create                     (parts.write)
GET  /manage/parts/{id}        the part, its revisions and lots (parts.read)
POST /manage/parts/{id}        change description or flag (parts.write)

Only people cleared for export control may set the flag (the service refuses others, and
the box is not shown to them); an export-controlled part is a 404 for everyone else.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from mes.api.deps import request_session
from mes.domain.errors import MesError
from mes.domain.lifecycle import Tracking
from mes.domain.roles import Permission as P
from mes.services import parts, processes
from mes.web.access import Form, WebUser, manage
from mes.web.flash import see_other
from mes.web.forms import Fields
from mes.web.render import page
from mes.web.routes.common import PAGE_SIZE, Id, Page

router = APIRouter(prefix="/manage/parts", include_in_schema=False)
Search = Annotated[str | None, Query(max_length=100)]
FIELDS = {"number": "number", "revision": "revision", "description": "description"}


@router.get("")
def list_parts(
    request: Request, user: Annotated[WebUser, manage(P.PARTS_READ)], q: Search = None,
    page_no: Annotated[Page, Query(alias="page")] = 0,
) -> Response:  # fmt: skip
    query = (q or "").replace("\x00", "").strip() or None
    with request_session(request) as db:
        found = parts.list_parts(
            db, user.actor, query=query, limit=PAGE_SIZE, offset=page_no * PAGE_SIZE
        )
        return page(request, "manage/parts.html", user=user, parts=found, q=query or "",
                    page_no=page_no, more=len(found) == PAGE_SIZE)  # fmt: skip


def _new_form(
    request: Request, user: WebUser, fields: Fields | None = None, error: str | None = None,
    status: int = 200,
) -> Response:  # fmt: skip
    return page(request, "manage/part_new.html", user=user, status=status,
                values=fields.values if fields else {"tracking": "serial"},
                problems=fields.problems if fields else {}, error=error,
                trackings=[t.value for t in Tracking])  # fmt: skip


@router.get("/new")
def new_part(request: Request, user: Annotated[WebUser, manage(P.PARTS_WRITE)]) -> Response:
    return _new_form(request, user)


@router.post("")
def create_part(
    request: Request, form: Form, user: Annotated[WebUser, manage(P.PARTS_WRITE)]
) -> Response:
    fields = Fields(form)
    data = parts.PartInput(
        number=fields.text("number", limit=64, required=True),
        revision=fields.text("revision", limit=16, required=True),
        description=fields.text("description", limit=500),
        tracking=Tracking(fields.choice("tracking", [t.value for t in Tracking]) or "serial"),
        export_controlled=fields.flag("export_controlled"),
    )
    if not fields.ok:
        return _new_form(request, user, fields, status=422)
    with request_session(request) as db:
        try:
            part = parts.create_part(db, user.actor, data)
            db.commit()
        except MesError as exc:
            db.rollback()
            return _new_form(request, user, fields, fields.absorb(exc, FIELDS), exc.status)
        return see_other(f"/manage/parts/{part.id}", f"Part {part.number} created.")


def _detail(
    request: Request, user: WebUser, part_id: int, fields: Fields | None = None,
    error: str | None = None, status: int = 200,
) -> Response:  # fmt: skip
    with request_session(request) as db:
        part = parts.get_part(db, user.actor, part_id)
        revisions = (
            processes.list_processes(db, user.actor, part_id=part.id)
            if user.can(P.PROCESSES_READ)
            else []
        )
        lots = parts.list_lots(db, user.actor, part.id) if user.can(P.UNITS_READ) else []
        values = fields.values if fields else {
            "description": part.description,
            "export_controlled": "yes" if part.export_controlled else "",
        }  # fmt: skip
        return page(request, "manage/part.html", user=user, status=status, part=part,
                    revisions=revisions, lots=lots, values=values,
                    problems=fields.problems if fields else {}, error=error)  # fmt: skip


@router.get("/{part_id}")
def show_part(
    request: Request, part_id: Id, user: Annotated[WebUser, manage(P.PARTS_READ)]
) -> Response:
    return _detail(request, user, part_id)


@router.post("/{part_id}")
def update_part(
    request: Request, part_id: Id, form: Form, user: Annotated[WebUser, manage(P.PARTS_WRITE)]
) -> Response:
    fields = Fields(form)
    description = fields.text("description", limit=500)
    flagged = fields.flag("export_controlled") if user.cleared else None
    why = fields.optional("why", limit=1000)
    if not fields.ok:
        return _detail(request, user, part_id, fields, status=422)
    with request_session(request) as db:
        try:
            part = parts.update_part(db, user.actor, part_id, description=description,
                                     export_controlled=flagged, why=why)  # fmt: skip
            db.commit()
        except MesError as exc:
            db.rollback()
            message = fields.absorb(exc, FIELDS)
            return _detail(request, user, part_id, fields, message, exc.status)
        return see_other(f"/manage/parts/{part.id}", f"Part {part.number} saved.")
