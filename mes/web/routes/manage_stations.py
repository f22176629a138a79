"""Stations: the places on the floor where operators work.

GET  /manage/stations          list, and a form to add one (stations.read / .manage)
POST /manage/stations          add                          (stations.manage)
GET  /manage/stations/{id}     the station                  (stations.read)
POST /manage/stations/{id}     name, location, active       (stations.manage)

Deactivating a station ends the sessions bound to it (the service does).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Request, Response

from mes.api.deps import request_session
from mes.domain.errors import MesError
from mes.domain.roles import Permission as P
from mes.services import stations
from mes.web.access import Form, WebUser, manage
from mes.web.flash import see_other
from mes.web.forms import Fields
from mes.web.render import page
from mes.web.routes.common import Id

router = APIRouter(prefix="/manage/stations", include_in_schema=False)
Admin = Annotated[WebUser, manage(P.STATIONS_MANAGE)]
Reader = Annotated[WebUser, manage(P.STATIONS_READ)]
FIELDS = {"code": "code", "name": "name", "location": "location"}


def list_page(
    request: Request, user: WebUser, fields: Fields | None = None, error: str | None = None,
    status: int = 200,
) -> Response:  # fmt: skip
    with request_session(request) as db:
        found = stations.list_stations(db, user.actor, limit=500)
        return page(request, "manage/stations.html", user=user, status=status, stations=found,
                    values=fields.values if fields else {},
                    problems=fields.problems if fields else {}, error=error)  # fmt: skip


@router.get("")
def list_stations(request: Request, user: Reader) -> Response:
    return list_page(request, user)


@router.post("")
def create_station(request: Request, form: Form, user: Admin) -> Response:
    fields = Fields(form)
    code = fields.text("code", limit=32, required=True)
    if code and not (code[0].isalnum() and all(c.isalnum() or c in "._-" for c in code)):
        fields.problem("code", "letters, digits and ._- only, starting with a letter or digit")
    name = fields.text("name", limit=120, required=True)
    location = fields.text("location", limit=200)
    if not fields.ok:
        return list_page(request, user, fields, status=422)
    with request_session(request) as db:
        try:
            station = stations.create_station(db, user.actor, code, name, location)
            db.commit()
        except MesError as exc:
            db.rollback()
            return list_page(request, user, fields, fields.absorb(exc, FIELDS), exc.status)
        return see_other(f"/manage/stations/{station.id}", f"Station {station.code} added.")


def detail_page(
    request: Request, user: WebUser, station_id: int, fields: Fields | None = None,
    error: str | None = None, status: int = 200,
) -> Response:  # fmt: skip
    with request_session(request) as db:
        station = stations.get_station(db, user.actor, station_id)
        values = fields.values if fields else {
            "name": station.name, "location": station.location,
            "active": "yes" if station.active else "",
        }  # fmt: skip
        return page(request, "manage/station.html", user=user, status=status, station=station,
                    values=values, problems=fields.problems if fields else {},
                    error=error)  # fmt: skip


@router.get("/{station_id}")
def show_station(request: Request, station_id: Id, user: Reader) -> Response:
    return detail_page(request, user, station_id)


@router.post("/{station_id}")
def update_station(request: Request, station_id: Id, form: Form, user: Admin) -> Response:
    fields = Fields(form)
    name = fields.text("name", limit=120, required=True)
    location = fields.text("location", limit=200)
    active = fields.flag("active")
    if not fields.ok:
        return detail_page(request, user, station_id, fields, status=422)
    with request_session(request) as db:
        try:
            station = stations.update_station(db, user.actor, station_id, name=name,
                                              location=location, active=active)  # fmt: skip
            db.commit()
        except MesError as exc:
            db.rollback()
            message = fields.absorb(exc, FIELDS)
            return detail_page(request, user, station_id, fields, message, exc.status)
        return see_other(f"/manage/stations/{station.id}", "Saved.")
