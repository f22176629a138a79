"""Export control: ITAR parts and all built from them exist only for cleared people.

Uncleared people do not find them in lists or searches, get 404 (not 403) on their detail
routes, and are refused "not found" when they name them as inputs. Cleared people (US
persons, ITAR-authorised) see and use them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from mes.domain.errors import Forbidden, NotFound
from mes.services import parts, quality, units, workorders
from tests.unit.mes.support import Plant, action, content, released_process, step

V1 = "/api/v1"
UNCLEARED = ["operator", "lead", "engineer", "quality", "auditor"]
CLEARED = ["x-operator", "x-lead", "x-engineer", "x-quality", "x-auditor"]


@dataclass
class Built:
    part: int
    process: int
    order: int
    unit: int
    sub_unit: int
    nc: int


def build_secret(plant: Plant) -> Built:
    """An ITAR assembly consuming an ITAR sub-assembly, with a nonconformance."""
    session = plant.session
    released_process(plant, "secret-sub")
    body = content(
        step("Fit", action("scan_component", "Sub", part_id=plant.parts["secret-sub"].id))
    )
    process = released_process(plant, "secret", body)
    lead, op = plant.actor("x-lead"), plant.actor("x-operator", at_station=True)
    sub_order = workorders.create_work_order(session, lead, plant.parts["secret-sub"].id, 1)
    sub = units.start_unit(session, op, sub_order.id, serial="S-1")
    for state in units.progress(session, sub):
        answers = (units.Answer(state.step.actions[0].id, True if state.step.position == 1 else 5),)
        units.record_step(session, op, sub.id, units.StepInput(state.step.id, answers))
    units.complete_unit(session, op, sub.id)
    order = workorders.create_work_order(session, lead, plant.parts["secret"].id, 1)
    unit = units.start_unit(session, op, order.id, serial="X-1")
    fit = units.progress(session, unit)[0].step
    units.record_step(
        session, op, unit.id, units.StepInput(fit.id, (units.Answer(fit.actions[0].id, "S-1"),))
    )
    nc = quality.raise_nc(session, op, unit.id, "marked")
    session.commit()
    return Built(plant.parts["secret"].id, process, order.id, unit.id, sub.id, nc.id)


@pytest.fixture
def secret(plant: Plant) -> Built:
    return build_secret(plant)


def get(client: TestClient, key: str, path: str) -> tuple[int, object]:
    answer = client.get(f"{V1}{path}", headers={"X-Test-Person": key.upper()})
    return answer.status_code, answer.json()


@pytest.mark.parametrize("key", UNCLEARED + CLEARED)
def test_lists_searches_and_details(client: TestClient, secret: Built, key: str) -> None:
    cleared = key.startswith("x-")
    ids = {
        "/parts": secret.part,
        "/parts?q=secret": secret.part,
        "/processes": secret.process,
        "/work-orders": secret.order,
        "/units": secret.unit,
        "/units?serial=X-1": secret.unit,
        "/nonconformances": secret.nc,
    }
    for path, hidden in ids.items():
        status, body = get(client, key, path)
        if status == 403:  # the role cannot list this kind at all
            continue
        assert status == 200 and isinstance(body, list)
        assert (hidden in {item["id"] for item in body}) is cleared, (key, path)
    details = [
        f"/parts/{secret.part}",
        f"/processes/{secret.process}",
        f"/work-orders/{secret.order}",
        f"/units/{secret.unit}",
        f"/units/{secret.unit}/components",
        f"/units/{secret.sub_unit}/where-used",
        f"/nonconformances/{secret.nc}",
        f"/parts/{secret.part}/lots",
    ]
    for path in details:
        status, body = get(client, key, path)
        if status != 403:
            assert status == (200 if cleared else 404), (key, path, body)


def test_audit_entries_are_filtered(client: TestClient, secret: Built) -> None:
    for key, sees in (("auditor", False), ("x-auditor", True)):
        status, body = get(client, key, "/audit?entity=process&limit=500")
        assert status == 200 and isinstance(body, list)
        assert (str(secret.process) in {e["entity_id"] for e in body}) is sees


def test_inputs_naming_hidden_records_are_not_found(
    client: TestClient, secret: Built, plant: Plant
) -> None:
    def post(key: str, path: str, body: dict[str, object]) -> int:
        headers = {"X-Test-Person": key.upper(), "X-Test-Station": str(plant.station.id)}
        return client.post(f"{V1}{path}", json=body, headers=headers).status_code

    assert post("lead", "/work-orders", {"part_id": secret.part, "quantity": 1}) == 404
    assert post("operator", f"/work-orders/{secret.order}/units", {"serial": "X-2"}) == 404
    assert post("engineer", "/processes", {"part_id": secret.part, "title": "T"}) == 404
    assert post("engineer", f"/processes/{secret.process}/revisions", {}) == 404
    assert post("operator", "/nonconformances", {"unit_id": secret.unit, "description": "x"}) == 404
    assert post("x-lead", "/work-orders", {"part_id": secret.part, "quantity": 1}) == 201


def test_uncleared_people_cannot_create_or_flag_controlled_parts(
    plant: Plant, session: Session
) -> None:
    engineer = plant.actor("engineer")
    with pytest.raises(Forbidden):
        parts.create_part(session, engineer, parts.PartInput("NEW", "A", export_controlled=True))
    board = plant.parts["board"].id
    with pytest.raises(Forbidden):
        parts.update_part(session, engineer, board, export_controlled=True)
    parts.update_part(session, plant.actor("x-engineer"), board, export_controlled=True)
    with pytest.raises(NotFound):
        parts.get_part(session, engineer, board)


def test_a_parent_hidden_from_the_walk_up(plant: Plant, secret: Built, session: Session) -> None:
    """A cleared person sees the ITAR parent of a sub-unit; nobody else sees the sub-unit."""
    from mes.domain.genealogy import Node
    from mes.services import genealogy

    tree = genealogy.where_used(session, plant.actor("x-quality"), Node("unit", secret.sub_unit))
    assert [c.node.id for c in tree.children] == [secret.unit]
    with pytest.raises(NotFound):
        genealogy.where_used(session, plant.actor("quality"), Node("unit", secret.sub_unit))
