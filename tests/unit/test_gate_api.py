"""The admin API for the gate: auth by bearer token, every route, errors as located JSON."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from gateway.vpn.api import admin_socket, create_app, serve_admin_api
from gateway.vpn.tokens import create_token, person_for, tokens_path
from tests.unit.gate_helpers import Rig, rig

HUB1 = "198.18.10.11"
BODY = {"staff": "alice", "to": [f"{HUB1}:ssh"], "duration": "1h", "reason": "diagnose"}


class Client:
    """A synchronous client for the app over httpx's ASGI transport (no server, no socket)."""

    def __init__(self, app: FastAPI, raise_server_exceptions: bool = True) -> None:
        self.transport = httpx.ASGITransport(app, raise_app_exceptions=raise_server_exceptions)

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        async def call() -> httpx.Response:
            async with httpx.AsyncClient(transport=self.transport, base_url="http://t") as c:
                return await c.request(method, path, **kwargs)

        return asyncio.run(call())

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)


@pytest.fixture
def api(tmp_path: Path) -> tuple[Rig, Client, dict[str, dict[str, str]]]:
    gates = rig(tmp_path / "state")
    people = {
        name: {"Authorization": f"Bearer {create_token(gates.state, name)}"}
        for name in ("carol", "dave", "erin")
    }
    return gates, Client(create_app(gates.state, gates.service)), people


def test_tokens_are_stored_hashed_in_a_private_file(tmp_path: Path) -> None:
    token = create_token(tmp_path, "carol")
    assert person_for(tmp_path, token) == "carol"
    assert person_for(tmp_path, token + "x") is None
    assert token not in tokens_path(tmp_path).read_text()
    assert stat.S_IMODE(os.stat(tokens_path(tmp_path)).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tokens_path(tmp_path).parent).st_mode) == 0o700


def test_every_route_needs_a_valid_token(api: Any) -> None:
    _, client, _ = api
    for method, path in [
        ("GET", "/gate/requests"),
        ("POST", "/gate/requests"),
        ("GET", "/gate/requests/1"),
        ("POST", "/gate/requests/1/approve"),
        ("POST", "/gate/requests/1/deny"),
        ("POST", "/gate/requests/1/open"),
        ("POST", "/gate/requests/1/close"),
    ]:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
            answer = client.request(method, path, headers=headers, json={})
            assert answer.status_code == 401, (method, path, headers)
            assert answer.json()["error"].startswith("a valid bearer token is needed")


def test_the_whole_life_cycle_acts_as_the_tokens_owners(api: Any) -> None:
    gates, client, people = api
    made = client.post("/gate/requests", json={**BODY, "ticket": "INC-1"}, headers=people["carol"])
    assert made.status_code == 201, made.text
    assert (made.json()["requester"], made.json()["status"]) == ("carol", "requested")
    number = made.json()["id"]
    self_approval = client.post(f"/gate/requests/{number}/approve", headers=people["carol"])
    assert self_approval.status_code == 409
    assert "they requested it" in self_approval.json()["error"]
    approved = client.post(f"/gate/requests/{number}/approve", headers=people["dave"])
    assert approved.json()["approvals"][0]["who"] == "dave"
    opened = client.post(f"/gate/requests/{number}/open", headers=people["erin"])
    assert (opened.status_code, opened.json()["opened_by"]) == (200, "erin")
    listed = client.get("/gate/requests", headers=people["carol"]).json()
    assert [r["status"] for r in listed] == ["open"]
    one = client.get(f"/gate/requests/{number}", headers=people["carol"])
    assert one.json()["targets"][0] == {
        "address": HUB1,
        "service": "ssh",
        "proto": "tcp",
        "port": 22,
    }
    closed = client.post(f"/gate/requests/{number}/close", headers=people["dave"])
    assert (closed.json()["status"], closed.json()["closed_by"]) == ("closed", "dave")
    assert client.get("/gate/requests", headers=people["dave"]).json() == []
    assert len(client.get("/gate/requests?all=true", headers=people["dave"]).json()) == 1
    assert [e.fields["by"] for e in gates.events] == ["carol", "dave", "erin", "dave"]


def test_deny_needs_a_reason_and_records_it(api: Any) -> None:
    _, client, people = api
    number = client.post("/gate/requests", json=BODY, headers=people["carol"]).json()["id"]
    missing = client.post(f"/gate/requests/{number}/deny", json={}, headers=people["dave"])
    assert missing.status_code == 422
    assert missing.json()["problems"] == [{"where": "body.reason", "message": "Field required"}]
    denied = client.post(
        f"/gate/requests/{number}/deny", json={"reason": "no ticket"}, headers=people["dave"]
    )
    assert (denied.json()["status"], denied.json()["note"]) == ("denied", "no ticket")


