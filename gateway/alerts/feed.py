"""The alert feed API (FastAPI) that plantgated serves on `<state>/run/alerts.sock`.

    GET /alerts?after=CURSOR&format=ecs|ocsf|cef|syslog&limit=N
        Alerts with a cursor greater than CURSOR (default 0: from the oldest held), oldest
        first, at most N (default 100, at most 1000). ecs/ocsf: a JSON array of documents;
        cef/syslog: text, one message per line. Headers: `PlantGate-Cursor` (the cursor to
        pass as `after` next time), `PlantGate-First` (oldest cursor still held) and
        `PlantGate-Missed` (how many records after CURSOR were already deleted).
    GET /alerts/stream?after=CURSOR&format=...
        Server-sent events: `id:` the cursor, `event: alert`, `data:` the rendered alert
        (one line). Reconnecting with `Last-Event-ID` resumes after that cursor; without it
        and without `after` the stream starts with the next alert. A comment line every 15 s
        keeps proxies from closing it.
    GET /metrics
        Prometheus text exposition (see `gateway.alerts.metrics`).

Errors are `{"error": sentence}` with status 422. The cursor is the spool's sequence number:
it survives restarts, so a SIEM that stores the last cursor it processed never misses or
repeats an alert across a reboot of the appliance.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import uvicorn
from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from gateway.alerts.metrics import CONTENT_TYPE_LATEST
from gateway.alerts.pipeline import AlertPipeline
from gateway.alerts.render import FORMATS, JSON_FORMATS, Format, render_json, render_text
from gateway.localapi import DaemonServer, unix_listener

log = logging.getLogger(__name__)
MAX_LIMIT = 1000
STREAM_BATCH = 200
PING_S = 15


def feed_socket(state: Path) -> Path:
    return state / "run" / "alerts.sock"


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def create_app(pipeline: AlertPipeline, closing: asyncio.Event | None = None) -> FastAPI:
    """The feed over `pipeline`'s spool; open streams end when `closing` is set."""
    app = FastAPI(title="PlantGate alert feed", docs_url=None, redoc_url=None, openapi_url=None)
    spool = pipeline.spool
    done = closing or asyncio.Event()

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        return _error(422, f"invalid request: {problems}")

    def _format(fmt: str) -> Format:
        if fmt not in FORMATS:
            raise RequestValidationError(
                [{"loc": ("query", "format"), "msg": f"one of {', '.join(FORMATS)}"}]
            )
        return fmt

    @app.get("/alerts")
    async def alerts(
        after: Annotated[int, Query(ge=0)] = 0,
        format: str = "ecs",
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
    ) -> Response:
        fmt = _format(format)
        records = await asyncio.to_thread(spool.read, after, limit)
        first = spool.first_seq
        missed = max(0, min(first, spool.last_seq + 1) - after - 1)
        headers = {
            "PlantGate-Cursor": str(records[-1].seq if records else max(after, first - 1)),
            "PlantGate-First": str(first),
            "PlantGate-Missed": str(missed),
        }
        if fmt in JSON_FORMATS:
            docs: list[Any] = [render_json(r.alert, fmt, r.seq) for r in records]
            return JSONResponse(docs, headers=headers)
        text = "".join(render_text(r.alert, fmt, r.seq) + "\n" for r in records)
        return PlainTextResponse(text, headers=headers)

    @app.get("/alerts/stream")
    async def stream(
        request: Request,
        after: Annotated[int | None, Query(ge=0)] = None,
        format: str = "ecs",
        limit: Annotated[int | None, Query(ge=1)] = None,
        last_event_id: Annotated[str | None, Header()] = None,
    ) -> Response:
        fmt = _format(format)
        cursor = spool.last_seq if after is None else after
        if last_event_id is not None and last_event_id.strip().isdigit():
            cursor = int(last_event_id.strip())

        async def events() -> AsyncIterator[ServerSentEvent]:
            nonlocal cursor
            sent = 0
            while (limit is None or sent < limit) and not done.is_set():
                room = STREAM_BATCH if limit is None else min(STREAM_BATCH, limit - sent)
                records = await asyncio.to_thread(spool.read, cursor, room)
                if not records:
                    if await request.is_disconnected():
                        return
                    await pipeline.notifier.wait_after(cursor, 1.0)
                    continue
                for r in records:
                    yield ServerSentEvent(
                        data=render_text(r.alert, fmt, r.seq), id=str(r.seq), event="alert"
                    )
                    cursor = r.seq
                    sent += 1

        return EventSourceResponse(events(), ping=PING_S)

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(pipeline.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/")
    async def index() -> Response:
        body = {
            "last": spool.last_seq,
            "first": spool.first_seq,
            "formats": list(FORMATS),
            "observer": vars(pipeline.observer),
        }
        return Response(json.dumps(body), media_type="application/json")

    return app


def _tcp_listener(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    return sock


async def serve_feed(
    state: Path, pipeline: AlertPipeline, stop: asyncio.Event, *, tcp_port: int | None = None
) -> None:
    """Serve the feed on `<state>/run/alerts.sock` (and 127.0.0.1:`tcp_port`) until `stop`."""
    path = feed_socket(state)
    sockets = [unix_listener(path)]
    if tcp_port is not None:
        sockets.append(_tcp_listener(tcp_port))
    closing = asyncio.Event()
    config = uvicorn.Config(
        create_app(pipeline, closing),
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=3,
    )
    server = DaemonServer(config)
    task = asyncio.create_task(server.serve(sockets=sockets))
    try:
        await stop.wait()
    finally:
        closing.set()
        server.should_exit = True
        await task
        for sock in sockets:
            sock.close()
        path.unlink(missing_ok=True)
