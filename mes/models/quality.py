"""Nonconformances and electronic signatures.

An `ESignature` (append-only) records who signed, their printed name at that moment, what
they meant, which record (type and id) and the record's digest at signing, when and how
they re-identified. `seal` is a hash over all of that, so an edited signature row no longer
matches itself; the digest ties it to its record (`mes.signatures.verify_signature`).
"""

from __future__ import annotations

import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mes.db import Base, utc_now
from mes.domain.lifecycle import Disposition
from mes.domain.signing import Meaning

DISPOSITIONS = ", ".join(f"'{d.value}'" for d in Disposition)
MEANINGS = ", ".join(f"'{m.value}'" for m in Meaning)


class ESignature(Base):
    __tablename__ = "e_signatures"
    __table_args__ = (
        CheckConstraint(f"meaning IN ({MEANINGS})", name="known_meaning"),
        CheckConstraint("method IN ('pin', 'password+totp')", name="known_method"),
        Index("ix_e_signatures_record_type_record_id", "record_type", "record_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    signer_name: Mapped[str] = mapped_column(String(200))
    meaning: Mapped[str] = mapped_column(String(16))
    record_type: Mapped[str] = mapped_column(String(32))
    record_id: Mapped[int]
    record_hash: Mapped[str] = mapped_column(String(64))
    signed_at: Mapped[datetime.datetime] = mapped_column(default=utc_now)
    method: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str] = mapped_column(String(1000), default="")
    seal: Mapped[str] = mapped_column(String(64))


class Nonconformance(Base):
    """A unit found not to conform: it is held until quality dispositions it, signed."""

    __tablename__ = "nonconformances"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'dispositioned')", name="known_status"),
        CheckConstraint(
            f"disposition IS NULL OR disposition IN ({DISPOSITIONS})", name="known_disposition"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), index=True)
    execution_id: Mapped[int | None] = mapped_column(ForeignKey("step_executions.id"), default=None)
    description: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open")
    unit_status_before: Mapped[str] = mapped_column(String(12))
    raised_at: Mapped[datetime.datetime] = mapped_column(default=utc_now)
    raised_by_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    disposition: Mapped[str | None] = mapped_column(String(20), default=None)
    disposition_note: Mapped[str] = mapped_column(Text, default="")
    dispositioned_at: Mapped[datetime.datetime | None] = mapped_column(default=None)
    dispositioned_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), default=None)
    signature_id: Mapped[int | None] = mapped_column(ForeignKey("e_signatures.id"), default=None)
