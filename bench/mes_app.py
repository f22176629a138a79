"""The MES the load benchmark serves, and its seed.

`seed` makes the database (migrated), then through the services: a serial-tracked part with
a released three-step process (scan the unit's own serial against a pattern, measure a
dimension within limits, confirm), and for each of `stations` stations an operator with a
badge and PIN and a work order of their own. The plan (badge tokens, work orders, steps
and actions) goes to a JSON file the stations read.

`bench_app` is the application `mes.server.build_app` serves (the API, the auth routes,
the screens, the security headers) with one change: the per-address login limit is raised,
since all the simulated stations come from 127.0.0.1 (`bench.mes.bench_limits`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from starlette.types import ASGIApp

import mes.models  # noqa: F401  (every table on the metadata)
from mes.audit import anchored_sessions
from mes.auth import accounts
from mes.auth.accounts import Keys
from mes.auth.backend import SessionAuthBackend
from mes.auth.hashing import DEFAULT_PARAMS
from mes.auth.headers import SecurityHeadersMiddleware
from mes.auth.secrets import load_secrets
from mes.config import MesSettings, load_settings
from mes.db import make_engine, utc_now
from mes.domain.actions import ActionKind
from mes.domain.actor import Actor
from mes.domain.content import ActionSpec, ProcessContent, StepSpec
from mes.domain.roles import Role
from mes.domain.signing import SignatureMethod
from mes.migrations import upgrade
from mes.models.people import Person, PersonRole, Station
from mes.services import parts, processes, workorders
from mes.signatures import SignatureGrant

PLAN = "bench-plan.json"
SERIAL_PATTERN = "S[0-9]{2}-[0-9]{6}"
QUANTITY = 100_000


@dataclass(frozen=True)
class StepPlan:
    step_id: int
    action_id: int
    kind: str


@dataclass(frozen=True)
class Plan:
    """What the simulated stations need: one badge and one work order each, the steps."""

    tokens: list[str]
    work_orders: list[int]
    steps: list[StepPlan]

    @classmethod
    def read(cls, path: Path) -> Plan:
        raw = json.loads(path.read_text())
        return cls(raw["tokens"], raw["work_orders"], [StepPlan(**s) for s in raw["steps"]])


def _person(db: object, number: str, name: str, role: Role) -> Person:
    person = Person(employee_number=number, name=name)
    person.role_links = [PersonRole(role=role.value)]
    db.add(person)  # type: ignore[attr-defined]
    db.flush()  # type: ignore[attr-defined]
    return person


def _actor(person: Person) -> Actor:
    return Actor(person.id, person.employee_number, person.name, person.roles)


CONTENT = ProcessContent(
    "Bench assembly",
    (
        StepSpec("Label", "Scan the label.", (ActionSpec(
            ActionKind.SCAN_SERIAL, "Unit serial", True,
            {"pattern": SERIAL_PATTERN, "match_unit": True}),)),
        StepSpec("Measure", "Measure the bore.", (ActionSpec(
            ActionKind.MEASURE, "Bore", True, {"min": 12.3, "max": 12.5, "unit": "mm"}),)),
        StepSpec("Finish", "Fit the cover.", (ActionSpec(
            ActionKind.CONFIRM, "Cover fitted", True, {}),)),
    ),
)  # fmt: skip


def seed(state: Path, stations: int, pin: str) -> Plan:
    """Create the database and the plant (see the module docstring); the plan."""
    settings = load_settings(state)
    upgrade(settings.database_url)
    keys = Keys.from_secrets(load_secrets(settings.secrets_dir))
    engine = make_engine(settings.database_url)
    tokens: list[str] = []
    orders: list[int] = []
    with anchored_sessions(engine, settings.audit_anchor)() as db:
        engineer = _actor(_person(db, "BENG", "Bench Engineer", Role.ENGINEER))
        quality_person = _person(db, "BQA", "Bench Quality", Role.QUALITY)
        lead = _actor(_person(db, "BLEAD", "Bench Lead", Role.LEAD))
        part = parts.create_part(db, engineer, parts.PartInput("BENCH", "A", "bench part"))
        process = processes.create_process(db, engineer, part.id, CONTENT)
        processes.submit(db, engineer, process.id)
        grant = SignatureGrant(quality_person.id, SignatureMethod.PASSWORD_TOTP, utc_now())
        processes.release(db, _actor(quality_person), process.id, grant)
        stored_pin: str | None = None
        for i in range(stations):
            db.add(Station(code=f"ST-{i:02d}", name=f"Station {i}"))
            person = _person(db, f"B{i:04d}", f"Operator {i}", Role.OPERATOR)
            if stored_pin is None:  # one argon2 hash, reused: seeding stays quick
                accounts.set_pin(db, keys, person, pin)
                stored_pin = person.pin_hash
            person.pin_hash = stored_pin
            tokens.append(accounts.issue_badge(db, keys, person, None))
            order = workorders.create_work_order(
                db, lead, part.id, QUANTITY, number=f"WO-BENCH-{i:02d}"
            )
            orders.append(order.id)
        steps = [
            StepPlan(step.id, step.actions[0].id, step.actions[0].kind) for step in process.steps
        ]
        db.commit()
    engine.dispose()
    plan = Plan(tokens, orders, steps)
    (state / PLAN).write_text(json.dumps(asdict(plan)))
    return plan


def bench_app(settings: MesSettings) -> ASGIApp:
    """What `mes.server.build_app` serves, with the bench's login limits."""
    from bench.mes import bench_limits
    from mes import web
    from mes.app import create_app

    keys = Keys.from_secrets(load_secrets(settings.secrets_dir), DEFAULT_PARAMS)
    backend = SessionAuthBackend(keys, state=settings.state_dir, limits=bench_limits())
    app = create_app(settings, auth=backend, extensions=[backend.install, web.install])
    return SecurityHeadersMiddleware(app)
