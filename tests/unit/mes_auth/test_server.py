"""The TLS server: a stand-in app served by `mes.server.prepare` on loopback, reached with
httpx trusting the generated CA."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from starlette.types import ASGIApp

from mes import server, tls
from mes.auth.headers import SecurityHeadersMiddleware
from mes.config import MesSettings, load_settings


def stand_in(settings: MesSettings) -> ASGIApp:
    app = FastAPI()

    @app.get("/hello")
    def hello() -> dict[str, str]:
        return {"hello": "plant"}

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internals")

    return SecurityHeadersMiddleware(app)


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Path]]:
    state = tmp_path_factory.mktemp("state")
    settings = load_settings(state)
    binds = [server.Bind("127.0.0.1", 0)]
    uv, sockets = server.prepare(settings, binds, ["mes.test"], app_factory=stand_in)
    port = sockets[0].getsockname()[1]
    thread = threading.Thread(target=uv.run, kwargs={"sockets": sockets}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not uv.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield port, tls.tls_paths(state).ca_cert
    uv.should_exit = True
    thread.join(timeout=15)


def client(ca: Path, **settings: object) -> httpx.Client:
    context = ssl.create_default_context(cafile=str(ca))
    for name, value in settings.items():
        setattr(context, name, value)
    return httpx.Client(verify=context, timeout=5)


def test_https_with_the_local_ca(running: tuple[int, Path]) -> None:
    port, ca = running
    with client(ca) as http:
        response = http.get(f"https://127.0.0.1:{port}/hello")
    assert response.json() == {"hello": "plant"}
    assert "server" not in response.headers
    assert response.headers["strict-transport-security"].startswith("max-age=")


def test_tls12_client_works(running: tuple[int, Path]) -> None:
    port, ca = running
    with client(ca, maximum_version=ssl.TLSVersion.TLSv1_2) as http:
        assert http.get(f"https://127.0.0.1:{port}/hello").status_code == 200


def test_errors_carry_no_traceback(running: tuple[int, Path]) -> None:
    port, ca = running
    with client(ca) as http:
        response = http.get(f"https://127.0.0.1:{port}/boom")
    assert response.status_code == 500
    assert "secret internals" not in response.text and "Traceback" not in response.text
    assert response.headers["x-frame-options"] == "DENY"


def test_untrusted_clients_fail(running: tuple[int, Path]) -> None:
    port, _ = running
    with httpx.Client(timeout=5) as http, pytest.raises(httpx.ConnectError):
        http.get(f"https://127.0.0.1:{port}/hello")


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [("198.18.10.1:443", "198.18.10.1", 443), ("0.0.0.0", "0.0.0.0", 443),
     ("[::1]:8443", "::1", 8443)],
)  # fmt: skip
def test_parse_bind(text: str, host: str, port: int) -> None:
    assert server.parse_bind(text) == server.Bind(host, port)


@pytest.mark.parametrize("text", ["gw:443", "1.2.3.4:0", "1.2.3.4:99999", "[::1]x", "1.2.3.4:ab"])
def test_bad_binds(text: str) -> None:
    with pytest.raises(ValueError):
        server.parse_bind(text)


def test_taken_port_is_a_clear_error() -> None:
    first = server.listen_sockets([server.Bind("127.0.0.1", 0)])
    try:
        port = first[0].getsockname()[1]
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            server.listen_sockets([server.parse_bind(f"127.0.0.1:{port}")])
    finally:
        first[0].close()
