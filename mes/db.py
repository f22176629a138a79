"""The database: declarative base, engine with SQLite pragmas, sessions.

What: `Base` for every table (constraint names follow one convention so that migrations are
the same on SQLite and PostgreSQL), `UtcDateTime` (times go in and come out as aware UTC,
whatever the backend keeps), `make_engine(url)` and `make_sessionmaker(engine)`.

Why the SQLite settings: WAL lets the screens read while a station writes; foreign keys are
off in SQLite unless asked for; a busy timeout makes a second writer wait instead of failing;
and every transaction starts with `BEGIN IMMEDIATE`, so the writer lock is taken up front.
Without it two transactions could read the audit chain's head together and then both try to
append after it (SQLite would refuse one only at the upgrade to a write lock, mid-work).

Reads take no lock: a session bound through `read_only(engine)` (the API's GET requests,
and whatever a request reads after its commit) begins a plain deferred transaction, which
in WAL mode reads a snapshot while a writer works, and refuses to write. The writers of one
process queue on a gate before `BEGIN IMMEDIATE` (`mes.db_sqlite`).
"""

from __future__ import annotations

import datetime
import weakref
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import DateTime, Engine, MetaData, create_engine, event
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import StaticPool
from sqlalchemy.types import TypeDecorator

from mes import db_sqlite
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


def make_engine(url: str, *, busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> Engine:
    """An engine for `url`; SQLite gets its pragmas and its directory is created."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True)
    database = parsed.database or ""
    if database in ("", ":memory:"):
        factory = db_sqlite.connection_class(None)  # one shared connection: nothing to queue
        engine = create_engine(
            url,
            poolclass=StaticPool,
            connect_args={"check_same_thread": False, "factory": factory},
        )
    else:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
        factory = db_sqlite.connection_class(db_sqlite.WriterGate.for_file(database))
        engine = create_engine(url, connect_args={"check_same_thread": False, "factory": factory})
    db_sqlite.configure(engine, busy_timeout_ms)
    return engine


_READERS: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()


def read_only(engine: Engine) -> Engine:
    """`engine` for sessions that only read: on SQLite their transactions take no lock and
    refuse to write; other backends ignore the option."""
    reader = _READERS.get(engine)
    if reader is None:
        reader = _READERS[engine] = engine.execution_options(**{db_sqlite.READ_ONLY: True})
    return reader


def is_read_only(session: Session) -> bool:
    """Whether `session` is bound through `read_only` (its transactions may not write)."""
    bind = session.get_bind()
    return isinstance(bind, Engine) and bool(bind.get_execution_options().get(db_sqlite.READ_ONLY))


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded objects usable after commit (answers are built after it)."""
    return sessionmaker(engine, expire_on_commit=False)
