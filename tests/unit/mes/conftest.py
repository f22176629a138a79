"""Fixtures for the MES tests: a fresh database per test, a small plant, an API client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session

import mes.models  # noqa: F401  (every table on the metadata)
from mes.app import create_app
from mes.audit import anchored_sessions
from mes.config import load_settings
from mes.db import Base, make_engine
from tests.unit.mes.pg import postgres_server
from tests.unit.mes.support import HeaderAuth, Plant, build_plant


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A throwaway PostgreSQL server for the whole run (skipped, with the reason, if none)."""
    try:
        with postgres_server() as url:
            yield url
    except RuntimeError as exc:
        pytest.skip(f"PostgreSQL tests skipped: {exc}")


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    created = make_engine(f"sqlite:///{tmp_path / 'mes.db'}")
    Base.metadata.create_all(created)
    yield created
    created.dispose()


@pytest.fixture
def session(engine: Engine, tmp_path: Path) -> Iterator[Session]:
    with anchored_sessions(engine, load_settings(tmp_path).audit_anchor)() as opened:
        yield opened


@pytest.fixture
def plant(session: Session) -> Plant:
    built = build_plant(session)
    session.commit()
    return built


@pytest.fixture
def client(engine: Engine, tmp_path: Path) -> Iterator[TestClient]:
    settings = load_settings(tmp_path, database_url=f"sqlite:///{tmp_path / 'mes.db'}")
    app = create_app(settings, auth=HeaderAuth(), engine=engine)
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client
