"""`plantgate mes db ...` and `plantgate mes audit ...`."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text
from typer.testing import CliRunner

from gateway.cli import app
from mes.audit import anchored_sessions
from mes.config import load_settings
from mes.db import make_engine
from mes.domain.roles import Role
from mes.models.guards import drop_guards
from mes.services import stations
from tests.unit.mes.support import actor_of, add_person


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["mes", *args])
    return result.exit_code, result.output


def seed(state: Path) -> None:
    settings = load_settings(state)
    engine = make_engine(settings.database_url)
    with anchored_sessions(engine, settings.audit_anchor)() as session:
        admin = actor_of(add_person(session, "A1", {Role.ADMIN}))
        for n in range(3):
            stations.create_station(session, admin, f"S{n}", f"Station {n}")
        session.commit()
    engine.dispose()


def test_upgrade_check_verify_and_tamper(tmp_path: Path) -> None:
    state = str(tmp_path)
    code, out = run("audit", "verify", "--state-dir", state)
    assert code == 1 and "db upgrade" in out
    code, out = run("db", "upgrade", "--state-dir", state)
    assert code == 0 and "revision 0001" in out
    assert (tmp_path / "mes" / "mes.db").exists()
    code, out = run("db", "check", "--state-dir", state)
    assert code == 0 and "no drift" in out
    seed(tmp_path)
    code, out = run("audit", "verify", "--state-dir", state)
    assert code == 0 and "intact: 3 entries" in out
    code, out = run("audit", "show", "--state-dir", state, "-n", "2")
    assert code == 0 and out.count("station.created") == 2

    engine = make_engine(load_settings(tmp_path).database_url)
    with engine.begin() as connection:
        drop_guards(connection)
        connection.execute(text("UPDATE audit_log SET actor = 'nobody' WHERE seq = 2"))
    engine.dispose()
    code, out = run("audit", "verify", "--state-dir", state)
    assert code == 1 and "entry 2 does not match its hash (edited)" in out
    code, out = run("audit", "verify", "--state-dir", state, "--json")
    assert code == 1 and '"kind": "edited"' in out


def test_bad_database_url_is_bad_input(tmp_path: Path) -> None:
    code, out = run("db", "upgrade", "--state-dir", str(tmp_path), "--database-url", "nope://")
    assert code == 2 and "bad database URL" in out
