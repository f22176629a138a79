"""The MES app the load benchmark serves: a SQLite file database with stations, operators
and badges, the real auth backend and security headers.

Until `mes.app.create_app` exists this is the auth layer alone (its routes); afterwards the
same database and backend go into the real application.
"""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import FastAPI
from starlette.types import ASGIApp

import mes.models.audit
import mes.models.people
from mes.api.deps import SESSIONS_KEY
from mes.auth import accounts
from mes.auth.accounts import Keys
from mes.auth.backend import SessionAuthBackend
from mes.auth.headers import SecurityHeadersMiddleware
from mes.auth.secrets import load_secrets
from mes.config import MesSettings, load_settings
from mes.db import Base, make_engine, make_sessionmaker
from mes.models.people import Person, PersonRole, Station

_ = (mes.models.audit, mes.models.people)
TOKENS = "bench-tokens.json"


def seed(state: Path, stations: int, pin: str) -> list[str]:
    """Create the database: `stations` stations and operators, one badge each; the tokens."""
    settings = load_settings(state)
    engine = make_engine(settings.database_url)
    Base.metadata.create_all(engine)
    keys = Keys.from_secrets(load_secrets(settings.secrets_dir))
    tokens: list[str] = []
    with make_sessionmaker(engine)() as db, db.begin():
        stored_pin: str | None = None
        for i in range(stations):
            db.add(Station(code=f"ST-{i:02d}", name=f"Station {i}"))
            person = Person(employee_number=f"B{i:04d}", name=f"Operator {i}")
            person.role_links = [PersonRole(role="operator")]
            db.add(person)
            db.flush()
            if stored_pin is None:  # one argon2 hash, reused: seeding stays quick
                accounts.set_pin(db, keys, person, pin)
                stored_pin = person.pin_hash
            person.pin_hash = stored_pin
            tokens.append(accounts.issue_badge(db, keys, person, None))
    (state / TOKENS).write_text(json.dumps(tokens))
    engine.dispose()
    return tokens


def bench_app(settings: MesSettings) -> ASGIApp:
    from bench.mes import bench_limits

    keys = Keys.from_secrets(load_secrets(settings.secrets_dir))
    backend = SessionAuthBackend(keys, state=settings.state_dir, limits=bench_limits())
    app = FastAPI()
    setattr(app.state, SESSIONS_KEY, make_sessionmaker(make_engine(settings.database_url)))
    backend.install(app)
    return SecurityHeadersMiddleware(app)
