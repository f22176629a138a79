"""Many requests at once: no database work on the event loop, no lock held past a route,
writers queue, readers do not wait.

The stall these guard against (50 stations through the API: every request failed): the
caller was resolved on the event loop, and a route's session held SQLite's write lock after
the route returned, while FastAPI waited for a worker thread to check its answer; with the
threads all waiting for that lock, nothing moved until the busy timeout.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from pathlib import Path

import anyio.to_thread
import httpx
import pytest
from fastapi import Request
from sqlalchemy import Engine, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from mes.app import create_app
from mes.config import load_settings
from mes.db import make_engine, make_sessionmaker, read_only
from mes.domain.actor import Actor
from mes.models import Station
from mes.services import workorders
from tests.unit.mes.support import HeaderAuth, Plant, released_process

V1 = "/api/v1"


class LoopWatchingAuth(HeaderAuth):
    """`HeaderAuth` that notes whether it was asked on a thread running an event loop."""

    def __init__(self) -> None:
        self.on_loop: list[bool] = []

    async def current_actor(self, request: Request, db: Session) -> Actor | None:
        try:
            asyncio.get_running_loop()
            self.on_loop.append(True)
        except RuntimeError:
            self.on_loop.append(False)
        return await super().current_actor(request, db)


def _order(plant: Plant) -> int:
    released_process(plant, "board")
    lead = plant.actor("lead")
    order = workorders.create_work_order(plant.session, lead, plant.parts["board"].id, 100)
    plant.session.commit()
    return order.id


def test_the_caller_is_resolved_off_the_event_loop(
    engine: Engine, plant: Plant, tmp_path: Path
) -> None:
    order = _order(plant)
    auth = LoopWatchingAuth()
    app = create_app(load_settings(tmp_path), auth=auth, engine=engine)
    headers = {"X-Test-Person": "OPERATOR", "X-Test-Station": str(plant.station.id)}

    async def calls() -> list[int]:
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="https://mes.test") as c:
            started = await c.post(
                f"{V1}/work-orders/{order}/units", json={"serial": "B-1"}, headers=headers
            )
            read = await c.get(f"{V1}/units/{started.json()['id']}", headers=headers)
            return [started.status_code, read.status_code]

    assert asyncio.run(calls()) == [201, 200]
    assert auth.on_loop == [False, False]


def test_many_writers_with_few_threads_all_succeed(plant: Plant, tmp_path: Path) -> None:
    """Twelve stations start units at once through two worker threads: each route's
    write waits its turn, and none keeps the lock while it waits for a thread."""
    order = _order(plant)
    stations = []
    for i in range(12):
        station = Station(code=f"C{i}", name=f"Concurrent {i}")
        plant.session.add(station)
        stations.append(station)
    plant.session.commit()
    ids = [s.id for s in stations]
    plant.session.close()
    settings = dataclasses.replace(
        load_settings(tmp_path, database_url=f"sqlite:///{tmp_path / 'mes.db'}"),
        busy_timeout_ms=3000,
    )
    app = create_app(settings, auth=HeaderAuth())

    async def burst() -> list[httpx.Response]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = 2
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="https://mes.test") as c:
            return await asyncio.gather(
                *(
                    c.post(
                        f"{V1}/work-orders/{order}/units",
                        json={"serial": f"B-{i}"},
                        headers={"X-Test-Person": "OPERATOR", "X-Test-Station": str(station)},
                    )
                    for i, station in enumerate(ids)
                )
            )

    answers = asyncio.run(burst())
    assert [a.status_code for a in answers] == [201] * 12, [a.text for a in answers]


def _two_sessions(tmp_path: Path, busy_timeout_ms: int = 5000) -> tuple[Engine, Engine]:
    url = f"sqlite:///{tmp_path / 'gate.db'}"
    first, second = make_engine(url), make_engine(url, busy_timeout_ms=busy_timeout_ms)
    with first.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    return first, second


def test_a_reader_does_not_wait_for_a_writer_and_cannot_write(tmp_path: Path) -> None:
    writer_engine, reader_engine = _two_sessions(tmp_path)
    with make_sessionmaker(writer_engine)() as writer:
        writer.execute(text("INSERT INTO t VALUES (1)"))  # holds the write lock, uncommitted
        with make_sessionmaker(read_only(reader_engine))() as reader:
            assert reader.scalar(text("SELECT count(*) FROM t")) == 0  # its snapshot
            with pytest.raises(OperationalError, match="readonly"):
                reader.execute(text("INSERT INTO t VALUES (2)"))
        writer.commit()
    with make_sessionmaker(read_only(reader_engine))() as reader:
        assert reader.scalar(text("SELECT count(*) FROM t")) == 1
    with make_sessionmaker(reader_engine)() as after:  # the connection writes again
        after.execute(text("INSERT INTO t VALUES (3)"))
        after.commit()


def test_writers_take_turns_and_a_long_wait_is_a_busy_error(tmp_path: Path) -> None:
    first, impatient = _two_sessions(tmp_path, busy_timeout_ms=200)
    patient = make_engine(f"sqlite:///{tmp_path / 'gate.db'}", busy_timeout_ms=30_000)
    results: list[str] = []

    def late_writer(engine: Engine, n: int) -> None:
        with make_sessionmaker(engine)() as other:
            try:
                other.execute(text(f"INSERT INTO t VALUES ({n})"))
                other.commit()
                results.append("written")
            except OperationalError as exc:
                results.append(str(exc.orig))

    with make_sessionmaker(first)() as holder:
        holder.execute(text("INSERT INTO t VALUES (1)"))
        thread = threading.Thread(target=late_writer, args=(impatient, 2))
        thread.start()
        thread.join()
        holder.commit()
    assert results == ["database is locked"]
    with make_sessionmaker(first)() as holder:
        holder.execute(text("INSERT INTO t VALUES (3)"))
        thread = threading.Thread(target=late_writer, args=(patient, 4))
        thread.start()  # waits at the gate until the commit below
        holder.commit()
    thread.join()
    assert results[-1] == "written"
    with make_sessionmaker(first)() as check:
        assert list(check.scalars(text("SELECT n FROM t ORDER BY n"))) == [1, 3, 4]


def test_sqlite_commits_are_durable_before_the_audit_anchor_names_them(tmp_path: Path) -> None:
    """synchronous=FULL (2) with WAL: NORMAL could lose commits the fsynced anchor names."""
    engine = make_engine(f"sqlite:///{tmp_path / 'mes.db'}")
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA synchronous")).scalar() == 2
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
    engine.dispose()
