"""The operator station through its forms: sign in, pick the work order, scan the serial,
step through the frozen revision with a message beside each refused field, complete."""

from __future__ import annotations

import re

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import select

from mes.models.processes import StepAction
from mes.models.production import StepExecution, Unit
from tests.unit.mes_web.support import PIN, Web, token_of

FIELD_ERRORS = re.compile(r'class="field-error"[^>]*>([^<]*)<')
FIELD = re.compile(r'name="(a\d+)"')
STEP_FORM = re.compile(r'action="(/station/ST1/units/\d+/steps/\d+)"')


def errors(html: str) -> list[str]:
    return [e.replace("&#39;", "'").replace("&#34;", '"') for e in FIELD_ERRORS.findall(html)]


def sign_in(client: TestClient, **fields: str) -> httpx.Response:
    token = token_of(client.get("/station/ST1").text)
    return client.post("/station/ST1/login", data={"login_token": token, **fields})


def start(client: TestClient, web: Web, serial: str) -> httpx.Response:
    page = client.get(f"/station/ST1/work-orders/{web.ids['order']}")
    return client.post(
        f"/station/ST1/work-orders/{web.ids['order']}/units",
        data={"csrf_token": token_of(page.text), "serial": serial},
    )


def step_form(client: TestClient, unit: str) -> tuple[str, str, str]:
    """(post path, first field name, token) of the unit page's current step."""
    html = client.get(unit).text
    return STEP_FORM.findall(html)[0], FIELD.findall(html)[0], token_of(html)


def test_badge_and_pin_sign_in_and_out(web: Web) -> None:
    client = web.client()
    answer = sign_in(client, badge=web.badges["operator"].lower(), pin=PIN)
    assert answer.status_code == 303
    assert answer.headers["location"] == "/station/ST1/work-orders"
    page = client.get("/station/ST1/work-orders")
    assert "Person OPERATOR" in page.text and "WO-100" in page.text
    assert '<meta http-equiv="refresh" content="905; url=/station/ST1">' in page.text
    assert client.get("/station/ST1").headers["location"] == "/station/ST1/work-orders"
    out = client.post("/station/ST1/logout", data={"csrf_token": token_of(page.text)})
    assert out.status_code == 303 and out.headers["location"] == "/station/ST1"
    assert client.get("/station/ST1/work-orders").status_code == 303


def test_refusals_do_not_say_whether_the_badge_exists(web: Web) -> None:
    answers = [
        sign_in(web.client(), badge="PGB-0000-0000-0000-0000-0000", pin=PIN),
        sign_in(web.client(), badge=web.badges["lead"], pin="111112"),
        sign_in(web.client(), employee_number="NOBODY", pin=PIN),
    ]
    for answer in answers:
        assert answer.status_code == 401
        assert "badge or employee number and PIN not recognised" in answer.text
        assert PIN not in answer.text
    assert all(e.kind == "mes.login_failed" for e in web.events)


def test_lockout_and_rate_limit_messages(web: Web) -> None:
    for _ in range(5):
        web.backend.auth.limiter = type(web.backend.auth.limiter)()  # the lockout alone
        assert sign_in(web.client(), employee_number="LEAD", pin="111112").status_code == 401
    locked = sign_in(web.client(), employee_number="LEAD", pin=PIN)
    assert locked.status_code == 423
    assert "locked after too many failed attempts; ask a lead" in locked.text
    web.backend.auth.limiter = type(web.backend.auth.limiter)()
    statuses = [
        sign_in(web.client(), employee_number="NOBODY", pin=PIN).status_code for _ in range(6)
    ]
    assert statuses == [401] * 5 + [429]
    limited = sign_in(web.client(), employee_number="NOBODY", pin=PIN)
    assert re.search(r"too many attempts; wait and try again \(in \d+ s\)", limited.text)


def test_uncleared_operators_do_not_see_export_controlled_work(web: Web) -> None:
    operator = web.at_station("operator")
    assert "WO-ITAR" not in operator.get("/station/ST1/work-orders").text
    hidden = f"/station/ST1/work-orders/{web.ids['secret_order']}"
    assert operator.get(hidden).status_code == 404
    cleared = web.at_station("x-operator")
    assert "WO-ITAR" in cleared.get("/station/ST1/work-orders").text
    assert cleared.get(hidden).status_code == 200


