"""Work orders, units, step executions and genealogy."""

from __future__ import annotations

import datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from mes.domain.actor import Actor
from mes.domain.errors import Conflict, Forbidden, Invalid, NotFound, SignatureRejected
from mes.domain.genealogy import Node
from mes.models import ProcessStep, Unit
from mes.services import genealogy, processes, records, units, workorders
from tests.unit.mes.support import (
    Plant,
    action,
    content,
    grant,
    released_process,
    simple_content,
    step,
)


def answers_for(session: Session, unit: Unit, position: int, *values: object) -> units.StepInput:
    state = units.progress(session, unit)[position - 1]
    pairs = zip(state.step.actions, values, strict=True)
    return units.StepInput(state.step.id, tuple(units.Answer(a.id, v) for a, v in pairs))


def build(plant: Plant, part: str, serial: str, *steps: tuple[object, ...]) -> Unit:
    """Start a unit of `part` on a new work order and pass the given steps' answers."""
    session, op = plant.session, plant.actor("operator", at_station=True)
    order = workorders.create_work_order(session, plant.actor("lead"), plant.parts[part].id, 5)
    unit = units.start_unit(session, op, order.id, serial=serial)
    for position, values in enumerate(steps, 1):
        units.record_step(session, op, unit.id, answers_for(session, unit, position, *values))
    return unit


def test_work_order_freezes_the_released_revision(plant: Plant, session: Session) -> None:
    lead, eng, qa = plant.actor("lead"), plant.actor("engineer"), plant.actor("quality")
    with pytest.raises(Conflict, match="no released process"):
        workorders.create_work_order(session, lead, plant.parts["board"].id, 1)
    first = released_process(plant, "board")
    order = workorders.create_work_order(session, lead, plant.parts["board"].id, 3)
    assert order.process_id == first
    second = processes.revise(session, eng, first)
    processes.replace_content(session, eng, second.id, simple_content("Build v2"))
    processes.submit(session, eng, second.id)
    processes.release(session, qa, second.id, grant(qa))
    session.refresh(order)
    assert order.process_id == first  # kept, though revision 1 is now obsolete
    op = plant.actor("operator", at_station=True)
    unit = units.start_unit(session, op, order.id, serial="B-1")
    assert units.progress(session, unit)[0].step.process_id == first
    newer = workorders.create_work_order(session, lead, plant.parts["board"].id, 1)
    assert newer.process_id == second.id


def test_only_leads_open_and_close_work_orders(plant: Plant, session: Session) -> None:
    released_process(plant, "board")
    for who in ("operator", "engineer", "quality", "admin", "auditor"):
        with pytest.raises(Forbidden):
            workorders.create_work_order(session, plant.actor(who), plant.parts["board"].id, 1)
    order = workorders.create_work_order(session, plant.actor("lead"), plant.parts["board"].id, 1)
    workorders.close_work_order(session, plant.actor("lead"), order.id, "done")
    with pytest.raises(Conflict, match="closed"):
        units.start_unit(session, plant.actor("operator", at_station=True), order.id, serial="X")


def test_serials_are_unique_per_part(plant: Plant, session: Session) -> None:
    released_process(plant, "board")
    released_process(plant, "widget")
    op = plant.actor("operator", at_station=True)
    lead = plant.actor("lead")
    boards = workorders.create_work_order(session, lead, plant.parts["board"].id, 5)
    widgets = workorders.create_work_order(session, lead, plant.parts["widget"].id, 5)
    units.start_unit(session, op, boards.id, serial="SN-1")
    with pytest.raises(Conflict, match="already"):
        units.start_unit(session, op, boards.id, serial="SN-1")
    units.start_unit(session, op, widgets.id, serial="SN-1")  # another part: fine
    session.commit()
    with pytest.raises(DBAPIError):  # and the database says so too
        session.add(Unit(part_id=plant.parts["board"].id, work_order_id=boards.id, serial="SN-1"))
        session.flush()
    session.rollback()
    with pytest.raises(Invalid, match="serial"):
        units.start_unit(session, op, boards.id)  # serial-tracked: a serial is needed
    with pytest.raises(Invalid):
        units.start_unit(session, op, boards.id, serial="has space")


def test_untracked_parts_get_serials_and_quantity_is_kept(plant: Plant, session: Session) -> None:
    released_process(plant, "screw")
    op, lead = plant.actor("operator", at_station=True), plant.actor("lead")
    order = workorders.create_work_order(session, lead, plant.parts["screw"].id, 2, number="WO-9")
    assert units.start_unit(session, op, order.id).serial == "WO-9-0001"
    assert units.start_unit(session, op, order.id).serial == "WO-9-0002"
    with pytest.raises(Conflict, match="all 2 units"):
        units.start_unit(session, op, order.id)


