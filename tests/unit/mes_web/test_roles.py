"""Every screen declares one permission; each role gets the pages it may see and a 403 for
the others (gets and posts alike); nobody signed in is sent to the sign-in page."""

from __future__ import annotations

import re
from typing import Any

import pytest
from fastapi.routing import APIRoute

from mes.domain.roles import Permission, Role, permissions_of
from mes.web.access import ManagePage, StationPage
from mes.web.routes import MANAGE_ROUTERS, STATION_ROUTERS
from tests.unit.mes_web.support import Web, token_of

PUBLIC = {"/manage/login", "/manage/logout"}


def declared(route: APIRoute) -> list[ManagePage | StationPage]:
    found: list[ManagePage | StationPage] = []

    def walk(dependant: Any) -> None:
        if isinstance(dependant.call, ManagePage | StationPage):
            found.append(dependant.call)
        for sub in dependant.dependencies:
            walk(sub)

    walk(route.dependant)
    return found


def fill(path: str, web: Web) -> str:
    ids = {
        "part_id": web.plant.parts["widget"].id,
        "process_id": web.ids["widget_process"],
        "order_id": web.ids["order"],
        "unit_id": 1,
        "person_id": web.person("operator").id,
        "badge_id": 1,
        "station_id": web.plant.station.id,
        "nc_id": 1,
        "lot_id": 1,
        "step_id": 1,
        "code": "ST1",
    }
    return re.sub(r"\{([^}]+)\}", lambda m: str(ids[m.group(1)]), path)


def manage_routes(web: Web) -> list[tuple[str, str, Permission | None]]:
    routes = []
    for router in MANAGE_ROUTERS:
        for route in router.routes:
            assert isinstance(route, APIRoute)
            if route.path in PUBLIC:
                continue
            [gate] = declared(route)  # exactly one declared permission
            assert isinstance(gate, ManagePage), route.path
            for method in sorted(route.methods):
                routes.append((method, fill(route.path, web), gate.permission))
    return routes


def test_every_manage_route_declares_one_permission(web: Web) -> None:
    routes = manage_routes(web)
    assert len(routes) >= 45
    used = {p for _, _, p in routes if p is not None}
    # Running units is the station's; corrections of passed steps and taking components
    # out (executions.correct) are API-only so far.
    assert used == set(Permission) - {Permission.UNITS_RUN, Permission.EXECUTIONS_CORRECT}


def test_every_station_route_needs_the_station_and_units_run() -> None:
    for router in STATION_ROUTERS:
        for route in router.routes:
            assert isinstance(route, APIRoute)
            gates = declared(route)
            if route.path.startswith("/station/{code}/") and not route.path.endswith(
                ("/login", "/logout")
            ):
                assert [type(g) for g in gates] == [StationPage], route.path
                assert gates[0].permission is Permission.UNITS_RUN
            else:
                assert gates == [], route.path


def test_nobody_signed_in_is_sent_to_sign_in(web: Web) -> None:
    client = web.client()
    for method, path, _ in manage_routes(web):
        answer = client.request(method, path)
        if method == "POST":
            # No session: the post is refused (403, the form token cannot be right) or
            # sent to sign in; nothing is done either way.
            assert answer.status_code in (303, 403), (method, path)
            continue
        assert answer.status_code == 303, (method, path, answer.text[:200])
        assert answer.headers["location"].startswith("/manage/login?next=%2Fmanage")


@pytest.mark.parametrize("role", list(Role))
def test_each_role_is_refused_what_it_lacks(web: Web, role: Role) -> None:
    client = web.signed_in(role.value)
    token = token_of(client.get("/manage").text)
    granted = permissions_of({role})
    refused = 0
    for method, path, permission in manage_routes(web):
        data = {"csrf_token": token} if method == "POST" else None
        answer = client.request(method, path, data=data)
        if permission is None or permission in granted:
            assert answer.status_code != 500, (role, method, path)
            assert "your roles do not allow" not in answer.text, (role, method, path)
            assert not answer.headers.get("location", "").startswith("/manage/login")
        else:
            refused += 1
            assert answer.status_code == 403, (role, method, path, answer.status_code)
            assert f"your roles do not allow {permission.value}" in answer.text
    assert refused > 0


def test_buttons_follow_permissions(web: Web) -> None:
    """A role that may not do something does not see its button."""
    process = f"/manage/processes/{web.ids['spare']}"
    pages = {
        "engineer": web.signed_in("engineer").get("/manage/parts").text,
        "auditor": web.signed_in("auditor").get("/manage/parts").text,
    }
    assert "New part" in pages["engineer"] and "New part" not in pages["auditor"]
    lead = web.signed_in("lead").get(f"/manage/work-orders/{web.ids['order']}").text
    auditor = web.signed_in("auditor").get(f"/manage/work-orders/{web.ids['order']}").text
    assert "Close work order" in lead and "Close work order" not in auditor
    admin = web.signed_in("admin").get("/manage").text
    assert "/manage/people" in admin and "/manage/processes" not in admin
    assert process  # the spare part has no process: nothing to show there


def test_station_pages_need_an_operator_of_that_station(web: Web) -> None:
    order = f"/station/ST1/work-orders/{web.ids['order']}"
    anonymous = web.client().get(order)
    assert anonymous.status_code == 303 and anonymous.headers["location"] == "/station/ST1"
    manager = web.signed_in("quality").get(order)  # a Manage Page session is not a station
    assert manager.status_code == 303 and manager.headers["location"] == "/station/ST1"
    operator = web.at_station("operator")
    assert operator.get(order).status_code == 200
    assert operator.get("/station/NOPE/work-orders").status_code == 404
    # An engineer signing in at a station has no units.run: 403, not the work.
    engineer = web.at_station("engineer")
    refused = engineer.get(order)
    assert refused.status_code == 403 and "units.run" in refused.text
    # An operator's station session does not open the Manage Page.
    assert operator.get("/manage/units").status_code == 303
