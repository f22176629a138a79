"""Test helpers for the MES: a header-trusting auth backend, people, and a small plant.

`HeaderAuth` stands in for the real `mes.auth` backend: it believes `X-Test-Person`
(an employee number) and `X-Test-Station` (a station id). Signature credentials are right
when the PIN is `GOOD_PIN` or the password/TOTP pair is `GOOD_PASSWORD`/`GOOD_TOTP`; wrong
ones count towards a lockout after `LOCK_AFTER` failures, as the real backend does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from mes.db import utc_now
from mes.domain.actions import ActionKind
from mes.domain.actor import Actor
from mes.domain.content import ActionSpec, ProcessContent, StepSpec
from mes.domain.errors import SignatureRejected
from mes.domain.lifecycle import Tracking
from mes.domain.roles import Role
from mes.domain.signing import SignatureMethod
from mes.models import Part, Person, PersonRole, Station
from mes.services import parts, processes
from mes.signatures import SignatureCredentials, SignatureGrant

GOOD_PIN = "482913"
GOOD_PASSWORD = "correct horse battery staple"
GOOD_TOTP = "123456"
LOCK_AFTER = 5


def actor_of(person: Person, station_id: int | None = None) -> Actor:
    return Actor(
        person_id=person.id,
        employee_number=person.employee_number,
        name=person.name,
        roles=person.roles,
        us_person=person.us_person,
        itar_authorised=person.itar_authorised,
        station_id=station_id,
    )


class HeaderAuth:
    """The test `AuthBackend` (see the module docstring)."""

    async def current_actor(self, request: Request, db: Session) -> Actor | None:
        number = request.headers.get("x-test-person")
        if not number:
            return None
        person = db.scalar(select(Person).where(Person.employee_number == number))
        if person is None or not person.active or person.locked_at is not None:
            return None
        station = request.headers.get("x-test-station")
        return actor_of(person, int(station) if station and station.isdigit() else None)

    def verify_signature(
        self,
        db: Session,
        actor: Actor,
        credentials: SignatureCredentials,
        *,
        address: str | None = None,
    ) -> SignatureGrant:
        person = db.get(Person, actor.person_id)
        assert person is not None
        if person.locked_at is not None:
            raise SignatureRejected("locked out")
        if credentials.pin == GOOD_PIN:
            person.pin_failures = 0
            return SignatureGrant(person.id, SignatureMethod.PIN, utc_now())
        if credentials.password == GOOD_PASSWORD and credentials.totp == GOOD_TOTP:
            return SignatureGrant(person.id, SignatureMethod.PASSWORD_TOTP, utc_now())
        person.pin_failures += 1
        if person.pin_failures >= LOCK_AFTER:
            person.locked_at = utc_now()
        raise SignatureRejected("signature refused: wrong credentials")


def grant(actor: Actor) -> SignatureGrant:
    return SignatureGrant(actor.person_id, SignatureMethod.PIN, utc_now())


def add_person(
    session: Session,
    number: str,
    roles: set[Role],
    *,
    cleared: bool = False,
    name: str | None = None,
) -> Person:
    person = Person(
        employee_number=number,
        name=name or f"Person {number}",
        us_person=cleared,
        itar_authorised=cleared,
    )
    person.role_links = [PersonRole(role=r.value) for r in sorted(roles)]
    session.add(person)
    session.flush()
    return person


def content(*steps: StepSpec, title: str = "Assemble") -> ProcessContent:
    return ProcessContent(title=title, steps=steps)


def step(title: str, *actions: ActionSpec, instructions: str = "Do it.") -> StepSpec:
    return StepSpec(title=title, instructions=instructions, actions=actions)


def action(kind: str, label: str | None = None, required: bool = True, **params: Any) -> ActionSpec:
    return ActionSpec(ActionKind(kind), label or kind, required, params)


@dataclass
class Plant:
    """A small plant: a station, one person per role (and cleared ones), parts, processes."""

    session: Session
    station: Station
    people: dict[str, Person] = field(default_factory=dict)
    parts: dict[str, Part] = field(default_factory=dict)

    def actor(self, key: str, *, at_station: bool = False) -> Actor:
        return actor_of(self.people[key], self.station.id if at_station else None)


def build_plant(session: Session) -> Plant:
    """People: operator, lead, engineer, engineer2, quality, admin, auditor, and cleared
    ('x-' prefixed) engineer, quality, lead, operator and auditor. Parts: `board` (serial),
    `screw` (lot), `widget` (serial, consumes a board and screws), `secret` (serial, ITAR),
    `secret-sub` (serial, ITAR)."""
    station = Station(code="ST1", name="Station 1", location="Line A")
    session.add(station)
    plant = Plant(session, station)
    for key, roles in {
        "operator": {Role.OPERATOR},
        "lead": {Role.LEAD},
        "engineer": {Role.ENGINEER},
        "engineer2": {Role.ENGINEER},
        "quality": {Role.QUALITY},
        "quality2": {Role.QUALITY},
        "admin": {Role.ADMIN},
        "auditor": {Role.AUDITOR},
    }.items():
        plant.people[key] = add_person(session, key.upper(), roles)
        cleared_roles = {Role.OPERATOR, Role.LEAD, Role.ENGINEER, Role.QUALITY, Role.AUDITOR}
        if roles <= cleared_roles and key[-1] != "2":
            plant.people[f"x-{key}"] = add_person(session, f"X-{key.upper()}", roles, cleared=True)
    eng, xeng = plant.actor("engineer"), plant.actor("x-engineer")
    for key, tracking, itar, who in (
        ("board", Tracking.SERIAL, False, eng),
        ("screw", Tracking.LOT, False, eng),
        ("widget", Tracking.SERIAL, False, eng),
        ("secret", Tracking.SERIAL, True, xeng),
        ("secret-sub", Tracking.SERIAL, True, xeng),
    ):
        plant.parts[key] = parts.create_part(
            session, who, parts.PartInput(key.upper(), "A", f"{key} part", tracking, itar)
        )
    session.flush()
    return plant


def simple_content(title: str = "Build") -> ProcessContent:
    return content(
        step("Check", action("confirm", "Parts present")),
        step("Test", action("measure", "Voltage", min=4.5, max=5.5, unit="V")),
        title=title,
    )


def released_process(plant: Plant, part_key: str, body: ProcessContent | None = None) -> int:
    """Create, submit and release the first revision of a part's process; its id."""
    cleared = plant.parts[part_key].export_controlled
    author = plant.actor("x-engineer" if cleared else "engineer")
    reviewer = plant.actor("x-quality" if cleared else "quality")
    session = plant.session
    process = processes.create_process(
        session, author, plant.parts[part_key].id, body or simple_content()
    )
    processes.submit(session, author, process.id)
    processes.release(session, reviewer, process.id, grant(reviewer))
    return process.id
