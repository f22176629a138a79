"""Settings of the MES application: where its data lives and how long sessions last.

What: one frozen `MesSettings`, built by `load_settings()` from explicit arguments, then the
environment, then defaults. The database defaults to SQLite in `<state>/mes/mes.db` (the
appliance keeps its data on the box, DESIGN §7); any SQLAlchemy URL is accepted, so a plant
may point the MES at PostgreSQL with the same migrations. Secrets (the credential pepper, the
TOTP sealing key) are files under `<state>/secrets/`, never in the database or the settings.

Environment: `PLANTGATE_STATE_DIR` (via `gateway.state`), `PLANTGATE_MES_DATABASE_URL`,
`PLANTGATE_MES_SESSION_HOURS`, `PLANTGATE_MES_IDLE_MINUTES`.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass
from pathlib import Path

from gateway.state import state_dir as gateway_state_dir

ENV_DATABASE_URL = "PLANTGATE_MES_DATABASE_URL"
ENV_SESSION_HOURS = "PLANTGATE_MES_SESSION_HOURS"
ENV_IDLE_MINUTES = "PLANTGATE_MES_IDLE_MINUTES"

DEFAULT_SESSION_LIFETIME = datetime.timedelta(days=7)
DEFAULT_IDLE_TIMEOUT = datetime.timedelta(minutes=30)
DEFAULT_BUSY_TIMEOUT_MS = 5000


class SettingsError(ValueError):
    """A setting from the environment or the caller is unusable; the message says which."""


@dataclass(frozen=True)
class MesSettings:
    """Everything the MES needs to know about its surroundings."""

    state_dir: Path
    database_url: str
    secrets_dir: Path
    session_lifetime: datetime.timedelta = DEFAULT_SESSION_LIFETIME
    idle_timeout: datetime.timedelta = DEFAULT_IDLE_TIMEOUT
    busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS

    @property
    def data_dir(self) -> Path:
        """`<state>/mes`: the SQLite database and the audit anchor live here."""
        return self.state_dir / "mes"

    @property
    def audit_anchor(self) -> Path:
        """The file holding the audit chain's last sequence number and hash."""
        return self.data_dir / "audit.head"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")


def default_database_url(state: Path) -> str:
    return f"sqlite:///{state / 'mes' / 'mes.db'}"


def _positive(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r}: expected a number") from None
    if value <= 0:
        raise SettingsError(f"{name}={raw!r}: expected a number above 0")
    return value


def load_settings(
    state: Path | str | None = None,
    *,
    database_url: str | None = None,
    session_lifetime: datetime.timedelta | None = None,
    idle_timeout: datetime.timedelta | None = None,
) -> MesSettings:
    """Settings from arguments, else the environment, else the defaults."""
    root = gateway_state_dir(state)
    url = database_url or os.environ.get(ENV_DATABASE_URL) or default_database_url(root)
    if session_lifetime is None:
        raw = os.environ.get(ENV_SESSION_HOURS)
        session_lifetime = (
            datetime.timedelta(hours=_positive(ENV_SESSION_HOURS, raw))
            if raw
            else DEFAULT_SESSION_LIFETIME
        )
    if idle_timeout is None:
        raw = os.environ.get(ENV_IDLE_MINUTES)
        idle_timeout = (
            datetime.timedelta(minutes=_positive(ENV_IDLE_MINUTES, raw))
            if raw
            else DEFAULT_IDLE_TIMEOUT
        )
    if idle_timeout > session_lifetime:
        raise SettingsError("the idle timeout cannot be longer than the session lifetime")
    return MesSettings(
        state_dir=root,
        database_url=url,
        secrets_dir=root / "secrets",
        session_lifetime=session_lifetime,
        idle_timeout=idle_timeout,
    )
