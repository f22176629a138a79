"""`plantgate policy confirm|rollback|history|status|restore`: living with revisions.

Exit codes (DESIGN §4): 0 ok, 1 the operation cannot be done now (nothing pending, too late,
no such revision, the kernel refused), 2 bad input.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from gateway.events import utc_now
from gateway.policy.revisions import Revision, RevisionStore
from gateway.state import state_dir

StateOpt = Annotated[Path | None, typer.Option("--state-dir", help="State directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
_out = Console(width=120)


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"plantgate policy: error: {message}", err=True)
    raise typer.Exit(code)


def _guard(action: Any) -> Any:
    """Run an operation; its refusals and the kernel's become exit 1 with one clear line."""
    from gateway.policy.apply import ApplyError
    from gateway.policy.errors import PolicyError
    from gateway.policy.nft import NftError
    from gateway.policy.operations import OperationError

    try:
        return action()
    except (OperationError, NftError, OSError) as exc:
        _fail(str(exc))
    except (ApplyError, PolicyError) as exc:
        _fail(f"the stored policy could not be loaded:\n{exc}")


def confirm(state: StateOpt = None, as_json: JsonOpt = False) -> None:
    """Keep the pending revision (refused after its deadline)."""
    from gateway.policy.operations import confirm as confirm_pending

    revision = _guard(lambda: confirm_pending(state_dir(state)))
    if as_json:
        typer.echo(json.dumps({"ok": True, "revision": asdict(revision)}))
    else:
        typer.echo(f"revision {revision.number} confirmed")


def rollback(
    revision: Annotated[
        int | None, typer.Argument(help="Revision (default: the previous).")
    ] = None,
    state: StateOpt = None,
    message: Annotated[str, typer.Option("--message", "-m")] = "",
    confirm_within: Annotated[float | None, typer.Option("--confirm-within", min=5)] = None,
    as_json: JsonOpt = False,
) -> None:
    """Load an earlier revision's policy again, as a new revision."""
    from gateway.policy.operations import rollback as roll_back

    applied = _guard(
        lambda: roll_back(
            state_dir(state), revision, message=message, confirm_within=confirm_within
        )
    )
    new: Revision = applied.revision
    if as_json:
        typer.echo(json.dumps({"ok": True, "revision": asdict(new)}))
    else:
        typer.echo(f"revision {new.number}: rolled back to revision {new.of}")


def restore(state: StateOpt = None) -> None:
    """Load the last confirmed revision (what the appliance runs at boot)."""
    from gateway.policy.operations import restore as restore_confirmed

    revision = _guard(lambda: restore_confirmed(state_dir(state)))
    typer.echo(f"restored revision {revision.number} ({revision.file})")


def history(state: StateOpt = None, as_json: JsonOpt = False) -> None:
    """Every applied revision, newest last."""
    store = RevisionStore(state_dir(state))
    revisions = store.all()
    current = store.current()
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "current": current.number if current else None,
                    "revisions": [asdict(r) for r in revisions],
                }
            )
        )
        return
    if not revisions:
        typer.echo("no revisions yet")
        return
    table = Table("rev", "time (UTC)", "user", "kind", "status", "sha256", "file", "message")
    for r in revisions:
        mark = "*" if current and r.number == current.number else ""
        kind = f"{r.kind} of {r.of}" if r.of else r.kind
        table.add_row(
            f"{r.number}{mark}",
            r.created[:19].replace("T", " "),
            r.user,
            kind,
            r.status,
            r.sha256[:12],
            Path(r.file).name,
            r.message,
        )
    _out.print(table)
    _out.print("* = loaded now")


def status_data(state: Path) -> dict[str, Any]:
    """What is loaded, what is pending (with seconds left), for `status` and tools."""
    store = RevisionStore(state)
    current, pending = store.current(), store.pending()
    data: dict[str, Any] = {"current": asdict(current) if current else None, "pending": None}
    if pending is not None and pending.deadline_at() is not None:
        deadline = pending.deadline_at()
        assert deadline is not None
        left = (deadline - utc_now()).total_seconds()
        data["pending"] = {
            "revision": pending.number,
            "deadline": pending.deadline,
            "seconds_left": round(left, 1),
        }
    return data


def render_status(data: dict[str, Any]) -> str:
    current = data["current"]
    if current is None:
        return "no policy revision loaded by PlantGate"
    lines = [
        f"revision {current['number']} ({current['status']}): {Path(current['file']).name}, "
        f"applied {current['created'][:19].replace('T', ' ')} UTC by {current['user']}"
        + (f" — {current['message']}" if current["message"] else "")
    ]
    pending = data["pending"]
    if pending:
        when = datetime.datetime.fromisoformat(pending["deadline"])
        left = pending["seconds_left"]
        timing = f"{left:.0f} s left" if left >= 0 else f"overdue by {-left:.0f} s"
        lines.append(
            f"PENDING: revision {pending['revision']} reverts at {when:%H:%M:%S} UTC "
            f"({timing}) unless `plantgate policy confirm`"
        )
    return "\n".join(lines)


def status(
    state: StateOpt = None,
    repair: Annotated[
        bool, typer.Option("--repair", help="Load the current revision again if it drifted.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """What is loaded, a pending confirm and its deadline, and drift of the live table.

    Exits 1 when the live table differs from the current revision (after --repair, if it
    still does).
    """
    from gateway.policy.cli_plan import drift_json, live_drift, render_drift

    where = state_dir(state)
    data = status_data(where)
    check = live_drift(where)
    repaired = None
    if repair and check.drift is not None and not check.drift.clean:
        from gateway.policy.operations import repair as repair_current

        repaired = _guard(lambda: repair_current(where))
        check = live_drift(where)
    data["drift"] = drift_json(check.drift) if check.drift is not None else None
    data["drift_error"] = check.error
    data["repaired"] = repaired.number if repaired else None
    if as_json:
        typer.echo(json.dumps(data))
    else:
        typer.echo(render_status(data))
        if repaired is not None:
            typer.echo(f"repaired: revision {repaired.number} loaded again")
        if check.drift is not None:
            typer.echo(render_drift(check.drift))
        elif check.error:
            typer.echo(check.error)
    drifted = check.drift is not None and not check.drift.clean
    if drifted:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    for command in (confirm, rollback, restore, history, status):
        app.command()(command)
