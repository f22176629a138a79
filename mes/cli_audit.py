"""`plantgate mes ...`: the MES database and its audit trail from the command line.

    plantgate mes db upgrade      migrate the database to the current schema (creates it)
    plantgate mes db check        exit 1 unless the database is at the newest revision with
                                  no difference from the models
    plantgate mes audit verify    check the hash chain and the anchor; exit 1 and say what
                                  is wrong (edited, deleted, reordered entries)
    plantgate mes audit show      the newest entries

`mes_app` is the `mes` group; `gateway.cli` mounts it, and `plantgate mes serve` joins it
from `mes.cli_serve`. Exit codes follow DESIGN §4: 0 ok, 1 failed, 2 bad input. A broken
chain is also sent to plantgated as a `mes.audit_broken` event, for the watcher.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from gateway.events import Event, send_event
from mes.config import MesSettings, SettingsError, load_settings

mes_app = typer.Typer(help="The MES application: database, audit trail.", no_args_is_help=True)
db_app = typer.Typer(help="The MES database schema (Alembic migrations).", no_args_is_help=True)
audit_app = typer.Typer(help="The MES audit trail (hash-chained).", no_args_is_help=True)
mes_app.add_typer(db_app, name="db")
mes_app.add_typer(audit_app, name="audit")

StateOpt = Annotated[Path | None, typer.Option("--state-dir", help="State directory.")]
UrlOpt = Annotated[
    str | None,
    typer.Option("--database-url", help="SQLAlchemy URL (default: SQLite in the state dir)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


def _settings(state: Path | None, url: str | None) -> MesSettings:
    try:
        return load_settings(state, database_url=url)
    except SettingsError as exc:
        typer.echo(f"plantgate mes: error: {exc}", err=True)
        raise typer.Exit(2) from None


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"plantgate mes: error: {message}", err=True)
    return typer.Exit(code)


def _existing(settings: MesSettings) -> MesSettings:
    """Refuse to read a SQLite database that is not there (opening would create it)."""
    from sqlalchemy.engine import make_url

    if settings.is_sqlite:
        database = make_url(settings.database_url).database or ""
        if database not in ("", ":memory:") and not Path(database).exists():
            raise _fail(f"no MES database at {database}: run `plantgate mes db upgrade` first")
    return settings


@db_app.command()
def upgrade(state: StateOpt = None, database_url: UrlOpt = None) -> None:
    """Migrate the database to the newest schema (an empty database is created)."""
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from mes import migrations

    settings = _settings(state, database_url)
    try:
        migrations.upgrade(settings.database_url)
        revision = migrations.current(settings.database_url)
    except ArgumentError as exc:
        raise _fail(f"bad database URL: {exc}", 2) from None
    except SQLAlchemyError as exc:
        raise _fail(f"migration failed: {exc}") from None
    typer.echo(f"MES database at revision {revision}")


@db_app.command()
def check(state: StateOpt = None, database_url: UrlOpt = None) -> None:
    """Exit 1 unless the database is at the newest revision and matches the models."""
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from mes import migrations

    settings = _existing(_settings(state, database_url))
    try:
        current, newest = migrations.current(settings.database_url), migrations.head()
        differences = migrations.drift(settings.database_url) if current == newest else []
    except ArgumentError as exc:
        raise _fail(f"bad database URL: {exc}", 2) from None
    except SQLAlchemyError as exc:
        raise _fail(f"cannot read the database: {exc}") from None
    if current != newest:
        raise _fail(f"database at revision {current}, newest is {newest}: run `mes db upgrade`")
    if differences:
        for difference in differences:
            typer.echo(f"drift: {difference}", err=True)
        raise typer.Exit(1)
    typer.echo(f"MES database at revision {current}, no drift from the models")


@audit_app.command()
def verify(state: StateOpt = None, database_url: UrlOpt = None, as_json: JsonOpt = False) -> None:
    """Check the hash chain and its anchor; exit 1 and say where if anything changed."""
    from sqlalchemy.exc import ArgumentError, SQLAlchemyError

    from mes import audit
    from mes.db import make_engine, make_sessionmaker

    settings = _existing(_settings(state, database_url))
    try:
        engine = make_engine(settings.database_url)
        with make_sessionmaker(engine)() as session:
            report = audit.verify(session, settings.audit_anchor)
        engine.dispose()
    except ArgumentError as exc:
        raise _fail(f"bad database URL: {exc}", 2) from None
    except SQLAlchemyError as exc:
        raise _fail(f"cannot read the audit trail: {exc}") from None
    if as_json:
        typer.echo(json.dumps(asdict(report)))
    elif report.ok:
        typer.echo(f"MES audit trail intact: {report.entries} entries, hash chain verified")
    else:
        for problem in report.problems:
            typer.echo(f"MES audit trail: {problem.message}", err=True)
    if not report.ok:
        fields = {"problems": len(report.problems), "first": report.problems[0].message}
        send_event(settings.state_dir, Event("mes.audit_broken", "plantgate-mes", fields))
        raise typer.Exit(1)


@audit_app.command()
def show(
    state: StateOpt = None,
    database_url: UrlOpt = None,
    last: Annotated[int, typer.Option("--last", "-n", min=1, max=10_000)] = 20,
    as_json: JsonOpt = False,
) -> None:
    """The newest audit entries (including export-controlled ones: this is the box's
    administrator reading its own database)."""
    from sqlalchemy.exc import SQLAlchemyError

    from mes import audit
    from mes.db import make_engine, make_sessionmaker

    settings = _existing(_settings(state, database_url))
    try:
        engine = make_engine(settings.database_url)
        with make_sessionmaker(engine)() as session:
            entries = list(audit.visible_entries(session, cleared=True, limit=last))
        engine.dispose()
    except SQLAlchemyError as exc:
        raise _fail(f"cannot read the audit trail: {exc}") from None
    for entry in reversed(entries):
        if as_json:
            data = {k: getattr(entry, k) for k in ("seq", "ts", "actor", "action", "entity")}
            typer.echo(json.dumps({**data, "entity_id": entry.entity_id, "why": entry.why}))
        else:
            why = f"  ({entry.why})" if entry.why else ""
            typer.echo(
                f"{entry.seq:>6} {entry.ts[:19]}Z {entry.actor:<24} {entry.action:<28} "
                f"{entry.entity} {entry.entity_id}{why}"
            )
