"""The station's front door: which station this screen is, signing in and out.

GET  /                          the appliance's start page (a registered screen goes to its
                                station)
GET  /station                   register this screen as a station (once), or go to it
POST /station                   register: remembers the station code in a cookie
GET  /station/{code}            sign in (badge scan or employee number, and PIN)
POST /station/{code}/login      sign in
POST /station/{code}/logout     sign out (also: "not me" when someone forgot to)
"""

from __future__ import annotations

from typing import Any

import anyio
from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from mes.api.deps import request_session
from mes.auth import sessions
from mes.auth.accounts import station_by_code
from mes.auth.login import LoginRefused
from mes.domain.errors import Forbidden, NotFound
from mes.domain.roles import Permission
from mes.web import flash, signin
from mes.web.access import Form, StationCode, resolve, session_backend
from mes.web.forms import Fields
from mes.web.render import page

router = APIRouter(include_in_schema=False)
STATION_COOKIE = "__Host-plantgate-station"
STATION_MAX_AGE_S = 400 * 24 * 3600  # browsers cap cookie lifetimes at about 400 days


def registered_station(request: Request) -> str | None:
    code = request.cookies.get(STATION_COOKIE) or ""
    ok = 1 <= len(code) <= 32 and all(c.isalnum() or c in "._-" for c in code)
    return code if ok else None


def _login_page(request: Request, template: str, *, status: int = 200, **context: Any) -> Response:
    token, fresh = signin.login_token(request)
    response = page(request, template, status=status, login_token=token, **context)
    if fresh:
        signin.set_login_cookie(response, token)
    return response


def _active_station(request: Request, code: str) -> tuple[str, str]:
    """(code, name) of an active station; NotFound otherwise."""
    with request_session(request) as db:
        station = station_by_code(db, code)
        if station is None or not station.active:
            raise NotFound(f"no active station {code}")
        return station.code, station.name


@router.get("/")
def start(request: Request) -> Response:
    code = registered_station(request)
    if code is not None:
        return RedirectResponse(f"/station/{code}", status_code=303)
    return page(request, "start.html")


@router.get("/station")
def register_form(request: Request, change: int = 0) -> Response:
    code = registered_station(request)
    if code is not None and not change:
        return RedirectResponse(f"/station/{code}", status_code=303)
    return _login_page(request, "station/register.html", values={}, problems={}, error=None)


@router.post("/station")
def register(request: Request, form: Form) -> Response:
    problem = signin.login_form_problem(request, form)
    if problem:
        raise Forbidden(f"request refused: {problem}")
    fields = Fields(form)
    code = fields.text("code", limit=32, required=True)
    error = None
    if fields.ok:
        try:
            code, _ = _active_station(request, code)
        except NotFound as exc:
            error = exc.message
            fields.problem("code", "not an active station code")
    if error or not fields.ok:
        return _login_page(
            request,
            "station/register.html",
            status=422,
            values=fields.values,
            problems=fields.problems,
            error=error,
        )
    response = flash.see_other(f"/station/{code}", f"This screen is now station {code}.")
    response.headers.append(
        "set-cookie",
        f"{STATION_COOKIE}={code}; Max-Age={STATION_MAX_AGE_S}; Path=/; Secure; HttpOnly; "
        "SameSite=Strict",
    )
    return response


@router.get("/station/{code}")
async def sign_in_form(request: Request, code: StationCode) -> Response:
    found = await resolve(request, code)
    if found.station is None or not found.station[3]:
        raise NotFound(f"no active station {code}")
    station_id, station_code, name, _ = found.station
    actor = found.actor
    if actor is not None and actor.station_id == station_id and actor.can(Permission.UNITS_RUN):
        return RedirectResponse(f"/station/{station_code}/work-orders", status_code=303)
    return _login_page(
        request,
        "station/login.html",
        station_code=station_code,
        station_name=name,
        values={},
        error=None,
    )


@router.post("/station/{code}/login")
def sign_in(request: Request, code: StationCode, form: Form) -> Response:
    problem = signin.login_form_problem(request, form)
    if problem:
        raise Forbidden(f"request refused: {problem}")
    station_code, name = _active_station(request, code)
    fields = Fields(form)
    badge = fields.text("badge", limit=64, keep=False)
    number = fields.text("employee_number", limit=32)
    pin = fields.secret("pin", limit=64)
    try:
        new = signin.operator_sign_in(
            session_backend(request), request, station_code, badge or None, number or None, pin
        )
    except LoginRefused as refused:
        return _login_page(
            request,
            "station/login.html",
            status=refused.status,
            station_code=station_code,
            station_name=name,
            values={"employee_number": number} if not badge else {},
            error=signin.refusal_text(refused),
        )
    response = flash.see_other(f"/station/{station_code}/work-orders")
    signin.session_cookie(response, new)
    return response


@router.post("/station/{code}/logout")
async def sign_out(request: Request, code: StationCode, form: Form) -> Response:
    actor = (await resolve(request)).actor  # a live session's post must carry its CSRF token
    cookie = request.cookies.get(sessions.COOKIE_NAME)
    if actor is not None and cookie:
        await anyio.to_thread.run_sync(signin.end_session, request, cookie)
    response = flash.see_other(f"/station/{code}", "Signed out.")
    response.headers.append("set-cookie", sessions.clear_cookie_header())
    return response
