"""Migrations: from an empty database to the models with no drift, on SQLite and (when a
server can be started here) PostgreSQL; the guards work on both."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.exc import DBAPIError

from mes import audit, migrations
from mes.db import Base, make_engine
from mes.models.guards import guard_triggers
from tests.unit.mes.pg import fresh_database
from tests.unit.mes.support import build_plant, released_process


@pytest.fixture(scope="module")
def pg_url(pg_server: str) -> str:
    return fresh_database(pg_server, "mes_migrations")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'state' / 'mes' / 'mes.db'}"


def triggers(url: str) -> set[str]:
    engine = make_engine(url)
    query = (
        "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        if engine.dialect.name == "sqlite"
        else "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
    )
    with engine.connect() as connection:
        found = {row[0] for row in connection.execute(text(query))}
    engine.dispose()
    return found


def check_upgrade_from_empty(url: str) -> None:
    assert migrations.current(url) is None
    migrations.upgrade(url)
    assert migrations.current(url) == migrations.head()
    assert migrations.drift(url) == []
    command.check(migrations.alembic_config(url))  # what `alembic check` runs
    engine = make_engine(url)
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert set(Base.metadata.tables) <= tables
    dialect = make_engine(url).dialect.name
    assert set(guard_triggers(dialect)) <= triggers(url)
    migrations.downgrade(url, "base")
    assert not set(guard_triggers(dialect)) & triggers(url)
    migrations.upgrade(url)
    assert migrations.drift(url) == []


def test_sqlite_upgrade_from_empty_has_no_drift(sqlite_url: str) -> None:
    check_upgrade_from_empty(sqlite_url)


def test_postgresql_upgrade_from_empty_has_no_drift(pg_url: str) -> None:
    check_upgrade_from_empty(pg_url)


def test_postgresql_runs_the_services_and_enforces_the_guards(pg_url: str) -> None:
    migrations.upgrade(pg_url)
    engine = make_engine(pg_url)
    try:
        with audit.anchored_sessions(engine, None)() as session:
            plant = build_plant(session)
            released_process(plant, "board")
            session.commit()
            assert audit.verify(session).ok
            for statement in (
                "UPDATE audit_log SET why = 'x'",
                "DELETE FROM audit_log",
                "TRUNCATE audit_log",
                "UPDATE e_signatures SET meaning = 'reviewed'",
                "UPDATE process_steps SET title = 'edited'",
                "UPDATE processes SET status = 'draft'",
            ):
                with pytest.raises(DBAPIError, match=r"append-only|not a draft|cannot change"):
                    session.execute(text(statement))
                session.rollback()
    finally:
        engine.dispose()


def test_migrations_need_no_working_directory(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    migrations.upgrade(sqlite_url)
    assert migrations.current(sqlite_url) == migrations.head()
