"""The auth backend and its routes against the real models in SQLite."""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

import pyotp
import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from mes.auth import sessions
from mes.auth.backend import actor_of
from mes.domain.errors import SignatureRejected
from mes.domain.signing import SignatureMethod
from mes.models.audit import AuditEntry
from mes.models.people import AuthSession, Person
from mes.signatures import SignatureCredentials
from tests.unit.mes_auth.rig import BASE, PASSWORD, PIN, Rig, make_rig


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return make_rig(tmp_path)


def op_login(rig: Rig, **body: str) -> dict[str, object]:
    body = {"station": "ST-1", **body}
    response = rig.call("POST", "/api/auth/operator/login", json=body)
    return {"status": response.status_code, "json": response.json(), "response": response}


def cookie_of(response: object) -> str:
    header = response.headers["set-cookie"]  # type: ignore[attr-defined]
    return str(header.split(";", 1)[0].split("=", 1)[1])


def test_badge_and_pin_login_sets_a_strict_cookie(rig: Rig) -> None:
    result = op_login(rig, badge=rig.tokens["E100"], pin=PIN)
    assert result["status"] == 200
    response = result["response"]
    header = response.headers["set-cookie"]  # type: ignore[attr-defined]
    for flag in ("__Host-plantgate=", "Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
        assert flag in header
    body = result["json"]
    assert body["person"]["employee_number"] == "E100"  # type: ignore[index]
    assert body["idle_timeout_s"] == 15 * 60  # type: ignore[index]
    text = response.text  # type: ignore[attr-defined]
    assert PIN not in text and "argon2" not in text
    sid = cookie_of(response)
    with rig.db() as db:
        assert db.get(AuthSession, sid) is None  # stored hashed
        assert db.get(AuthSession, sessions.hash_session_id(sid)) is not None
    who = rig.call("GET", "/api/thing", cookies={sessions.COOKIE_NAME: sid})
    assert who.json() == {"who": "E100"}


def test_employee_number_and_pin_login(rig: Rig) -> None:
    assert op_login(rig, employee_number="E200", pin=PIN)["status"] == 200


@pytest.mark.parametrize(
    "body",
    [
        {"employee_number": "E100", "pin": "000000"},
        {"employee_number": "E999", "pin": PIN},
        {"badge": "PGB-0000-0000-0000-0000-0000", "pin": PIN},
        {"badge": "garbage", "pin": PIN},
        {"employee_number": "E100", "pin": "12ab"},
    ],
)
def test_failures_look_the_same(rig: Rig, body: dict[str, str]) -> None:
    result = op_login(rig, **body)
    assert result["status"] == 401
    assert result["json"] == {"detail": "badge or employee number and PIN not recognised"}


def test_unknown_or_inactive_station_is_refused(rig: Rig) -> None:
    for station in ("NOPE", "OLD"):
        response = rig.call(
            "POST",
            "/api/auth/operator/login",
            json={"station": station, "employee_number": "E100", "pin": PIN},
        )
        assert response.status_code == 401


def test_revoked_badge_no_longer_works(rig: Rig) -> None:
    admin = op_login(rig, employee_number="E400", pin=PIN, station="ST-2")
    cookie = {sessions.COOKIE_NAME: cookie_of(admin["response"])}
    old = rig.tokens["E100"]
    answer = rig.call("POST", "/api/auth/people/E100/badges", json={"why": "lost"}, cookies=cookie)
    assert answer.status_code == 200
    new = answer.json()["token"]
    assert new != old and len(answer.json()["revoked"]) == 1
    assert op_login(rig, badge=old, pin=PIN)["status"] == 401
    assert op_login(rig, badge=new, pin=PIN)["status"] == 200
    revoke = rig.call(
        "POST",
        f"/api/auth/badges/{answer.json()['badge_id']}/revoke",
        json={"why": "left"},
        cookies=cookie,
    )
    assert revoke.json()["changed"] is True
    assert op_login(rig, badge=new, pin=PIN)["status"] == 401


def test_five_failures_lock_and_a_lead_unlocks(rig: Rig) -> None:
    for i in range(5):
        rig.backend.auth.limiter = type(rig.backend.auth.limiter)()  # keep limits out of it
        result = op_login(rig, employee_number="E100", pin="111112")
        assert result["status"] == 401, i
    assert [e.kind for e in rig.events].count("mes.login_failed") == 5
    lockouts = [e for e in rig.events if e.kind == "mes.lockout"]
    assert len(lockouts) == 1 and lockouts[0].fields["employee_number"] == "E100"
    assert "pin" not in str(lockouts[0].fields).lower().replace("pin_", "")
    locked = op_login(rig, employee_number="E100", pin=PIN)
    assert locked["status"] == 423 and "ask a lead" in locked["json"]["detail"]  # type: ignore[index]
    # An operator may not unlock; a lead may, and the unlock is audited.
    peer = op_login(rig, employee_number="E200", pin=PIN, station="ST-2")
    lead_cookie = {sessions.COOKIE_NAME: cookie_of(peer["response"])}
    done = rig.call(
        "POST", "/api/auth/people/E100/unlock", json={"why": "confirmed id"}, cookies=lead_cookie
    )
    assert done.status_code == 200 and done.json()["was_locked"] is True
    with rig.db() as db:
        entry = db.scalars(select(AuditEntry).where(AuditEntry.action == "person.unlock")).one()
        assert entry.why == "confirmed id" and "E200" in entry.actor
        assert "pin_hash" not in (entry.before or "")
    rig.backend.auth.limiter = type(rig.backend.auth.limiter)()
    assert op_login(rig, employee_number="E100", pin=PIN)["status"] == 200


def test_lead_cannot_unlock_quality_or_themselves(rig: Rig) -> None:
    lead = op_login(rig, employee_number="E200", pin=PIN)
    cookie = {sessions.COOKIE_NAME: cookie_of(lead["response"])}
    for number in ("E300", "E200"):
        answer = rig.call(
            "POST", f"/api/auth/people/{number}/unlock", json={"why": "x"}, cookies=cookie
        )
        assert answer.status_code == 403


def test_identity_rate_limit_answers_429(rig: Rig) -> None:
    statuses = [op_login(rig, employee_number="E999", pin=PIN)["status"] for _ in range(7)]
    assert statuses == [401] * 5 + [429] * 2
    last = op_login(rig, employee_number="E999", pin=PIN)["response"]
    assert int(last.headers["retry-after"]) >= 1  # type: ignore[attr-defined]
    assert any(e.fields.get("reason") == "rate_limited" for e in rig.events)


def test_login_works_without_a_daemon(tmp_path: Path) -> None:
    rig = make_rig(tmp_path, capture=False, state=tmp_path / "no-daemon-here")
    assert op_login(rig, employee_number="E100", pin="111112")["status"] == 401
    assert op_login(rig, employee_number="E100", pin=PIN)["status"] == 200
    assert rig.backend.notifier.dropped == 1


def test_events_reach_a_listening_socket(tmp_path: Path) -> None:
    import socket

    from gateway.events import events_socket, parse_event

    state = tmp_path / "state"
    path = events_socket(state)
    path.parent.mkdir(parents=True)
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        rig = make_rig(tmp_path, capture=False, state=state)
        op_login(rig, employee_number="E100", pin="111112")
        event = parse_event(sock.recv(65536))
    assert event.kind == "mes.login_failed" and event.source == "mes"
    assert event.fields["station"] == "ST-1" and event.fields["source_ip"] == "198.18.10.11"
    assert "111112" not in event.to_json()


def test_rotation_logout_and_one_operator_per_station(rig: Rig) -> None:
    first = cookie_of(op_login(rig, employee_number="E100", pin=PIN)["response"])
    second = rig.call(
        "POST",
        "/api/auth/operator/login",
        json={"station": "ST-1", "employee_number": "E200", "pin": PIN},
        cookies={sessions.COOKIE_NAME: first},
    )
    new = cookie_of(second)
    assert new != first
    assert rig.call("GET", "/api/thing", cookies={sessions.COOKIE_NAME: first}).status_code == 401
    assert rig.call("GET", "/api/thing", cookies={sessions.COOKIE_NAME: new}).status_code == 200
    out = rig.call("POST", "/api/auth/logout", cookies={sessions.COOKIE_NAME: new})
    assert "Max-Age=0" in out.headers["set-cookie"]
    assert rig.call("GET", "/api/thing", cookies={sessions.COOKIE_NAME: new}).status_code == 401


def test_idle_and_absolute_expiry(rig: Rig) -> None:
    sid = cookie_of(op_login(rig, employee_number="E100", pin=PIN)["response"])
    key = sessions.hash_session_id(sid)
    past = datetime.datetime.now(datetime.UTC) - datetime.timedelta(minutes=16)
    with rig.db() as db, db.begin():
        db.execute(update(AuthSession).where(AuthSession.id == key).values(last_seen_at=past))
    assert rig.call("GET", "/api/thing", cookies={sessions.COOKIE_NAME: sid}).status_code == 401
    with rig.db() as db:
        assert db.get(AuthSession, key) is None
    sid = cookie_of(op_login(rig, employee_number="E200", pin=PIN)["response"])
    key = sessions.hash_session_id(sid)
    with rig.db() as db, db.begin():
        db.execute(
            update(AuthSession)
            .where(AuthSession.id == key)
            .values(expires_at=datetime.datetime.now(datetime.UTC))
        )
    assert rig.call("GET", "/api/thing", cookies={sessions.COOKIE_NAME: sid}).status_code == 401


def test_csrf_on_state_changing_requests(rig: Rig) -> None:
    login = op_login(rig, employee_number="E100", pin=PIN)
    cookie = {sessions.COOKIE_NAME: cookie_of(login["response"])}
    token = login["json"]["csrf_token"]  # type: ignore[index]
    evil = rig.call("POST", "/api/thing", cookies=cookie, headers={"origin": "https://evil.test"})
    assert evil.status_code == 403
    form = rig.call("POST", "/api/thing", cookies=cookie, data={"x": "1"},
                    headers={"origin": BASE})  # fmt: skip
    assert form.status_code == 403
    good = rig.call("POST", "/api/thing", cookies=cookie, data={"csrf_token": token},
                    headers={"origin": BASE})  # fmt: skip
    assert good.status_code == 200
    header = rig.call("POST", "/api/thing", cookies=cookie, json={},
                      headers={"origin": BASE, "x-csrf-token": token})  # fmt: skip
    assert header.status_code == 200
    login_csrf = rig.call(
        "POST",
        "/api/auth/operator/login",
        json={"station": "ST-1", "employee_number": "E100", "pin": PIN},
        headers={"origin": "https://evil.test"},
    )
    assert login_csrf.status_code == 403


def test_manage_login_enrols_totp_then_needs_a_fresh_code(rig: Rig) -> None:
    first = rig.call("POST", "/api/auth/manage/login",
                     json={"employee_number": "E300", "password": PASSWORD})  # fmt: skip
    assert first.status_code == 403
    uri = first.json()["totp_enrolment_uri"]
    secret = pyotp.parse_uri(uri).secret
    with rig.db() as db:
        person = db.scalars(select(Person).where(Person.employee_number == "E300")).one()
        assert person.totp_secret and secret not in person.totp_secret  # sealed
    code = pyotp.TOTP(secret).now()
    body = {"employee_number": "E300", "password": PASSWORD, "totp": code}
    ok = rig.call("POST", "/api/auth/manage/login", json=body)
    assert ok.status_code == 200, ok.text
    assert secret not in ok.text and "totp_enrolment_uri" not in ok.text
    assert ok.json()["idle_timeout_s"] == 30 * 60
    replay = rig.call("POST", "/api/auth/manage/login", json=body)
    assert replay.status_code == 401
    wrong = rig.call("POST", "/api/auth/manage/login",
                     json={**body, "password": "wrong password!!"})  # fmt: skip
    assert wrong.status_code == 401


def test_signatures_need_the_right_credentials(rig: Rig) -> None:
    """As `mes.api.deps.grant_for` calls it: a session of its own, committed either way."""

    def person(db: Session, number: str) -> Person:
        return db.scalars(select(Person).where(Person.employee_number == number)).one()

    with rig.db() as db:
        operator = person(db, "E100")
        station_actor = dataclasses.replace(actor_of(operator), station_id=1)
        grant = rig.backend.verify_signature(db, station_actor, SignatureCredentials(pin=PIN))
        assert grant.method == SignatureMethod.PIN and grant.person_id == operator.id
        db.commit()
    with rig.db() as db:
        with pytest.raises(SignatureRejected):
            rig.backend.verify_signature(db, station_actor, SignatureCredentials(pin="111112"))
        db.commit()
    with rig.db() as db:
        assert person(db, "E100").pin_failures == 1
        quality = person(db, "E300")
        secret = pyotp.random_base32()
        quality.totp_secret = rig.backend.keys.sealer.seal(secret, f"person:{quality.id}:totp")
        quality.totp_last_step = 0
        db.commit()
        actor = actor_of(quality)
    creds = SignatureCredentials(password=PASSWORD, totp=pyotp.TOTP(secret).now())
    with rig.db() as db:
        grant = rig.backend.verify_signature(db, actor, creds)
        assert grant.method == SignatureMethod.PASSWORD_TOTP
        db.commit()
    with rig.db() as db:
        with pytest.raises(SignatureRejected):  # the same code again
            rig.backend.verify_signature(db, actor, creds)
        db.commit()
    assert "hidden" in repr(creds)


def test_bad_input_is_a_clean_422(rig: Rig) -> None:
    for body in ({"station": "ST-1"}, {"station": "x" * 500, "pin": "1"}, "not json"):
        response = rig.call("POST", "/api/auth/operator/login", json=body)
        assert response.status_code == 422
        assert "Traceback" not in response.text


def test_admin_sets_pin_under_policy(rig: Rig) -> None:
    admin = op_login(rig, employee_number="E400", pin=PIN, station="ST-2")
    cookie = {sessions.COOKIE_NAME: cookie_of(admin["response"])}
    weak = rig.call("POST", "/api/auth/people/E100/pin", json={"pin": "123456"}, cookies=cookie)
    assert weak.status_code == 422 and weak.json()["problems"]
    good = rig.call("POST", "/api/auth/people/E100/pin", json={"pin": "502718"}, cookies=cookie)
    assert good.status_code == 204
    rig.backend.auth.limiter = type(rig.backend.auth.limiter)()
    assert op_login(rig, employee_number="E100", pin="502718")["status"] == 200
    operator = op_login(rig, employee_number="E200", pin=PIN)
    cookie = {sessions.COOKIE_NAME: cookie_of(operator["response"])}
    denied = rig.call("POST", "/api/auth/people/E100/pin", json={"pin": "947360"}, cookies=cookie)
    assert denied.status_code == 403
