"""Every API route declares one permission; each role is refused everything it lacks (403),
and nobody gets anything without signing in (401)."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from mes.api.deps import Need
from mes.app import API_PREFIX, ROUTERS
from mes.domain.roles import Permission, Role, permissions_of
from tests.unit.mes.support import Plant


def _permission(route: APIRoute) -> list[Permission]:
    found: list[Permission] = []

    def walk(dependant: Any) -> None:
        if isinstance(dependant.call, Need):
            found.append(dependant.call.permission)
        for sub in dependant.dependencies:
            walk(sub)

    walk(route.dependant)
    return found


def api_routes(client: TestClient) -> list[tuple[str, str, Permission]]:
    """(method, path with ids 1, permission) of every API route (read from the routers:
    FastAPI may keep included routers unflattened in `app.routes`)."""
    routes = []
    for router in ROUTERS:
        for route in router.routes:
            assert isinstance(route, APIRoute)
            [permission] = _permission(route)  # exactly one declared permission
            path = API_PREFIX + re.sub(r"\{[^}]+\}", "1", route.path)
            for method in sorted(route.methods):
                routes.append((method, path, permission))
    openapi = client.get("/openapi.json").json()["paths"]
    assert {p for _, p, _ in routes} == {re.sub(r"\{[^}]+\}", "1", p) for p in openapi}
    return routes


def test_every_route_declares_exactly_one_permission(client: TestClient) -> None:
    routes = api_routes(client)
    assert len(routes) >= 40
    # Every permission is used; unlocking is the auth layer's route (/api/auth/...).
    assert {p for _, _, p in routes} == set(Permission) - {Permission.PEOPLE_UNLOCK}


def test_unauthenticated_callers_get_401_everywhere(client: TestClient, plant: Plant) -> None:
    for method, path, _ in api_routes(client):
        answer = client.request(method, path, json={})
        assert answer.status_code == 401, (method, path, answer.text)
        assert answer.json()["detail"] == "sign in first"
    answer = client.get(f"{API_PREFIX}/parts", headers={"X-Test-Person": "NOBODY"})
    assert answer.status_code == 401


@pytest.mark.parametrize("role", list(Role))
def test_each_role_is_refused_what_it_lacks(client: TestClient, plant: Plant, role: Role) -> None:
    headers = {"X-Test-Person": role.value.upper()}
    granted = permissions_of({role})
    refused_count = 0
    for method, path, permission in api_routes(client):
        answer = client.request(method, path, json={}, headers=headers)
        if permission in granted:
            assert answer.status_code not in (401, 403), (role, method, path, answer.text)
        else:
            refused_count += 1
            assert answer.status_code == 403, (role, method, path, answer.text)
            assert permission.value in answer.json()["detail"]
    assert refused_count > 0


def test_the_role_table_matches_the_issue(client: TestClient) -> None:
    """Spot checks in words: who may do the things the issue names."""
    table = {(m, p): perm for m, p, perm in api_routes(client)}
    v1 = API_PREFIX
    expectations = {
        ("POST", f"{v1}/processes/1/release"): {Role.QUALITY},
        ("POST", f"{v1}/nonconformances/1/disposition"): {Role.QUALITY},
        ("POST", f"{v1}/processes"): {Role.ENGINEER},
        ("PUT", f"{v1}/processes/1/content"): {Role.ENGINEER},
        ("POST", f"{v1}/work-orders"): {Role.LEAD},
        ("POST", f"{v1}/work-orders/1/close"): {Role.LEAD},
        ("POST", f"{v1}/units/1/executions"): {Role.OPERATOR, Role.LEAD},
        ("POST", f"{v1}/people"): {Role.ADMIN},
        ("POST", f"{v1}/stations"): {Role.ADMIN},
        ("GET", f"{v1}/audit"): {Role.QUALITY, Role.ADMIN, Role.AUDITOR},
    }
    for key, roles in expectations.items():
        assert {r for r in Role if table[key] in permissions_of({r})} == roles, key
