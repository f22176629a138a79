"""Rendering pages: one Jinja2 environment, autoescaped, strict about undefined names.

`page(request, template, ...)` renders with what every layout needs: the signed-in user
(for the permission-dependent buttons and the CSRF token of each form), the one-shot
message of the previous post (`flash`), and the idle time after which the page sends
itself to the sign-in page (`<meta http-equiv="refresh">`: the session has ended by then,
and no script is needed for it).
"""

from __future__ import annotations

import datetime
import json
import math
from pathlib import Path

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from mes.web import flash as flashes
from mes.web.access import StationUser, WebUser, session_backend

TEMPLATES = Path(__file__).parent / "templates"
REFRESH_GRACE_S = 5


def when(value: datetime.datetime | str | None) -> str:
    """A time as people on the floor read it: UTC, to the second."""
    if value is None:
        return "—"
    if isinstance(value, str):
        return value.replace("T", " ")[:19] + " UTC"
    if value.tzinfo is None:
        value = value.replace(tzinfo=datetime.UTC)
    return value.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def number(value: object) -> str:
    """A measured or limit value without float noise (12.5, not 12.500000001)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:g}" if abs(value) < 1e15 else str(value)


def pretty_json(value: str | None) -> str:
    if not value:
        return ""
    try:
        return json.dumps(json.loads(value), indent=2, sort_keys=True, ensure_ascii=False)
    except ValueError:
        return value


def _environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = when
    env.filters["number"] = number
    env.filters["pretty_json"] = pretty_json
    return env


ENV = _environment()


def idle_refresh(request: Request, user: WebUser | None) -> tuple[int, str] | None:
    """(seconds, where): when a signed-in page sends itself to the sign-in page."""
    if user is None:
        return None
    policy = session_backend(request).store.policy
    if isinstance(user, StationUser):
        idle, where = policy.idle("operator"), f"/station/{user.station_code}"
    else:
        idle, where = policy.idle("manage"), "/manage/login"
    return int(idle.total_seconds()) + REFRESH_GRACE_S, where


def page(
    request: Request,
    template: str,
    *,
    user: WebUser | None = None,
    status: int = 200,
    **context: object,
) -> HTMLResponse:
    """The rendered template; the flash message, if any, is shown once and cleared."""
    shown = flashes.take(request)
    body = ENV.get_template(template).render(
        user=user,
        flash=shown,
        path=request.url.path,
        refresh=idle_refresh(request, user),
        **context,
    )
    response = HTMLResponse(body, status_code=status)
    if shown is not None:
        flashes.clear_flash(response)
    return response
