"""Initial schema: people, parts, processes, production, quality, audit; and the guards.

Revision ID: 0001
Revises: none
Create Date: 2026-12-02

The tables as `mes.models` defines them, then the triggers of `mes.models.guards`
(append-only tables, frozen process revisions) for SQLite and PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from mes.models.guards import drop_guards, install_guards

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("ts", sa.String(length=32), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("entity", sa.String(length=32), nullable=False),
        sa.Column("entity_id", sa.String(length=64), nullable=False),
        sa.Column("why", sa.Text(), nullable=True),
        sa.Column("before", sa.Text(), nullable=True),
        sa.Column("after", sa.Text(), nullable=True),
        sa.Column("export_controlled", sa.Boolean(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_log")),
        sa.UniqueConstraint("hash", name=op.f("uq_audit_log_hash")),
    )
    op.create_index(op.f("ix_audit_log_entity"), "audit_log", ["entity"])

    op.create_table(
        "people",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("employee_number", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("us_person", sa.Boolean(), nullable=False),
        sa.Column("itar_authorised", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("pin_hash", sa.String(length=255), nullable=True),
        sa.Column("pin_failures", sa.Integer(), nullable=False),
        sa.Column("locked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=True),
        sa.Column("password_changed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("totp_secret", sa.String(length=255), nullable=True),
        sa.Column("totp_last_step", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("pin_failures >= 0", name=op.f("ck_people_pin_failures_positive")),
        sa.CheckConstraint(
            "us_person OR NOT itar_authorised", name=op.f("ck_people_itar_needs_us_person")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_people")),
        sa.UniqueConstraint("employee_number", name=op.f("uq_people_employee_number")),
    )
    op.create_table(
        "stations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("location", sa.String(length=200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stations")),
        sa.UniqueConstraint("code", name=op.f("uq_stations_code")),
    )
    op.create_table(
        "auth_sessions",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("station_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("csrf_token_hash", sa.String(length=128), nullable=False),
        sa.CheckConstraint(
            "kind IN ('operator', 'manage')", name=op.f("ck_auth_sessions_known_kind")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
            name=op.f("fk_auth_sessions_person_id_people"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["station_id"], ["stations.id"], name=op.f("fk_auth_sessions_station_id_stations")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_auth_sessions")),
    )
    op.create_index(op.f("ix_auth_sessions_person_id"), "auth_sessions", ["person_id"])
    op.create_index("ix_auth_sessions_expires_at", "auth_sessions", ["expires_at"])

    op.create_table(
        "badges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("token_hmac", sa.String(length=128), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issued_by_id", sa.Integer(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_reason", sa.String(length=500), nullable=True),
        sa.ForeignKeyConstraint(
            ["issued_by_id"], ["people.id"], name=op.f("fk_badges_issued_by_id_people")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.id"], name=op.f("fk_badges_person_id_people")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_badges")),
        sa.UniqueConstraint("token_hmac", name=op.f("uq_badges_token_hmac")),
    )
    op.create_index(op.f("ix_badges_person_id"), "badges", ["person_id"])

    op.create_table(
        "e_signatures",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("signer_name", sa.String(length=200), nullable=False),
        sa.Column("meaning", sa.String(length=16), nullable=False),
        sa.Column("record_type", sa.String(length=32), nullable=False),
        sa.Column("record_id", sa.Integer(), nullable=False),
        sa.Column("record_hash", sa.String(length=64), nullable=False),
        sa.Column("signed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("comment", sa.String(length=1000), nullable=False),
        sa.Column("seal", sa.String(length=64), nullable=False),
        sa.CheckConstraint(
            "meaning IN ('authored', 'reviewed', 'approved', 'performed', 'verified',"
            " 'dispositioned')",
            name=op.f("ck_e_signatures_known_meaning"),
        ),
        sa.CheckConstraint(
            "method IN ('pin', 'password+totp')", name=op.f("ck_e_signatures_known_method")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.id"], name=op.f("fk_e_signatures_person_id_people")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_e_signatures")),
    )
    op.create_index(
        "ix_e_signatures_record_type_record_id", "e_signatures", ["record_type", "record_id"]
    )

    op.create_table(
        "parts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("revision", sa.String(length=16), nullable=False),
        sa.Column("description", sa.String(length=500), nullable=False),
        sa.Column("tracking", sa.String(length=8), nullable=False),
        sa.Column("export_controlled", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "tracking IN ('none', 'lot', 'serial')", name=op.f("ck_parts_known_tracking")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["people.id"], name=op.f("fk_parts_created_by_id_people")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_parts")),
        sa.UniqueConstraint("number", "revision", name=op.f("uq_parts_number_revision")),
    )
    op.create_index(op.f("ix_parts_number"), "parts", ["number"])

    op.create_table(
        "person_roles",
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.CheckConstraint(
            "role IN ('operator', 'lead', 'engineer', 'quality', 'admin', 'auditor')",
            name=op.f("ck_person_roles_known_role"),
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["people.id"],
            name=op.f("fk_person_roles_person_id_people"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("person_id", "role", name=op.f("pk_person_roles")),
    )
    op.create_table(
        "lots",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("part_id", sa.Integer(), nullable=False),
        sa.Column("lot_number", sa.String(length=128), nullable=False),
        sa.Column("first_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_seen_by_id", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["first_seen_by_id"], ["people.id"], name=op.f("fk_lots_first_seen_by_id_people")
        ),
        sa.ForeignKeyConstraint(["part_id"], ["parts.id"], name=op.f("fk_lots_part_id_parts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lots")),
        sa.UniqueConstraint("part_id", "lot_number", name=op.f("uq_lots_part_id_lot_number")),
    )
    op.create_index(op.f("ix_lots_part_id"), "lots", ["part_id"])

    op.create_table(
        "processes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("part_id", sa.Integer(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("based_on_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("last_edited_by_id", sa.Integer(), nullable=True),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("submitted_by_id", sa.Integer(), nullable=True),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_by_id", sa.Integer(), nullable=True),
        sa.Column("release_signature_id", sa.Integer(), nullable=True),
        sa.Column("obsoleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('draft', 'review', 'released', 'obsolete')",
            name=op.f("ck_processes_known_status"),
        ),
        sa.CheckConstraint("revision >= 1", name=op.f("ck_processes_revision_positive")),
        sa.ForeignKeyConstraint(
            ["based_on_id"], ["processes.id"], name=op.f("fk_processes_based_on_id_processes")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["people.id"], name=op.f("fk_processes_created_by_id_people")
        ),
        sa.ForeignKeyConstraint(
            ["last_edited_by_id"], ["people.id"], name=op.f("fk_processes_last_edited_by_id_people")
        ),
        sa.ForeignKeyConstraint(["part_id"], ["parts.id"], name=op.f("fk_processes_part_id_parts")),
        sa.ForeignKeyConstraint(
            ["release_signature_id"],
            ["e_signatures.id"],
            name=op.f("fk_processes_release_signature_id_e_signatures"),
        ),
        sa.ForeignKeyConstraint(
            ["released_by_id"], ["people.id"], name=op.f("fk_processes_released_by_id_people")
        ),
        sa.ForeignKeyConstraint(
            ["submitted_by_id"], ["people.id"], name=op.f("fk_processes_submitted_by_id_people")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_processes")),
        sa.UniqueConstraint("part_id", "revision", name=op.f("uq_processes_part_id_revision")),
    )
    op.create_index(op.f("ix_processes_part_id"), "processes", ["part_id"])
    op.create_index(op.f("ix_processes_status"), "processes", ["status"])

    op.create_table(
        "process_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("process_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("instructions", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["process_id"],
            ["processes.id"],
            name=op.f("fk_process_steps_process_id_processes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_process_steps")),
        sa.UniqueConstraint(
            "process_id", "position", name=op.f("uq_process_steps_process_id_position")
        ),
    )
    op.create_table(
        "work_orders",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("number", sa.String(length=32), nullable=False),
        sa.Column("part_id", sa.Integer(), nullable=False),
        sa.Column("process_id", sa.Integer(), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("note", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "status IN ('open', 'closed')", name=op.f("ck_work_orders_known_status")
        ),
        sa.CheckConstraint("quantity >= 1", name=op.f("ck_work_orders_quantity_positive")),
        sa.ForeignKeyConstraint(
            ["closed_by_id"], ["people.id"], name=op.f("fk_work_orders_closed_by_id_people")
        ),
        sa.ForeignKeyConstraint(
            ["created_by_id"], ["people.id"], name=op.f("fk_work_orders_created_by_id_people")
        ),
        sa.ForeignKeyConstraint(
            ["part_id"], ["parts.id"], name=op.f("fk_work_orders_part_id_parts")
        ),
        sa.ForeignKeyConstraint(
            ["process_id"], ["processes.id"], name=op.f("fk_work_orders_process_id_processes")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_work_orders")),
        sa.UniqueConstraint("number", name=op.f("uq_work_orders_number")),
    )
    op.create_index(op.f("ix_work_orders_part_id"), "work_orders", ["part_id"])
    op.create_index(op.f("ix_work_orders_process_id"), "work_orders", ["process_id"])

    op.create_table(
        "step_actions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("required", sa.Boolean(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.CheckConstraint(
            "kind IN ('confirm', 'scan_serial', 'scan_component', 'measure', 'pass_fail',"
            " 'note', 'sign')",
            name=op.f("ck_step_actions_known_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["step_id"],
            ["process_steps.id"],
            name=op.f("fk_step_actions_step_id_process_steps"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_step_actions")),
        sa.UniqueConstraint("step_id", "position", name=op.f("uq_step_actions_step_id_position")),
    )
    op.create_table(
        "units",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("part_id", sa.Integer(), nullable=False),
        sa.Column("work_order_id", sa.Integer(), nullable=False),
        sa.Column("serial", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_by_id", sa.Integer(), nullable=True),
        sa.Column("started_station_id", sa.Integer(), nullable=True),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('in_progress', 'on_hold', 'completed', 'scrapped')",
            name=op.f("ck_units_known_status"),
        ),
        sa.ForeignKeyConstraint(["part_id"], ["parts.id"], name=op.f("fk_units_part_id_parts")),
        sa.ForeignKeyConstraint(
            ["started_by_id"], ["people.id"], name=op.f("fk_units_started_by_id_people")
        ),
        sa.ForeignKeyConstraint(
            ["started_station_id"],
            ["stations.id"],
            name=op.f("fk_units_started_station_id_stations"),
        ),
        sa.ForeignKeyConstraint(
            ["work_order_id"], ["work_orders.id"], name=op.f("fk_units_work_order_id_work_orders")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_units")),
        sa.UniqueConstraint("part_id", "serial", name=op.f("uq_units_part_id_serial")),
    )
    op.create_index(op.f("ix_units_work_order_id"), "units", ["work_order_id"])

    op.create_table(
        "step_executions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("step_id", sa.Integer(), nullable=False),
        sa.Column("station_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=8), nullable=False),
        sa.Column("corrects_id", sa.Integer(), nullable=True),
        sa.Column("correction_reason", sa.String(length=1000), nullable=True),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.CheckConstraint(
            "outcome IN ('passed', 'failed')", name=op.f("ck_step_executions_known_outcome")
        ),
        sa.ForeignKeyConstraint(
            ["corrects_id"],
            ["step_executions.id"],
            name=op.f("fk_step_executions_corrects_id_step_executions"),
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.id"], name=op.f("fk_step_executions_person_id_people")
        ),
        sa.ForeignKeyConstraint(
            ["station_id"], ["stations.id"], name=op.f("fk_step_executions_station_id_stations")
        ),
        sa.ForeignKeyConstraint(
            ["step_id"], ["process_steps.id"], name=op.f("fk_step_executions_step_id_process_steps")
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["units.id"], name=op.f("fk_step_executions_unit_id_units")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_step_executions")),
    )
    op.create_index("ix_step_executions_unit_id_step_id", "step_executions", ["unit_id", "step_id"])

    op.create_table(
        "action_records",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("execution_id", sa.Integer(), nullable=False),
        sa.Column("action_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=False),
        sa.Column("signature_id", sa.Integer(), nullable=True),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["action_id"],
            ["step_actions.id"],
            name=op.f("fk_action_records_action_id_step_actions"),
        ),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["step_executions.id"],
            name=op.f("fk_action_records_execution_id_step_executions"),
        ),
        sa.ForeignKeyConstraint(
            ["signature_id"],
            ["e_signatures.id"],
            name=op.f("fk_action_records_signature_id_e_signatures"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_action_records")),
    )
    op.create_index(op.f("ix_action_records_execution_id"), "action_records", ["execution_id"])

    op.create_table(
        "genealogy",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("parent_unit_id", sa.Integer(), nullable=False),
        sa.Column("child_unit_id", sa.Integer(), nullable=True),
        sa.Column("child_lot_id", sa.Integer(), nullable=True),
        sa.Column("step_id", sa.Integer(), nullable=True),
        sa.Column("execution_id", sa.Integer(), nullable=True),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removes_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=1000), nullable=True),
        sa.CheckConstraint(
            "(child_unit_id IS NULL) <> (child_lot_id IS NULL)", name=op.f("ck_genealogy_one_child")
        ),
        sa.ForeignKeyConstraint(
            ["child_lot_id"], ["lots.id"], name=op.f("fk_genealogy_child_lot_id_lots")
        ),
        sa.ForeignKeyConstraint(
            ["child_unit_id"], ["units.id"], name=op.f("fk_genealogy_child_unit_id_units")
        ),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["step_executions.id"],
            name=op.f("fk_genealogy_execution_id_step_executions"),
        ),
        sa.ForeignKeyConstraint(
            ["parent_unit_id"], ["units.id"], name=op.f("fk_genealogy_parent_unit_id_units")
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["people.id"], name=op.f("fk_genealogy_person_id_people")
        ),
        sa.ForeignKeyConstraint(
            ["removes_id"], ["genealogy.id"], name=op.f("fk_genealogy_removes_id_genealogy")
        ),
        sa.ForeignKeyConstraint(
            ["step_id"], ["process_steps.id"], name=op.f("fk_genealogy_step_id_process_steps")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_genealogy")),
    )
    op.create_index(op.f("ix_genealogy_child_lot_id"), "genealogy", ["child_lot_id"])
    op.create_index(op.f("ix_genealogy_child_unit_id"), "genealogy", ["child_unit_id"])
    op.create_index(op.f("ix_genealogy_parent_unit_id"), "genealogy", ["parent_unit_id"])

    op.create_table(
        "nonconformances",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("unit_id", sa.Integer(), nullable=False),
        sa.Column("execution_id", sa.Integer(), nullable=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("unit_status_before", sa.String(length=12), nullable=False),
        sa.Column("raised_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("raised_by_id", sa.Integer(), nullable=False),
        sa.Column("disposition", sa.String(length=20), nullable=True),
        sa.Column("disposition_note", sa.Text(), nullable=False),
        sa.Column("dispositioned_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("dispositioned_by_id", sa.Integer(), nullable=True),
        sa.Column("signature_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(
            "disposition IS NULL OR disposition IN ('use_as_is', 'rework', 'repair', 'scrap',"
            " 'return_to_vendor')",
            name=op.f("ck_nonconformances_known_disposition"),
        ),
        sa.CheckConstraint(
            "status IN ('open', 'dispositioned')", name=op.f("ck_nonconformances_known_status")
        ),
        sa.ForeignKeyConstraint(
            ["dispositioned_by_id"],
            ["people.id"],
            name=op.f("fk_nonconformances_dispositioned_by_id_people"),
        ),
        sa.ForeignKeyConstraint(
            ["execution_id"],
            ["step_executions.id"],
            name=op.f("fk_nonconformances_execution_id_step_executions"),
        ),
        sa.ForeignKeyConstraint(
            ["raised_by_id"], ["people.id"], name=op.f("fk_nonconformances_raised_by_id_people")
        ),
        sa.ForeignKeyConstraint(
            ["signature_id"],
            ["e_signatures.id"],
            name=op.f("fk_nonconformances_signature_id_e_signatures"),
        ),
        sa.ForeignKeyConstraint(
            ["unit_id"], ["units.id"], name=op.f("fk_nonconformances_unit_id_units")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_nonconformances")),
    )
    op.create_index(op.f("ix_nonconformances_unit_id"), "nonconformances", ["unit_id"])

    install_guards(op.get_bind())


def downgrade() -> None:
    drop_guards(op.get_bind())
    op.drop_table("nonconformances")
    op.drop_table("genealogy")
    op.drop_table("action_records")
    op.drop_table("step_executions")
    op.drop_table("units")
    op.drop_table("step_actions")
    op.drop_table("work_orders")
    op.drop_table("process_steps")
    op.drop_table("processes")
    op.drop_table("lots")
    op.drop_table("person_roles")
    op.drop_table("parts")
    op.drop_table("e_signatures")
    op.drop_table("badges")
    op.drop_table("auth_sessions")
    op.drop_table("stations")
    op.drop_table("people")
    op.drop_table("audit_log")
