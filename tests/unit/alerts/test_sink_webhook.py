"""HTTPS webhook sink against a local HTTPS server on loopback: retries, refusals, auth."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from gateway.alerts.pipeline import AlertPipeline
from gateway.alerts.sinks.base import Backoff
from gateway.alerts.sinks.spool import CursorStore, Spool
from gateway.alerts.sinks.syslog_tls import client_context
from gateway.alerts.sinks.webhook import WebhookSink
from tests.unit.alerts.conftest import OBSERVER, Pki, trigger


class Receiver(ThreadingHTTPServer):
    def __init__(self, answers: list[int]) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.answers = answers  # status codes to give, in order; then 200
        self.bodies: list[list[dict[str, Any]]] = []
        self.statuses: list[int] = []
        self.auth: list[str | None] = []


class Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        status = self.server.answers.pop(0) if self.server.answers else 200
        self.server.statuses.append(status)
        self.server.auth.append(self.headers.get("Authorization"))
        if status == 200:
            self.server.bodies.append(body)
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver(pki: Pki, request: pytest.FixtureRequest) -> Iterator[Receiver]:
    server = Receiver(list(request.param))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki.paths.server_cert), str(pki.paths.server_key))
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def run(
    tmp_path: Path, sink: WebhookSink, n: int, until: object, timeout: float = 10.0
) -> AlertPipeline:
    spool = Spool(tmp_path / "spool").open()
    p = AlertPipeline(spool, OBSERVER, cursors=CursorStore(tmp_path / "c"), sinks=[sink])
    sink.on_rejected = lambda count: p._sink_lost("webhook", count)

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(p.run(stop))
        for i in range(n):
            p.submit(trigger(f"k{i}"))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not until() and loop.time() < deadline:  # type: ignore[operator]
            await asyncio.sleep(0.02)
        stop.set()
        await task
        await sink.aclose()

    asyncio.run(go())
    return p


def sink_for(pki: Pki, receiver: Receiver, **kw: Any) -> WebhookSink:
    url = f"https://localhost:{receiver.server_address[1]}/hook"
    return WebhookSink(url, verify=client_context(pki.ca), backoff=Backoff(0.02, 0.05), **kw)


def delivered(receiver: Receiver) -> list[int]:
    return [doc["event"]["sequence"] for body in receiver.bodies for doc in body]


@pytest.mark.parametrize("receiver", [[503, 429, 500]], indirect=True)
def test_retries_until_delivered(tmp_path: Path, pki: Pki, receiver: Receiver) -> None:
    sink = sink_for(pki, receiver, token="s3cret")
    p = run(tmp_path, sink, 5, lambda: len(delivered(receiver)) >= 5)
    assert receiver.statuses[:4] == [503, 429, 500, 200]
    assert delivered(receiver)[:5] == [1, 2, 3, 4, 5]
    assert receiver.auth[0] == "Bearer s3cret"
    assert receiver.bodies[0][0]["event"]["kind"] == "alert"
    assert 'plantgate_sink_errors_total{sink="webhook"} 3.0' in p.metrics.exposition().decode()


@pytest.mark.parametrize("receiver", [[400]], indirect=True)
def test_a_refused_batch_is_skipped_and_alerted(
    tmp_path: Path, pki: Pki, receiver: Receiver
) -> None:
    sink = sink_for(pki, receiver, fmt="ocsf", batch=2)
    p = run(
        tmp_path,
        sink,
        4,
        lambda: 4 in [d["metadata"]["sequence"] for b in receiver.bodies for d in b],
    )
    assert sink.rejected == 2
    assert receiver.bodies[0][0]["class_uid"] == 2004
    seen = [(r.alert.rule.id, r.alert.status) for r in p.spool.read(0, 100)]
    assert ("PG-HEALTH-SINK-LOST", "new") in seen


@pytest.mark.parametrize("receiver", [[]], indirect=True)
def test_untrusted_server_is_never_sent_to(tmp_path: Path, pki: Pki, receiver: Receiver) -> None:
    url = f"https://localhost:{receiver.server_address[1]}/hook"
    sink = WebhookSink(url, verify=True, backoff=Backoff(0.02, 0.05))  # system CAs only
    p = run(tmp_path, sink, 2, lambda: False, timeout=0.7)
    assert receiver.bodies == []
    assert 'plantgate_sink_errors_total{sink="webhook"}' in p.metrics.exposition().decode()
