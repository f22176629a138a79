"""Who is asking, and may they: the one permission every screen declares.

- `ManagePage(permission)`: a Manage Page session (password + TOTP; not bound to a
  station) whose roles grant `permission` (None: any signed-in Manage Page user). Nobody
  signed in: a redirect to `/manage/login`; signed in without the permission: 403.
- `StationPage()`: an operator session bound to the station named in the URL, with
  `units.run`. Anyone else is sent to that station's sign-in page.

The caller is resolved by the app's `AuthBackend`, exactly as for the JSON API, which also
enforces the CSRF rules on every post (a missing or wrong token is a 403). The form is
read before any database transaction opens: a writing SQLite transaction takes the write
lock at BEGIN, and no request should hold it while waiting for a client's body.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote

import anyio
from fastapi import Depends, Path, Request
from starlette.datastructures import FormData

from mes.api.deps import backend_of, reading_session, run_ready
from mes.auth import csrf, sessions
from mes.auth.accounts import station_by_code
from mes.auth.backend import SessionAuthBackend
from mes.domain.actor import Actor
from mes.domain.errors import Forbidden, NotFound
from mes.domain.roles import Permission

StationCode = Annotated[str, Path(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9._-]+$")]


class SignInFirst(Exception):
    """Nobody (suitable) is signed in: answered with a redirect to `location`."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


@dataclass(frozen=True)
class WebUser:
    """The signed-in person of a page, and the CSRF token its forms carry."""

    actor: Actor
    csrf_token: str

    def can(self, permission: str) -> bool:
        return self.actor.can(Permission(permission))

    @property
    def cleared(self) -> bool:
        return bool(self.actor.us_person and self.actor.itar_authorised)


@dataclass(frozen=True)
class StationUser(WebUser):
    station_id: int = 0
    station_code: str = ""
    station_name: str = ""


def session_backend(request: Request) -> SessionAuthBackend:
    """The app's auth backend; the screens need the real one (sign-in, credentials)."""
    backend = backend_of(request)
    if not isinstance(backend, SessionAuthBackend):
        raise RuntimeError("the MES screens need mes.auth's SessionAuthBackend")
    return backend


async def read_form(request: Request) -> FormData:
    """The posted form (empty for other methods), read once and cached by Starlette."""
    if request.method.upper() in csrf.UNSAFE_METHODS:
        return await request.form()
    return FormData()


Form = Annotated[FormData, Depends(read_form)]


@dataclass(frozen=True)
class Resolved:
    actor: Actor | None
    token: str
    station: tuple[int, str, str, bool] | None = None  # id, code, name, active


def _resolve(request: Request, form: FormData, station_code: str | None) -> Resolved:
    """In a worker thread: the caller, the form's CSRF check, and the station, in one
    transaction that only reads (`mes.api.deps.resolve_actor`); the database is never
    touched on the event loop."""
    with reading_session(request) as db:
        actor = run_ready(backend_of(request).current_actor(request, db))
        station = station_by_code(db, station_code) if station_code is not None else None
        found = (station.id, station.code, station.name, station.active) if station else None
        db.commit()
    if actor is None:
        return Resolved(None, "", found)
    token = csrf.token_for(request.cookies.get(sessions.COOKIE_NAME) or "")
    if request.method.upper() in csrf.UNSAFE_METHODS:
        # The backend lets a body-less or JSON post without a token through (API clients);
        # a screen's post is always a form and always carries the token.
        submitted = form.get(csrf.FIELD)
        if not isinstance(submitted, str) or not hmac.compare_digest(submitted, token):
            raise Forbidden("request refused: missing or wrong CSRF token")
    return Resolved(actor, token, found)


async def resolve(request: Request, station_code: str | None = None) -> Resolved:
    """Who is calling (and, when asked, the station named by `station_code`)."""
    form = await read_form(request)  # before any transaction: never hold the lock for a body
    return await anyio.to_thread.run_sync(_resolve, request, form, station_code)


def login_location(request: Request) -> str:
    """`/manage/login`, with the page asked for as `next` (GET requests only)."""
    if request.method.upper() != "GET":
        return "/manage/login"
    wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return f"/manage/login?next={quote(wanted, safe='')}"


class ManagePage:
    """A Manage Page route's permission: `user: Annotated[WebUser, Depends(ManagePage(P.X))]`."""

    def __init__(self, permission: Permission | None) -> None:
        self.permission = permission

    async def __call__(self, request: Request) -> WebUser:
        found = await resolve(request)
        actor = found.actor
        if actor is None or actor.station_id is not None:
            raise SignInFirst(login_location(request))
        if self.permission is not None:
            actor.require(self.permission)
        return WebUser(actor, found.token)


class StationPage:
    """An operator route: signed in at the station of the URL, allowed to run units."""

    permission = Permission.UNITS_RUN

    async def __call__(self, request: Request, code: StationCode) -> StationUser:
        found = await resolve(request, code)
        if found.station is None or not found.station[3]:
            raise NotFound(f"no active station {code}")
        station_id, station_code, name, _ = found.station
        actor = found.actor
        if actor is None or actor.station_id != station_id:
            raise SignInFirst(f"/station/{station_code}")
        actor.require(self.permission)
        return StationUser(actor, found.token, station_id, station_code, name)


def manage(permission: Permission | None) -> object:
    """`Depends(ManagePage(permission))`, for the `Annotated` type of a route's user."""
    return Depends(ManagePage(permission))


StationUserDep = Annotated[StationUser, Depends(StationPage())]