@pytest.mark.parametrize(
    ("change", "where", "words"),
    [
        ({"duration": "two hours"}, "body.duration", "is not a duration"),
        ({"to": []}, "body.to", "at least 1 item"),
        ({"staff": ""}, "body.staff", "at least 1 character"),
        ({"start": "2025-03-01T14:00:00"}, "body.start", "timezone"),
        ({"reason": None}, "body.reason", "valid string"),
        ({"colour": "red"}, "body.colour", "Extra inputs"),
    ],
)
def test_bad_bodies_get_422_with_located_messages(
    api: Any, change: dict[str, Any], where: str, words: str
) -> None:
    _, client, people = api
    answer = client.post("/gate/requests", json={**BODY, **change}, headers=people["carol"])
    assert answer.status_code == 422
    problems = answer.json()["problems"]
    assert [p["where"] for p in problems] == [where]
    assert words in problems[0]["message"]
    assert answer.json()["error"].startswith(f"invalid request: {where}: ")


def test_a_body_that_is_not_json_is_a_located_422(api: Any) -> None:
    _, client, people = api
    answer = client.post(
        "/gate/requests",
        content=b"{not json",
        headers={**people["carol"], "Content-Type": "application/json"},
    )
    assert answer.status_code == 422
    assert answer.json()["problems"][0]["where"].startswith("body")


def test_rule_refusals_and_unknown_things_get_clear_4xx(api: Any) -> None:
    _, client, people = api
    cases = [
        ({**BODY, "staff": "eve"}, 422, "not on the staff list: eve"),
        ({**BODY, "staff": "mallory"}, 409, "mallory has no US-person attestation"),
        ({**BODY, "staff": "bob", "duration": "2h"}, 409, "bob may get at most 1h; asked for 2h"),
        ({**BODY, "to": ["198.18.20.10:ssh"]}, 409, "is not a support target"),
    ]
    for body, status, words in cases:
        answer = client.post("/gate/requests", json=body, headers=people["carol"])
        assert answer.status_code == status, answer.text
        assert words in answer.json()["error"]
    number = client.post("/gate/requests", json=BODY, headers=people["carol"]).json()["id"]
    early = client.post(f"/gate/requests/{number}/open", headers=people["dave"])
    assert (early.status_code, early.json()["error"]) == (409, "request 1 needs 1 approval, has 0")
    unknown = client.post("/gate/requests/77/approve", headers=people["dave"])
    assert (unknown.status_code, unknown.json()["error"]) == (
        404,
        "no gate request 77 (the last is 1)",
    )
    assert client.get("/gate/requests/77", headers=people["dave"]).status_code == 404
    assert client.post("/gate/requests/x/open", headers=people["dave"]).status_code == 422
    assert client.get("/nowhere", headers=people["dave"]).json() == {
        "error": "Not Found",
        "problems": [],
    }


def test_an_unexpected_failure_is_a_500_without_a_stack_trace(api: Any) -> None:
    gates, _, people = api
    gates.kernel.fail = RuntimeError("boom")
    client = Client(create_app(gates.state, gates.service), raise_server_exceptions=False)
    number = client.post("/gate/requests", json=BODY, headers=people["carol"]).json()["id"]
    client.post(f"/gate/requests/{number}/approve", headers=people["dave"])
    answer = client.post(f"/gate/requests/{number}/open", headers=people["erin"])
    assert answer.status_code == 500
    assert answer.json() == {"error": "internal error: see the plantgated log", "problems": []}
    assert "Traceback" not in answer.text


def test_served_on_a_unix_socket_until_stopped(tmp_path: Path) -> None:
    gates = rig(tmp_path / "state")
    token = create_token(gates.state, "carol")

    async def scenario() -> tuple[int, str, bool]:
        stop = asyncio.Event()
        server = asyncio.create_task(
            serve_admin_api(gates.state, stop, kernel=gates.kernel, clock=gates.clock)
        )
        path = admin_socket(gates.state)
        for _ in range(100):
            if path.exists():
                break
            await asyncio.sleep(0.02)
        mode = oct(stat.S_IMODE(os.stat(path).st_mode))
        transport = httpx.AsyncHTTPTransport(uds=str(path))
        async with httpx.AsyncClient(transport=transport, base_url="http://admin") as client:
            answer = await client.get(
                "/gate/requests", headers={"Authorization": f"Bearer {token}"}
            )
        stop.set()
        await server
        return answer.status_code, mode, path.exists()

    status, mode, left = asyncio.run(scenario())
    assert (status, mode, left) == (200, "0o660", False)
