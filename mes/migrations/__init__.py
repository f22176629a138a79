"""Alembic migrations of the MES database, runnable from anywhere.

There is no `alembic.ini`: `alembic_config(url)` points Alembic at this package, so
`plantgate mes db upgrade` works whatever the working directory. The same migrations serve
SQLite and PostgreSQL (tested on both); `drift(url)` lists differences between a database
and the models (what `alembic check` reports), and must be empty after `upgrade`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from mes.db import Base, make_engine

HERE = Path(__file__).resolve().parent


def alembic_config(url: str) -> Config:
    """An Alembic configuration for the database at `url` (no ini file needed)."""
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Bring the database to `revision` (creating it, for SQLite, if missing)."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    command.downgrade(alembic_config(url), revision)


def head() -> str | None:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current(url: str) -> str | None:
    """The revision the database is at (None: never migrated)."""
    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


def drift(url: str) -> list[Any]:
    """Differences between the database's schema and the models (empty: none)."""
    import mes.models  # noqa: F401  (registers every table on Base.metadata)

    engine = make_engine(url)
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "render_as_batch": True}
            )
            return list(compare_metadata(context, Base.metadata))
    finally:
        engine.dispose()
