"""Database triggers: the last line of defence for append-only and frozen records.

The services already refuse these changes; the triggers refuse them for every other writer
too (a script, a console session, a bug), on SQLite and PostgreSQL alike:

- `audit_log`, `step_executions`, `action_records`, `genealogy`, `e_signatures`: no UPDATE,
  no DELETE (and on PostgreSQL no TRUNCATE).
- `process_steps`, `step_actions`: no INSERT, UPDATE or DELETE unless their process revision
  is a draft.
- `processes`: a revision in review keeps its content; a released one changes only to
  obsolete; an obsolete one not at all; only drafts may be deleted.

A database owner can still drop a trigger: that is what the audit chain's verification is
for. Migrations install these with `install_guards`; a change to them needs a new migration
that drops (`drop_guards`) and reinstalls them.
"""

from __future__ import annotations

from sqlalchemy import Connection, event

from mes.db import Base

APPEND_ONLY = ("audit_log", "step_executions", "action_records", "genealogy", "e_signatures")
FROZEN_STATES = "('review', 'released', 'obsolete')"
STEP_STATUS = "(SELECT status FROM processes WHERE id = {ref}.process_id)"
ACTION_STATUS = (
    "(SELECT p.status FROM processes p JOIN process_steps s ON s.process_id = p.id"
    " WHERE s.id = {ref}.step_id)"
)
PROCESS_FROZEN = f"""
    (OLD.status = 'obsolete')
    OR (OLD.status = 'released' AND (NEW.status NOT IN ('released', 'obsolete')
        OR NEW.content_hash <> OLD.content_hash OR NEW.title <> OLD.title
        OR NEW.part_id <> OLD.part_id OR NEW.revision <> OLD.revision))
    OR (OLD.status = 'review' AND NEW.content_hash <> OLD.content_hash)
    OR (OLD.status IN {FROZEN_STATES} AND NEW.part_id <> OLD.part_id)
"""


def _sqlite_statements() -> list[tuple[str, str]]:
    """(trigger name, CREATE statement) pairs for SQLite."""
    out: list[tuple[str, str]] = []

    def abort(name: str, timing: str, table: str, when: str | None, message: str) -> None:
        condition = f" WHEN {when}" if when else ""
        out.append(
            (
                name,
                f"CREATE TRIGGER IF NOT EXISTS {name} {timing} ON {table}{condition} "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END",
            )
        )

    for table in APPEND_ONLY:
        for op in ("UPDATE", "DELETE"):
            abort(
                f"trg_{table}_no_{op.lower()}",
                f"BEFORE {op}",
                table,
                None,
                f"{table} is append-only",
            )
    for table, status in (("process_steps", STEP_STATUS), ("step_actions", ACTION_STATUS)):
        message = f"{table}: the process revision is not a draft"
        abort(
            f"trg_{table}_frozen_insert",
            "BEFORE INSERT",
            table,
            f"{status.format(ref='NEW')} IN {FROZEN_STATES}",
            message,
        )
        abort(
            f"trg_{table}_frozen_update",
            "BEFORE UPDATE",
            table,
            f"{status.format(ref='OLD')} IN {FROZEN_STATES}"
            f" OR {status.format(ref='NEW')} IN {FROZEN_STATES}",
            message,
        )
        abort(
            f"trg_{table}_frozen_delete",
            "BEFORE DELETE",
            table,
            f"{status.format(ref='OLD')} IN {FROZEN_STATES}",
            message,
        )
    abort(
        "trg_processes_frozen_update",
        "BEFORE UPDATE",
        "processes",
        PROCESS_FROZEN,
        "processes: a released or reviewed revision cannot change",
    )
    abort(
        "trg_processes_frozen_delete",
        "BEFORE DELETE",
        "processes",
        "OLD.status <> 'draft'",
        "processes: only drafts can be deleted",
    )
    return out


