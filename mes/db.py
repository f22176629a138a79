"""The database: declarative base, engine with SQLite pragmas, sessions.

What: `Base` for every table (constraint names follow one convention so that migrations are
the same on SQLite and PostgreSQL), `UtcDateTime` (times go in and come out as aware UTC,
whatever the backend keeps), `make_engine(url)` and `make_sessionmaker(engine)`.

Why the SQLite settings: WAL lets the screens read while a station writes; foreign keys are
off in SQLite unless asked for; a busy timeout makes a second writer wait instead of failing;
and every transaction starts with `BEGIN IMMEDIATE`, so the writer lock is taken up front.
Without it two transactions could read the audit chain's head together and then both try to
append after it (SQLite would refuse one only at the upgrade to a write lock, mid-work).
"""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

from mes.config import DEFAULT_BUSY_TIMEOUT_MS
from mes.domain.errors import Invalid

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UtcDateTime(TypeDecorator[datetime.datetime]):
    """An aware UTC datetime on every backend (SQLite has no time zones; naive is refused)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(
        self, value: datetime.datetime | None, dialect: Dialect
    ) -> datetime.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime: the MES stores UTC times only")
        value = value.astimezone(datetime.UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(
        self, value: datetime.datetime | None, dialect: Dialect
    ) -> datetime.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=datetime.UTC)
        return value.astimezone(datetime.UTC)


class Base(DeclarativeBase):
    """Every MES table."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime.datetime: UtcDateTime()}


@event.listens_for(Base, "before_insert", propagate=True)
@event.listens_for(Base, "before_update", propagate=True)
def _check_lengths(_mapper: Any, _connection: Any, target: Any) -> None:
    """Refuse text longer than its column, or holding NUL, on every backend (SQLite would
    store it; PostgreSQL would fail the transaction with a database error, not a 422)."""
    for column in target.__table__.columns:
        value = getattr(target, column.key, None)
        if not isinstance(value, str):
            continue
        where = f"{target.__tablename__}.{column.key}"
        length = getattr(column.type, "length", None)
        if length is not None and len(value) > length:
            raise Invalid(f"{where}: at most {length} characters", [(where, "too long")])
        if "\x00" in value:
            raise Invalid(f"{where}: NUL characters are not allowed", [(where, "NUL")])


def utc_now() -> datetime.datetime:
    """Now, in UTC, to the microsecond (what every backend keeps)."""
    return datetime.datetime.now(datetime.UTC)


def _sqlite_pragmas(engine: Engine, busy_timeout_ms: int) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> Engine:
    """An engine for `url`; SQLite gets its pragmas and its directory is created."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    database = parsed.database or ""
    if database in ("", ":memory:"):
        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
    _sqlite_pragmas(engine, busy_timeout_ms)
    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (answers are built after it)."""
    return sessionmaker(engine, expire_on_commit=False)
