"""The audit log table: append-only and hash-chained (`mes.audit` writes and verifies it).

`before` and `after` are stored as canonical JSON text, not as a JSON column: the hash
covers exactly the stored characters, and a database that normalises JSON (PostgreSQL's
jsonb reorders keys) would otherwise break every hash. `ts` is ISO 8601 UTC text for the
same reason.
"""

from __future__ import annotations

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mes.db import Base


class AuditEntry(Base):
    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    ts: Mapped[str] = mapped_column(String(32))
    actor_id: Mapped[int | None] = mapped_column(default=None)
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(32), index=True)
    entity_id: Mapped[str] = mapped_column(String(64))
    why: Mapped[str | None] = mapped_column(Text, default=None)
    before: Mapped[str | None] = mapped_column(Text, default=None)
    after: Mapped[str | None] = mapped_column(Text, default=None)
    export_controlled: Mapped[bool] = mapped_column(default=False)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)
