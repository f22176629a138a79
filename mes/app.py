"""`create_app`: the MES application, its JSON API under `/api/v1`, and its OpenAPI schema.

What the caller provides: the settings (database URL, state directory) and an `AuthBackend`
(`mes.api.deps`): the real one from `mes.auth`, or a test stand-in. What `create_app` does
not do: migrate the database (`plantgate mes db upgrade`, or `mes.migrations.upgrade`, runs
before serving), add TLS, login routes or security headers (`mes.server` adds them).

For the layers built on top: `app.state.mes_sessions` is the sessionmaker (commits move the
audit anchor), `app.state.mes_auth` the backend, `app.state.mes_settings` the settings.
`extensions` are called with the app before it is returned (the web screens mount there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from fastapi import APIRouter, FastAPI
from sqlalchemy import Engine

from mes import audit
from mes.api import audit as audit_api
from mes.api import genealogy, parts, people, processes, production, quality
from mes.api.deps import AUTH_KEY, SESSIONS_KEY, SETTINGS_KEY, AuthBackend
from mes.api.errors import install_error_handlers
from mes.config import MesSettings
from mes.db import make_engine

API_PREFIX = "/api/v1"
ROUTERS = (
    parts.router,
    processes.router,
    production.router,
    genealogy.router,
    quality.router,
    people.router,
    audit_api.router,
)


def create_app(
    settings: MesSettings,
    *,
    auth: AuthBackend,
    engine: Engine | None = None,
    extensions: Sequence[Callable[[FastAPI], None]] = (),
) -> FastAPI:
    """The application over `settings.database_url` (or `engine`, when given)."""
    engine = engine or make_engine(settings.database_url, busy_timeout_ms=settings.busy_timeout_ms)
    app = FastAPI(
        title="PlantGate MES",
        version="1",
        description="Work instructions, operator stations, unit traceability, e-signatures.",
        openapi_url="/openapi.json",
        docs_url=None,  # the appliance has no CDN for Swagger UI's scripts
        redoc_url=None,
    )
    setattr(app.state, SETTINGS_KEY, settings)
    setattr(app.state, AUTH_KEY, auth)
    setattr(app.state, SESSIONS_KEY, audit.anchored_sessions(engine, settings.audit_anchor))
    install_error_handlers(app)
    api = APIRouter(prefix=API_PREFIX)
    for router in ROUTERS:
        api.include_router(router)
    app.include_router(api)
    for extend in extensions:
        extend(app)
    return app
