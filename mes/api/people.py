"""`/api/v1/people` and `/api/v1/stations`: who works here, with which roles, and where.

Credentials (PINs, passwords, TOTP, badges issued or revoked, unlocking) are the auth
layer's routes under `/api/auth`; here badges are only listed.
"""

from __future__ import annotations

import datetime
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import Field

from mes.api.common import (
    NO_NUL,
    Body,
    Code,
    Flag,
    Limit,
    Name,
    Offset,
    Out,
    PathId,
    Reason,
    Search,
)
from mes.api.deps import DB, need
from mes.domain.actor import Actor
from mes.domain.roles import Permission as P
from mes.domain.roles import Role
from mes.models.people import Person
from mes.services import people, stations

router = APIRouter(tags=["people"])
EmployeeNumber = Annotated[
    str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]
Roles = Annotated[list[Role], Field(max_length=len(Role))]
Place = Annotated[str, Field(max_length=200, pattern=NO_NUL)]


class PersonIn(Body):
    employee_number: EmployeeNumber
    name: Name
    roles: Roles = Field(default_factory=list)
    us_person: Flag = False
    itar_authorised: Flag = False


class PersonPatch(Body):
    name: Name | None = None
    roles: Roles | None = None
    us_person: Flag | None = None
    itar_authorised: Flag | None = None
    active: Flag | None = None
    why: Reason | None = None


class PersonOut(Out):
    id: int
    employee_number: str
    name: str
    roles: list[Role]
    us_person: bool
    itar_authorised: bool
    active: bool
    locked: bool
    has_pin: bool
    has_password: bool
    created_at: datetime.datetime


class BadgeOut(Out):
    id: int
    person_id: int
    issued_at: datetime.datetime
    revoked_at: datetime.datetime | None
    revoked_reason: str | None
    active: bool


class StationIn(Body):
    code: Code
    name: Name
    location: Place = ""


class StationPatch(Body):
    name: Name | None = None
    location: Place | None = None
    active: Flag | None = None


class StationOut(Out):
    id: int
    code: str
    name: str
    location: str
    active: bool
    created_at: datetime.datetime


def _person(person: Person) -> PersonOut:
    return PersonOut(
        id=person.id,
        employee_number=person.employee_number,
        name=person.name,
        roles=sorted(person.roles),
        us_person=person.us_person,
        itar_authorised=person.itar_authorised,
        active=person.active,
        locked=person.locked,
        has_pin=person.pin_hash is not None,
        has_password=person.password_hash is not None,
        created_at=person.created_at,
    )


@router.get("/people")
def list_people(
    db: DB,
    actor: Annotated[Actor, need(P.PEOPLE_READ)],
    q: Search = None,
    active: Annotated[bool | None, Query()] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[PersonOut]:
    found = people.list_people(db, actor, query=q, active=active, limit=limit, offset=offset)
    return [_person(p) for p in found]


@router.post("/people", status_code=201)
def create_person(
    body: PersonIn, db: DB, actor: Annotated[Actor, need(P.PEOPLE_MANAGE)]
) -> PersonOut:
    person = people.create_person(
        db,
        actor,
        people.PersonInput(
            body.employee_number,
            body.name,
            frozenset(body.roles),
            body.us_person,
            body.itar_authorised,
        ),
    )
    db.commit()
    return _person(person)


@router.get("/people/{person_id}")
def get_person(
    person_id: PathId, db: DB, actor: Annotated[Actor, need(P.PEOPLE_READ)]
) -> PersonOut:
    return _person(people.get_person(db, actor, person_id))


@router.patch("/people/{person_id}")
def update_person(
    person_id: PathId, body: PersonPatch, db: DB, actor: Annotated[Actor, need(P.PEOPLE_MANAGE)]
) -> PersonOut:
    person = people.update_person(
        db,
        actor,
        person_id,
        name=body.name,
        roles=frozenset(body.roles) if body.roles is not None else None,
        us_person=body.us_person,
        itar_authorised=body.itar_authorised,
        active=body.active,
        why=body.why,
    )
    db.commit()
    return _person(person)


@router.get("/people/{person_id}/badges")
def list_badges(
    person_id: PathId, db: DB, actor: Annotated[Actor, need(P.PEOPLE_READ)]
) -> list[BadgeOut]:
    return [BadgeOut.model_validate(b) for b in people.list_badges(db, actor, person_id)]


@router.get("/stations")
def list_stations(
    db: DB,
    actor: Annotated[Actor, need(P.STATIONS_READ)],
    active: Annotated[bool | None, Query()] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[StationOut]:
    found = stations.list_stations(db, actor, active=active, limit=limit, offset=offset)
    return [StationOut.model_validate(s) for s in found]


@router.post("/stations", status_code=201)
def create_station(
    body: StationIn, db: DB, actor: Annotated[Actor, need(P.STATIONS_MANAGE)]
) -> StationOut:
    station = stations.create_station(db, actor, body.code, body.name, body.location)
    db.commit()
    return StationOut.model_validate(station)


@router.get("/stations/{station_id}")
def get_station(
    station_id: PathId, db: DB, actor: Annotated[Actor, need(P.STATIONS_READ)]
) -> StationOut:
    return StationOut.model_validate(stations.get_station(db, actor, station_id))


@router.patch("/stations/{station_id}")
def update_station(
    station_id: PathId,
    body: StationPatch,
    db: DB,
    actor: Annotated[Actor, need(P.STATIONS_MANAGE)],
) -> StationOut:
    station = stations.update_station(
        db, actor, station_id, name=body.name, location=body.location, active=body.active
    )
    db.commit()
    return StationOut.model_validate(station)
