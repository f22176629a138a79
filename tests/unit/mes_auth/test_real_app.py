"""The auth layer inside the real application (`mes.server.build_app`: migrations,
`create_app`, login routes, headers): a signed-in admin reads `/api/v1/people`."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from mes import server
from mes.auth import accounts, hashing
from mes.auth.accounts import Keys
from mes.auth.secrets import load_secrets
from mes.config import load_settings
from mes.db import make_engine, make_sessionmaker
from mes.models.people import Person, PersonRole, Station

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
