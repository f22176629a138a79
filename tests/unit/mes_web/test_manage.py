"""The Manage Page through its forms: sign-in with TOTP enrolment, parts, the process editor,
review and signed release, work orders, people and their credentials."""

from __future__ import annotations

import re

import httpx
import pyotp
from fastapi.testclient import TestClient
from sqlalchemy import select

from mes.auth import accounts
from mes.models.people import Badge, Person
from mes.models.processes import Process
from mes.models.production import WorkOrder
from tests.unit.mes_web.support import PASSWORD, PIN, Web, token_of

FIELD_ERRORS = re.compile(r'class="field-error"[^>]*>([^<]*)<')


def login(
    client: TestClient, number: str, password: str, code: str = "", **extra: str
) -> httpx.Response:
    form = client.get("/manage/login", params=extra)
    data = {
        "login_token": token_of(form.text),
        "employee_number": number,
        "password": password,
        "totp": code,
        "next": extra.get("next", "/manage"),
    }
    return client.post("/manage/login", data=data)


def test_sign_in_enrols_the_authenticator_then_needs_a_code(web: Web) -> None:
    with web.maker() as db, db.begin():
        person = db.scalars(select(Person).where(Person.employee_number == "ENGINEER2")).one()
        accounts.reset_totp(db, person)
    client = web.client()
    wrong = login(client, "ENGINEER2", "not the password")
    assert wrong.status_code == 401
    assert "employee number, password or code not recognised" in wrong.text
    enrol = login(client, "ENGINEER2", PASSWORD)
    assert enrol.status_code == 200
    assert 'src="data:image/svg+xml' in enrol.text
    key = re.search(r'id="totp-key">([A-Z2-7 ]+)<', enrol.text)
    assert key is not None
    code = pyotp.TOTP(key.group(1).replace(" ", "")).at(web.clock.tick())
    done = login(client, "ENGINEER2", PASSWORD, code, next="/manage/parts")
    assert done.status_code == 303
    assert done.headers["location"] == "/manage/parts"
    assert "__Host-plantgate=" in done.headers["set-cookie"]
    home = client.get("/manage")
    assert home.status_code == 200 and "Person ENGINEER2" in home.text
    replay = login(web.client(), "ENGINEER2", PASSWORD, code)
    assert replay.status_code == 401  # a code works once
    out = client.post("/manage/logout", data={"csrf_token": token_of(home.text)})
    assert out.status_code == 303 and client.get("/manage").status_code == 303


def post(client: TestClient, path: str, **data: str) -> httpx.Response:
    token = token_of(client.get("/manage").text)
    return client.post(path, data={"csrf_token": token, **data})


def editor_post(client: TestClient, process_id: int, **data: str) -> httpx.Response:
    page = client.get(f"/manage/processes/{process_id}/edit").text
    base = re.search(r'name="base" value="([0-9a-f]{64})"', page)
    assert base is not None
    return post(client, f"/manage/processes/{process_id}/edit", base=base.group(1), **data)


def test_author_review_release_and_work_order(web: Web) -> None:
    engineer = web.signed_in("engineer")
    part = post(
        engineer,
        "/manage/parts",
        number="GEAR",
        revision="B",
        tracking="serial",
        description="gear",
    )
    assert part.status_code == 303
    dup = post(engineer, "/manage/parts", number="GEAR", revision="B", tracking="serial")
    assert dup.status_code == 409 and "exists already" in dup.text
    part_id = int(part.headers["location"].rsplit("/", 1)[1])
    made = post(engineer, "/manage/processes", part_id=str(part_id), title="Gear build")
    assert made.status_code == 303
    process_id = int(made.headers["location"].split("/")[3])

    assert (
        editor_post(
            engineer, process_id, op="add_step", title="Press", instructions="Press the gear on."
        ).status_code
        == 303
    )
    bad = editor_post(
        engineer,
        process_id,
        op="add_action",
        step="1",
        kind="scan_serial",
        label="Serial",
        pattern="(a",
        required="yes",
    )
    assert bad.status_code == 422
    assert any("missing )" in e for e in FIELD_ERRORS.findall(bad.text))
    assert 'value="(a"' in bad.text
    good = editor_post(
        engineer,
        process_id,
        op="add_action",
        step="1",
        kind="measure",
        label="Force",
        min="1",
        max="2",
        unit="kN",
        required="yes",
    )
    assert good.status_code == 303
    stale = post(
        engineer,
        f"/manage/processes/{process_id}/edit",
        base="0" * 64,
        op="title",
        title="Lost edit",
    )
    assert stale.status_code == 409 and "changed by someone else" in stale.text
    shown = engineer.get(f"/manage/processes/{process_id}").text
    assert "Press the gear on." in shown and "1 to 2 kN" in shown and "Lost edit" not in shown
    assert "Sign and release" not in shown  # not the engineer's to release
    submitted = post(engineer, f"/manage/processes/{process_id}/submit")
    assert submitted.status_code == 303
    refused = post(
        engineer, f"/manage/processes/{process_id}/release", password=PASSWORD, totp="123456"
    )
    assert refused.status_code == 403

    quality = web.signed_in("quality")
    page = quality.get(f"/manage/processes/{process_id}").text
    assert "Sign and release" in page and "approved" in page
    wrong = post(
        quality, f"/manage/processes/{process_id}/release", password=PASSWORD, totp="000000"
    )
    assert wrong.status_code == 403 and "signature refused" in wrong.text
    empty = post(quality, f"/manage/processes/{process_id}/release", password=PASSWORD)
    assert empty.status_code == 422
    released = post(
        quality,
        f"/manage/processes/{process_id}/release",
        password=PASSWORD,
        totp=web.code("quality"),
        comment="checked",
    )
    assert released.status_code == 303, released.text
    page = quality.get(f"/manage/processes/{process_id}").text
    assert "released" in page and "valid" in page and "Person QUALITY" in page
    with web.maker() as db:
        process = db.get(Process, process_id)
        assert process is not None and process.status == "released"

    lead = web.signed_in("lead")
    assert "Gear build" in lead.get("/manage/work-orders/new").text
    order = post(lead, "/manage/work-orders", part_id=str(part_id), quantity="3", number="WO-GEAR")
    assert order.status_code == 303
    order_path = order.headers["location"]
    closed = post(lead, f"{order_path}/close", why="done")
    assert closed.status_code == 303
    with web.maker() as db:
        stored = db.scalars(select(WorkOrder).where(WorkOrder.number == "WO-GEAR")).one()
        assert stored.status == "closed" and stored.process_id == process_id
    revised = post(engineer, f"/manage/processes/{process_id}/revise")
    assert revised.status_code == 303
    assert revised.headers["location"] != f"/manage/processes/{process_id}"


