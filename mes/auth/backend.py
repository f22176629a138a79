"""The real `AuthBackend`: sessions -> the acting person, and credentials for e-signatures.

`SessionAuthBackend` is what `mes.app.create_app(settings, auth=...)` is given. It
- turns the `__Host-plantgate` cookie into an `Actor` (or None), refusing state-changing
  requests that fail the CSRF rules (`csrf`), and ending sessions of people who were
  deactivated or locked;
- verifies the re-entered credentials of an e-signature: the PIN for a station (operator)
  session, password and TOTP code for a Manage Page session; failures count towards the
  lockout and the rate limits exactly like logins;
- provides the login/logout routes (`mes.auth.routes`) through `install(app)`.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from fastapi import FastAPI, Request
from sqlalchemy.orm import Session, joinedload, sessionmaker

from mes.auth import csrf
from mes.auth.accounts import Keys
from mes.auth.hashing import DEFAULT_PARAMS, Argon2Params
from mes.auth.login import Attempt, Authenticator, LoginRefused
from mes.auth.notify import Notifier
from mes.auth.ratelimit import LoginLimiter, LoginLimits
from mes.auth.secrets import load_secrets
from mes.auth.session_store import SessionStore, Write
from mes.auth.sessions import COOKIE_NAME, SessionPolicy
from mes.config import MesSettings
from mes.db import is_read_only, utc_now
from mes.domain.actor import Actor
from mes.domain.errors import Forbidden, SignatureRejected
from mes.domain.signing import SignatureMethod
from mes.models.people import AuthSession, Person
from mes.signatures import SignatureCredentials, SignatureGrant


def actor_of(person: Person, row: AuthSession | None = None) -> Actor:
    return Actor(
        person_id=person.id,
        employee_number=person.employee_number,
        name=person.name,
        roles=person.roles,
        us_person=person.us_person,
        itar_authorised=person.itar_authorised,
        station_id=row.station_id if row is not None else None,
    )


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def own_origin(request: Request) -> str:
    host = request.headers.get("host") or (request.url.hostname or "")
    return f"{request.url.scheme}://{host}"


class SessionAuthBackend:
    def __init__(
        self,
        keys: Keys,
        *,
        state: Path | None,
        policy: SessionPolicy | None = None,
        limits: LoginLimits | None = None,
        notifier: Notifier | None = None,
        wall_clock: Callable[[], float] | None = None,
    ) -> None:
        self.keys = keys
        self.store = SessionStore(policy)
        self.notifier = notifier or Notifier(state)
        limiter = LoginLimiter(limits or LoginLimits())
        if wall_clock is None:
            self.auth = Authenticator(keys, limiter, self.notifier)
        else:
            self.auth = Authenticator(keys, limiter, self.notifier, wall_clock)
        self.sessionmaker: sessionmaker[Session] | None = None

    @classmethod
    def from_settings(
        cls, settings: MesSettings, params: Argon2Params = DEFAULT_PARAMS
    ) -> SessionAuthBackend:
        """Secrets from `settings.secrets_dir` (created on first start), session times from
        the settings (Manage Page lifetime and idle timeout)."""
        keys = Keys.from_secrets(load_secrets(settings.secrets_dir), params)
        policy = SessionPolicy(
            manage_lifetime=settings.session_lifetime, manage_idle=settings.idle_timeout
        )
        return cls(keys, state=settings.state_dir, policy=policy)

    def __repr__(self) -> str:
        return "SessionAuthBackend(<keys hidden>)"

    # ------------------------------------------------------------ the Protocol

    async def session_row(
        self, request: Request, db: Session, defer: Callable[[Write], None] | None = None
    ) -> AuthSession | None:
        """The live session of `request` after the CSRF check (Forbidden if it fails)."""
        row = self.store.resolve(db, request.cookies.get(COOKIE_NAME), defer=defer)
        if row is None:
            return None
        if request.method.upper() in csrf.UNSAFE_METHODS:
            submitted = request.headers.get(csrf.HEADER)
            if submitted is None and csrf.is_form(request.headers.get("content-type")):
                form = await request.form()
                value = form.get(csrf.FIELD)
                submitted = value if isinstance(value, str) else None
            problem = csrf.request_problem(
                request.method,
                {k.lower(): v for k, v in request.headers.items()},
                own_origin(request),
                submitted,
                row.csrf_token_hash,
            )
            if problem:
                raise Forbidden(f"request refused: {problem}")
        return row

    async def current_actor(self, request: Request, db: Session) -> Actor | None:
        """Who is calling (None: nobody signed in).

        When `db` only reads (`mes.db.read_only`), what resolving implies writing (a
        session's last-seen time, at most every 30 s; an expired session; the sessions of
        someone deactivated or locked) is written in a short transaction of its own."""
        writes: list[Write] = []
        apart = self.sessionmaker is not None and is_read_only(db)
        defer = writes.append if apart else None
        row = await self.session_row(request, db, defer)
        actor = None
        if row is not None:
            person = db.get(Person, row.person_id, options=[joinedload(Person.role_links)])
            if person is None or not person.active or person.locked_at is not None:
                end = partial(self.store.end_all_for, person_id=row.person_id)
                if apart:
                    writes.append(end)
                else:
                    end(db)
            else:
                actor = actor_of(person, row)
        if writes:
            assert self.sessionmaker is not None
            with self.sessionmaker() as writer:
                for write in writes:
                    write(writer)
                writer.commit()
        return actor

    def verify_signature(
        self,
        db: Session,
        actor: Actor,
        credentials: SignatureCredentials,
        *,
        address: str | None = None,
    ) -> SignatureGrant:
        """Check re-entered credentials of `actor`; SignatureRejected if they fail.

        A station session signs with the PIN; a Manage Page session with password + TOTP.
        The grant is what `mes.signatures.sign` needs (valid for two minutes).
        """
        person = db.get(Person, actor.person_id)
        if person is None or not person.active:
            raise SignatureRejected("the signer is not an active person")
        attempt = Attempt(address)
        try:
            if actor.station_id is not None or (credentials.pin and not credentials.password):
                self.auth.reauth_pin(db, person, credentials.pin or "", attempt)
                return SignatureGrant(person.id, SignatureMethod.PIN, utc_now())
            self.auth.reauth_password_totp(
                db, person, credentials.password or "", credentials.totp or "", attempt
            )
            return SignatureGrant(person.id, SignatureMethod.PASSWORD_TOTP, utc_now())
        except LoginRefused as refused:
            db.flush()  # the caller commits: failures count towards the lockout
            raise SignatureRejected(f"signature refused: {refused.message}") from None

    # ------------------------------------------------------------ wiring

    def install(self, app: FastAPI) -> None:
        """Add the `/api/auth` routes to `app`, using the app's sessionmaker
        (`app.state.mes_sessions`, set by `create_app`)."""
        from mes.api.deps import AUTH_KEY, SESSIONS_KEY
        from mes.auth.routes import auth_router

        self.sessionmaker = getattr(app.state, SESSIONS_KEY, None) or self.sessionmaker
        if getattr(app.state, AUTH_KEY, None) is None:
            setattr(app.state, AUTH_KEY, self)
        app.include_router(auth_router(self))
