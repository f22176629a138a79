"""Process revisions: life cycle, immutability (service and database), signed release."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from mes.domain.errors import Conflict, Forbidden, Invalid, NotFound, SignatureRejected
from mes.domain.roles import Role
from mes.models import Process, ProcessStep, StepAction
from mes.services import processes, records
from tests.unit.mes.support import (
    Plant,
    action,
    content,
    grant,
    released_process,
    simple_content,
    step,
)


def test_draft_review_release_obsolete(plant: Plant, session: Session) -> None:
    eng, qa = plant.actor("engineer"), plant.actor("quality")
    process = processes.create_process(session, eng, plant.parts["board"].id, simple_content())
    assert (process.status, process.revision) == ("draft", 1)
    assert len(process.content_hash) == 64
    processes.submit(session, eng, process.id)
    processes.return_to_draft(session, qa, process.id, "step 2 needs limits")
    assert process.status == "draft"
    processes.submit(session, eng, process.id)
    processes.release(session, qa, process.id, grant(qa), "ok")
    assert process.status == "released" and process.release_signature_id is not None
    with pytest.raises(Conflict):
        processes.submit(session, eng, process.id)
    processes.obsolete(session, qa, process.id, "line retired")
    assert process.status == "obsolete"
    with pytest.raises(Conflict):
        processes.obsolete(session, qa, process.id, "again")


def test_empty_revision_cannot_be_submitted(plant: Plant, session: Session) -> None:
    eng = plant.actor("engineer")
    process = processes.create_process(session, eng, plant.parts["board"].id, content())
    with pytest.raises(Conflict, match="without steps"):
        processes.submit(session, eng, process.id)


def test_release_needs_quality_a_second_person_and_a_fresh_own_grant(
    plant: Plant, session: Session
) -> None:
    eng, qa, qa2 = plant.actor("engineer"), plant.actor("quality"), plant.actor("quality2")
    process = processes.create_process(session, eng, plant.parts["board"].id, simple_content())
    processes.submit(session, eng, process.id)
    with pytest.raises(Forbidden):
        processes.release(session, eng, process.id, grant(eng))
    admin = plant.actor("admin")
    with pytest.raises(Forbidden):
        processes.release(session, admin, process.id, grant(admin))
    with pytest.raises(SignatureRejected):
        processes.release(session, qa, process.id, grant(qa2))  # someone else's credentials
    processes.release(session, qa, process.id, grant(qa))


def test_the_author_cannot_release_their_own_revision(plant: Plant, session: Session) -> None:
    both = replace(plant.actor("engineer"), roles=frozenset({Role.ENGINEER, Role.QUALITY}))
    process = processes.create_process(session, both, plant.parts["board"].id, simple_content())
    processes.submit(session, both, process.id)
    with pytest.raises(Forbidden, match="other than its author"):
        processes.release(session, both, process.id, grant(both))


def test_only_drafts_change(plant: Plant, session: Session) -> None:
    eng = plant.actor("engineer")
    process = processes.create_process(session, eng, plant.parts["board"].id, simple_content())
    before = process.content_hash
    processes.replace_content(session, eng, process.id, simple_content("Build v2"))
    assert process.content_hash != before
    processes.submit(session, eng, process.id)
    with pytest.raises(Conflict, match="only drafts"):
        processes.replace_content(session, eng, process.id, simple_content())


def test_released_revision_is_frozen_in_the_database_too(plant: Plant, session: Session) -> None:
    process_id = released_process(plant, "board")
    session.commit()
    step_id = session.scalars(
        text("SELECT id FROM process_steps WHERE process_id = :p").bindparams(p=process_id)
    ).first()
    for statement in (
        update(ProcessStep).where(ProcessStep.id == step_id).values(title="edited"),
        update(StepAction)
        .where(StepAction.step_id == step_id)
        .values(label="edited", params={"min": 0}),
        update(Process).where(Process.id == process_id).values(content_hash="0" * 64),
        update(Process).where(Process.id == process_id).values(status="draft"),
        text("DELETE FROM process_steps WHERE id = :s").bindparams(s=step_id),
        text("DELETE FROM processes WHERE id = :p").bindparams(p=process_id),
        text(
            "INSERT INTO process_steps (process_id, position, title, instructions)"
            " VALUES (:p, 99, 'sneaked in', '')"
        ).bindparams(p=process_id),
    ):
        with pytest.raises(DBAPIError, match=r"draft|cannot change|only drafts"):
            session.execute(statement)
        session.rollback()


def test_a_change_behind_the_services_back_breaks_the_release_signature(
    plant: Plant, session: Session
) -> None:
    process_id = released_process(plant, "board")
    session.commit()
    qa = plant.actor("quality")
    [checked] = records.signatures_of(session, qa, "process", process_id)
    assert checked.check.ok
    session.execute(text("DROP TRIGGER trg_step_actions_frozen_update"))  # a DBA at work
    session.execute(
        update(StepAction)
        .values(params={"min": 0.0, "max": 99.0, "unit": "V"})
        .where(StepAction.kind == "measure")
    )
    session.expire_all()
    [checked] = records.signatures_of(session, qa, "process", process_id)
    assert not checked.check.ok
    assert "changed after it was signed" in checked.check.problems[0]


def test_new_revision_copies_and_supersedes(plant: Plant, session: Session) -> None:
    eng, qa = plant.actor("engineer"), plant.actor("quality")
    first = released_process(plant, "board")
    second = processes.revise(session, eng, first)
    assert (second.revision, second.status, second.based_on_id) == (2, "draft", first)
    source, _ = processes.get_process(session, eng, first)
    assert processes.content_of(second) == processes.content_of(source)
    with pytest.raises(Conflict, match="open already"):
        processes.revise(session, eng, first)
    with pytest.raises(Conflict, match="has process revisions"):
        processes.create_process(session, eng, plant.parts["board"].id, simple_content())
    processes.replace_content(session, eng, second.id, simple_content("Build, revised"))
    processes.submit(session, eng, second.id)
    processes.release(session, qa, second.id, grant(qa))
    assert source.status == "obsolete" and second.status == "released"


def test_drafts_can_be_deleted_and_nothing_else(plant: Plant, session: Session) -> None:
    eng = plant.actor("engineer")
    first = released_process(plant, "board")
    with pytest.raises(Conflict):
        processes.delete_draft(session, eng, first, "oops")
    draft = processes.revise(session, eng, first)
    processes.delete_draft(session, eng, draft.id, "not needed")
    with pytest.raises(NotFound):
        processes.get_process(session, eng, draft.id)


def test_components_must_be_tracked_visible_and_not_itself(plant: Plant, session: Session) -> None:
    eng = plant.actor("engineer")
    widget = plant.parts["widget"].id

    def scan(part_id: int) -> None:
        body = content(step("Fit", action("scan_component", "Part", part_id=part_id)))
        processes.create_process(session, eng, widget, body)

    with pytest.raises(Invalid, match="consume itself"):
        scan(widget)
    with pytest.raises(NotFound):
        scan(plant.parts["secret"].id)  # invisible to an uncleared engineer
    with pytest.raises(NotFound):
        scan(999)


def test_an_uncontrolled_part_cannot_consume_a_controlled_one(
    plant: Plant, session: Session
) -> None:
    xeng = plant.actor("x-engineer")
    body = content(step("Fit", action("scan_component", "Sub", part_id=plant.parts["secret"].id)))
    with pytest.raises(Invalid, match="export-controlled"):
        processes.create_process(session, xeng, plant.parts["widget"].id, body)
    processes.create_process(session, xeng, plant.parts["secret-sub"].id, body)


def test_bad_content_is_refused_with_a_location(plant: Plant, session: Session) -> None:
    eng = plant.actor("engineer")
    body = content(step("Scan", action("scan_serial", "Serial", pattern=r"(a)\1")))
    with pytest.raises(Invalid) as refused:
        processes.create_process(session, eng, plant.parts["board"].id, body)
    assert refused.value.problems[0][0] == "steps.0.actions.0.params.pattern"
