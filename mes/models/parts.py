"""Parts (what is built or consumed) and lots (batches of a lot-tracked part).

`export_controlled` marks ITAR parts: everything derived from one (its processes, work
orders, units, lots, audit entries) is hidden from people who are not cleared
(`mes.domain.visibility`).
"""

from __future__ import annotations

import datetime

from sqlalchemy import CheckConstraint, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from mes.db import Base, utc_now


class Part(Base):
    __tablename__ = "parts"
    __table_args__ = (
        UniqueConstraint("number", "revision"),
        CheckConstraint("tracking IN ('none', 'lot', 'serial')", name="known_tracking"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(64), index=True)
    revision: Mapped[str] = mapped_column(String(16))
    description: Mapped[str] = mapped_column(String(500), default="")
    tracking: Mapped[str] = mapped_column(String(8), default="serial")
    export_controlled: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime.datetime] = mapped_column(default=utc_now)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), default=None)


class Lot(Base):
    """A lot of a lot-tracked part, known from the first time a station scans it."""

    __tablename__ = "lots"
    __table_args__ = (UniqueConstraint("part_id", "lot_number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    part_id: Mapped[int] = mapped_column(ForeignKey("parts.id"), index=True)
    lot_number: Mapped[str] = mapped_column(String(128))
    first_seen_at: Mapped[datetime.datetime] = mapped_column(default=utc_now)
    first_seen_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), default=None)
