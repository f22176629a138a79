"""Property-based tests of the API against its own OpenAPI schema: no input, valid or not,
makes the server fail (no 5xx). Bounded: a few examples per operation and mode, no network
(ASGI), on SQLite and, when a server can be started here, PostgreSQL.

The caller holds every role and is cleared for export control, so every operation is
reached; the database holds a small plant, so many generated ids exist.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.openapi.loaders import from_asgi
from schemathesis.schemas import APIOperation

from mes.app import create_app
from mes.audit import anchored_sessions
from mes.config import load_settings
from mes.db import Base, make_engine
from mes.domain.roles import Role
from tests.unit.mes.pg import fresh_database
from tests.unit.mes.support import HeaderAuth, add_person, build_plant, released_process

EXAMPLES = {"sqlite": 10, "postgresql": 4}  # per operation and generation mode
HEADERS = {"X-Test-Person": "EVERYONE"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[schemathesis.BaseSchema, int]]:
    state: Path = tmp_path_factory.mktemp("schemathesis")
    if request.param == "postgresql":
        url = fresh_database(request.getfixturevalue("pg_server"), "mes_schemathesis")
    else:
        url = f"sqlite:///{state / 'mes.db'}"
    mes_settings = load_settings(state, database_url=url)
    engine = make_engine(url)
    Base.metadata.create_all(engine)
    with anchored_sessions(engine, mes_settings.audit_anchor)() as session:
        plant = build_plant(session)
        released_process(plant, "board")
        add_person(session, "EVERYONE", set(Role), cleared=True)
        session.commit()
        HEADERS["X-Test-Station"] = str(plant.station.id)
    app = create_app(mes_settings, auth=HeaderAuth(), engine=engine)
    yield from_asgi("/openapi.json", app), EXAMPLES[request.param]
    engine.dispose()


def exercise(operation: APIOperation, mode: GenerationMode, examples: int) -> None:
    """Up to `examples` generated requests to one operation; raises on a server error."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
    )
    def run(case: schemathesis.Case) -> None:
        response = case.call(headers=HEADERS)
        case.validate_response(response, checks=[not_a_server_error])

    run()


def test_no_server_errors(api: tuple[schemathesis.BaseSchema, int]) -> None:
    """Every operation, with valid and with invalid inputs; all failures reported at once.

    (A loop rather than schemathesis's pytest plugin, which does not load under pytest 9.)"""
    schema, examples = api
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 40
    started = time.monotonic()
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                exercise(operation, mode, examples)
            except Unsatisfiable:
                continue  # nothing to make invalid: the operation has no inputs
            except Exception as exc:
                failures.append(f"{operation.label} [{mode.value}]: {str(exc)[:2000]}")
    assert not failures, "\n\n".join(failures)
    assert time.monotonic() - started < 60
