"""The daemon's local admin API for the gate (FastAPI), on a Unix socket.

    GET  /gate/requests[?all=true]          live requests (all with ?all=true)
    POST /gate/requests                     a new request (RequestBody)
    GET  /gate/requests/{id}
    POST /gate/requests/{id}/approve|open|close
    POST /gate/requests/{id}/deny           (DenyBody)

Every call needs `Authorization: Bearer <token>`; the token's owner (`gateway.vpn.tokens`)
is the person who requests, approves, opens or closes: the API has no `--as`. Answers are
JSON. Errors are `{"error": sentence, "problems": [...]}` with a 4xx status: 401 no or
unknown token, 404 no such request, 409 refused by the gate's rules, 422 a bad body or bad
input (each problem located, like `body.duration`); never a stack trace.

`serve_admin_api(state, stop)` serves it on `<state>/run/admin.sock` (mode 0660) until
`stop` is set; plantgated starts it.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException

from gateway.localapi import DaemonServer, unix_listener
from gateway.vpn.gate import GateRequest, parse_duration
from gateway.vpn.gateservice import GateService, Publisher
from gateway.vpn.targets import GateError
from gateway.vpn.tokens import person_for

log = logging.getLogger(__name__)
STATUS = {"invalid": 422, "missing": 404, "refused": 409}


def admin_socket(state: Path) -> Path:
    return state / "run" / "admin.sock"


class RequestBody(BaseModel):
    """A request for support access."""

    model_config = ConfigDict(extra="forbid")

    staff: str = Field(min_length=1, max_length=64, description="Staff member's name.")
    to: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        min_length=1, max_length=64, description="Targets: ADDRESS[:SERVICE] or self[:SERVICE]."
    )
    duration: str = Field(description="The window: 2h, 90m, 1h30m.")
    start: AwareDatetime | None = Field(default=None, description="Default: now.")
    reason: str = Field(min_length=1, max_length=1000)
    ticket: str | None = Field(default=None, max_length=200)

    @field_validator("duration")
    @classmethod
    def _duration(cls, value: str) -> str:
        try:
            parse_duration(value)
        except GateError as exc:
            raise ValueError(exc.message) from None
        return value


class DenyBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str = Field(min_length=1, max_length=1000)


def _error(status: int, message: str, problems: list[dict[str, str]] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "problems": problems or []}, status_code=status)


def caller(request: Request, authorization: Annotated[str | None, Header()] = None) -> str:
    """The person behind the bearer token; 401 without a known one."""
    scheme, _, token = (authorization or "").partition(" ")
    state: Path = request.app.state.state_dir
    person = person_for(state, token.strip()) if scheme.lower() == "bearer" else None
    if person is None:
        raise HTTPException(401, "a valid bearer token is needed (plantgate gate token create)")
    return person


Caller = Annotated[str, Depends(caller)]


def create_app(state: Path, service: GateService | None = None) -> FastAPI:
    """The API over one state directory (and, in the daemon, its bus)."""
    gates = service or GateService(state)
    app = FastAPI(title="PlantGate admin API", docs_url=None, redoc_url=None, openapi_url=None)

    app.state.state_dir = state

    @app.exception_handler(GateError)
    async def gate_error(_: Request, exc: GateError) -> JSONResponse:
        return _error(STATUS[exc.kind], exc.message)

    @app.exception_handler(RequestValidationError)
    async def bad_body(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"where": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in exc.errors()
        ]
        summary = "; ".join(f"{p['where']}: {p['message']}" for p in problems)
        return _error(422, f"invalid request: {summary}", problems)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return _error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("admin API failed")
        return _error(500, "internal error: see the plantgated log")

    @app.get("/gate/requests")
    def list_requests(who: Caller, all: bool = False) -> list[GateRequest]:
        return gates.list_requests(include_all=all)

    @app.post("/gate/requests", status_code=201)
    def make_request(body: RequestBody, who: Caller) -> GateRequest:
        return gates.request(
            body.staff,
            body.to,
            body.duration,
            reason=body.reason,
            requester=who,
            start=body.start.astimezone(datetime.UTC) if body.start else None,
            ticket=body.ticket,
        )

    @app.get("/gate/requests/{number}")
    def get_request(number: int, who: Caller) -> GateRequest:
        found = [r for r in gates.list_requests(include_all=True) if r.id == number]
        if not found:
            gates.store.get(number)  # raises the "no gate request N" error
        return found[0]

    @app.post("/gate/requests/{number}/approve")
    def approve(number: int, who: Caller) -> GateRequest:
        return gates.approve(number, who)

    @app.post("/gate/requests/{number}/deny")
    def deny(number: int, body: DenyBody, who: Caller) -> GateRequest:
        return gates.deny(number, who, body.reason)

    @app.post("/gate/requests/{number}/open")
    def open_gate(number: int, who: Caller) -> GateRequest:
        return gates.open(number, who)

    @app.post("/gate/requests/{number}/close")
    def close_gate(number: int, who: Caller) -> GateRequest:
        return gates.close(number, who)

    return app


async def serve_admin_api(
    state: Path, stop: asyncio.Event, *, publish: Publisher | None = None, **service: Any
) -> None:
    """Serve the API on `<state>/run/admin.sock` until `stop` is set.

    `publish` is how gate events leave (plantgated: `bus_publisher(bus, loop)`); other
    keyword arguments go to `GateService`.
    """
    path = admin_socket(state)
    sock = unix_listener(path)
    app = create_app(state, GateService(state, publish=publish, source="plantgated", **service))
    server = DaemonServer(
        uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await stop.wait()
    finally:
        server.should_exit = True
        await task
        sock.close()
        path.unlink(missing_ok=True)