def test_steps_in_order_failures_retried_corrections_by_leads(
    plant: Plant, session: Session
) -> None:
    released_process(plant, "board")
    op, lead = plant.actor("operator", at_station=True), plant.actor("lead", at_station=True)
    unit = build(plant, "board", "B-1")
    with pytest.raises(Conflict, match="not passed yet"):
        units.record_step(session, op, unit.id, answers_for(session, unit, 2, 5.0))
    units.record_step(session, op, unit.id, answers_for(session, unit, 1, True))
    failed = units.record_step(session, op, unit.id, answers_for(session, unit, 2, 7.5))
    assert failed.outcome == "failed" and failed.records[0].value == 7.5
    with pytest.raises(Conflict, match="steps not passed"):
        units.complete_unit(session, op, unit.id)
    passed = units.record_step(session, op, unit.id, answers_for(session, unit, 2, 5.0))
    assert passed.outcome == "passed"
    with pytest.raises(Conflict, match="passed already"):
        units.record_step(session, op, unit.id, answers_for(session, unit, 2, 5.1))
    fix = answers_for(session, unit, 2, 5.2)
    correction = units.StepInput(fix.step_id, fix.answers, corrects_id=passed.id, reason="typo")
    with pytest.raises(Forbidden):
        units.record_step(session, op, unit.id, correction)
    corrected = units.record_step(session, lead, unit.id, correction)
    assert corrected.corrects_id == passed.id
    history = units.progress(session, unit)[1].history
    assert [e.outcome for e in history] == ["failed", "passed", "passed"]
    assert units.complete_unit(session, op, unit.id).status == "completed"


def test_answers_are_checked_before_anything_is_written(plant: Plant, session: Session) -> None:
    released_process(plant, "board")
    op = plant.actor("operator", at_station=True)
    unit = build(plant, "board", "B-1")
    first = units.progress(session, unit)[0].step
    other = units.progress(session, unit)[1].step
    for answers, message in (
        ((), "required"),
        ((units.Answer(first.actions[0].id, False),), "expected true"),
        ((units.Answer(other.actions[0].id, 5.0),), "not in this step"),
        (tuple(units.Answer(first.actions[0].id, True) for _ in range(2)), "twice"),
    ):
        with pytest.raises(Invalid, match=message):
            units.record_step(session, op, unit.id, units.StepInput(first.id, answers))
    assert units.progress(session, unit)[0].history == []
    future = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=1)
    ok = units.StepInput(first.id, (units.Answer(first.actions[0].id, True),), started_at=future)
    with pytest.raises(Invalid, match="started_at"):
        units.record_step(session, op, unit.id, ok)


def test_a_station_is_needed_and_a_session_keeps_its_own(plant: Plant, session: Session) -> None:
    released_process(plant, "board")
    order = workorders.create_work_order(session, plant.actor("lead"), plant.parts["board"].id, 2)
    with pytest.raises(Invalid, match="station"):
        units.start_unit(session, plant.actor("operator"), order.id, serial="B-1")
    op = plant.actor("operator", at_station=True)
    with pytest.raises(Conflict, match="another station"):
        units.start_unit(session, op, order.id, serial="B-1", station_id=plant.station.id + 1)
    unit = units.start_unit(
        session, plant.actor("operator"), order.id, serial="B-1", station_id=plant.station.id
    )
    assert unit.started_station_id == plant.station.id


