"""The JSON API end to end: author, review, release with a signature, build, trace; and the
shape of its errors."""

from __future__ import annotations

from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from mes.models import Person
from tests.unit.mes.support import GOOD_PASSWORD, GOOD_PIN, GOOD_TOTP, LOCK_AFTER, Plant

V1 = "/api/v1"


def who(key: str, station: int | None = None) -> dict[str, str]:
    headers = {"X-Test-Person": key.upper()}
    if station is not None:
        headers["X-Test-Station"] = str(station)
    return headers


def ok(answer: Any, status: int = 200) -> Any:
    assert answer.status_code == status, answer.text
    return answer.json()


CONTENT = {
    "title": "Build the board",
    "steps": [
        {
            "title": "Scan",
            "instructions": "Scan the label.",
            "actions": [
                {
                    "kind": "scan_serial",
                    "label": "Label",
                    "params": {"pattern": "B-[0-9]+", "match_unit": True},
                },
                {"kind": "confirm", "label": "Label is straight"},
            ],
        },
        {
            "title": "Test",
            "actions": [
                {
                    "kind": "measure",
                    "label": "5V rail",
                    "params": {"min": 4.75, "max": 5.25, "unit": "V"},
                },
                {"kind": "note", "label": "Remarks", "required": False},
                {"kind": "sign", "label": "Tested", "params": {"meaning": "performed"}},
            ],
        },
    ],
}


def release_board(client: TestClient, plant: Plant) -> dict[str, Any]:
    board = plant.parts["board"].id
    draft = ok(
        client.post(f"{V1}/processes", json={"part_id": board, **CONTENT}, headers=who("engineer")),
        201,
    )
    assert draft["status"] == "draft" and len(draft["steps"]) == 2
    ok(client.post(f"{V1}/processes/{draft['id']}/submit", json={}, headers=who("engineer")))
    released = ok(
        client.post(
            f"{V1}/processes/{draft['id']}/release",
            json={"signature": {"password": GOOD_PASSWORD, "totp": GOOD_TOTP}, "comment": "ok"},
            headers=who("quality"),
        )
    )
    return released  # type: ignore[no-any-return]


def test_author_release_build_trace(client: TestClient, plant: Plant) -> None:
    released = release_board(client, plant)
    assert released["status"] == "released"
    [signature] = released["signatures"]
    assert signature["valid"] and signature["meaning"] == "approved"
    assert signature["signer_name"] == "Person QUALITY" and signature["method"] == "password+totp"
    # GET returns what PUT takes: the content round-trips.
    again = ok(client.get(f"{V1}/processes/{released['id']}", headers=who("operator")))
    assert again["content_hash"] == released["content_hash"]

    order = ok(
        client.post(
            f"{V1}/work-orders",
            json={"part_id": plant.parts["board"].id, "quantity": 1},
            headers=who("lead"),
        ),
        201,
    )
    assert order["process_id"] == released["id"]
    op = who("operator", plant.station.id)
    unit = ok(
        client.post(f"{V1}/work-orders/{order['id']}/units", json={"serial": "B-7"}, headers=op),
        201,
    )
    detail = ok(client.get(f"{V1}/units/{unit['id']}", headers=op))
    first, second = detail["steps"]
    assert detail["next_step_id"] == first["step_id"]
    actions = {a["label"]: a["id"] for s in again["steps"] for a in s["actions"]}
    ok(
        client.post(
            f"{V1}/units/{unit['id']}/executions",
            headers=op,
            json={
                "step_id": first["step_id"],
                "answers": [
                    {"action_id": actions["Label"], "value": "B-7"},
                    {"action_id": actions["Label is straight"], "value": True},
                ],
            },
        ),
        201,
    )
    step_two = {
        "step_id": second["step_id"],
        "answers": [
            {"action_id": actions["5V rail"], "value": 5.01},
            {"action_id": actions["Tested"], "value": True},
        ],
    }
    refused = client.post(f"{V1}/units/{unit['id']}/executions", headers=op, json=step_two)
    assert refused.status_code == 403  # a signed step without credentials
    execution = ok(
        client.post(
            f"{V1}/units/{unit['id']}/executions",
            headers=op,
            json={**step_two, "signature": {"pin": GOOD_PIN}},
        ),
        201,
    )
    assert execution["outcome"] == "passed"
    [signed] = ok(client.get(f"{V1}/executions/{execution['id']}/signatures", headers=op))
    assert signed["valid"] and signed["method"] == "pin"
    done = ok(client.post(f"{V1}/units/{unit['id']}/complete", headers=op))
    assert done["status"] == "completed"
    verified = ok(client.get(f"{V1}/audit/verify", headers=who("auditor")))
    assert verified["ok"] and verified["entries"] > 10


