"""Login, logout and credential administration: the `/api/auth` routes.

Answers never carry a hash, a PIN, a password or a TOTP secret; a badge token and a TOTP
provisioning URI appear once, in the answer of the request that created them. Every refusal
is a JSON `{"detail": ...}` with 401 (not recognised), 423 (locked), 429 (rate limited, with
Retry-After), 403 or 422; never a traceback.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import Session

from mes import audit
from mes.api.deps import resolve_actor
from mes.auth import accounts, csrf, sessions
from mes.auth.login import MANAGE_NOT_RECOGNISED, NOT_RECOGNISED, Attempt, LoginRefused
from mes.auth.passwords import PasswordRejected
from mes.auth.pins import PinRejected
from mes.domain.actor import Actor
from mes.domain.roles import Permission
from mes.models.people import Badge, Person

if TYPE_CHECKING:
    from mes.auth.backend import SessionAuthBackend

Short = Annotated[str, Field(max_length=64)]
Secret = Annotated[str, Field(max_length=256)]


class OperatorLogin(BaseModel):
    station: Short
    badge: Short | None = None
    employee_number: Short | None = None
    pin: Secret


class ManageLogin(BaseModel):
    employee_number: Short
    password: Secret
    totp: Short = ""


class NewPin(BaseModel):
    pin: Secret
    current_pin: Secret | None = None


class NewPassword(BaseModel):
    password: Secret
    current_password: Secret | None = None


class Why(BaseModel):
    why: Annotated[str, Field(min_length=1, max_length=500)]


def _refused(refused: LoginRefused) -> JSONResponse:
    headers = {}
    if refused.status == 429:
        headers["Retry-After"] = str(max(1, math.ceil(refused.retry_after)))
    return JSONResponse({"detail": refused.message}, refused.status, headers=headers)


def address_of(request: Request) -> str | None:
    return request.client.host if request.client else None


def _person_view(person: Person) -> dict[str, Any]:
    return {
        "employee_number": person.employee_number,
        "name": person.name,
        "roles": sorted(person.roles),
    }


async def caller(request: Request) -> Actor | None:
    """The signed-in person of `request` (None if nobody), by the app's backend, resolved in
    a worker thread (`mes.api.deps.resolve_actor`: no database wait on the event loop)."""
    return await resolve_actor(request)


Caller = Annotated[Actor | None, Depends(caller)]


def auth_router(backend: SessionAuthBackend) -> APIRouter:
    router = APIRouter(prefix="/api/auth", tags=["auth"])

    @contextmanager
    def transaction() -> Iterator[Session]:
        maker = backend.sessionmaker
        if maker is None:
            raise RuntimeError("the auth backend has no database (install() not called)")
        with maker() as db, db.begin():
            yield db

    def login_origin_problem(request: Request) -> str | None:
        headers = {k.lower(): v for k, v in request.headers.items()}
        from mes.auth.backend import own_origin

        return csrf.origin_problem(headers, own_origin(request))

    def session_answer(new: Any, person: Person, response: Response) -> dict[str, Any]:
        response.headers["set-cookie"] = sessions.cookie_header(new.session_id, new.max_age)
        return {
            "person": _person_view(person),
            "kind": new.row.kind,
            "csrf_token": new.csrf_token,
            "expires_at": new.row.expires_at.isoformat(),
            "idle_timeout_s": int(backend.store.policy.idle(new.row.kind).total_seconds()),
        }

    @router.post("/operator/login", response_model=None)
    def operator_login(body: OperatorLogin, request: Request, response: Response) -> Any:
        if login_origin_problem(request):
            return JSONResponse({"detail": "request refused: foreign origin"}, 403)
        auth = backend.auth
        attempt = Attempt(address_of(request), body.station.strip()[:32] or None)
        try:
            via, identity = auth.operator_identity(body.badge, body.employee_number)
            auth.limit(identity, attempt, via, "login")
            with transaction() as db:
                candidate = auth.operator_lookup(db, body.station, body.badge,
                                                 body.employee_number)  # fmt: skip
            outcome = auth.operator_outcome(candidate, body.pin)  # argon2, no lock held
            refusal: LoginRefused | None = None
            with transaction() as db:
                try:
                    person = auth.settle(db, candidate, outcome, attempt, via=via,
                                         context="login", message=NOT_RECOGNISED,
                                         secret=body.pin)  # fmt: skip
                except LoginRefused as exc:
                    refusal = exc  # commit the failure count, then answer
                else:
                    new = backend.store.create(
                        db,
                        person.id,
                        "operator",
                        candidate.station_id,
                        previous=request.cookies.get(sessions.COOKIE_NAME),
                    )
                    answer = session_answer(new, person, response)
                    answer["station"] = attempt.station_code
                    return answer
            assert refusal is not None
            raise refusal
        except LoginRefused as exc:
            return _refused(exc)

    @router.post("/manage/login", response_model=None)
    def manage_login(body: ManageLogin, request: Request, response: Response) -> Any:
        if login_origin_problem(request):
            return JSONResponse({"detail": "request refused: foreign origin"}, 403)
        auth = backend.auth
        attempt = Attempt(address_of(request))
        try:
            auth.limit(f"emp:{body.employee_number.strip()[:32]}", attempt, "password", "login")
            with transaction() as db:
                person = accounts.person_by_employee_number(db, body.employee_number)
                candidate = auth.candidate(person, "password")
            outcome = auth.verify(candidate, body.password, "password")  # no lock held
            refusal: LoginRefused | None = None
            with transaction() as db:
                try:
                    found = auth.settle(db, candidate, outcome, attempt, via="password",
                                        context="login", message=MANAGE_NOT_RECOGNISED)  # fmt: skip
                    result = auth.manage_second_factor(db, found, body.totp, attempt)
                except LoginRefused as exc:
                    refusal = exc
                else:
                    if result.enrolment_uri is not None:
                        return JSONResponse(
                            {
                                "detail": "enrol the authenticator app with this URI (shown "
                                "once), then sign in with a code from it",
                                "totp_enrolment_uri": result.enrolment_uri,
                            },
                            403,
                        )
                    new = backend.store.create(
                        db, found.id, "manage", previous=request.cookies.get(sessions.COOKIE_NAME)
                    )
                    return session_answer(new, found, response)
            assert refusal is not None
            raise refusal
        except LoginRefused as exc:
            return _refused(exc)

    @router.post("/logout", status_code=204, response_model=None)
    def logout(request: Request) -> Response:
        cookie = request.cookies.get(sessions.COOKIE_NAME)
        if cookie and sessions.plausible_id(cookie):
            with transaction() as db:
                backend.store.end(db, cookie)
        return Response(status_code=204, headers={"set-cookie": sessions.clear_cookie_header()})

    @router.get("/session", response_model=None)
    def whoami(request: Request, actor: Caller) -> Any:
        if actor is None:
            return JSONResponse({"detail": "not signed in"}, 401)
        cookie = request.cookies.get(sessions.COOKIE_NAME) or ""
        return {
            "person": {
                "employee_number": actor.employee_number,
                "name": actor.name,
                "roles": sorted(actor.roles),
            },
            "station_id": actor.station_id,
            "csrf_token": csrf.token_for(cookie),
        }

    def load(db: Session, actor: Actor | None, permission: Permission, number: str) -> Person:
        if actor is None:
            raise LoginRefusedAsError(401, "not signed in")
        if not actor.can(permission):
            raise LoginRefusedAsError(403, f"your roles do not allow {permission.value}")
        person = accounts.person_by_employee_number(db, number)
        if person is None:
            raise LoginRefusedAsError(404, "no such person")
        return person

    @router.post("/people/{employee_number}/unlock", response_model=None)
    def unlock(employee_number: str, body: Why, actor: Caller) -> Any:
        from mes.auth.lockout import unlock_refusal

        try:
            with transaction() as db:
                person = load(db, actor, Permission.PEOPLE_UNLOCK, employee_number)
                assert actor is not None
                refusal = unlock_refusal(
                    actor.person_id, actor.roles, person.id, [str(r) for r in person.roles]
                )
                if refusal:
                    raise LoginRefusedAsError(403, refusal)
                before = audit.snapshot(person)
                was = accounts.unlock(db, person)
                audit.record(
                    db, actor, "person.unlock", "person", person.id, why=body.why,
                    before=before, after=audit.snapshot(person),
                )  # fmt: skip
                return {"employee_number": person.employee_number, "was_locked": was is not None}
        except LoginRefusedAsError as exc:
            return JSONResponse({"detail": exc.message}, exc.status)

    def check_current_pin(actor: Actor | None, number: str, current: str, request: Request) -> None:
        """Changing one's own PIN needs the current one (a failure counts, and is kept)."""
        maker = backend.sessionmaker
        assert maker is not None
        with maker() as db:
            person = load(db, actor, Permission.UNITS_READ, number)
            if person.pin_hash is None:
                return
            try:
                backend.auth.reauth_pin(db, person, current, Attempt(address_of(request)))
            except LoginRefused as exc:
                db.commit()
                raise LoginRefusedAsError(exc.status, exc.message) from None
            db.commit()

    @router.post("/people/{employee_number}/pin", status_code=204, response_model=None)
    def set_pin(employee_number: str, body: NewPin, request: Request, actor: Caller) -> Any:
        try:
            self_service = actor is not None and actor.employee_number == employee_number
            if self_service:
                check_current_pin(actor, employee_number, body.current_pin or "", request)
            with transaction() as db:
                permission = Permission.UNITS_READ if self_service else Permission.PEOPLE_MANAGE
                person = load(db, actor, permission, employee_number)
                accounts.set_pin(db, backend.keys, person, body.pin)
                audit.record(db, actor or "system", "person.pin_set", "person", person.id)
        except PinRejected as exc:
            return JSONResponse({"detail": str(exc), "problems": exc.reasons}, 422)
        except LoginRefusedAsError as exc:
            return JSONResponse({"detail": exc.message}, exc.status)
        return Response(status_code=204)

    @router.post("/people/{employee_number}/password", status_code=204, response_model=None)
    def set_password(employee_number: str, body: NewPassword, actor: Caller) -> Any:
        try:
            with transaction() as db:
                person = load(db, actor, Permission.PEOPLE_MANAGE, employee_number)
                accounts.set_password(db, backend.keys, person, body.password)
                backend.store.end_all_for(db, person.id)
                audit.record(db, actor or "system", "person.password_set", "person", person.id)
        except PasswordRejected as exc:
            return JSONResponse({"detail": str(exc), "problems": exc.reasons}, 422)
        except LoginRefusedAsError as exc:
            return JSONResponse({"detail": exc.message}, exc.status)
        return Response(status_code=204)

    @router.post("/people/{employee_number}/totp/reset", response_model=None)
    def reset_totp(employee_number: str, body: Why, actor: Caller) -> Any:
        try:
            with transaction() as db:
                person = load(db, actor, Permission.PEOPLE_MANAGE, employee_number)
                accounts.reset_totp(db, person)
                backend.store.end_all_for(db, person.id)
                audit.record(
                    db, actor or "system", "person.totp_reset", "person", person.id, why=body.why
                )
                return {"employee_number": person.employee_number, "totp": "reset"}
        except LoginRefusedAsError as exc:
            return JSONResponse({"detail": exc.message}, exc.status)

    @router.post("/people/{employee_number}/badges", response_model=None)
    def issue_badge(employee_number: str, body: Why, actor: Caller) -> Any:
        """Revokes the person's active badges and issues a new one; the token is shown once."""
        try:
            with transaction() as db:
                person = load(db, actor, Permission.PEOPLE_MANAGE, employee_number)
                assert actor is not None
                token, revoked = accounts.reissue_badge(
                    db, backend.keys, person, body.why, actor.person_id
                )
                badge = db.scalars(
                    select(Badge).where(Badge.person_id == person.id, Badge.revoked_at.is_(None))
                ).one()
                audit.record(
                    db, actor, "badge.issue", "badge", badge.id, why=body.why,
                    after={"person_id": person.id, "revoked": revoked},
                )  # fmt: skip
                return {"badge_id": badge.id, "token": token, "revoked": revoked}
        except LoginRefusedAsError as exc:
            return JSONResponse({"detail": exc.message}, exc.status)

    @router.post("/badges/{badge_id}/revoke", response_model=None)
    def revoke_badge(badge_id: int, body: Why, actor: Caller) -> Any:
        try:
            with transaction() as db:
                badge = db.get(Badge, badge_id)
                if badge is None:
                    raise LoginRefusedAsError(404, "no such badge")
                person = db.get(Person, badge.person_id)
                assert person is not None
                load(db, actor, Permission.PEOPLE_MANAGE, person.employee_number)
                assert actor is not None
                changed = accounts.revoke_badge(db, badge, body.why)
                if changed:
                    audit.record(db, actor, "badge.revoke", "badge", badge.id, why=body.why)
                return {"badge_id": badge.id, "revoked": True, "changed": changed}
        except LoginRefusedAsError as exc:
            return JSONResponse({"detail": exc.message}, exc.status)

    return router


class LoginRefusedAsError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
