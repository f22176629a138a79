"""The auth layer inside the real application (`mes.server.build_app`: migrations,
`create_app`, login routes, headers): a signed-in admin reads `/api/v1/people`."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path

import httpx
from sqlalchemy import select

from mes import server
from mes.auth import accounts, hashing
from mes.auth.accounts import Keys
from mes.auth.secrets import load_secrets
from mes.config import load_settings
from mes.db import make_engine, make_sessionmaker, utc_now
from mes.models.people import AuthSession, Person, PersonRole, Station

PIN = "839201"


def test_login_then_api(tmp_path: Path) -> None:
    settings = load_settings(tmp_path)
    app = server.build_app(settings)
    keys = Keys.from_secrets(load_secrets(settings.secrets_dir), hashing.TEST_PARAMS)
    engine = make_engine(settings.database_url)
    with make_sessionmaker(engine)() as db, db.begin():
        db.add(Station(code="ST-1", name="Assembly 1"))
        admin = Person(employee_number="E400", name="Ada Admin")
        admin.role_links = [PersonRole(role="admin")]
        db.add(admin)
        db.flush()
        accounts.set_pin(db, keys, admin, PIN)
    engine.dispose()

    async def flow() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
        transport = httpx.ASGITransport(app, client=("198.18.10.11", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="https://gw.test") as c:
            anonymous = await c.get("/api/v1/people")
            login = await c.post(
                "/api/auth/operator/login",
                json={"station": "ST-1", "employee_number": "E400", "pin": PIN},
            )
            people = await c.get("/api/v1/people")
            return anonymous, login, people

    anonymous, login, people = asyncio.run(flow())
    assert anonymous.status_code == 401
    assert anonymous.headers["x-frame-options"] == "DENY"
    assert login.status_code == 200, login.text
    assert people.status_code == 200, people.text
    assert "E400" in people.text
    assert "argon2" not in people.text and "pin_hash" not in people.text


def test_resolving_reads_and_writes_session_upkeep_apart(tmp_path: Path) -> None:
    """The real app resolves callers in a transaction that only reads; what that implies
    writing (last seen, an idle session's end, a locked person's sessions) still happens."""
    settings = load_settings(tmp_path)
    app = server.build_app(settings)
    keys = Keys.from_secrets(load_secrets(settings.secrets_dir), hashing.TEST_PARAMS)
    engine = make_engine(settings.database_url)
    maker = make_sessionmaker(engine)
    with maker() as db, db.begin():
        db.add(Station(code="ST-1", name="Assembly 1"))
        for number in ("E401", "E402"):
            person = Person(employee_number=number, name=f"Operator {number}")
            person.role_links = [PersonRole(role="operator")]
            db.add(person)
            db.flush()
            accounts.set_pin(db, keys, person, PIN)

    def sessions_of(number: str) -> list[AuthSession]:
        with maker() as db:
            person = db.scalar(select(Person).where(Person.employee_number == number))
            assert person is not None
            return list(db.scalars(select(AuthSession).where(AuthSession.person_id == person.id)))

    def age(number: str, seconds: int) -> None:
        ids = {row.id for row in sessions_of(number)}
        with maker() as db, db.begin():
            for row in db.scalars(select(AuthSession).where(AuthSession.id.in_(ids))):
                row.last_seen_at = utc_now() - datetime.timedelta(seconds=seconds)

    async def whoami(number: str) -> tuple[int, int]:
        transport = httpx.ASGITransport(app, client=("198.18.10.11", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="https://gw.test") as c:
            login = await c.post(
                "/api/auth/operator/login",
                json={"station": "ST-1", "employee_number": number, "pin": PIN},
            )
            assert login.status_code == 200, login.text
            age(number, 60)
            fresh = await c.get("/api/auth/session")
            age(number, 3600)
            idle = await c.get("/api/auth/session")
            return fresh.status_code, idle.status_code

    before = utc_now()
    fresh, idle = asyncio.run(whoami("E401"))
    assert (fresh, idle) == (200, 401)
    assert sessions_of("E401") == []  # the idle session was deleted

    async def touched_then_locked() -> tuple[datetime.datetime, int]:
        transport = httpx.ASGITransport(app, client=("198.18.10.11", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="https://gw.test") as c:
            await c.post(
                "/api/auth/operator/login",
                json={"station": "ST-1", "employee_number": "E402", "pin": PIN},
            )
            age("E402", 60)
            assert (await c.get("/api/auth/session")).status_code == 200
            seen = sessions_of("E402")[0].last_seen_at
            with maker() as db, db.begin():
                person = db.scalar(select(Person).where(Person.employee_number == "E402"))
                assert person is not None
                person.locked_at = utc_now()
            return seen, (await c.get("/api/auth/session")).status_code

    seen, locked = asyncio.run(touched_then_locked())
    assert seen.replace(tzinfo=datetime.UTC) >= before  # last seen was written
    assert locked == 401
    assert sessions_of("E402") == []  # a locked person's sessions end
    engine.dispose()
