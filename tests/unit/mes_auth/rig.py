"""A small MES stand-in for auth tests: SQLite in memory, the real models, the real backend,
and a FastAPI app with one protected route (the application proper is not needed)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session, sessionmaker

import mes.models.audit
import mes.models.people
from gateway.events import Event
from mes.api.deps import SESSIONS_KEY
from mes.auth import accounts
from mes.auth.accounts import Keys
from mes.auth.backend import SessionAuthBackend
from mes.auth.hashing import TEST_PARAMS
from mes.auth.headers import SecurityHeadersMiddleware
from mes.auth.notify import Notifier
from mes.auth.secrets import load_secrets
from mes.db import Base, make_engine, make_sessionmaker
from mes.domain.errors import MesError
from mes.models.people import Person, PersonRole, Station

_ = (mes.models.audit, mes.models.people)
BASE = "https://mes.test"
PIN = "839201"
PASSWORD = "correct horse battery"


class Clock:
    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    backend: SessionAuthBackend
    maker: sessionmaker[Session]
    app: FastAPI
    events: list[Event] = field(default_factory=list)
    tokens: dict[str, str] = field(default_factory=dict)

    def db(self) -> Session:
        return self.maker()

    def person(self, number: str) -> Person:
        with self.maker() as db:
            found = accounts.person_by_employee_number(db, number)
            assert found is not None
            return found

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        cookies = kwargs.pop("cookies", None)

        async def run() -> httpx.Response:
            transport = httpx.ASGITransport(self.app, client=("198.18.10.11", 40000))
            async with httpx.AsyncClient(
                transport=transport, base_url=BASE, cookies=cookies
            ) as client:
                return await client.request(method, path, **kwargs)

        return asyncio.run(run())


def make_rig(tmp: Path, *, capture: bool = True, state: Path | None = None) -> Rig:
    engine = make_engine("sqlite:///:memory:")
    Base.metadata.create_all(engine)
    maker = make_sessionmaker(engine)
    keys = Keys.from_secrets(load_secrets(tmp / "secrets"), TEST_PARAMS)
    events: list[Event] = []
    notifier = Notifier(state, events.append if capture else None)
    backend = SessionAuthBackend(keys, state=state, notifier=notifier)
    app = FastAPI()
    setattr(app.state, SESSIONS_KEY, maker)
    backend.install(app)

    @app.exception_handler(MesError)
    async def mes_error(request: Request, exc: MesError) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, exc.status)

    @app.api_route("/api/thing", methods=["GET", "POST"])
    async def thing(request: Request) -> Any:
        with maker() as db, db.begin():
            actor = await backend.current_actor(request, db)
        if actor is None:
            return JSONResponse({"detail": "not signed in"}, 401)
        return {"who": actor.employee_number}

    app.add_middleware(SecurityHeadersMiddleware)
    rig = Rig(backend, maker, app, events)
    _seed(rig, keys)
    return rig


def _seed(rig: Rig, keys: Keys) -> None:
    with rig.maker() as db, db.begin():
        db.add(Station(code="ST-1", name="Assembly 1"))
        db.add(Station(code="ST-2", name="Assembly 2"))
        db.add(Station(code="OLD", name="Gone", active=False))
        for number, name, roles in (
            ("E100", "Olga Operator", ["operator"]),
            ("E200", "Lee Lead", ["lead"]),
            ("E300", "Quinn Quality", ["quality"]),
            ("E400", "Ada Admin", ["admin"]),
        ):
            person = Person(employee_number=number, name=name)
            person.role_links = [PersonRole(role=r) for r in roles]
            db.add(person)
            db.flush()
            accounts.set_pin(db, keys, person, PIN)
            rig.tokens[number] = accounts.issue_badge(db, keys, person, None)
            if roles[0] in ("quality", "admin"):
                accounts.set_password(db, keys, person, PASSWORD)
