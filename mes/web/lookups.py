"""Names for the ids in records: who did it, at which station (read-only lookups)."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session

from mes.models.people import Person, Station


def names_of(db: Session, person_ids: Iterable[int | None]) -> dict[int, str]:
    """'E100 Olga Operator' per person id (who did what is part of every record shown)."""
    wanted = {i for i in person_ids if i is not None}
    if not wanted:
        return {}
    rows = db.execute(
        select(Person.id, Person.employee_number, Person.name).where(Person.id.in_(wanted))
    )
    return {pid: f"{name} ({number})" for pid, number, name in rows}


def stations_of(db: Session, station_ids: Iterable[int | None]) -> dict[int, str]:
    """'ST-1 Assembly 1' per station id."""
    wanted = {i for i in station_ids if i is not None}
    if not wanted:
        return {}
    rows = db.execute(select(Station.id, Station.code, Station.name).where(Station.id.in_(wanted)))
    return {sid: f"{code} {name}" for sid, code, name in rows}
