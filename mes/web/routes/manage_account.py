"""Signing in to the Manage Page, and its home.

GET  /manage           what the signed-in person may use
GET  /manage/login     employee number, password, authenticator code
POST /manage/login     sign in; the first time, enrol the authenticator app (TOTP)
POST /manage/logout    sign out

Enrolment is the auth layer's: a first sign-in with the right password and no active
TOTP secret answers with a provisioning URI, shown once, here as a QR code and as text.
The person scans it and signs in again with a code from the app, which activates it.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import parse_qs, urlparse

import anyio
import segno
from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse

from mes.auth import sessions
from mes.auth.login import LoginRefused
from mes.domain.errors import Forbidden
from mes.web import flash, signin
from mes.web.access import Form, WebUser, manage, resolve, session_backend
from mes.web.forms import Fields
from mes.web.render import page
from mes.web.routes.common import safe_next

router = APIRouter(prefix="/manage", include_in_schema=False)
Next = Annotated[str | None, Query(max_length=500)]


def _login_page(
    request: Request, *, status: int = 200, template: str = "manage/login.html", **context: Any
) -> Response:
    token, fresh = signin.login_token(request)
    response = page(request, template, status=status, login_token=token, **context)
    if fresh:
        signin.set_login_cookie(response, token)
    return response


@router.get("")
def home(request: Request, user: Annotated[WebUser, manage(None)]) -> Response:
    return page(request, "manage/home.html", user=user)


@router.get("/login")
async def login_form(request: Request, next: Next = None) -> Response:
    actor = (await resolve(request)).actor
    if actor is not None and actor.station_id is None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _login_page(request, next=safe_next(next), values={}, error=None)


def enrolment(uri: str) -> dict[str, str]:
    """What the enrolment page shows: a QR code (SVG data URI) and the secret as text."""
    secret = parse_qs(urlparse(uri).query).get("secret", [""])[0]
    grouped = " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))
    qr = segno.make(uri, error="m").svg_data_uri(scale=5, border=2)
    return {"qr": qr, "secret": grouped, "uri": uri}


@router.post("/login")
def login(request: Request, form: Form) -> Response:
    problem = signin.login_form_problem(request, form)
    if problem:
        raise Forbidden(f"request refused: {problem}")
    fields = Fields(form)
    number = fields.text("employee_number", limit=32)
    password = fields.secret("password")
    code = fields.secret("totp", limit=16)
    target = safe_next(fields.raw("next"))
    try:
        outcome = signin.manage_sign_in(session_backend(request), request, number, password, code)
    except LoginRefused as refused:
        return _login_page(request, status=refused.status, next=target,
                           values={"employee_number": number},
                           error=signin.refusal_text(refused))  # fmt: skip
    if outcome.enrolment_uri is not None:
        return _login_page(
            request,
            template="manage/enrol.html",
            next=target,
            values={"employee_number": number},
            error=None,
            enrol=enrolment(outcome.enrolment_uri),
        )
    assert outcome.session is not None
    response = flash.see_other(target)
    signin.session_cookie(response, outcome.session)
    return response


@router.post("/logout")
async def logout(request: Request, form: Form) -> Response:
    actor = (await resolve(request)).actor  # a live session's post must carry its CSRF token
    cookie = request.cookies.get(sessions.COOKIE_NAME)
    if actor is not None and cookie:
        await anyio.to_thread.run_sync(signin.end_session, request, cookie)
    response = flash.see_other("/manage/login", "Signed out.")
    response.headers.append("set-cookie", sessions.clear_cookie_header())
    return response
