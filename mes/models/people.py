"""People, their roles, badges, login sessions and stations.

The credential columns belong to the auth layer (`mes.auth`), which alone writes them:
`pin_hash` and `password_hash` are peppered argon2id strings, `totp_secret` is sealed by the
auth layer before it gets here, a badge is stored only as `token_hmac` (the printed barcode
is an identifier that can be copied, so the token itself is never kept), and a session id
and its CSRF token are stored hashed. None of these columns is ever audited or answered.
"""

from __future__ import annotations

import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mes.db import Base, utc_now
from mes.domain.roles import Role

ROLE_VALUES = ", ".join(f"'{r.value}'" for r in Role)


class Person(Base):
    __tablename__ = "people"
    __table_args__ = (
        CheckConstraint("us_person OR NOT itar_authorised", name="itar_needs_us_person"),
        CheckConstraint("pin_failures >= 0", name="pin_failures_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    employee_number: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    us_person: Mapped[bool] = mapped_column(default=False)
    itar_authorised: Mapped[bool] = mapped_column(default=False)
    active: Mapped[bool] = mapped_column(default=True)
    pin_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    pin_failures: Mapped[int] = mapped_column(default=0)
    locked_at: Mapped[datetime.datetime | None] = mapped_column(default=None)
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    password_changed_at: Mapped[datetime.datetime | None] = mapped_column(default=None)
    totp_secret: Mapped[str | None] = mapped_column(String(255), default=None)
    totp_last_step: Mapped[int | None] = mapped_column(default=None)  # refuses code replay
    created_at: Mapped[datetime.datetime] = mapped_column(default=utc_now)

    role_links: Mapped[list[PersonRole]] = relationship(
        back_populates="person", cascade="all, delete-orphan", lazy="selectin"
    )

    @property
    def roles(self) -> frozenset[Role]:
        return frozenset(Role(link.role) for link in self.role_links)

    @property
    def locked(self) -> bool:
        return self.locked_at is not None


class PersonRole(Base):
    __tablename__ = "person_roles"
    __table_args__ = (CheckConstraint(f"role IN ({ROLE_VALUES})", name="known_role"),)

    person_id: Mapped[int] = mapped_column(
        ForeignKey("people.id", ondelete="CASCADE"), primary_key=True
    )
    role: Mapped[str] = mapped_column(String(16), primary_key=True)

    person: Mapped[Person] = relationship(back_populates="role_links")


class Badge(Base):
    """A badge: an identifier (its barcode) stored only as an HMAC; revoked, never deleted."""

    __tablename__ = "badges"

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"), index=True)
    token_hmac: Mapped[str] = mapped_column(String(128), unique=True)
    issued_at: Mapped[datetime.datetime] = mapped_column(default=utc_now)
    issued_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), default=None)
    revoked_at: Mapped[datetime.datetime | None] = mapped_column(default=None)
    revoked_reason: Mapped[str | None] = mapped_column(String(500), default=None)

    @property
    def active(self) -> bool:
        return self.revoked_at is None


class Station(Base):
    """A place on the floor where operators work (a hub's screen)."""

    __tablename__ = "stations"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    location: Mapped[str] = mapped_column(String(200), default="")
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime.datetime] = mapped_column(default=utc_now)


class AuthSession(Base):
    """A login: the id (random, given to the browser) is stored only as its hash."""

    __tablename__ = "auth_sessions"
    __table_args__ = (
        CheckConstraint("kind IN ('operator', 'manage')", name="known_kind"),
        Index("ix_auth_sessions_expires_at", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    station_id: Mapped[int | None] = mapped_column(ForeignKey("stations.id"), default=None)
    created_at: Mapped[datetime.datetime] = mapped_column(default=utc_now)
    last_seen_at: Mapped[datetime.datetime] = mapped_column(default=utc_now)
    expires_at: Mapped[datetime.datetime]
    csrf_token_hash: Mapped[str] = mapped_column(String(128))
