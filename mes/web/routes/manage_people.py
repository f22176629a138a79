"""People: who works here, their roles and export-control clearance.

GET  /manage/people[?q]          list                                  (people.read)
GET  /manage/people/new          the form                              (people.manage)
POST /manage/people              create                                (people.manage)
GET  /manage/people/{id}         the person, badges, credential state   (people.read)
POST /manage/people/{id}         name, roles, clearance, active, why    (people.manage)

Credentials (PIN, password, authenticator, badges, unlock) are `manage_credentials`.
Nobody changes their own roles or deactivates themselves (the service refuses it).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from mes.api.deps import request_session
from mes.domain.errors import MesError
from mes.domain.roles import Permission as P
from mes.domain.roles import Role
from mes.models.people import Person
from mes.services import people
from mes.web.access import Form, WebUser, manage
from mes.web.flash import see_other
from mes.web.forms import Fields
from mes.web.render import page
from mes.web.routes.common import Id

router = APIRouter(prefix="/manage/people", include_in_schema=False)
Admin = Annotated[WebUser, manage(P.PEOPLE_MANAGE)]
Reader = Annotated[WebUser, manage(P.PEOPLE_READ)]
ROLES = [r.value for r in Role]
FIELDS = {"employee_number": "employee_number", "name": "name", "itar_authorised": "itar"}


@router.get("")
def list_people(
    request: Request, user: Reader, q: Annotated[str | None, Query(max_length=100)] = None
) -> Response:
    query = (q or "").replace("\x00", "").strip() or None
    with request_session(request) as db:
        found = people.list_people(db, user.actor, query=query, limit=500)
        return page(request, "manage/people.html", user=user, people=found, q=query or "")


def _new_form(
    request: Request, user: WebUser, fields: Fields | None = None, error: str | None = None,
    status: int = 200,
) -> Response:  # fmt: skip
    return page(request, "manage/person_new.html", user=user, status=status, roles=ROLES,
                values=fields.values if fields else {}, problems=fields.problems if fields else {},
                error=error)  # fmt: skip


@router.get("/new")
def new_person(request: Request, user: Admin) -> Response:
    return _new_form(request, user)


def _employee_number(fields: Fields) -> str:
    number = fields.text("employee_number", limit=32, required=True)
    if number and not (number[0].isalnum() and all(c.isalnum() or c in "._-" for c in number)):
        fields.problem("employee_number", "letters, digits and ._- only")
    return number


@router.post("")
def create_person(request: Request, form: Form, user: Admin) -> Response:
    fields = Fields(form)
    data = people.PersonInput(
        employee_number=_employee_number(fields),
        name=fields.text("name", limit=120, required=True),
        roles=frozenset(Role(r) for r in fields.choices("roles", ROLES)),
        us_person=fields.flag("us_person"),
        itar_authorised=fields.flag("itar"),
    )
    if not fields.ok:
        return _new_form(request, user, fields, status=422)
    with request_session(request) as db:
        try:
            person = people.create_person(db, user.actor, data)
            db.commit()
        except MesError as exc:
            db.rollback()
            return _new_form(request, user, fields, fields.absorb(exc, FIELDS), exc.status)
        return see_other(
            f"/manage/people/{person.id}",
            f"{person.name} added. Next: a badge and a PIN (stations), or a password "
            "(Manage Page).",
        )


def person_values(person: Person) -> dict[str, str]:
    return {
        "name": person.name,
        "roles": ",".join(sorted(person.roles)),
        "us_person": "yes" if person.us_person else "",
        "itar": "yes" if person.itar_authorised else "",
        "active": "yes" if person.active else "",
    }


def person_page(
    request: Request, user: WebUser, person_id: int, *, status: int = 200,
    error: str | None = None, values: dict[str, str] | None = None,
    problems: dict[str, str] | None = None, form_of: str = "",
) -> Response:  # fmt: skip
    with request_session(request) as db:
        person = people.get_person(db, user.actor, person_id)
        badges = people.list_badges(db, user.actor, person.id)
        shown = values if values is not None and form_of == "edit" else person_values(person)
        return page(request, "manage/person.html", user=user, status=status, person=person,
                    badges=badges, roles=ROLES, values=shown, error=error,
                    problems=problems or {}, form_of=form_of,
                    own=person.id == user.actor.person_id)  # fmt: skip


@router.get("/{person_id}")
def show_person(request: Request, person_id: Id, user: Reader) -> Response:
    return person_page(request, user, person_id)


@router.post("/{person_id}")
def update_person(request: Request, person_id: Id, form: Form, user: Admin) -> Response:
    fields = Fields(form)
    name = fields.text("name", limit=120, required=True)
    roles = frozenset(Role(r) for r in fields.choices("roles", ROLES))
    us_person, itar, active = fields.flag("us_person"), fields.flag("itar"), fields.flag("active")
    why = fields.optional("why", limit=1000)
    if not fields.ok:
        return person_page(request, user, person_id, status=422, values=fields.values,
                           problems=fields.problems, form_of="edit")  # fmt: skip
    with request_session(request) as db:
        try:
            person = people.update_person(db, user.actor, person_id, name=name, roles=roles,
                                          us_person=us_person, itar_authorised=itar,
                                          active=active, why=why)  # fmt: skip
            db.commit()
        except MesError as exc:
            db.rollback()
            message = fields.absorb(exc, FIELDS)
            return person_page(request, user, person_id, status=exc.status, error=message,
                               values=fields.values, problems=fields.problems,
                               form_of="edit")  # fmt: skip
        return see_other(f"/manage/people/{person.id}", "Saved.")
