"""HTML error pages for the screens; the JSON API keeps its own error shape.

`install(app)` wraps the application's exception handlers: a request for a screen
(`/`, `/station...`, `/manage...`) gets a page with the message and a way back, anything
else gets what the API's handler answers. 401 on a screen is a redirect to its sign-in
page. Unexpected exceptions are logged with their traceback and answered with a generic
sentence: never a traceback to the client.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.exceptions import HTTPException

from mes.domain.errors import MesError, Unauthenticated
from mes.web.access import SignInFirst

log = logging.getLogger(__name__)
Handler = Callable[[Request, Any], Awaitable[Response] | Response]
HTTP_MESSAGES = {
    404: "page not found",
    405: "this page does not take that kind of request",
}


def is_screen(path: str) -> bool:
    return path == "/" or any(
        path == prefix or path.startswith(prefix + "/") for prefix in ("/station", "/manage")
    )


def home_of(path: str) -> str:
    if path.startswith("/station/"):
        code = path.split("/")[2]
        return f"/station/{code}" if code else "/station"
    return "/station" if path.startswith("/station") else "/manage"


def describe(request: Request, exc: Exception) -> tuple[int, str]:
    """(status, message for the person) of an exception raised by a screen."""
    if isinstance(exc, MesError):
        return exc.status, exc.message
    if isinstance(exc, RequestValidationError):
        located = [e for e in exc.errors() if e.get("loc", ("",))[0] == "path"]
        if located:
            return 404, "page not found"
        return 422, "the request is not complete or not valid"
    if isinstance(exc, HTTPException):
        return exc.status_code, HTTP_MESSAGES.get(exc.status_code, str(exc.detail))
    if isinstance(exc, IntegrityError):
        log.warning("refused by the database: %s", exc.orig)
        return 409, "refused: it conflicts with the stored records"
    if isinstance(exc, OperationalError):
        log.error("database error: %s", exc.orig)
        return 503, "the database is busy or unavailable: try again"
    log.error("MES screen failed", exc_info=exc)
    return 500, "something went wrong; the appliance log has the details"


def error_page(request: Request, exc: Exception) -> Response:
    if isinstance(exc, SignInFirst):
        return RedirectResponse(exc.location, status_code=303)
    path = request.url.path
    if isinstance(exc, Unauthenticated):
        target = f"/station/{path.split('/')[2]}" if path.startswith("/station/") else "/manage"
        return RedirectResponse(target, status_code=303)
    status, message = describe(request, exc)
    from mes.web.render import ENV  # the templates import this module's neighbours

    try:
        body = ENV.get_template("error.html").render(
            status=status, message=message, home=home_of(path), path=path, refresh=None
        )
    except Exception:  # the error page itself must never fail
        log.exception("error page failed")
        body = f"<!doctype html><title>Error {status}</title><p>Error {status}.</p>"
    headers = {"WWW-Authenticate": "Cookie"} if status == 401 else None
    return HTMLResponse(body, status_code=status, headers=headers)


def _wrap(previous: Handler | None) -> Callable[[Request, Any], Awaitable[Response]]:
    async def handler(request: Request, exc: Any) -> Response:
        if is_screen(request.url.path) or previous is None:
            return error_page(request, exc)
        answer = previous(request, exc)
        if isinstance(answer, Response):
            return answer
        return await answer

    return handler


def install(app: FastAPI) -> None:
    for kind in (
        MesError,
        RequestValidationError,
        HTTPException,
        IntegrityError,
        OperationalError,
        Exception,
    ):
        app.add_exception_handler(kind, _wrap(app.exception_handlers.get(kind)))
    app.add_exception_handler(SignInFirst, _wrap(None))
