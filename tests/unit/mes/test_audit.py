"""The audit trail: every controlled change is in it, and no tampering goes unnoticed.

The tampering is done the way a database administrator could: triggers dropped, rows
updated, deleted or renumbered directly in SQL.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from mes import audit
from mes.config import load_settings
from mes.models import AuditEntry
from mes.models.guards import drop_guards
from mes.services import stations
from tests.unit.mes.support import Plant, released_process


@pytest.fixture
def chain(plant: Plant, session: Session) -> Session:
    """Six more entries (stations created), committed."""
    for n in range(6):
        stations.create_station(session, plant.actor("admin"), f"S{n}", f"Station {n}")
    session.commit()
    return session


def report(session: Session, tmp_path: Path) -> audit.Report:
    session.expire_all()
    return audit.verify(session, load_settings(tmp_path).audit_anchor)


def kinds(result: audit.Report) -> list[tuple[int, str]]:
    return [(p.seq, p.kind) for p in result.problems]


def dba(session: Session) -> None:
    """Drop the guards, as someone with the database owner's rights could."""
    drop_guards(session.connection())


def last(session: Session) -> int:
    return session.scalar(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()).limit(1)) or 0


def test_changes_are_recorded_with_who_what_why_before_after(
    plant: Plant, session: Session
) -> None:
    admin = plant.actor("admin")
    station = stations.create_station(session, admin, "S9", "Nine")
    stations.update_station(session, admin, station.id, name="Nine bis")
    session.commit()
    entries = session.scalars(
        select(AuditEntry).where(
            AuditEntry.entity == "station", AuditEntry.entity_id == str(station.id)
        )
    ).all()
    assert [e.action for e in entries] == ["station.created", "station.updated"]
    update = entries[1]
    assert update.actor == "ADMIN Person ADMIN" and update.actor_id == admin.person_id
    assert json.loads(update.before or "")["name"] == "Nine"
    assert json.loads(update.after or "")["name"] == "Nine bis"
    assert update.ts.endswith("+00:00")


def test_secrets_never_reach_the_audit_trail(plant: Plant, session: Session) -> None:
    person = plant.people["operator"]
    person.pin_hash = "argon2id$secret"
    snapshot = audit.snapshot(person)
    assert "pin_hash" not in snapshot and "password_hash" not in snapshot
    assert "totp_secret" not in snapshot


def test_an_intact_chain_verifies(chain: Session, tmp_path: Path) -> None:
    result = report(chain, tmp_path)
    assert result.ok and result.entries == last(chain) and result.problems == ()
    anchor = audit.read_anchor(load_settings(tmp_path).audit_anchor)
    assert anchor is not None and anchor.seq == last(chain)


def test_the_database_refuses_updates_and_deletes(chain: Session) -> None:
    for statement in ("UPDATE audit_log SET why = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(DBAPIError, match="append-only"):
            chain.execute(text(statement))
        chain.rollback()


def test_an_edited_entry_is_named(chain: Session, tmp_path: Path) -> None:
    dba(chain)
    chain.execute(text("UPDATE audit_log SET why = 'nothing to see' WHERE seq = 3"))
    assert kinds(report(chain, tmp_path)) == [(3, "edited")]


def test_an_edit_with_a_recomputed_hash_breaks_the_next_link(
    chain: Session, tmp_path: Path
) -> None:
    dba(chain)
    entry = chain.get(AuditEntry, 3)
    assert entry is not None
    entry.actor = "someone else"
    entry.hash = audit.entry_hash(entry)
    chain.flush()
    assert kinds(report(chain, tmp_path)) == [(4, "link_broken")]


def test_a_deleted_entry_is_named(chain: Session, tmp_path: Path) -> None:
    dba(chain)
    chain.execute(text("DELETE FROM audit_log WHERE seq IN (3, 4)"))
    result = report(chain, tmp_path)
    assert kinds(result) == [(3, "deleted")]
    assert "entries 3 to 4 are missing" in result.problems[0].message


def test_deleting_and_renumbering_is_still_caught(chain: Session, tmp_path: Path) -> None:
    dba(chain)
    end = last(chain)
    chain.execute(text("DELETE FROM audit_log WHERE seq = 3"))
    chain.execute(text("UPDATE audit_log SET seq = seq - 1 WHERE seq > 3"))
    assert kinds(report(chain, tmp_path)) == [(3, "link_broken"), (end, "truncated")]


def test_entries_deleted_from_the_end_are_caught_by_the_anchor(
    chain: Session, tmp_path: Path
) -> None:
    dba(chain)
    end = last(chain)
    chain.execute(text("DELETE FROM audit_log WHERE seq >= :n").bindparams(n=end - 1))
    result = report(chain, tmp_path)
    assert kinds(result) == [(end - 1, "truncated")]
    assert audit.verify(chain, None).ok  # without the anchor nothing could tell


def test_reordered_entries_are_named(chain: Session, tmp_path: Path) -> None:
    dba(chain)
    chain.execute(text("UPDATE audit_log SET seq = -1 WHERE seq = 3"))
    chain.execute(text("UPDATE audit_log SET seq = 3 WHERE seq = 4"))
    chain.execute(text("UPDATE audit_log SET seq = 4 WHERE seq = -1"))
    result = report(chain, tmp_path)
    assert {k for _, k in kinds(result)} == {"reordered"}
    assert "entry 3 was written after entry 4" in result.problems[0].message


def test_a_replaced_last_entry_is_caught_by_the_anchor(chain: Session, tmp_path: Path) -> None:
    dba(chain)
    entry = chain.get(AuditEntry, last(chain))
    assert entry is not None
    entry.why = "rewritten"
    entry.hash = audit.entry_hash(entry)
    chain.flush()
    assert kinds(report(chain, tmp_path)) == [(entry.seq, "rewritten")]


def test_uncleared_readers_do_not_see_export_controlled_entries(
    plant: Plant, session: Session
) -> None:
    released_process(plant, "secret")
    released_process(plant, "board")
    session.commit()
    seen = {e.entity_id for e in audit.visible_entries(session, cleared=False, entity="process")}
    cleared = {e.entity_id for e in audit.visible_entries(session, cleared=True, entity="process")}
    assert len(seen) == 1 and len(cleared) == 2
    assert all(
        not e.export_controlled for e in audit.visible_entries(session, cleared=False, limit=500)
    )