def test_wrong_signature_credentials_count_towards_lockout(
    client: TestClient, plant: Plant, session: Session
) -> None:
    board = plant.parts["board"].id
    draft = ok(
        client.post(f"{V1}/processes", json={"part_id": board, **CONTENT}, headers=who("engineer")),
        201,
    )
    ok(client.post(f"{V1}/processes/{draft['id']}/submit", json={}, headers=who("engineer")))
    for _ in range(LOCK_AFTER):
        answer = client.post(
            f"{V1}/processes/{draft['id']}/release",
            json={"signature": {"pin": "000000"}},
            headers=who("quality"),
        )
        assert answer.status_code == 403 and "signature refused" in answer.json()["detail"]
    session.expire_all()
    person = session.get(Person, plant.people["quality"].id)
    assert person is not None and person.locked_at is not None  # committed despite the refusal
    session.rollback()  # SQLite: a transaction holds the write lock (mes.db)
    locked = client.get(f"{V1}/parts", headers=who("quality"))
    assert locked.status_code == 401
    status = ok(client.get(f"{V1}/processes/{draft['id']}", headers=who("auditor")))["status"]
    assert status == "review"


def test_validation_errors_are_located(client: TestClient, plant: Plant) -> None:
    bad = {
        "part_id": plant.parts["board"].id,
        "title": "T",
        "steps": [
            {
                "title": "S",
                "actions": [
                    {"kind": "measure", "label": "M", "params": {"min": 2, "max": 1, "unit": "V"}}
                ],
            },
        ],
    }
    answer = client.post(f"{V1}/processes", json=bad, headers=who("engineer"))
    assert answer.status_code == 422
    assert answer.json()["problems"][0]["where"] == "steps.0.actions.0.params.min"
    answer = client.post(
        f"{V1}/parts",
        json={"number": "X", "revision": "A", "colour": "red"},
        headers=who("engineer"),
    )
    body = answer.json()
    assert answer.status_code == 422 and body["problems"][0]["where"] == "body.colour"
    for bad_flag in ("yes", 1, "true"):
        answer = client.post(
            f"{V1}/parts",
            json={"number": "X", "revision": "A", "export_controlled": bad_flag},
            headers=who("engineer"),
        )
        assert answer.status_code == 422, (bad_flag, answer.text)
    answer = client.get(f"{V1}/parts/99999999999", headers=who("engineer"))
    assert answer.status_code == 422


def test_unexpected_errors_are_500_without_a_trace(client: TestClient, plant: Plant) -> None:
    import mes.services.parts as parts_service

    original = parts_service.list_parts

    def broken(*_: Any, **__: Any) -> Any:
        raise RuntimeError("secret internals /etc/shadow")

    parts_service.list_parts = broken  # type: ignore[assignment]
    try:
        answer = client.get(f"{V1}/parts", headers=who("engineer"))
    finally:
        parts_service.list_parts = original
    assert answer.status_code == 500
    assert "shadow" not in answer.text and "Traceback" not in answer.text
    assert answer.json()["detail"].startswith("internal error")


def test_openapi_is_served(client: TestClient) -> None:
    schema = ok(client.get("/openapi.json"))
    assert schema["info"]["title"] == "PlantGate MES"
    assert f"{V1}/processes/{{process_id}}/release" in schema["paths"]
