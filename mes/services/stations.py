"""Stations: the places on the floor where operators work; admins keep the list.

Deactivating a station ends the sessions bound to it.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mes import audit
from mes.domain.actor import Actor
from mes.domain.errors import Conflict
from mes.domain.roles import Permission
from mes.models.people import AuthSession, Station
from mes.services.common import get_or_404, page


def create_station(
    session: Session, actor: Actor, code: str, name: str, location: str = ""
) -> Station:
    actor.require(Permission.STATIONS_MANAGE)
    code = code.strip()
    if session.scalar(select(Station.id).where(Station.code == code)) is not None:
        raise Conflict(f"station {code} exists already")
    station = Station(code=code, name=name.strip(), location=location.strip())
    session.add(station)
    session.flush()
    audit.record(
        session, actor, "station.created", "station", station.id, after=audit.snapshot(station)
    )
    return station


def update_station(
    session: Session,
    actor: Actor,
    station_id: int,
    *,
    name: str | None = None,
    location: str | None = None,
    active: bool | None = None,
) -> Station:
    actor.require(Permission.STATIONS_MANAGE)
    station = get_or_404(session, Station, station_id, "station")
    before = audit.snapshot(station)
    if name is not None:
        station.name = name.strip()
    if location is not None:
        station.location = location.strip()
    if active is not None:
        station.active = active
    session.flush()
    if not station.active:
        session.execute(delete(AuthSession).where(AuthSession.station_id == station.id))
    after = audit.snapshot(station)
    if after != before:
        audit.record(
            session, actor, "station.updated", "station", station.id, before=before, after=after
        )
    return station


def get_station(session: Session, actor: Actor, station_id: int) -> Station:
    actor.require(Permission.STATIONS_READ)
    return get_or_404(session, Station, station_id, "station")


def list_stations(
    session: Session, actor: Actor, *, active: bool | None = None, limit: int = 100, offset: int = 0
) -> Sequence[Station]:
    actor.require(Permission.STATIONS_READ)
    limit, offset = page(limit, offset)
    stmt = select(Station).order_by(Station.code)
    if active is not None:
        stmt = stmt.where(Station.active.is_(active))
    return session.scalars(stmt.limit(limit).offset(offset)).all()
