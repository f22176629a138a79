"""Units: search by serial, full history and genealogy; lots and where they went.

GET  /manage/units[?serial]               search (one match: straight to it)  (units.read)
GET  /manage/units/{id}                   history, signatures, genealogy both ways
                                          (units.read)
POST /manage/units/{id}/nonconformances   raise one: the unit is held  (nonconformances.raise)
GET  /manage/lots/{id}                    the units a lot went into            (units.read)

A unit of an export-controlled part is a 404 for the uncleared, as in the API; genealogy
walks leave out what the viewer may not see.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse

from mes.api.deps import request_session
from mes.domain.errors import MesError
from mes.domain.genealogy import Node
from mes.domain.roles import Permission as P
from mes.services import genealogy, quality, units
from mes.web.access import Form, WebUser, manage
from mes.web.flash import see_other
from mes.web.forms import Fields
from mes.web.history import tree_view, unit_history
from mes.web.render import page
from mes.web.routes.common import Id

router = APIRouter(prefix="/manage", include_in_schema=False)
Reader = Annotated[WebUser, manage(P.UNITS_READ)]
Serial = Annotated[str | None, Query(max_length=128)]


@router.get("/units")
def search(request: Request, user: Reader, serial: Serial = None) -> Response:
    wanted = (serial or "").replace("\x00", "").strip()
    with request_session(request) as db:
        found = units.list_units(db, user.actor, serial=wanted or None, limit=100)
        if wanted and len(found) == 1:
            return RedirectResponse(f"/manage/units/{found[0][0].id}", status_code=303)
        return page(request, "manage/units.html", user=user, units=found, serial=wanted)


def unit_page(
    request: Request, user: WebUser, unit_id: int, *, status: int = 200,
    error: str | None = None, values: dict[str, str] | None = None,
    problems: dict[str, str] | None = None,
) -> Response:  # fmt: skip
    with request_session(request) as db:
        unit, part = units.get_unit(db, user.actor, unit_id)
        history = unit_history(db, user.actor, unit, part)
        ncs = quality.list_ncs(db, user.actor, unit_id=unit.id) if user.can(P.NC_READ) else []
        return page(request, "manage/unit.html", user=user, status=status, h=history,
                    ncs=ncs, error=error, values=values or {},
                    problems=problems or {})  # fmt: skip


@router.get("/units/{unit_id}")
def show_unit(request: Request, unit_id: Id, user: Reader) -> Response:
    return unit_page(request, user, unit_id)


@router.post("/units/{unit_id}/nonconformances")
def raise_nc(
    request: Request, unit_id: Id, form: Form, user: Annotated[WebUser, manage(P.NC_RAISE)]
) -> Response:
    fields = Fields(form)
    description = fields.text("description", limit=2000, required=True)
    if not fields.ok:
        return unit_page(request, user, unit_id, status=422, values=fields.values,
                         problems=fields.problems)  # fmt: skip
    with request_session(request) as db:
        try:
            nc = quality.raise_nc(db, user.actor, unit_id, description)
            db.commit()
        except MesError as exc:
            db.rollback()
            return unit_page(request, user, unit_id, status=exc.status, error=exc.message,
                             values=fields.values)  # fmt: skip
    target = (
        f"/manage/nonconformances/{nc.id}" if user.can(P.NC_READ) else f"/manage/units/{unit_id}"
    )
    return see_other(target, f"Nonconformance {nc.id} raised: the unit is on hold.", "warn")


@router.get("/lots/{lot_id}")
def show_lot(request: Request, lot_id: Id, user: Reader) -> Response:
    with request_session(request) as db:
        used = genealogy.where_used(db, user.actor, Node("lot", lot_id))
        tree = tree_view(db, used)
        return page(request, "manage/lot.html", user=user, tree=tree)
