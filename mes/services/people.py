"""People and their roles and export-control clearance: the admin's side of the MES.

Rules: only US persons may be ITAR-authorised; nobody changes their own roles or
deactivates themselves (so admins can never remove the last admin: the one acting stays).
Deactivating a person ends their sessions. Credentials (PINs, passwords, TOTP, badges,
unlocking) belong to the auth layer (`mes.auth.accounts`, `/api/auth/...`); here badges are
only listed, and no credential column is ever audited or answered.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from mes import audit
from mes.domain.actor import Actor
from mes.domain.errors import Conflict, Forbidden, Invalid
from mes.domain.roles import Permission, Role
from mes.domain.visibility import check_authorisation
from mes.models.people import AuthSession, Badge, Person, PersonRole
from mes.services.common import get_or_404, page


def _snapshot(person: Person) -> dict[str, object]:
    return audit.snapshot(person, roles=sorted(r.value for r in person.roles))


def _check_clearance(us_person: bool, itar_authorised: bool) -> None:
    problem = check_authorisation(us_person, itar_authorised)
    if problem:
        raise Invalid(problem, [("itar_authorised", problem)])


@dataclass(frozen=True)
class PersonInput:
    employee_number: str
    name: str
    roles: frozenset[Role]
    us_person: bool = False
    itar_authorised: bool = False


def create_person(session: Session, actor: Actor, data: PersonInput) -> Person:
    actor.require(Permission.PEOPLE_MANAGE)
    _check_clearance(data.us_person, data.itar_authorised)
    number = data.employee_number.strip()
    if session.scalar(select(Person.id).where(Person.employee_number == number)) is not None:
        raise Conflict(f"employee number {number} is taken")
    person = Person(
        employee_number=number,
        name=data.name.strip(),
        us_person=data.us_person,
        itar_authorised=data.itar_authorised,
    )
    person.role_links = [PersonRole(role=role.value) for role in sorted(data.roles)]
    session.add(person)
    session.flush()
    audit.record(session, actor, "person.created", "person", person.id, after=_snapshot(person))
    return person


def update_person(
    session: Session,
    actor: Actor,
    person_id: int,
    *,
    name: str | None = None,
    roles: frozenset[Role] | None = None,
    us_person: bool | None = None,
    itar_authorised: bool | None = None,
    active: bool | None = None,
    why: str | None = None,
) -> Person:
    actor.require(Permission.PEOPLE_MANAGE)
    person = get_or_404(session, Person, person_id, "person")
    before = _snapshot(person)
    if person.id == actor.person_id and (
        (roles is not None and roles != person.roles) or active is False
    ):
        raise Forbidden("nobody changes their own roles or deactivates themselves")
    new_us = person.us_person if us_person is None else us_person
    new_itar = person.itar_authorised if itar_authorised is None else itar_authorised
    _check_clearance(new_us, new_itar)
    if name is not None:
        person.name = name.strip()
    if roles is not None and roles != person.roles:
        person.role_links = [PersonRole(role=role.value) for role in sorted(roles)]
    person.us_person, person.itar_authorised = new_us, new_itar
    if active is not None:
        person.active = active
    session.flush()
    if not person.active:
        session.execute(delete(AuthSession).where(AuthSession.person_id == person.id))
    after = _snapshot(person)
    if after != before:
        audit.record(
            session,
            actor,
            "person.updated",
            "person",
            person.id,
            why=why,
            before=before,
            after=after,
        )
    return person


def get_person(session: Session, actor: Actor, person_id: int) -> Person:
    actor.require(Permission.PEOPLE_READ)
    return get_or_404(session, Person, person_id, "person")


def list_people(
    session: Session,
    actor: Actor,
    *,
    query: str | None = None,
    active: bool | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Sequence[Person]:
    actor.require(Permission.PEOPLE_READ)
    limit, offset = page(limit, offset)
    stmt = select(Person).order_by(Person.employee_number)
    if query:
        pattern = f"%{query.lower()}%"
        stmt = stmt.where(
            or_(
                func.lower(Person.name).like(pattern),
                func.lower(Person.employee_number).like(pattern),
            )
        )
    if active is not None:
        stmt = stmt.where(Person.active.is_(active))
    return session.scalars(stmt.limit(limit).offset(offset)).all()


def list_badges(session: Session, actor: Actor, person_id: int) -> Sequence[Badge]:
    actor.require(Permission.PEOPLE_READ)
    get_or_404(session, Person, person_id, "person")
    return session.scalars(
        select(Badge).where(Badge.person_id == person_id).order_by(Badge.id)
    ).all()
