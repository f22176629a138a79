"""One error shape for the whole MES API, and no stack trace ever reaching a client.

Every refusal is `{"detail": sentence, "problems": [{"where": ..., "message": ...}]}` with
its status: 401 not signed in, 403 not allowed (or signature refused), 404 not found (or not
cleared to see), 409 the record's state forbids it or a concurrent change won, 422 bad input
(each problem located, like `body.steps.0.title`), 503 the database is busy. Anything
unexpected is logged with its traceback and answered 500 with a generic sentence.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError, OperationalError
from starlette.exceptions import HTTPException

from mes.domain.errors import MesError

log = logging.getLogger(__name__)


def error_response(
    status: int, message: str, problems: list[dict[str, str]] | None = None
) -> JSONResponse:
    headers = {"WWW-Authenticate": "Cookie"} if status == 401 else None
    return JSONResponse(
        {"detail": message, "problems": problems or []}, status_code=status, headers=headers
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MesError)
    async def mes_error(_: Request, exc: MesError) -> JSONResponse:
        problems = [{"where": where, "message": message} for where, message in exc.problems]
        return error_response(exc.status, exc.message, problems)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"where": ".".join(str(p) for p in e["loc"]), "message": str(e["msg"])}
            for e in exc.errors()
        ]
        summary = "; ".join(f"{p['where']}: {p['message']}" for p in problems[:5])
        return error_response(422, f"invalid request: {summary}", problems)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail))

    @app.exception_handler(IntegrityError)
    async def integrity(_: Request, exc: IntegrityError) -> JSONResponse:
        log.warning("refused by the database: %s", exc.orig)
        return error_response(409, "refused: it conflicts with the stored records")

    @app.exception_handler(OperationalError)
    async def busy(_: Request, exc: OperationalError) -> JSONResponse:
        log.error("database error: %s", exc.orig)
        return error_response(503, "the database is busy or unavailable: try again")

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("MES API failed", exc_info=exc)
        return error_response(500, "internal error: the appliance log has the details")
