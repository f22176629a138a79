"""Server-side sessions (pure part): ids, cookie, expiry rules.

- The id is 256 random bits (`secrets.token_urlsafe(32)`); the browser gets it in the cookie
  `__Host-plantgate` (HttpOnly, Secure, SameSite=Strict, Path=/, no Domain: the `__Host-`
  prefix makes browsers enforce the last three); the database keeps only SHA-256 of it, so a
  database copy cannot be replayed as a cookie.
- Two limits end a session: an absolute lifetime from login and an idle timeout since the
  last request. Manage Page: 7 days / 30 minutes by default; operator stations: 12 hours (a
  shift) / 15 minutes (the idle auto-logout). Both are settings (`SessionPolicy`).
- Login always creates a new id (rotation) and drops the session the client came with.
- The CSRF token of a session is derived from its id (see `csrf`), so it needs no storage
  beyond its hash and can be rendered into any form of that session.
"""

from __future__ import annotations

import datetime
import hashlib
import secrets
from dataclasses import dataclass
from typing import Literal

COOKIE_NAME = "__Host-plantgate"
ID_BYTES = 32
TOUCH_EVERY = datetime.timedelta(seconds=30)  # last_seen_at is written at most this often

Kind = Literal["operator", "manage"]


@dataclass(frozen=True)
class SessionPolicy:
    manage_lifetime: datetime.timedelta = datetime.timedelta(days=7)
    manage_idle: datetime.timedelta = datetime.timedelta(minutes=30)
    operator_lifetime: datetime.timedelta = datetime.timedelta(hours=12)
    operator_idle: datetime.timedelta = datetime.timedelta(minutes=15)

    def lifetime(self, kind: Kind) -> datetime.timedelta:
        return self.manage_lifetime if kind == "manage" else self.operator_lifetime

    def idle(self, kind: Kind) -> datetime.timedelta:
        return self.manage_idle if kind == "manage" else self.operator_idle


def new_session_id() -> str:
    return secrets.token_urlsafe(ID_BYTES)


def hash_session_id(session_id: str) -> str:
    """What the database keeps: SHA-256 (hex) of the id; 256 random bits need no salt."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def plausible_id(value: str | None) -> bool:
    """Cheap shape check before touching the database (43 URL-safe base64 characters)."""
    return (
        value is not None
        and len(value) == 43
        and value.replace("-", "").replace("_", "").isalnum()
        and value.isascii()
    )


def _aware(value: datetime.datetime) -> datetime.datetime:
    """SQLite hands back naive datetimes for UTC columns: read them as UTC."""
    return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)


def expiry_reason(
    kind: Kind,
    last_seen_at: datetime.datetime,
    expires_at: datetime.datetime,
    now: datetime.datetime,
    policy: SessionPolicy,
) -> str | None:
    """'expired' (absolute lifetime), 'idle' (idle timeout), or None if still valid."""
    if now >= _aware(expires_at):
        return "expired"
    if now - _aware(last_seen_at) >= policy.idle(kind):
        return "idle"
    return None


def needs_touch(last_seen_at: datetime.datetime, now: datetime.datetime) -> bool:
    return now - _aware(last_seen_at) >= TOUCH_EVERY


def cookie_header(session_id: str, max_age: int) -> str:
    """The Set-Cookie value for a session (max_age in seconds)."""
    return (
        f"{COOKIE_NAME}={session_id}; Max-Age={max_age}; Path=/; Secure; HttpOnly; SameSite=Strict"
    )


def clear_cookie_header() -> str:
    return f"{COOKIE_NAME}=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Strict"
