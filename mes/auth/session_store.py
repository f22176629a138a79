"""Server-side sessions in the `auth_sessions` table (the adapter to `sessions`' rules).

`create` rotates: the session the client came with (if any) is deleted, and an operator
login also ends any other session bound to the same station (one operator per station
screen). `resolve` turns a cookie value into a live session or None, deleting one that has
expired or idled out, and writes `last_seen_at` at most every 30 s (or hands those writes
to its caller, so that resolving a caller only reads). The raw id exists only in the cookie;
the table holds its SHA-256, and the CSRF token's SHA-256.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from mes.auth import csrf, sessions
from mes.auth.sessions import Kind, SessionPolicy
from mes.db import utc_now
from mes.models.people import AuthSession

Write = Callable[[Session], None]


@dataclass(frozen=True)
class _Delete:
    row_id: str

    def __call__(self, db: Session) -> None:
        db.execute(delete(AuthSession).where(AuthSession.id == self.row_id))


@dataclass(frozen=True)
class _Touch:
    row_id: str
    now: datetime.datetime

    def __call__(self, db: Session) -> None:
        db.execute(
            update(AuthSession)
            .where(AuthSession.id == self.row_id)
            .values(last_seen_at=self.now)
            .execution_options(synchronize_session=False)
        )


@dataclass(frozen=True, repr=False)
class NewSession:
    """A session just created: the raw id (for the cookie, never stored) and its row."""

    session_id: str
    row: AuthSession
    max_age: int

    @property
    def csrf_token(self) -> str:
        return csrf.token_for(self.session_id)

    def __repr__(self) -> str:
        return f"NewSession(kind={self.row.kind}, person={self.row.person_id})"


class SessionStore:
    def __init__(self, policy: SessionPolicy | None = None) -> None:
        self.policy = policy or SessionPolicy()

    def create(
        self,
        db: Session,
        person_id: int,
        kind: Kind,
        station_id: int | None = None,
        previous: str | None = None,
        now: datetime.datetime | None = None,
    ) -> NewSession:
        now = now or utc_now()
        if previous and sessions.plausible_id(previous):
            self.end(db, previous)
        if kind == "operator" and station_id is not None:
            db.execute(
                delete(AuthSession).where(
                    AuthSession.station_id == station_id, AuthSession.kind == "operator"
                )
            )
        session_id = sessions.new_session_id()
        lifetime = self.policy.lifetime(kind)
        row = AuthSession(
            id=sessions.hash_session_id(session_id),
            person_id=person_id,
            kind=kind,
            station_id=station_id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + lifetime,
            csrf_token_hash=csrf.token_hash(csrf.token_for(session_id)),
        )
        db.add(row)
        db.flush()
        return NewSession(session_id, row, int(lifetime.total_seconds()))

    def resolve(
        self,
        db: Session,
        session_id: str | None,
        now: datetime.datetime | None = None,
        *,
        defer: Callable[[Write], None] | None = None,
    ) -> AuthSession | None:
        """The live session of `session_id`, or None. Deleting an expired one and writing
        `last_seen_at` happen in `db`, or, with `defer`, are handed to it as `Write`s for a
        transaction of the caller's (when `db` only reads)."""
        if not sessions.plausible_id(session_id):
            return None
        assert session_id is not None
        now = now or utc_now()
        row = db.get(AuthSession, sessions.hash_session_id(session_id))
        if row is None:
            return None
        kind: Kind = "manage" if row.kind == "manage" else "operator"
        if sessions.expiry_reason(kind, row.last_seen_at, row.expires_at, now, self.policy):
            if defer is not None:
                defer(_Delete(row.id))
                return None
            db.delete(row)
            db.flush()
            return None
        if sessions.needs_touch(row.last_seen_at, now):
            if defer is not None:
                defer(_Touch(row.id, now))
            else:
                row.last_seen_at = now
                db.flush()
        return row

    def end(self, db: Session, session_id: str) -> bool:
        result = db.execute(
            delete(AuthSession).where(AuthSession.id == sessions.hash_session_id(session_id))
        )
        return bool(getattr(result, "rowcount", 0))

    def end_all_for(self, db: Session, person_id: int) -> None:
        db.execute(delete(AuthSession).where(AuthSession.person_id == person_id))

    def purge_expired(self, db: Session, now: datetime.datetime | None = None) -> int:
        """Delete sessions past their absolute expiry (idle ones go when next presented)."""
        now = now or utc_now()
        stale = list(db.scalars(select(AuthSession.id).where(AuthSession.expires_at <= now)))
        if stale:
            db.execute(delete(AuthSession).where(AuthSession.id.in_(stale)))
        return len(stale)

    def max_age(self, row: AuthSession, now: datetime.datetime | None = None) -> int:
        now = now or utc_now()
        expires = row.expires_at
        if expires.tzinfo is None:
            expires = expires.replace(tzinfo=datetime.UTC)
        return max(0, int((expires - now).total_seconds()))
