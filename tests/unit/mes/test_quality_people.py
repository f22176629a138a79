"""Nonconformances with signed dispositions, signature binding, people and stations."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.orm import Session

from mes.domain.errors import Conflict, Forbidden, Invalid, SignatureRejected
from mes.domain.lifecycle import Disposition
from mes.domain.roles import Role
from mes.models import AuthSession, ESignature, Nonconformance
from mes.services import people, quality, records, stations, units, workorders
from mes.signatures import verify_signature
from tests.unit.mes.support import Plant, grant, released_process


def held_unit(plant: Plant) -> tuple[int, int]:
    released_process(plant, "board")
    session = plant.session
    order = workorders.create_work_order(session, plant.actor("lead"), plant.parts["board"].id, 2)
    unit = units.start_unit(
        session, plant.actor("operator", at_station=True), order.id, serial="B1"
    )
    nc = quality.raise_nc(session, plant.actor("operator"), unit.id, "scratched housing")
    return unit.id, nc.id


def test_a_nonconformance_holds_the_unit_until_quality_signs(
    plant: Plant, session: Session
) -> None:
    unit_id, nc_id = held_unit(plant)
    op, qa = plant.actor("operator", at_station=True), plant.actor("quality")
    unit, _ = units.get_unit(session, op, unit_id)
    assert unit.status == "on_hold"
    with pytest.raises(Conflict, match="on_hold"):
        units.complete_unit(session, op, unit_id)
    with pytest.raises(Forbidden):
        quality.disposition_nc(session, op, nc_id, Disposition.SCRAP, "", grant(op))
    with pytest.raises(SignatureRejected):
        quality.disposition_nc(session, qa, nc_id, Disposition.REWORK, "", grant(op))
    nc = quality.disposition_nc(session, qa, nc_id, Disposition.REWORK, "re-seat", grant(qa))
    assert (nc.status, unit.status) == ("dispositioned", "in_progress")
    with pytest.raises(Conflict, match="already"):
        quality.disposition_nc(session, qa, nc_id, Disposition.SCRAP, "", grant(qa))
    [checked] = records.signatures_of(session, qa, "nonconformance", nc_id)
    assert checked.check.ok
    assert (checked.signature.meaning, checked.signature.signer_name) == (
        "dispositioned",
        "Person QUALITY",
    )


def test_scrap_disposition(plant: Plant, session: Session) -> None:
    unit_id, nc_id = held_unit(plant)
    qa = plant.actor("quality")
    quality.disposition_nc(session, qa, nc_id, Disposition.SCRAP, "cracked", grant(qa))
    assert units.get_unit(session, qa, unit_id)[0].status == "scrapped"


def test_a_signature_cannot_be_moved_or_outlive_a_change(plant: Plant, session: Session) -> None:
    _, first = held_unit(plant)
    qa = plant.actor("quality")
    quality.disposition_nc(session, qa, first, Disposition.USE_AS_IS, "cosmetic", grant(qa))
    order = workorders.create_work_order(session, plant.actor("lead"), plant.parts["board"].id, 1)
    other = units.start_unit(
        session, plant.actor("operator", at_station=True), order.id, serial="B2"
    )
    second = quality.raise_nc(session, plant.actor("operator"), other.id, "scratched housing")
    session.commit()
    signature = session.scalars(
        select(ESignature).where(
            ESignature.record_type == "nonconformance", ESignature.record_id == first
        )
    ).one()
    # Moved to another record (as a DBA would do it, triggers out of the way):
    session.execute(text("DROP TRIGGER trg_e_signatures_no_update"))
    session.execute(
        text("UPDATE e_signatures SET record_id = :n WHERE id = :s").bindparams(
            n=second.id, s=signature.id
        )
    )
    session.refresh(signature)
    moved = records.check(session, signature)
    assert not moved.ok and any("altered" in p for p in moved.problems)
    # A signature for record 1 checked as if it were record 2's (same content would not help):
    nc_hash = quality.nc_hash(session.get(Nonconformance, first))  # type: ignore[arg-type]
    signature.record_id = first
    assert not verify_signature(signature, "nonconformance", second.id, nc_hash).ok
    session.rollback()
    # The record changed after signing:
    session.execute(
        text("UPDATE nonconformances SET disposition_note = 'edited' WHERE id = :n").bindparams(
            n=first
        )
    )
    signature = session.scalars(
        select(ESignature).where(
            ESignature.record_type == "nonconformance", ESignature.record_id == first
        )
    ).one()
    changed = records.check(session, signature)
    assert not changed.ok and "changed after it was signed" in changed.problems[0]


def test_people_rules(plant: Plant, session: Session) -> None:
    admin = plant.actor("admin")
    with pytest.raises(Invalid, match="US persons"):
        people.create_person(
            session,
            admin,
            people.PersonInput("N1", "New", frozenset({Role.OPERATOR}), itar_authorised=True),
        )
    person = people.create_person(
        session, admin, people.PersonInput("N1", "New", frozenset({Role.OPERATOR}), True, True)
    )
    with pytest.raises(Invalid, match="US persons"):
        people.update_person(session, admin, person.id, us_person=False)
    people.update_person(session, admin, person.id, us_person=False, itar_authorised=False)
    with pytest.raises(Conflict, match="taken"):
        people.create_person(session, admin, people.PersonInput("N1", "Dup", frozenset()))
    with pytest.raises(Forbidden):
        people.create_person(
            session, plant.actor("lead"), people.PersonInput("N2", "X", frozenset())
        )


def test_nobody_changes_their_own_roles_or_deactivates_themselves(
    plant: Plant, session: Session
) -> None:
    admin = plant.actor("admin")
    with pytest.raises(Forbidden):
        people.update_person(
            session, admin, admin.person_id, roles=frozenset({Role.ADMIN, Role.QUALITY})
        )
    with pytest.raises(Forbidden):
        people.update_person(session, admin, admin.person_id, active=False)
    other = people.create_person(
        session, admin, people.PersonInput("A2", "Second admin", frozenset({Role.ADMIN}))
    )
    people.update_person(session, admin, other.id, roles=frozenset({Role.AUDITOR}))


def test_deactivating_ends_sessions(plant: Plant, session: Session) -> None:
    import datetime

    op = plant.people["operator"]
    session.add(
        AuthSession(
            id="h" * 64,
            person_id=op.id,
            kind="operator",
            station_id=plant.station.id,
            expires_at=datetime.datetime.now(datetime.UTC),
            csrf_token_hash="c" * 64,
        )
    )
    session.flush()
    people.update_person(session, plant.actor("admin"), op.id, active=False, why="left")
    assert session.scalars(select(AuthSession)).all() == []


def test_stations(plant: Plant, session: Session) -> None:
    admin = plant.actor("admin")
    station = stations.create_station(session, admin, "ST2", "Station 2", "Line B")
    with pytest.raises(Conflict):
        stations.create_station(session, admin, "ST2", "Again")
    with pytest.raises(Forbidden):
        stations.create_station(session, plant.actor("lead"), "ST3", "Nope")
    stations.update_station(session, admin, station.id, active=False)
    assert [s.code for s in stations.list_stations(session, admin, active=True)] == ["ST1"]


def test_text_longer_than_its_column_is_refused_on_every_backend(
    plant: Plant, session: Session
) -> None:
    from mes.services import parts

    with pytest.raises(Invalid, match=r"parts\.description: at most 500"):
        parts.update_part(
            session, plant.actor("engineer"), plant.parts["board"].id, description="x" * 501
        )