def test_people_badges_pins_and_unlock(web: Web) -> None:
    admin = web.signed_in("admin")
    created = post(
        admin,
        "/manage/people",
        employee_number="E777",
        name="Nia New",
        roles="operator",
        us_person="yes",
    )
    assert created.status_code == 303
    person = created.headers["location"]
    weak = post(admin, f"{person}/pin", pin="123456")
    assert weak.status_code == 422 and "PIN refused" not in weak.text
    assert "run" in weak.text  # the policy's reason, by the field
    assert post(admin, f"{person}/pin", pin=PIN).status_code == 303
    issued = post(admin, f"{person}/badges", badge_why="new starter")
    assert issued.status_code == 303
    shown = admin.get(person).text
    token = re.search(r'id="shown-token">([^<]+)<', shown)
    assert token is not None and "Shown once" in shown
    assert 'id="shown-token"' not in admin.get(person).text  # once
    station = web.client()
    form = station.get("/station/ST1")
    signed = station.post(
        "/station/ST1/login",
        data={"login_token": token_of(form.text), "badge": token.group(1), "pin": PIN},
    )
    assert signed.status_code == 303
    with web.maker() as db:
        badge = db.scalars(
            select(Badge).where(Badge.revoked_at.is_(None)).order_by(Badge.id.desc())
        ).first()
        assert badge is not None
    revoked = post(admin, f"{person}/badges/{badge.id}/revoke", revoke_why="lost")
    assert revoked.status_code == 303
    again = web.client()
    form = again.get("/station/ST1")
    refused = again.post(
        "/station/ST1/login",
        data={"login_token": token_of(form.text), "badge": token.group(1), "pin": PIN},
    )
    assert refused.status_code == 401
    own = admin.get(f"/manage/people/{web.person('admin').id}").text
    assert "Set PIN" not in own  # nobody sets their own credentials here

    with web.maker() as db, db.begin():
        locked = db.scalars(select(Person).where(Person.employee_number == "OPERATOR")).one()
        locked.locked_at = locked.created_at
        locked_id = locked.id
    lead = web.signed_in("lead")
    page = lead.get(f"/manage/people/{locked_id}").text
    assert "Unlock" in page and "Set PIN" not in page
    missing = post(lead, f"/manage/people/{locked_id}/unlock")
    assert missing.status_code == 422
    done = post(lead, f"/manage/people/{locked_id}/unlock", unlock_why="seen in person")
    assert done.status_code == 303
    with web.maker() as db:
        person_row = db.get(Person, locked_id)
        assert person_row is not None and person_row.locked_at is None
    quality_id = web.person("quality").id
    not_a_lead_matter = post(lead, f"/manage/people/{quality_id}/unlock", unlock_why="x")
    assert not_a_lead_matter.status_code == 403


def test_stations_are_the_admins(web: Web) -> None:
    admin = web.signed_in("admin")
    added = post(admin, "/manage/stations", code="ST-9", name="Paint", location="Hall 2")
    assert added.status_code == 303
    bad = post(admin, "/manage/stations", code="no spaces", name="x")
    assert bad.status_code == 422
    off = post(admin, added.headers["location"], name="Paint", location="Hall 2")
    assert off.status_code == 303
    assert web.client().get("/station/ST-9").status_code == 404  # inactive now
