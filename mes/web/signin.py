"""Signing in from the screens: the same checks, limits and answers as `/api/auth/...`.

`operator_sign_in` (station code, badge scan or employee number, PIN) and
`manage_sign_in` (employee number, password, TOTP code) follow the auth layer's order step
for step: rate limits first, a short read, argon2 with no database lock held, then a short
write of the outcome (a refusal's failure count is committed before answering). Refusals
are `LoginRefused` with the auth layer's own sentences, which do not say whether a badge
or an employee number exists (a locked account is told to ask a lead: an identifier is not
a secret, and a locked PIN is never tested).

Sign-in forms are posted before any session exists, so their CSRF token is a double-submit
one: a random value in a `__Host-` cookie (only this origin can set it) that the form
repeats in a hidden field; the post must also come from our own origin.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass

from fastapi import Request, Response
from starlette.datastructures import FormData

from mes.api.deps import sessions_of
from mes.auth import accounts, csrf, sessions
from mes.auth.backend import SessionAuthBackend, own_origin
from mes.auth.login import MANAGE_NOT_RECOGNISED, NOT_RECOGNISED, Attempt, LoginRefused
from mes.auth.session_store import NewSession
from mes.web.access import session_backend

LOGIN_COOKIE = "__Host-plantgate-login"
LOGIN_FIELD = "login_token"
LOGIN_MAX_AGE_S = 12 * 3600


def login_token(request: Request) -> tuple[str, bool]:
    """(the sign-in form token, whether the cookie must be set now)."""
    current = request.cookies.get(LOGIN_COOKIE)
    if current and 20 <= len(current) <= 64 and current.replace("-", "").replace("_", "").isalnum():
        return current, False
    return secrets.token_urlsafe(32), True


def set_login_cookie(response: Response, token: str) -> None:
    response.headers.append(
        "set-cookie",
        f"{LOGIN_COOKIE}={token}; Max-Age={LOGIN_MAX_AGE_S}; Path=/; Secure; HttpOnly; "
        "SameSite=Strict",
    )


def login_form_problem(request: Request, form: FormData) -> str | None:
    """Why a sign-in post must be refused (None: it carries our token, from our origin)."""
    headers = {k.lower(): v for k, v in request.headers.items()}
    problem = csrf.origin_problem(headers, own_origin(request))
    if problem:
        return problem
    cookie = request.cookies.get(LOGIN_COOKIE) or ""
    submitted = form.get(LOGIN_FIELD)
    if not isinstance(submitted, str) or not cookie or len(submitted) > 64:
        return "missing or wrong form token"
    if not hmac.compare_digest(submitted.encode(), cookie.encode()):
        return "missing or wrong form token"
    return None


def address_of(request: Request) -> str | None:
    return request.client.host if request.client else None


def end_session(request: Request, cookie: str) -> None:
    """Sign out: delete the session of `cookie`. Call it in a worker thread (on SQLite the
    transaction may wait for the write lock)."""
    with sessions_of(request)() as db:
        session_backend(request).store.end(db, cookie)
        db.commit()


def session_cookie(response: Response, new: NewSession) -> None:
    response.headers.append("set-cookie", sessions.cookie_header(new.session_id, new.max_age))


def operator_sign_in(
    backend: SessionAuthBackend,
    request: Request,
    station_code: str,
    badge: str | None,
    employee_number: str | None,
    pin: str,
) -> NewSession:
    """A new operator session bound to the station (LoginRefused otherwise)."""
    maker = backend.sessionmaker
    assert maker is not None  # install() ran
    auth = backend.auth
    attempt = Attempt(address_of(request), station_code.strip()[:32] or None)
    via, identity = auth.operator_identity(badge, employee_number)
    auth.limit(identity, attempt, via, "login")
    with maker() as db, db.begin():
        candidate = auth.operator_lookup(db, station_code, badge, employee_number)
    outcome = auth.operator_outcome(candidate, pin)  # argon2, no lock held
    refusal: LoginRefused | None = None
    with maker() as db, db.begin():
        try:
            person = auth.settle(db, candidate, outcome, attempt, via=via, context="login",
                                 message=NOT_RECOGNISED, secret=pin)  # fmt: skip
        except LoginRefused as exc:
            refusal = exc  # the failure count commits with this transaction
        else:
            return backend.store.create(
                db,
                person.id,
                "operator",
                candidate.station_id,
                previous=request.cookies.get(sessions.COOKIE_NAME),
            )
    assert refusal is not None  # settle() either returned a person or refused
    raise refusal


@dataclass(frozen=True, repr=False)
class ManageOutcome:
    """A new session, or (first sign-in) the TOTP enrolment URI to show once."""

    session: NewSession | None = None
    enrolment_uri: str | None = None

    def __repr__(self) -> str:
        return f"ManageOutcome(enrolling={self.enrolment_uri is not None})"


def manage_sign_in(
    backend: SessionAuthBackend, request: Request, employee_number: str, password: str, code: str
) -> ManageOutcome:
    maker = backend.sessionmaker
    assert maker is not None
    auth = backend.auth
    attempt = Attempt(address_of(request))
    auth.limit(f"emp:{employee_number.strip()[:32]}", attempt, "password", "login")
    with maker() as db, db.begin():
        person = accounts.person_by_employee_number(db, employee_number)
        candidate = auth.candidate(person, "password")
    outcome = auth.verify(candidate, password, "password")  # no lock held
    refusal: LoginRefused | None = None
    with maker() as db, db.begin():
        try:
            found = auth.settle(db, candidate, outcome, attempt, via="password",
                                context="login", message=MANAGE_NOT_RECOGNISED)  # fmt: skip
            result = auth.manage_second_factor(db, found, code, attempt)
        except LoginRefused as exc:
            refusal = exc
        else:
            if result.enrolment_uri is not None:
                return ManageOutcome(enrolment_uri=result.enrolment_uri)
            new = backend.store.create(
                db, found.id, "manage", previous=request.cookies.get(sessions.COOKIE_NAME)
            )
            return ManageOutcome(session=new)
    assert refusal is not None  # settle() either returned a person or refused
    raise refusal


def refusal_text(refused: LoginRefused) -> str:
    """The sentence shown for a refused sign-in (with the wait, when rate limited)."""
    if refused.status == 429 and refused.retry_after > 0:
        return f"{refused.message} (in {max(1, round(refused.retry_after))} s)"
    return refused.message
