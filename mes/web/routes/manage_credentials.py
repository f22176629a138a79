"""Credentials of a person: badges, PIN, password, authenticator, unlock.

POST /manage/people/{id}/badges                  issue (reissue: revokes the others); the
                                                 token is shown once        (people.manage)
POST /manage/people/{id}/badges/{badge}/revoke   revoke one                 (people.manage)
POST /manage/people/{id}/pin                     set the PIN                (people.manage)
POST /manage/people/{id}/password                set the password           (people.manage)
POST /manage/people/{id}/totp-reset              the next sign-in enrols again (people.manage)
POST /manage/people/{id}/unlock                  after a lockout            (people.unlock)

The same writes and audit entries as the auth layer's `/api/auth/...` routes, through
`mes.auth.accounts`. Unlike those routes, nobody sets their own PIN or password here (the
API's self-service asks for the current PIN; on this page another admin does it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from mes import audit
from mes.api.deps import request_session
from mes.auth import accounts
from mes.auth.lockout import unlock_refusal
from mes.auth.passwords import PasswordRejected
from mes.auth.pins import PinRejected
from mes.domain.errors import Forbidden, NotFound
from mes.domain.roles import Permission as P
from mes.models.people import Badge, Person
from mes.services.common import get_or_404
from mes.web.access import Form, WebUser, manage, session_backend
from mes.web.flash import Flash, see_other, set_flash
from mes.web.forms import Fields
from mes.web.routes.common import Id
from mes.web.routes.manage_people import person_page

router = APIRouter(prefix="/manage/people/{person_id}", include_in_schema=False)
Admin = Annotated[WebUser, manage(P.PEOPLE_MANAGE)]


def _change(
    request: Request, user: WebUser, person_id: int, form_of: str, fields: Fields,
    change: Callable[[Session, Person], str],
) -> Response:  # fmt: skip
    """Run `change` on the person in one transaction; its answer is the message shown."""
    if not fields.ok:
        return person_page(request, user, person_id, status=422, problems=fields.problems,
                           form_of=form_of)  # fmt: skip
    with request_session(request) as db:
        person = get_or_404(db, Person, person_id, "person")
        try:
            done = change(db, person)
            db.commit()
        except (PinRejected, PasswordRejected) as exc:
            db.rollback()
            problems = {form_of: "; ".join(exc.reasons)}
            return person_page(request, user, person_id, status=422, problems=problems,
                               form_of=form_of)  # fmt: skip
        except Forbidden as exc:
            db.rollback()
            return person_page(request, user, person_id, status=403, error=exc.message)
    return see_other(f"/manage/people/{person_id}", done)


def _not_self(user: WebUser, person: Person, what: str) -> None:
    if person.id == user.actor.person_id:
        raise Forbidden(f"nobody sets their own {what} here: ask another admin")


@router.post("/badges")
def issue_badge(request: Request, person_id: Id, form: Form, user: Admin) -> Response:
    fields = Fields(form)
    why = fields.text("badge_why", limit=500) or "badge issued"
    keys = session_backend(request).keys
    with request_session(request) as db:
        person = get_or_404(db, Person, person_id, "person")
        token, revoked = accounts.reissue_badge(db, keys, person, why, user.actor.person_id)
        badge = db.scalars(
            select(Badge).where(Badge.person_id == person.id, Badge.revoked_at.is_(None))
        ).one()
        audit.record(db, user.actor, "badge.issue", "badge", badge.id, why=why,
                     after={"person_id": person.id, "revoked": revoked})  # fmt: skip
        db.commit()
        name = person.name
    response = see_other(f"/manage/people/{person_id}")
    note = f" ({len(revoked)} earlier badge(s) revoked)" if revoked else ""
    set_flash(response, Flash(f"New badge for {name}{note}. Its token:", "ok", token))
    return response


@router.post("/badges/{badge_id}/revoke")
def revoke_badge(
    request: Request, person_id: Id, badge_id: Id, form: Form, user: Admin
) -> Response:
    fields = Fields(form)
    why = fields.text("revoke_why", limit=500) or "revoked"
    with request_session(request) as db:
        badge = db.get(Badge, badge_id)
        if badge is None or badge.person_id != person_id:
            raise NotFound(f"no badge {badge_id} of this person")
        if accounts.revoke_badge(db, badge, why):
            audit.record(db, user.actor, "badge.revoke", "badge", badge.id, why=why)
        db.commit()
    return see_other(f"/manage/people/{person_id}", f"Badge {badge_id} revoked.")


@router.post("/pin")
def set_pin(request: Request, person_id: Id, form: Form, user: Admin) -> Response:
    fields = Fields(form)
    pin = fields.secret("pin", limit=64)
    if not pin:
        fields.problem("pin", "enter the new PIN")
    keys = session_backend(request).keys

    def change(db: Session, person: Person) -> str:
        _not_self(user, person, "PIN")
        accounts.set_pin(db, keys, person, pin)
        audit.record(db, user.actor, "person.pin_set", "person", person.id)
        return f"PIN set for {person.name}."

    return _change(request, user, person_id, "pin", fields, change)


@router.post("/password")
def set_password(request: Request, person_id: Id, form: Form, user: Admin) -> Response:
    fields = Fields(form)
    password = fields.secret("password", limit=256)
    if not password:
        fields.problem("password", "enter the new password")
    backend = session_backend(request)

    def change(db: Session, person: Person) -> str:
        _not_self(user, person, "password")
        accounts.set_password(db, backend.keys, person, password)
        backend.store.end_all_for(db, person.id)
        audit.record(db, user.actor, "person.password_set", "person", person.id)
        return f"Password set for {person.name}; their sessions were ended."

    return _change(request, user, person_id, "password", fields, change)


@router.post("/totp-reset")
def reset_totp(request: Request, person_id: Id, form: Form, user: Admin) -> Response:
    fields = Fields(form)
    why = fields.text("totp_why", limit=500, required=True)
    backend = session_backend(request)

    def change(db: Session, person: Person) -> str:
        accounts.reset_totp(db, person)
        backend.store.end_all_for(db, person.id)
        audit.record(db, user.actor, "person.totp_reset", "person", person.id, why=why)
        return f"Authenticator reset: {person.name} enrols again at the next sign-in."

    return _change(request, user, person_id, "totp_why", fields, change)


@router.post("/unlock")
def unlock(
    request: Request, person_id: Id, form: Form,
    user: Annotated[WebUser, manage(P.PEOPLE_UNLOCK)],
) -> Response:  # fmt: skip
    fields = Fields(form)
    why = fields.text("unlock_why", limit=500, required=True)

    def change(db: Session, person: Person) -> str:
        refusal = unlock_refusal(
            user.actor.person_id, user.actor.roles, person.id, [str(r) for r in person.roles]
        )
        if refusal:
            raise Forbidden(refusal)
        before = audit.snapshot(person)
        was = accounts.unlock(db, person)
        audit.record(db, user.actor, "person.unlock", "person", person.id, why=why,
                     before=before, after=audit.snapshot(person))  # fmt: skip
        return f"{person.name} unlocked." if was else f"{person.name} was not locked."

    return _change(request, user, person_id, "unlock_why", fields, change)
