"""Process revisions (work instructions), their steps and their actions.

One `Process` row is one revision of the instructions for building one part. Its steps and
actions change only while it is a draft: the services refuse otherwise, and database
triggers (`mes.models.guards`) refuse it too, whoever writes.
"""

from __future__ import annotations

import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mes.db import Base, utc_now

ACTION_KINDS = "'confirm', 'scan_serial', 'scan_component', 'measure', 'pass_fail', 'note', 'sign'"


class Process(Base):
    __tablename__ = "processes"
    __table_args__ = (
        UniqueConstraint("part_id", "revision"),
        CheckConstraint(
            "status IN ('draft', 'review', 'released', 'obsolete')", name="known_status"
        ),
        CheckConstraint("revision >= 1", name="revision_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    part_id: Mapped[int] = mapped_column(ForeignKey("parts.id"), index=True)
    revision: Mapped[int]
    title: Mapped[str] = mapped_column(String(200))
    status: Mapped[str] = mapped_column(String(10), default="draft", index=True)
    content_hash: Mapped[str] = mapped_column(String(64))
    based_on_id: Mapped[int | None] = mapped_column(ForeignKey("processes.id"), default=None)
    created_at: Mapped[datetime.datetime] = mapped_column(default=utc_now)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), default=None)
    last_edited_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), default=None)
    submitted_at: Mapped[datetime.datetime | None] = mapped_column(default=None)
    submitted_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), default=None)
    released_at: Mapped[datetime.datetime | None] = mapped_column(default=None)
    released_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), default=None)
    release_signature_id: Mapped[int | None] = mapped_column(
        ForeignKey("e_signatures.id"), default=None
    )
    obsoleted_at: Mapped[datetime.datetime | None] = mapped_column(default=None)

    steps: Mapped[list[ProcessStep]] = relationship(
        back_populates="process",
        cascade="all, delete-orphan",
        order_by="ProcessStep.position",
        lazy="selectin",
    )


class ProcessStep(Base):
    __tablename__ = "process_steps"
    __table_args__ = (UniqueConstraint("process_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    process_id: Mapped[int] = mapped_column(ForeignKey("processes.id", ondelete="CASCADE"))
    position: Mapped[int]
    title: Mapped[str] = mapped_column(String(200))
    instructions: Mapped[str] = mapped_column(Text, default="")

    process: Mapped[Process] = relationship(back_populates="steps")
    actions: Mapped[list[StepAction]] = relationship(
        back_populates="step",
        cascade="all, delete-orphan",
        order_by="StepAction.position",
        lazy="selectin",
    )


class StepAction(Base):
    __tablename__ = "step_actions"
    __table_args__ = (
        UniqueConstraint("step_id", "position"),
        CheckConstraint(f"kind IN ({ACTION_KINDS})", name="known_kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    step_id: Mapped[int] = mapped_column(ForeignKey("process_steps.id", ondelete="CASCADE"))
    position: Mapped[int]
    kind: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(200))
    required: Mapped[bool] = mapped_column(default=True)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)

    step: Mapped[ProcessStep] = relationship(back_populates="actions")
