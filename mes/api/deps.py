"""The seams of the API: the `AuthBackend` Protocol, the database session, the caller, and
the permission each route declares.

`AuthBackend` is implemented by the auth layer (`mes.auth.backend.SessionAuthBackend`) and,
for tests, by a stand-in that trusts a header. The API never looks at cookies, passwords or
PINs itself: it asks the backend who is calling and whether re-entered signature credentials
are right, and receives an `Actor` and a `SignatureGrant`.

Every route declares exactly one permission with `Need(Permission.X)`: no caller -> 401,
a caller whose roles lack it -> 403, before the route reads the database. Export control is
the services' job (404 for what the caller may not see).

No database work on the event loop: the caller is resolved in a worker thread
(`resolve_actor`). On SQLite a writing transaction waits for the write lock (up to the busy
timeout); waiting on the loop would stall every other request, including the one holding
the lock, whose session is closed from the loop. A route's session (`DB`) holds no lock
when the route returns (`get_db`) and is closed before the answer is sent.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterator
from typing import Annotated, Any, Protocol, TypeVar, cast

import anyio
from fastapi import Depends, Request
from sqlalchemy import Engine, event
from sqlalchemy.orm import Session, sessionmaker

from mes.db import read_only
from mes.domain.actor import Actor
from mes.domain.errors import SignatureRejected, Unauthenticated
from mes.domain.roles import Permission
from mes.signatures import SignatureCredentials, SignatureGrant

SESSIONS_KEY = "mes_sessions"  # app.state attribute: the sessionmaker
AUTH_KEY = "mes_auth"  # app.state attribute: the AuthBackend
SETTINGS_KEY = "mes_settings"  # app.state attribute: the MesSettings
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
T = TypeVar("T")


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
    """One session per request; the route commits, anything else rolls back at close.

    A GET (any safe method) only reads: its session takes no lock (`mes.db.read_only`). A
    state-changing request writes in one transaction; what it reads after its commit, to
    answer, is read the same way, so its route returns holding no lock (FastAPI checks the
    answer in a worker thread after the route returns; a writer waiting there for a thread
    while other threads wait for it would stall them all)."""
    maker = sessions_of(request)
    reader = read_only(maker.kw["bind"])
    if request.method.upper() not in UNSAFE_METHODS:
        with maker(bind=reader) as session:
            yield session
        return
    with maker() as session:
        event.listen(session, "after_commit", _read_from_now_on(reader))
        yield session


def _read_from_now_on(reader: Engine) -> Callable[[Session], None]:
    def switch(session: Session) -> None:
        session.bind = reader

    return switch


# scope="function": closed as soon as the route returns, not after the answer is sent.
DB = Annotated[Session, Depends(get_db, scope="function")]


def run_ready(coro: Coroutine[Any, Any, T]) -> T:
    """The result of a coroutine that never waits, run in the calling (worker) thread.

    A backend's `current_actor` awaits at most `request.form()`, which `read_form_first`
    has read already (Starlette keeps it), so it completes on its first step."""
    try:
        coro.send(None)
    except StopIteration as done:
        return cast(T, done.value)
    coro.close()
    raise RuntimeError("the auth backend waited on I/O; it cannot be run in a worker thread")


async def read_form_first(request: Request) -> None:
    """Read a posted form before any transaction opens (no lock held while a body arrives)."""
    if request.method.upper() not in UNSAFE_METHODS:
        return
    kind = (request.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
    if kind in FORM_TYPES:
        await request.form()


def reading_session(request: Request) -> Session:
    """A session of the app's database that only reads (takes no lock on SQLite)."""
    maker = sessions_of(request)
    return maker(bind=read_only(maker.kw["bind"]))


def request_session(request: Request) -> Session:
    """A session for the work of `request`: one that only reads for a GET (any safe
    method), a writing one otherwise."""
    if request.method.upper() in UNSAFE_METHODS:
        return sessions_of(request)()
    return reading_session(request)


def _resolve_in_thread(request: Request) -> Actor | None:
    with reading_session(request) as db:
        actor = run_ready(backend_of(request).current_actor(request, db))
        db.commit()
    return actor


async def resolve_actor(request: Request) -> Actor | None:
    """The caller or None, in a worker thread, read in a transaction of its own that takes
    no lock (the backend writes what resolving implies apart, and rarely)."""
    await read_form_first(request)
    return await anyio.to_thread.run_sync(_resolve_in_thread, request)


async def current_actor(request: Request) -> Actor:
    """The caller (401 without one); see `resolve_actor`."""
    actor = await resolve_actor(request)
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
