"""The seams of the API: the `AuthBackend` Protocol, the database session, the caller, and
the permission each route declares.

`AuthBackend` is implemented by the auth layer (`mes.auth.backend.SessionAuthBackend`) and,
for tests, by a stand-in that trusts a header. The API never looks at cookies, passwords or
PINs itself: it asks the backend who is calling and whether re-entered signature credentials
are right, and receives an `Actor` and a `SignatureGrant`.

Every route declares exactly one permission with `Need(Permission.X)`: no caller -> 401,
a caller whose roles lack it -> 403, before the route reads the database. Export control is
the services' job (404 for what the caller may not see).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Protocol

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from mes.domain.actor import Actor
from mes.domain.errors import SignatureRejected, Unauthenticated
from mes.domain.roles import Permission
from mes.signatures import SignatureCredentials, SignatureGrant

SESSIONS_KEY = "mes_sessions"  # app.state attribute: the sessionmaker
AUTH_KEY = "mes_auth"  # app.state attribute: the AuthBackend
SETTINGS_KEY = "mes_settings"  # app.state attribute: the MesSettings


class AuthBackend(Protocol):
    """What the API needs from the auth layer."""

    async def current_actor(self, request: Request, db: Session) -> Actor | None:
        """The person calling (None: nobody signed in, or the session ended).

        For unsafe methods the backend also enforces CSRF and raises `Forbidden` when the
        request fails it. `db` is a session of its own that the API commits afterwards, so
        the backend may touch the session row (last seen, expiry)."""
        ...

    def verify_signature(
        self,
        db: Session,
        actor: Actor,
        credentials: SignatureCredentials,
        *,
        address: str | None = None,
    ) -> SignatureGrant:
        """Check the re-entered credentials of `actor`; raise `SignatureRejected` if wrong.

        Runs in a transaction of its own that the API commits even when the credentials are
        refused, so failures count towards the lockout."""
        ...


def sessions_of(request: Request) -> sessionmaker[Session]:
    maker: sessionmaker[Session] = getattr(request.app.state, SESSIONS_KEY)
    return maker


def backend_of(request: Request) -> AuthBackend:
    backend: AuthBackend = getattr(request.app.state, AUTH_KEY)
    return backend


def get_db(request: Request) -> Iterator[Session]:
    """One session per request; the route commits, anything else rolls back at close."""
    with sessions_of(request)() as session:
        yield session


DB = Annotated[Session, Depends(get_db)]


async def current_actor(request: Request) -> Actor:
    """The caller, resolved in a short transaction of its own (401 without one)."""
    with sessions_of(request)() as db:
        actor = await backend_of(request).current_actor(request, db)
        db.commit()
    if actor is None:
        raise Unauthenticated("sign in first")
    return actor


class Need:
    """A route's permission: `actor: Annotated[Actor, Depends(Need(Permission.X))]`."""

    def __init__(self, permission: Permission) -> None:
        self.permission = permission

    def __call__(self, actor: Annotated[Actor, Depends(current_actor)]) -> Actor:
        actor.require(self.permission)
        return actor


def need(permission: Permission) -> object:
    """`Depends(Need(permission))`, for the `Annotated` type of a route's actor."""
    return Depends(Need(permission))


def grant_for(request: Request, actor: Actor, credentials: SignatureCredentials) -> SignatureGrant:
    """Have the backend check signature credentials; its transaction is committed either way.

    Call it before the route's own session does anything: on SQLite a second writer would
    wait for the first."""
    with sessions_of(request)() as db:
        address = request.client.host if request.client else None
        try:
            grant = backend_of(request).verify_signature(db, actor, credentials, address=address)
        except SignatureRejected:
            db.commit()
            raise
        db.commit()
    return grant
