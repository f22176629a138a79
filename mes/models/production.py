"""Production records: work orders, units, step executions, action records, genealogy.

`StepExecution`, `ActionRecord` and `Genealogy` rows are append-only (database triggers
refuse UPDATE and DELETE): a correction is a new execution that names the one it corrects,
and a component taken out in rework is a new genealogy row that names the link it removes.
"""

from __future__ import annotations

import datetime
from typing import Any

from sqlalchemy import JSON, CheckConstraint, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from mes.db import Base, utc_now


class WorkOrder(Base):
    """An order to build `quantity` units of a part with one frozen process revision."""

    __tablename__ = "work_orders"
    __table_args__ = (
        CheckConstraint("status IN ('open', 'closed')", name="known_status"),
        CheckConstraint("quantity >= 1", name="quantity_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    part_id: Mapped[int] = mapped_column(ForeignKey("parts.id"), index=True)
    process_id: Mapped[int] = mapped_column(ForeignKey("processes.id"), index=True)
    quantity: Mapped[int]
    status: Mapped[str] = mapped_column(String(8), default="open")
    note: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[datetime.datetime] = mapped_column(default=utc_now)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), default=None)
    closed_at: Mapped[datetime.datetime | None] = mapped_column(default=None)
    closed_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), default=None)


class Unit(Base):
    """One unit built: serial unique per part."""

    __tablename__ = "units"
    __table_args__ = (
        UniqueConstraint("part_id", "serial"),
        CheckConstraint(
            "status IN ('in_progress', 'on_hold', 'completed', 'scrapped')", name="known_status"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    part_id: Mapped[int] = mapped_column(ForeignKey("parts.id"))
    work_order_id: Mapped[int] = mapped_column(ForeignKey("work_orders.id"), index=True)
    serial: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(12), default="in_progress")
    started_at: Mapped[datetime.datetime] = mapped_column(default=utc_now)
    started_by_id: Mapped[int | None] = mapped_column(ForeignKey("people.id"), default=None)
    started_station_id: Mapped[int | None] = mapped_column(ForeignKey("stations.id"), default=None)
    completed_at: Mapped[datetime.datetime | None] = mapped_column(default=None)


class StepExecution(Base):
    """One recorded performance of a process step on a unit (append-only)."""

    __tablename__ = "step_executions"
    __table_args__ = (
        CheckConstraint("outcome IN ('passed', 'failed')", name="known_outcome"),
        Index("ix_step_executions_unit_id_step_id", "unit_id", "step_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    step_id: Mapped[int] = mapped_column(ForeignKey("process_steps.id"))
    station_id: Mapped[int] = mapped_column(ForeignKey("stations.id"))
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    started_at: Mapped[datetime.datetime]
    recorded_at: Mapped[datetime.datetime] = mapped_column(default=utc_now)
    outcome: Mapped[str] = mapped_column(String(8))
    corrects_id: Mapped[int | None] = mapped_column(ForeignKey("step_executions.id"), default=None)
    correction_reason: Mapped[str | None] = mapped_column(String(1000), default=None)
    content_hash: Mapped[str] = mapped_column(String(64))

    records: Mapped[list[ActionRecord]] = relationship(
        order_by="ActionRecord.id", lazy="selectin", viewonly=True
    )


class ActionRecord(Base):
    """The answer to one action within a step execution (append-only)."""

    __tablename__ = "action_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    execution_id: Mapped[int] = mapped_column(ForeignKey("step_executions.id"), index=True)
    action_id: Mapped[int] = mapped_column(ForeignKey("step_actions.id"))
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[Any] = mapped_column(JSON)
    passed: Mapped[bool]
    signature_id: Mapped[int | None] = mapped_column(ForeignKey("e_signatures.id"), default=None)
    recorded_at: Mapped[datetime.datetime] = mapped_column(default=utc_now)


class Genealogy(Base):
    """Parent unit consumed a child unit or a lot at a step (append-only).

    A row with `removes_id` undoes an earlier link (a component taken out in rework); the
    earlier row stays, so the history shows both.
    """

    __tablename__ = "genealogy"
    __table_args__ = (
        CheckConstraint("(child_unit_id IS NULL) <> (child_lot_id IS NULL)", name="one_child"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    parent_unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"), index=True)
    child_unit_id: Mapped[int | None] = mapped_column(
        ForeignKey("units.id"), default=None, index=True
    )
    child_lot_id: Mapped[int | None] = mapped_column(
        ForeignKey("lots.id"), default=None, index=True
    )
    step_id: Mapped[int | None] = mapped_column(ForeignKey("process_steps.id"), default=None)
    execution_id: Mapped[int | None] = mapped_column(ForeignKey("step_executions.id"), default=None)
    person_id: Mapped[int] = mapped_column(ForeignKey("people.id"))
    recorded_at: Mapped[datetime.datetime] = mapped_column(default=utc_now)
    removes_id: Mapped[int | None] = mapped_column(ForeignKey("genealogy.id"), default=None)
    reason: Mapped[str | None] = mapped_column(String(1000), default=None)
