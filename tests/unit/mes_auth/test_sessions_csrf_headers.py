"""Sessions (pure rules), CSRF decisions and the security-headers middleware."""

from __future__ import annotations

import asyncio
import datetime

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from mes.auth import csrf, sessions
from mes.auth.headers import SecurityHeadersMiddleware

T0 = datetime.datetime(2026, 1, 5, 8, 0, tzinfo=datetime.UTC)
POLICY = sessions.SessionPolicy()
ORIGIN = "https://198.18.20.1"


def test_ids_are_256_bit_and_stored_hashed() -> None:
    sid = sessions.new_session_id()
    assert len(sid) == 43 and sessions.plausible_id(sid)
    assert sessions.hash_session_id(sid) != sid
    assert len(sessions.hash_session_id(sid)) == 64
    assert sessions.new_session_id() != sid
    assert not sessions.plausible_id("x" * 43 + "'")
    assert not sessions.plausible_id(None)


def test_cookie_flags() -> None:
    header = sessions.cookie_header("abc", 600)
    assert header.startswith("__Host-plantgate=abc;")
    for flag in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=600"):
        assert flag in header
    assert "Domain" not in header
    assert "Max-Age=0" in sessions.clear_cookie_header()


@pytest.mark.parametrize(
    ("kind", "idle", "reason"),
    [
        ("operator", datetime.timedelta(minutes=14), None),
        ("operator", datetime.timedelta(minutes=15), "idle"),
        ("manage", datetime.timedelta(minutes=29), None),
        ("manage", datetime.timedelta(minutes=30), "idle"),
    ],
)
def test_idle_timeout(kind: sessions.Kind, idle: datetime.timedelta, reason: str | None) -> None:
    expires = T0 + POLICY.lifetime(kind)
    assert sessions.expiry_reason(kind, T0, expires, T0 + idle, POLICY) == reason


def test_absolute_lifetime_wins_over_activity() -> None:
    expires = T0 + POLICY.lifetime("manage")
    now = T0 + datetime.timedelta(days=7)
    assert sessions.expiry_reason("manage", now, expires, now, POLICY) == "expired"
    assert POLICY.lifetime("manage") == datetime.timedelta(days=7)
    custom = sessions.SessionPolicy(manage_lifetime=datetime.timedelta(hours=8))
    assert custom.lifetime("manage") == datetime.timedelta(hours=8)


def test_naive_database_times_are_read_as_utc() -> None:
    naive = T0.replace(tzinfo=None)
    assert (
        sessions.expiry_reason("manage", naive, naive + POLICY.manage_lifetime, T0, POLICY) is None
    )
    assert sessions.needs_touch(naive, T0 + datetime.timedelta(seconds=31))
    assert not sessions.needs_touch(naive, T0 + datetime.timedelta(seconds=5))


def test_csrf_token_is_derived_and_checked_in_constant_time() -> None:
    sid = sessions.new_session_id()
    token = csrf.token_for(sid)
    assert token == csrf.token_for(sid) and token != csrf.token_for(sessions.new_session_id())
    stored = csrf.token_hash(token)
    assert csrf.token_matches(token, stored)
    assert not csrf.token_matches(token + "x", stored)
    assert not csrf.token_matches(None, stored)
    assert not csrf.token_matches(token, None)


FORM = {"content-type": "application/x-www-form-urlencoded", "origin": ORIGIN}


def test_form_post_needs_the_token() -> None:
    stored = csrf.token_hash("t0k3n")
    assert csrf.request_problem("POST", FORM, ORIGIN, None, stored) == (
        "missing or wrong CSRF token"
    )
    assert csrf.request_problem("POST", FORM, ORIGIN, "wrong", stored)
    assert csrf.request_problem("POST", FORM, ORIGIN, "t0k3n", stored) is None
    assert csrf.request_problem("GET", FORM, ORIGIN, None, stored) is None


def test_foreign_origin_referer_and_fetch_site_are_refused() -> None:
    stored = csrf.token_hash("t")
    json = {"content-type": "application/json"}
    assert csrf.request_problem(
        "POST", {**json, "origin": "https://evil.test"}, ORIGIN, None, stored
    )
    assert csrf.request_problem(
        "POST", {**json, "referer": "https://198.18.20.1.evil.test/x"}, ORIGIN, None, stored
    )
    assert csrf.request_problem(
        "DELETE", {**json, "sec-fetch-site": "cross-site"}, ORIGIN, None, stored
    )
    assert csrf.request_problem("POST", {**json, "origin": ORIGIN}, ORIGIN, None, stored) is None
    assert (
        csrf.request_problem("POST", {**json, "referer": ORIGIN + "/manage"}, ORIGIN, None, stored)
        is None
    )
    # A non-browser JSON client (no Origin, no Referer) passes; a wrong header token does not.
    assert csrf.request_problem("POST", json, ORIGIN, None, stored) is None
    assert csrf.request_problem("POST", json, ORIGIN, "nope", stored)


def _app() -> Starlette:
    async def page(request: Request) -> Response:
        return PlainTextResponse("ok")

    async def framed(request: Request) -> Response:
        return PlainTextResponse("x", headers={"x-frame-options": "DENY"})

    async def boom(request: Request) -> Response:
        return PlainTextResponse("no", status_code=404)

    app = Starlette(
        routes=[Route("/", page), Route("/static/app.js", page), Route("/f", framed),
                Route("/missing", boom)]
    )  # fmt: skip
    app.add_middleware(SecurityHeadersMiddleware)
    return app


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/f", "/missing", "/nothing-here"])
def test_security_headers_on_every_response(path: str) -> None:
    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(_app())
        async with httpx.AsyncClient(transport=transport, base_url="https://t") as client:
            return await client.get(path)

    response = asyncio.run(get())
    csp = response.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["strict-transport-security"].startswith("max-age=63072000")
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    assert "camera=()" in response.headers["permissions-policy"]
    assert len(response.headers.get_list("x-frame-options")) == 1
    if path.startswith("/static/"):
        assert "cache-control" not in response.headers
    else:
        assert response.headers["cache-control"] == "no-store"
