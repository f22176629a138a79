"""The screens' test rig: the real application (`create_app` with the real auth backend,
its login routes, the screens and the security headers) over a SQLite file, seeded with
the small plant of `tests.unit.mes.support`, every person with a PIN, a badge, a password
and an enrolled TOTP secret. Clients are Starlette test clients on `https://mes.test` that
do not follow redirects, so each test sees the post/redirect/get itself.

`signed_in(key)` gives a Manage Page session made directly in the session store (no
argon2, no TOTP step used up); `at_station(key)` signs in through the station's own form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pyotp
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp

import mes.models  # noqa: F401  (every table on the metadata)
from gateway.events import Event
from mes import web
from mes.app import create_app
from mes.audit import anchored_sessions
from mes.auth import accounts, sessions
from mes.auth.accounts import Keys
from mes.auth.backend import SessionAuthBackend
from mes.auth.hashing import TEST_PARAMS
from mes.auth.headers import SecurityHeadersMiddleware
from mes.auth.notify import Notifier
from mes.auth.secrets import load_secrets
from mes.config import load_settings
from mes.db import Base, make_engine
from mes.domain.lifecycle import Tracking
from mes.models.people import Person
from mes.services import parts, workorders
from tests.unit.mes.support import Plant, action, build_plant, content, released_process, step

BASE = "https://mes.test"
PIN = "839201"
PASSWORD = "correct horse battery staple"
SERIAL_PATTERN = "SN-[0-9]{4}"
TOKEN_FIELD = re.compile(r'name="(csrf_token|login_token)" value="([^"]+)"')


class Clock:
    """The backend's wall clock (TOTP steps); each `tick` moves to the next 30 s step."""

    def __init__(self, now: float = 1_750_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def tick(self) -> float:
        self.now += 30.0
        return self.now


@dataclass
class Web:
    app: ASGIApp
    backend: SessionAuthBackend
    maker: sessionmaker[Session]
    plant: Plant
    clock: Clock
    events: list[Event]
    badges: dict[str, str] = field(default_factory=dict)
    totp: dict[str, str] = field(default_factory=dict)
    ids: dict[str, int] = field(default_factory=dict)

    def client(self) -> TestClient:
        return TestClient(
            self.app,
            base_url=BASE,
            follow_redirects=False,
            raise_server_exceptions=False,
            headers={"Origin": BASE},
        )

    def person(self, key: str) -> Person:
        return self.plant.people[key]

    def signed_in(self, key: str) -> TestClient:
        """A client with a Manage Page session of `key` (made in the session store)."""
        client = self.client()
        with self.maker() as db, db.begin():
            new = self.backend.store.create(db, self.person(key).id, "manage")
        client.cookies.set(sessions.COOKIE_NAME, new.session_id, domain="mes.test")
        return client

    def at_station(self, key: str, station: str = "ST1") -> TestClient:
        """A client signed in at `station` through the station's sign-in form."""
        client = self.client()
        form = client.get(f"/station/{station}")
        answer = client.post(
            f"/station/{station}/login",
            data={
                "login_token": token_of(form.text),
                "employee_number": self.person(key).employee_number,
                "pin": PIN,
            },
        )
        assert answer.status_code == 303, answer.text
        return client

    def code(self, key: str) -> str:
        """A fresh TOTP code for `key` (the clock moves on a step first: codes work once)."""
        return pyotp.TOTP(self.totp[key]).at(self.clock.tick())


def token_of(html: str) -> str:
    """The first form token (CSRF or sign-in) on a page."""
    found = TOKEN_FIELD.search(html)
    assert found is not None, "no form token on the page"
    return found.group(2)


def _credentials(web_rig: Web, keys: Keys, db: Session) -> None:
    hashed_pin: str | None = None
    for key, person in web_rig.plant.people.items():
        person = db.merge(person)
        if hashed_pin is None:
            accounts.set_pin(db, keys, person, PIN)
            hashed_pin = person.pin_hash
        person.pin_hash = hashed_pin
        accounts.set_password(db, keys, person, PASSWORD)
        web_rig.badges[key] = accounts.issue_badge(db, keys, person, None)
        uri = accounts.begin_totp_enrolment(db, keys, person)
        person.totp_last_step = 0  # enrolled
        web_rig.totp[key] = pyotp.parse_uri(uri).secret


def _production(plant: Plant) -> dict[str, int]:
    """A released three-step process for `widget` and `secret` (ITAR), work orders."""
    session = plant.session
    label = action("scan_serial", "Unit serial", pattern=SERIAL_PATTERN, match_unit=True)
    body = content(
        step("Label", label),
        step("Measure", action("measure", "Bore diameter", min=12.3, max=12.5, unit="mm")),
        step("Finish", action("confirm", "Cover fitted")),
        title="Widget assembly",
    )
    widget_process = released_process(plant, "widget", body)
    secret_process = released_process(plant, "secret", body)
    lead, xlead = plant.actor("lead"), plant.actor("x-lead")
    order = workorders.create_work_order(
        session, lead, plant.parts["widget"].id, 5, number="WO-100"
    )
    hidden = workorders.create_work_order(
        session, xlead, plant.parts["secret"].id, 5, number="WO-ITAR"
    )
    spare = parts.create_part(
        session,
        plant.actor("engineer"),
        parts.PartInput("SPARE", "A", "no process yet", Tracking.SERIAL, False),
    )
    return {
        "widget_process": widget_process,
        "secret_process": secret_process,
        "order": order.id,
        "secret_order": hidden.id,
        "spare": spare.id,
    }


def make_web(tmp_path: Path) -> tuple[Web, Engine]:
    settings = load_settings(tmp_path)
    engine = make_engine(settings.database_url)
    Base.metadata.create_all(engine)
    keys = Keys.from_secrets(load_secrets(settings.secrets_dir), TEST_PARAMS)
    events: list[Event] = []
    clock = Clock()
    backend = SessionAuthBackend(
        keys, state=None, notifier=Notifier(None, events.append), wall_clock=clock
    )
    app = create_app(
        settings, auth=backend, engine=engine, extensions=[backend.install, web.install]
    )
    maker = anchored_sessions(engine, settings.audit_anchor)
    with maker() as db:
        plant = build_plant(db)
        ids = _production(plant)
        db.commit()
        rig = Web(SecurityHeadersMiddleware(app), backend, maker, plant, clock, events, ids=ids)
        _credentials(rig, keys, db)
        db.commit()
    return rig, engine