PG_FUNCTIONS = [
    """
CREATE OR REPLACE FUNCTION mes_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION '% is append-only', TG_TABLE_NAME USING ERRCODE = '23000';
END $$
""",
    f"""
CREATE OR REPLACE FUNCTION mes_content_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  old_status text;
  new_status text;
BEGIN
  IF TG_TABLE_NAME = 'process_steps' THEN
    IF TG_OP <> 'INSERT' THEN
      SELECT status INTO old_status FROM processes WHERE id = OLD.process_id;
    END IF;
    IF TG_OP <> 'DELETE' THEN
      SELECT status INTO new_status FROM processes WHERE id = NEW.process_id;
    END IF;
  ELSE
    IF TG_OP <> 'INSERT' THEN
      SELECT p.status INTO old_status FROM processes p
        JOIN process_steps s ON s.process_id = p.id WHERE s.id = OLD.step_id;
    END IF;
    IF TG_OP <> 'DELETE' THEN
      SELECT p.status INTO new_status FROM processes p
        JOIN process_steps s ON s.process_id = p.id WHERE s.id = NEW.step_id;
    END IF;
  END IF;
  IF old_status IN {FROZEN_STATES} OR new_status IN {FROZEN_STATES} THEN
    RAISE EXCEPTION '%: the process revision is not a draft', TG_TABLE_NAME
      USING ERRCODE = '23000';
  END IF;
  IF TG_OP = 'DELETE' THEN RETURN OLD; END IF;
  RETURN NEW;
END $$
""",
    f"""
CREATE OR REPLACE FUNCTION mes_process_frozen() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'DELETE' THEN
    IF OLD.status <> 'draft' THEN
      RAISE EXCEPTION 'processes: only drafts can be deleted' USING ERRCODE = '23000';
    END IF;
    RETURN OLD;
  END IF;
  IF {PROCESS_FROZEN} THEN
    RAISE EXCEPTION 'processes: a released or reviewed revision cannot change'
      USING ERRCODE = '23000';
  END IF;
  RETURN NEW;
END $$
""",
]


def _pg_statements() -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for table in APPEND_ONLY:
        out.append(
            (
                f"trg_{table}_append_only",
                f"CREATE TRIGGER trg_{table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION mes_append_only()",
            )
        )
        out.append(
            (
                f"trg_{table}_no_truncate",
                f"CREATE TRIGGER trg_{table}_no_truncate BEFORE TRUNCATE ON {table} "
                "FOR EACH STATEMENT EXECUTE FUNCTION mes_append_only()",
            )
        )
    for table in ("process_steps", "step_actions"):
        out.append(
            (
                f"trg_{table}_frozen",
                f"CREATE TRIGGER trg_{table}_frozen BEFORE INSERT OR UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION mes_content_frozen()",
            )
        )
    out.append(
        (
            "trg_processes_frozen",
            "CREATE TRIGGER trg_processes_frozen BEFORE UPDATE OR DELETE ON processes "
            "FOR EACH ROW EXECUTE FUNCTION mes_process_frozen()",
        )
    )
    return out


def _trigger_table(name: str) -> str:
    for table in (*APPEND_ONLY, "process_steps", "step_actions", "processes"):
        if name.startswith(f"trg_{table}_"):
            return table
    raise ValueError(name)


def guard_triggers(dialect: str) -> list[str]:
    """The names of the triggers installed on `dialect` (empty for others)."""
    if dialect == "sqlite":
        return [name for name, _ in _sqlite_statements()]
    if dialect == "postgresql":
        return [name for name, _ in _pg_statements()]
    return []


def install_guards(connection: Connection) -> None:
    """Create the triggers (SQLite, PostgreSQL; other backends rely on the services)."""
    dialect = connection.dialect.name
    if dialect == "postgresql":
        for function in PG_FUNCTIONS:  # one statement per call; '%' is the driver's
            connection.exec_driver_sql(function.replace("%", "%%"))
        statements = _pg_statements()
    elif dialect == "sqlite":
        statements = _sqlite_statements()
    else:
        return
    for name, sql in statements:
        if dialect == "postgresql":  # reinstalling replaces (SQLite: IF NOT EXISTS)
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name} ON {_trigger_table(name)}")
        connection.exec_driver_sql(sql)


def drop_guards(connection: Connection) -> None:
    """Remove the triggers (a migration that changes them, or a test playing the DBA)."""
    dialect = connection.dialect.name
    for name in guard_triggers(dialect):
        if dialect == "postgresql":
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name} ON {_trigger_table(name)}")
        else:
            connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {name}")
    if dialect == "postgresql":
        for function in ("mes_append_only", "mes_content_frozen", "mes_process_frozen"):
            connection.exec_driver_sql(f"DROP FUNCTION IF EXISTS {function}()")


@event.listens_for(Base.metadata, "after_create")
def _after_create(_target: object, connection: Connection, **_kw: object) -> None:
    """`metadata.create_all` (tests) gets the same guards as a migrated database."""
    install_guards(connection)
