"""A unit's history and genealogy on the Manage Page, nonconformances with a signed
disposition, the audit view, and export control on every page (404 for the uncleared)."""

from __future__ import annotations

import re

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import select

from mes.domain.lifecycle import Tracking
from mes.models.production import Unit
from mes.services import parts, processes, units, workorders
from mes.services.units import Answer, StepInput
from tests.unit.mes.support import action, content, grant, step
from tests.unit.mes_web.support import PASSWORD, Web, token_of

FIELD = re.compile(r'name="(a\d+)"')
STEP_FORM = re.compile(r'action="(/station/ST1/units/\d+/steps/\d+)"')


def run_unit(client: TestClient, web: Web, serial: str, answers: list[str]) -> str:
    """Start `serial` at the station and post each answer to the current step's one field."""
    page = client.get(f"/station/ST1/work-orders/{web.ids['order']}")
    started = client.post(
        f"/station/ST1/work-orders/{web.ids['order']}/units",
        data={"csrf_token": token_of(page.text), "serial": serial},
    )
    unit = started.headers["location"]
    for answer in answers:
        html = client.get(unit).text
        path, field = STEP_FORM.findall(html)[0], FIELD.findall(html)[0]
        assert (
            client.post(path, data={"csrf_token": token_of(html), field: answer}).status_code == 303
        )
    return unit


def post(client: TestClient, path: str, **data: str) -> httpx.Response:
    return client.post(path, data={"csrf_token": token_of(client.get("/manage").text), **data})


def test_history_shows_each_attempt_who_where_when(web: Web) -> None:
    operator = web.at_station("operator")
    unit = run_unit(operator, web, "SN-0001", ["SN-0001", "12.7", "12.4", "yes"])
    html = operator.get(unit).text
    assert operator.post(f"{unit}/complete", data={"csrf_token": token_of(html)}).status_code == 303

    quality = web.signed_in("quality")
    found = quality.get("/manage/units", params={"serial": "SN-0001"})
    assert found.status_code == 303
    page = quality.get(found.headers["location"]).text
    assert "completed" in page
    for text in ("1. Label", "2. Measure", "3. Finish", "Bore diameter", "Cover fitted"):
        assert text in page, text
    assert page.count("2. Measure") == 2  # the failed attempt stays in the record
    assert "<strong>12.7 mm</strong>" in page and "<strong>12.4 mm</strong>" in page
    assert "rejected" in page and "12.7 mm is above the maximum 12.5 mm" in page
    assert "attempt 2, done again after a failed attempt" in page
    assert page.count("Person OPERATOR (OPERATOR)") >= 4  # who, for every execution
    assert "ST1 Station 1" in page  # where
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", page)  # when
    assert "Not built into anything." in page and "No components recorded." in page


def test_genealogy_both_ways(web: Web) -> None:
    """A board (serial) and a lot of screws go into an assembly; each page shows the other."""
    plant = web.plant
    with web.maker() as db:
        plant.session = db
        engineer = plant.actor("engineer")
        board_id, screw_id = plant.parts["board"].id, plant.parts["screw"].id
        assembly = parts.create_part(
            db, engineer, parts.PartInput("ASSY", "A", "assembly", Tracking.SERIAL)
        )
        body = content(
            step(
                "Fit",
                action("scan_component", "Board", part_id=board_id),
                action("scan_component", "Screws", part_id=screw_id),
            )
        )
        proc = processes.create_process(db, engineer, assembly.id, body)
        processes.submit(db, engineer, proc.id)
        processes.release(db, plant.actor("quality"), proc.id, grant(plant.actor("quality")))
        board_body = content(step("Check", action("confirm", "ok")))
        board_proc = processes.create_process(db, engineer, board_id, board_body)
        processes.submit(db, engineer, board_proc.id)
        processes.release(db, plant.actor("quality"), board_proc.id, grant(plant.actor("quality")))
        lead = plant.actor("lead")
        board_order = workorders.create_work_order(db, lead, board_id, 1)
        assy_order = workorders.create_work_order(db, lead, assembly.id, 1)
        op = plant.actor("operator", at_station=True)
        board = units.start_unit(db, op, board_order.id, serial="B-1")
        board_step = board_proc.steps[0]
        units.record_step(
            db, op, board.id, StepInput(board_step.id, (Answer(board_step.actions[0].id, True),))
        )
        units.complete_unit(db, op, board.id)
        assy = units.start_unit(db, op, assy_order.id, serial="A-1")
        fit = proc.steps[0]
        answers = (Answer(fit.actions[0].id, "B-1"), Answer(fit.actions[1].id, "LOT-42"))
        units.record_step(db, op, assy.id, StepInput(fit.id, answers))
        db.commit()
        board_id_, assy_id = board.id, assy.id
    quality = web.signed_in("quality")
    assy_page = quality.get(f"/manage/units/{assy_id}").text
    assert "unit B-1" in assy_page and "lot LOT-42" in assy_page
    board_page = quality.get(f"/manage/units/{board_id_}").text
    assert "unit A-1" in board_page  # used in
    lot = re.search(r'href="(/manage/lots/\d+)">lot LOT-42', assy_page)
    assert lot is not None
    assert "unit A-1" in quality.get(lot.group(1)).text