def test_the_whole_flow_with_messages(web: Web) -> None:
    client = web.at_station("operator")
    bad = start(client, web, "BAD-1")
    assert bad.status_code == 422
    assert "“BAD-1” does not match this part's serials (SN-[0-9]{4})" in errors(bad.text)
    assert 'value="BAD-1"' in bad.text  # kept as typed
    started = start(client, web, "SN-0001")
    assert started.status_code == 303
    unit = started.headers["location"]
    again = start(client, web, "SN-0001")  # scanning it again continues it
    assert again.headers["location"] == unit

    # Step 1: scan the unit's own label.
    path, field, token = step_form(client, unit)
    wrong = client.post(path, data={"csrf_token": token, field: "SN-0002"})
    assert wrong.status_code == 422
    assert "scanned “SN-0002”, but this unit is “SN-0001”: check the label" in errors(wrong.text)
    missing = client.post(path, data={"csrf_token": token})
    assert missing.status_code == 422 and "scan or type the serial" in errors(missing.text)
    done = client.post(path, data={"csrf_token": token, field: "SN-0001"})
    assert done.status_code == 303 and done.headers["location"] == unit
    assert "Step 1 (Label) recorded: passed." in client.get(unit).text

    # Step 2: out of range is recorded and fails the step; the message says why.
    path, field, token = step_form(client, unit)
    junk = client.post(path, data={"csrf_token": token, field: "twelve"})
    assert junk.status_code == 422 and "enter a number, like 12.5" in errors(junk.text)
    high = client.post(path, data={"csrf_token": token, field: "12.7"})
    assert high.status_code == 303
    page = client.get(unit).text
    assert "12.7 mm is above the maximum 12.5 mm" in errors(page)
    assert 'value="12.7"' in page and "failed — do again" in page
    low = client.post(path, data={"csrf_token": token, field: "12,1"})
    assert low.status_code == 303
    assert "12.1 mm is below the minimum 12.3 mm" in errors(client.get(unit).text)
    ok = client.post(path, data={"csrf_token": token, field: "12.4"})
    assert ok.status_code == 303

    # Step 3: confirm; then complete.
    path, field, token = step_form(client, unit)
    unticked = client.post(path, data={"csrf_token": token})
    assert "tick the box to confirm" in errors(unticked.text)
    assert client.post(path, data={"csrf_token": token, field: "yes"}).status_code == 303
    page = client.get(unit).text
    assert "Every step is passed." in page
    completed = client.post(f"{unit}/complete", data={"csrf_token": token})
    assert completed.status_code == 303
    assert "Unit SN-0001 completed." in client.get(completed.headers["location"]).text

    with web.maker() as db:
        record = db.scalars(select(Unit).where(Unit.serial == "SN-0001")).one()
        assert record.status == "completed"
        outcomes = [e.outcome for e in db.scalars(select(StepExecution).order_by(StepExecution.id))]
        assert outcomes == ["passed", "failed", "failed", "passed", "passed"]


def test_steps_go_in_order_and_a_completed_unit_is_closed(web: Web) -> None:
    client = web.at_station("operator")
    unit = start(client, web, "SN-0003").headers["location"]
    token = token_of(client.get(unit).text)
    with web.maker() as db:
        measure = db.scalars(
            select(StepAction).where(StepAction.kind == "measure").order_by(StepAction.id)
        ).first()
        assert measure is not None
        step_id, field = measure.step_id, f"a{measure.id}"
    skipped = client.post(f"{unit}/steps/{step_id}", data={"csrf_token": token, field: "12.4"})
    assert skipped.status_code == 409
    assert "Nothing was recorded: step 1 (Label) is not passed yet" in skipped.text
    early = client.post(f"{unit}/complete", data={"csrf_token": token})
    assert early.status_code == 409 and "steps not passed yet" in early.text
    foreign = client.post(f"{unit}/steps/999", data={"csrf_token": token})
    assert foreign.status_code == 404


def test_fail_the_unit_puts_it_on_hold(web: Web) -> None:
    client = web.at_station("operator")
    unit = start(client, web, "SN-0004").headers["location"]
    form = client.get(f"{unit}/fail")
    token = token_of(form.text)
    empty = client.post(f"{unit}/fail", data={"csrf_token": token})
    assert empty.status_code == 422 and "required" in errors(empty.text)
    held = client.post(f"{unit}/fail", data={"csrf_token": token, "description": "cracked"})
    assert held.status_code == 303
    assert "is on hold: nonconformance" in client.get(held.headers["location"]).text
    assert "nothing more is recorded on it here" in client.get(unit).text


def test_station_registration_cookie(web: Web) -> None:
    client = web.client()
    form = client.get("/station")
    assert form.status_code == 200 and "Which station is this screen?" in form.text
    unknown = client.post("/station", data={"login_token": token_of(form.text), "code": "NOPE"})
    assert unknown.status_code == 422 and "not an active station code" in unknown.text
    done = client.post("/station", data={"login_token": token_of(form.text), "code": "ST1"})
    assert done.status_code == 303 and done.headers["location"] == "/station/ST1"
    assert "__Host-plantgate-station=ST1" in done.headers["set-cookie"]
    assert client.get("/station").headers["location"] == "/station/ST1"
    assert client.get("/").headers["location"] == "/station/ST1"
    assert client.get("/station?change=1").status_code == 200