def test_executions_are_append_only_in_the_database(plant: Plant, session: Session) -> None:
    released_process(plant, "board")
    build(plant, "board", "B-1", (True,))
    session.commit()
    for statement in (
        "UPDATE step_executions SET outcome = 'failed'",
        "DELETE FROM step_executions",
        "UPDATE action_records SET value = 'false'",
        "DELETE FROM action_records",
        "UPDATE e_signatures SET meaning = 'approved'",
        "DELETE FROM e_signatures",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            session.execute(text(statement))
        session.rollback()


def signed_step_plant(plant: Plant) -> None:
    body = content(step("Inspect", action("sign", "Inspected", meaning="verified")))
    released_process(plant, "board", body)


def test_a_signed_step_needs_the_operators_own_signature(plant: Plant, session: Session) -> None:
    signed_step_plant(plant)
    op = plant.actor("operator", at_station=True)
    unit = build(plant, "board", "B-1")
    data = answers_for(session, unit, 1, True)
    with pytest.raises(SignatureRejected):
        units.record_step(session, op, unit.id, data)
    with pytest.raises(SignatureRejected):
        units.record_step(session, op, unit.id, data, grant(plant.actor("lead")))
    execution = units.record_step(session, op, unit.id, data, grant(op))
    assert execution.records[0].signature_id is not None
    [checked] = records.signatures_of(session, op, "step_execution", execution.id)
    assert checked.check.ok and checked.signature.meaning == "verified"


# -- genealogy --------------------------------------------------------------------------


def widget_plant(plant: Plant) -> tuple[int, int]:
    released_process(plant, "board")
    released_process(plant, "screw")
    body = content(
        step(
            "Fit",
            action("scan_component", "Board", part_id=plant.parts["board"].id),
            action("scan_component", "Screws", part_id=plant.parts["screw"].id, pattern=r"L\d+"),
        )
    )
    released_process(plant, "widget", body)
    return plant.parts["board"].id, plant.parts["screw"].id


def finished_board(plant: Plant, serial: str) -> Unit:
    unit = build(plant, "board", serial, (True,), (5.0,))
    units.complete_unit(plant.session, plant.actor("operator", at_station=True), unit.id)
    return unit


def test_genealogy_both_ways(plant: Plant, session: Session) -> None:
    widget_plant(plant)
    op = plant.actor("operator", at_station=True)
    board = finished_board(plant, "B-1")
    widget = build(plant, "widget", "W-1", ("B-1", "L42"))
    down = genealogy.components(session, op, widget.id)
    assert {(c.node.kind, c.via.step_id is not None) for c in down.children if c.via} == {
        ("unit", True),
        ("lot", True),
    }
    up = genealogy.where_used(session, op, Node("unit", board.id))
    assert [c.node for c in up.children] == [Node("unit", widget.id)]
    lot = next(c.node for c in down.children if c.node.kind == "lot")
    assert [c.node for c in genealogy.where_used(session, op, lot).children] == [
        Node("unit", widget.id)
    ]
    assert genealogy.describe(session, lot).label == "L42"


def test_components_must_exist_be_finished_and_unused(plant: Plant, session: Session) -> None:
    widget_plant(plant)
    op = plant.actor("operator", at_station=True)
    unfinished = build(plant, "board", "B-2", (True,))
    finished_board(plant, "B-1")
    widget = build(plant, "widget", "W-1")
    for scanned, error, message in (
        ("B-404", NotFound, "no unit"),
        (unfinished.serial, Conflict, "not completed"),
        ("B-1", Invalid, "pattern"),  # the screw lot does not match L\d+
    ):
        screws = "L1" if error is not Invalid else "nope"
        with pytest.raises(error, match=message):
            units.record_step(
                session, op, widget.id, answers_for(session, widget, 1, scanned, screws)
            )
    units.record_step(session, op, widget.id, answers_for(session, widget, 1, "B-1", "L1"))
    other = build(plant, "widget", "W-2")
    with pytest.raises(Conflict, match="already built into"):
        units.record_step(session, op, other.id, answers_for(session, other, 1, "B-1", "L1"))


def test_detaching_a_component_keeps_the_history(plant: Plant, session: Session) -> None:
    widget_plant(plant)
    op, lead = plant.actor("operator", at_station=True), plant.actor("lead")
    board = finished_board(plant, "B-1")
    widget = build(plant, "widget", "W-1", ("B-1", "L1"))
    [link] = [g for g in genealogy.active_links_down(session, widget.id) if g.child_unit_id]
    with pytest.raises(Forbidden):
        genealogy.detach(session, op, link.id, "wrong board")
    removal = genealogy.detach(session, lead, link.id, "wrong board")
    assert removal.removes_id == link.id
    assert genealogy.where_used(session, op, Node("unit", board.id)).children == []
    with pytest.raises(Conflict):
        genealogy.detach(session, lead, link.id, "again")
    other = build(plant, "widget", "W-2", ("B-1", "L1"))  # the board is free again
    assert genealogy.where_used(session, op, Node("unit", board.id)).children[0].node.id == other.id


def test_genealogy_walks_survive_a_cycle_in_the_data(plant: Plant, session: Session) -> None:
    widget_plant(plant)
    op = plant.actor("operator", at_station=True)
    finished_board(plant, "B-1")
    widget = build(plant, "widget", "W-1", ("B-1", "L1"))
    board = session.query(Unit).filter_by(serial="B-1").one()
    session.execute(
        text(
            "INSERT INTO genealogy (parent_unit_id, child_unit_id, person_id, recorded_at)"
            " VALUES (:b, :w, :p, CURRENT_TIMESTAMP)"
        ).bindparams(b=board.id, w=widget.id, p=op.person_id)
    )
    tree = genealogy.components(session, op, widget.id)
    [board_node] = [c for c in tree.children if c.node.kind == "unit"]
    [cycle] = board_node.children
    assert cycle.node == Node("unit", widget.id) and cycle.cycle


def test_steps_belong_to_the_units_revision(plant: Plant, session: Session) -> None:
    released_process(plant, "board")
    released_process(plant, "screw")
    op: Actor = plant.actor("operator", at_station=True)
    unit = build(plant, "board", "B-1")
    foreign = (
        session.query(ProcessStep)
        .filter(ProcessStep.process_id != units.progress(session, unit)[0].step.process_id)
        .first()
    )
    assert foreign is not None
    with pytest.raises(NotFound):
        units.record_step(session, op, unit.id, units.StepInput(foreign.id))
