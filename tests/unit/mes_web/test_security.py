"""Forms need their token and our origin; every page carries the security headers, no
inline script or style, and no traceback ever reaches the browser."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from mes.auth.headers import CSP
from mes.models.parts import Part
from tests.unit.mes_web.support import BASE, PIN, Web, token_of

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I)
INLINE_HANDLER = re.compile(r"\son[a-z]+\s*=", re.I)
STYLE_ATTRIBUTE = re.compile(r"\sstyle\s*=", re.I)


def part_count(web: Web) -> int:
    with web.maker() as db:
        return len(db.scalars(select(Part)).all())


def new_part(client: TestClient, token: str | None, **headers: str) -> int:
    data = {"number": "NEW-1", "revision": "A", "tracking": "serial"}
    if token is not None:
        data["csrf_token"] = token
    return client.post("/manage/parts", data=data, headers=headers).status_code


def test_form_posts_need_the_csrf_token(web: Web) -> None:
    client = web.signed_in("engineer")
    token = token_of(client.get("/manage/parts/new").text)
    before = part_count(web)
    assert new_part(client, None) == 403
    assert new_part(client, "x" * 43) == 403
    assert new_part(client, token, Origin="https://evil.example") == 403
    assert new_part(client, token, **{"Sec-Fetch-Site": "cross-site"}) == 403
    assert part_count(web) == before
    refused = client.post("/manage/parts", data={"number": "N", "revision": "A"})
    assert "missing or wrong CSRF token" in refused.text
    assert new_part(client, token) == 303  # the right token, our origin
    assert part_count(web) == before + 1


def test_another_sessions_token_does_not_work(web: Web) -> None:
    mine = web.signed_in("engineer")
    other = web.signed_in("x-engineer")
    stolen = token_of(other.get("/manage/parts/new").text)
    assert new_part(mine, stolen) == 403


def test_station_posts_need_the_token(web: Web) -> None:
    client = web.at_station("operator")
    path = f"/station/ST1/work-orders/{web.ids['order']}/units"
    assert client.post(path, data={"serial": "SN-0009"}).status_code == 403
    assert client.post(path, data={"serial": "SN-0009", "csrf_token": "nope"}).status_code == 403
    logout = client.post("/station/ST1/logout", data={})
    assert logout.status_code == 403  # a live session's logout needs the token too


def test_sign_in_forms_need_their_own_token_and_origin(web: Web) -> None:
    client = web.client()
    form = client.get("/station/ST1")
    token = token_of(form.text)
    assert "__Host-plantgate-login=" in form.headers["set-cookie"]
    body = {"employee_number": "OPERATOR", "pin": PIN}
    assert client.post("/station/ST1/login", data=body).status_code == 403
    assert (
        client.post("/station/ST1/login", data={**body, "login_token": "x" * 43}).status_code == 403
    )
    cross = client.post(
        "/station/ST1/login",
        data={**body, "login_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert cross.status_code == 403
    fresh = web.client()  # a client that never loaded the form has no cookie to match
    assert fresh.post("/station/ST1/login", data={**body, "login_token": token}).status_code == 403
    assert client.post("/station/ST1/login", data={**body, "login_token": token}).status_code == 303
    manage = web.client()
    page = manage.get("/manage/login")
    answer = manage.post(
        "/manage/login", data={"employee_number": "QUALITY", "password": "x", "totp": "1"}
    )
    assert page.status_code == 200 and answer.status_code == 403


def pages_to_check(web: Web) -> dict[str, TestClient]:
    operator = web.at_station("operator")
    order = web.ids["order"]
    start = operator.post(
        f"/station/ST1/work-orders/{order}/units",
        data={
            "csrf_token": token_of(operator.get("/station/ST1/work-orders").text),
            "serial": "SN-0001",
        },
    )
    unit = start.headers["location"]
    quality = web.signed_in("quality")
    admin = web.signed_in("admin")
    engineer = web.signed_in("engineer")
    anonymous = web.client()
    return {
        "/": anonymous,
        "/station": anonymous,
        "/station/ST1": anonymous,
        "/manage/login": anonymous,
        "/station/ST1/work-orders": operator,
        f"/station/ST1/work-orders/{order}": operator,
        unit: operator,
        f"{unit}/fail": operator,
        "/manage": quality,
        "/manage/units/1": quality,
        "/manage/units": quality,
        f"/manage/processes/{web.ids['widget_process']}": quality,
        "/manage/nonconformances": quality,
        "/manage/audit": quality,
        "/manage/people/1": admin,
        "/manage/stations": admin,
        "/manage/parts/new": engineer,
        "/manage/processes/new": engineer,
        "/manage/units/999999": quality,  # an error page
        "/manage/no-such-page": quality,
    }


def test_every_page_has_the_headers_and_no_inline_script(web: Web) -> None:
    for path, client in pages_to_check(web).items():
        answer = client.get(path)
        assert answer.status_code in (200, 404), (path, answer.status_code)
        assert answer.headers["content-security-policy"] == CSP, path
        assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["cache-control"] == "no-store"
        assert answer.headers["content-type"].startswith("text/html")
        html = answer.text
        assert not INLINE_SCRIPT.search(html), path
        assert not INLINE_HANDLER.search(html), path
        assert not STYLE_ATTRIBUTE.search(html), path
        assert "javascript:" not in html.lower(), path


def test_static_files_are_served_and_cacheable(web: Web) -> None:
    client = web.client()
    for name, kind in (("plantgate.css", "text/css"), ("station.js", "javascript")):
        answer = client.get(f"/static/{name}")
        assert answer.status_code == 200 and kind in answer.headers["content-type"]
        assert answer.headers.get("cache-control") != "no-store"
        assert answer.headers["x-content-type-options"] == "nosniff"


def test_errors_are_pages_without_tracebacks(web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    import mes.web.routes.manage_parts as parts_routes

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(parts_routes.parts, "list_parts", boom)
    answer = web.signed_in("engineer").get("/manage/parts")
    assert answer.status_code == 500
    assert "secret internals" not in answer.text and "Traceback" not in answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["content-security-policy"] == CSP
    bad_id = web.signed_in("engineer").get("/manage/parts/not-a-number")
    assert bad_id.status_code == 404 and "text/html" in bad_id.headers["content-type"]
    api = web.signed_in("engineer").get("/api/v1/parts/not-a-number")
    assert api.headers["content-type"].startswith("application/json")  # the API's own shape


def test_login_next_never_leaves_the_manage_page(web: Web) -> None:
    client = web.client()
    for target in ("https://evil.example/", "//evil.example", "/api/v1/people", "/station"):
        page = client.get("/manage/login", params={"next": target})
        assert f'value="{target}"' not in page.text
    assert BASE.startswith("https://")
