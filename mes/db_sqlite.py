"""SQLite under one server process: writers queue on a gate, readers take no lock.

What: `configure(engine, busy_timeout_ms)` (pragmas on connect; how each transaction
begins), `connection_class(gate)` (the sqlite3 connection those transactions run on) and
`WriterGate` (one per database file and process).

Every transaction that may write begins with `BEGIN IMMEDIATE`, so the write lock is taken
up front (see `mes.db`: the audit chain's head is read and appended to under it). A
transaction on a connection with the `READ_ONLY` execution option (`mes.db.read_only`)
begins a deferred `BEGIN` instead and turns on `PRAGMA query_only` until it ends: in WAL
mode it reads a consistent snapshot while a writer works, never waits for the write lock,
and a write attempted in it fails at once ("attempt to write a readonly database") rather
than racing for the lock mid-transaction.

Why the gate in front of `BEGIN IMMEDIATE`: SQLite's busy timeout makes a waiting writer
poll, sleeping up to 100 ms between tries, so with many threads of one server waiting, the
lock sits free while they sleep, and a writer can lose every race until its timeout ends in
"database is locked" (50 stations: p99 of seconds, and errors). The writers of this process
instead queue on a lock that hands over the moment the transaction ends (commit, rollback or
close of the connection). SQLite's own lock and busy timeout still arbitrate between
processes (the CLI, a migration). Waiting at the gate is bounded by the same busy timeout
and fails with the same error, which the API answers with 503.

A writer must end its transaction before it waits for anything else of the server (a
worker thread, the event loop): the routes' sessions end theirs before they return.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from typing import Any, ClassVar

from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError

READ_ONLY = "mes_read_only"  # execution option: this connection's transactions only read


class WriterGate:
    """The writers of one SQLite database in this process, one at a time."""

    _gates: ClassVar[dict[str, WriterGate]] = {}
    _registry_lock = threading.Lock()

    def __init__(self) -> None:
        self._lock = threading.Lock()

    @classmethod
    def for_file(cls, path: str) -> WriterGate:
        key = os.path.realpath(path)
        with cls._registry_lock:
            return cls._gates.setdefault(key, cls())

    def acquire(self, timeout_s: float) -> bool:
        return self._lock.acquire(timeout=timeout_s)

    def release(self) -> None:
        self._lock.release()


class MesConnection(sqlite3.Connection):
    """A sqlite3 connection whose transactions begin as writers (through the gate) or as
    readers, and that leaves the gate however its transaction ends."""

    gate: ClassVar[WriterGate | None] = None
    holds_gate = False
    reading = False

    def begin_writing(self, timeout_s: float) -> None:
        if self.gate is not None:
            if not self.gate.acquire(timeout_s):
                raise sqlite3.OperationalError("database is locked")
            self.holds_gate = True
        try:
            self.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._ended()
            raise

    def begin_reading(self) -> None:
        self.execute("BEGIN")
        self.execute("PRAGMA query_only = ON")
        self.reading = True

    def _ended(self) -> None:
        if self.reading:
            self.reading = False
            self.execute("PRAGMA query_only = OFF")
        if self.holds_gate:
            self.holds_gate = False
            assert self.gate is not None
            self.gate.release()

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._ended()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._ended()

    def close(self) -> None:
        self.reading = False  # nothing to reset on a closed connection
        try:
            super().close()
        finally:
            self._ended()


def connection_class(gate: WriterGate | None) -> type[MesConnection]:
    """The connection class for a database: file databases pass `WriterGate.for_file`."""
    return type("GatedConnection", (MesConnection,), {"gate": gate})


def configure(engine: Engine, busy_timeout_ms: int) -> None:
    """Pragmas on every new connection; writers and readers begin as the docstring says."""

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
            cursor.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before the audit anchor (fsynced after it) names it;
            # with NORMAL a power cut could drop commits the anchor already names, and
            # `audit verify` would report a truncation nobody made (21 CFR Part 11 records).
            cursor.execute("PRAGMA synchronous=FULL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        raw = connection.connection.dbapi_connection
        try:
            if connection.get_execution_options().get(READ_ONLY):
                raw.begin_reading()
            else:
                raw.begin_writing(busy_timeout_ms / 1000)
        except sqlite3.OperationalError as exc:  # as SQLAlchemy would have wrapped it
            raise OperationalError("BEGIN", None, exc) from exc