def test_nonconformance_disposition_is_signed(web: Web) -> None:
    operator = web.at_station("operator")
    unit = run_unit(operator, web, "SN-0002", ["SN-0002"])
    fail = operator.get(f"{unit}/fail")
    held = operator.post(
        f"{unit}/fail", data={"csrf_token": token_of(fail.text), "description": "scratched"}
    )
    assert held.status_code == 303
    quality = web.signed_in("quality")
    listing = quality.get("/manage/nonconformances").text
    nc = re.search(r'href="(/manage/nonconformances/\d+)"', listing)
    assert nc is not None and "scratched" in listing
    wrong = post(
        quality, f"{nc.group(1)}/disposition", disposition="scrap", password="nope", totp="1"
    )
    assert wrong.status_code == 403 and "signature refused" in wrong.text
    done = post(
        quality,
        f"{nc.group(1)}/disposition",
        disposition="scrap",
        note="not repairable",
        password=PASSWORD,
        totp=web.code("quality"),
    )
    assert done.status_code == 303, done.text
    page = quality.get(nc.group(1)).text
    assert "dispositioned" in page and "valid" in page and "scrapped" in page
    auditor = web.signed_in("auditor").get(nc.group(1)).text
    assert "Sign and disposition" not in auditor


def test_audit_view_and_chain_check(web: Web) -> None:
    auditor = web.signed_in("auditor")
    page = auditor.get("/manage/audit").text
    assert "part.created" in page and "process.released" in page
    assert "WO-ITAR" not in page and "SECRET" not in page  # not cleared
    cleared = web.signed_in("x-auditor").get("/manage/audit").text
    assert "SECRET" in cleared
    filtered = auditor.get("/manage/audit", params={"entity": "work_order"}).text
    assert "work_order.created" in filtered and "part.created" not in filtered
    verify = auditor.get("/manage/audit/verify")
    assert verify.status_code == 200 and "Intact" in verify.text


def test_export_controlled_records_are_not_there_for_the_uncleared(web: Web) -> None:
    xoperator = web.at_station("x-operator")
    run_unit(xoperator, web, "SN-0005", ["SN-0005"])  # a widget: not controlled
    with web.maker() as db:
        web.plant.session = db
        op = web.plant.actor("x-operator", at_station=True)
        secret = units.start_unit(db, op, web.ids["secret_order"], serial="SN-7777")
        db.commit()
        secret_id = secret.id
    hidden = {
        f"/manage/units/{secret_id}",
        f"/manage/processes/{web.ids['secret_process']}",
        f"/manage/work-orders/{web.ids['secret_order']}",
        f"/manage/parts/{web.plant.parts['secret'].id}",
    }
    for key in ("quality", "auditor", "engineer", "lead"):
        client = web.signed_in(key)
        for path in hidden:
            answer = client.get(path)
            assert answer.status_code == 404, (key, path)
            assert "SECRET" not in answer.text and "SN-7777" not in answer.text
        for listing in (
            "/manage/units",
            "/manage/parts",
            "/manage/processes",
            "/manage/work-orders",
        ):
            text = client.get(listing).text
            assert "SECRET" not in text and "SN-7777" not in text and "WO-ITAR" not in text
        assert client.get("/manage/units", params={"serial": "SN-7777"}).status_code == 200
    quality = web.signed_in("quality")
    posted = post(quality, f"/manage/units/{secret_id}/nonconformances", description="x")
    assert posted.status_code == 404
    cleared = web.signed_in("x-quality")
    for path in hidden:
        assert cleared.get(path).status_code == 200, path
    with web.maker() as db:
        assert (
            db.scalars(select(Unit).where(Unit.serial == "SN-7777")).one().status == "in_progress"
        )
