"""`plantgate audit show|verify`: read and check the hash-chained audit log."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from gateway.audit import AuditLog
from gateway.state import state_dir

audit_app = typer.Typer(help="The append-only, hash-chained audit log.", no_args_is_help=True)
StateOpt = Annotated[Path | None, typer.Option("--state-dir", help="State directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@audit_app.command()
def show(
    state: StateOpt = None,
    last: Annotated[int, typer.Option("--last", "-n", min=1, help="Newest N entries.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """The newest audit entries: who did what, when."""
    entries = AuditLog(state_dir(state)).entries()[-last:]
    for entry in entries:
        if as_json:
            typer.echo(json.dumps(asdict(entry), sort_keys=True))
        else:
            detail = ", ".join(
                f"{k}={str(v)[:12] if k == 'sha256' else v}"
                for k, v in entry.details.items()
                if v not in ("", None)
            )
            typer.echo(
                f"{entry.seq:>5} {entry.ts[:19]}Z {entry.actor:<18} {entry.action:<20} {detail}"
            )


@audit_app.command()
def verify(state: StateOpt = None, as_json: JsonOpt = False) -> None:
    """Check the hash chain; exit 1 and say where if anything was edited or removed."""
    result = AuditLog(state_dir(state)).verify()
    if as_json:
        typer.echo(json.dumps(asdict(result)))
    elif result.ok:
        typer.echo(f"audit log intact: {result.entries} entries, hash chain verified")
    else:
        for problem in result.problems:
            typer.echo(f"audit log: {problem}", err=True)
    if not result.ok:
        raise typer.Exit(1)
