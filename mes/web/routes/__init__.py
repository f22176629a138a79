"""The screens' routers, in the order they are mounted (`mes.web.install`)."""

from __future__ import annotations

from fastapi import APIRouter

from mes.web.routes import (
    manage_account,
    manage_audit,
    manage_credentials,
    manage_editor,
    manage_orders,
    manage_parts,
    manage_people,
    manage_processes,
    manage_quality,
    manage_stations,
    manage_units,
    station_signin,
    station_work,
)

STATION_ROUTERS: tuple[APIRouter, ...] = (station_signin.router, station_work.router)
MANAGE_ROUTERS: tuple[APIRouter, ...] = (
    manage_account.router,
    manage_parts.router,
    manage_processes.router,
    manage_editor.router,
    manage_orders.router,
    manage_units.router,
    manage_quality.router,
    manage_people.router,
    manage_credentials.router,
    manage_stations.router,
    manage_audit.router,
)
ROUTERS = STATION_ROUTERS + MANAGE_ROUTERS
