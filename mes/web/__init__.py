"""The MES screens: the operator station (`/station/...`) and the Manage Page (`/manage/...`).

Server-rendered HTML (Jinja2 templates), plain forms, no front-end build step. Every flow
works without JavaScript: forms post, the server validates, and a successful post answers
with a redirect (303, post/redirect/get); a refused one renders the form again with the
message next to the field and what was typed kept (422, 403, 409). One small external
script (`/static/station.js`) only moves the cursor to the next field after a barcode
scan; the Content-Security-Policy forbids inline script and inline style, and the pages
have neither.

The screens sit on the same seams as the JSON API: the caller comes from the app's
`AuthBackend` (the session cookie, and the CSRF token of each form post), every page
declares one permission (`access.ManagePage`, `access.StationPage`), and every change goes
through `mes.services` with the same `Actor`, so permissions, export control (404 for what
the caller may not see) and the audit trail are the services' and not re-implemented here.
Sign-in and credential administration (PIN, password, TOTP, badges, unlock) use the auth
layer (`mes.auth`), which is why `install` needs the real `SessionAuthBackend`.
A page's database work opens and ends inside its route (`mes.api.deps.request_session`):
a GET only reads and takes no lock; a post writes in one transaction.

`install(app)` is an extension for `mes.app.create_app(..., extensions=[...])`.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from mes.web import errors
from mes.web.routes import ROUTERS

STATIC = Path(__file__).parent / "static"


def install(app: FastAPI) -> None:
    """Mount the screens, their static files and their HTML error pages on `app`."""
    errors.install(app)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    for router in ROUTERS:
        app.include_router(router)
