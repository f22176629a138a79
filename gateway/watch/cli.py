"""`plantgate baseline show|reset|freeze`: the watcher's learned conversations and devices.

    plantgate baseline show [--all] [--json] [--state-dir DIR]
    plantgate baseline freeze [--state-dir DIR]        stop learning now: protect
    plantgate baseline reset --yes [--state-dir DIR]   forget everything, learn again

Works on `<state>/watch/baseline.json` directly (gateway/watch/baseline.py); a running
plantgated takes a reset or freeze over within a second. Both are written to the audit log
(a reset hides every anomaly learned since) and announced on the daemon's event socket.
Exit codes: 0 ok, 1 the baseline could not be read or written, 2 bad input.
"""

from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

if TYPE_CHECKING:
    from gateway.watch.baseline import Baseline

baseline_app = typer.Typer(
    help="The traffic watcher's baseline: learned conversations and hub-segment devices.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
StateOpt = Annotated[
    Path | None,
    typer.Option("--state-dir", help="State directory (default: $PLANTGATE_STATE_DIR)."),
]
SHOWN = 50


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"plantgate baseline: error: {message}", err=True)
    raise typer.Exit(code)


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _configured(state: Path) -> tuple[str, float]:
    """The policy's detection mode and learning window (the defaults before any apply)."""
    from gateway.policy.detection import Detection
    from gateway.watch.service import current_policy

    policy = current_policy(state)()
    detection = policy.detection if policy is not None else Detection()
    return detection.mode, detection.learning_s


def _summary(baseline: Baseline, mode: str, learning_s: float, now: float) -> dict[str, Any]:
    current = baseline.mode("protecting" if mode == "protecting" else "learning", learning_s, now)
    ends = baseline.learning_ends("protecting" if mode == "protecting" else "learning", learning_s)
    return {
        "mode": current,
        "policy_mode": mode,
        "learning_window_s": learning_s,
        "started": baseline.started,
        "learning_ends": ends,
        "frozen_at": baseline.frozen_at,
        "generation": baseline.generation,
        "pairs": len(baseline.pairs),
        "assets": len(baseline.assets),
        "alerted": len(baseline.alerted),
        "overflow": baseline.overflow,
    }


def _record(state: Path, action: str, details: dict[str, Any]) -> None:
    """The audit log, and a best-effort event for a running daemon."""
    from gateway.audit import AuditLog
    from gateway.events import Event, send_event
    from gateway.policy.operations import invoking_user

    AuditLog(state).append(invoking_user(), f"watch.baseline_{action}", details)
    send_event(state, Event(f"watch.baseline_{action}", "plantgate-cli", details))


@baseline_app.command("show")
def show(
    state: StateOpt = None,
    everything: Annotated[bool, typer.Option("--all", help="List every pair and device.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """The mode, what was learned, and the pairs and devices (the first 50 unless --all)."""
    import time

    from gateway.state import state_dir
    from gateway.watch.baseline import BaselineStore

    root = state_dir(state)
    try:
        baseline = BaselineStore(root).read()
    except OSError as exc:
        _fail(str(exc))
    mode, learning_s = _configured(root)
    if baseline is None:
        if as_json:
            typer.echo(json.dumps({"baseline": None, "policy_mode": mode}))
        else:
            typer.echo("no baseline yet: plantgated has not started learning")
        return
    summary = _summary(baseline, mode, learning_s, time.time())
    if as_json:
        data = baseline.to_dict()
        typer.echo(json.dumps({**summary, "baseline": data}, sort_keys=True))
        return
    _print(baseline, summary, everything)


def _print(baseline: Baseline, summary: dict[str, Any], everything: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    out = Console(width=None if sys.stdout.isatty() else 120, highlight=False)
    if summary["frozen_at"] is not None:
        state = f"frozen at {_when(summary['frozen_at'])}"
    elif summary["learning_ends"] is not None:
        state = f"learning ends {_when(summary['learning_ends'])}"
    else:
        state = "policy mode protecting"
    out.print(f"mode: [bold]{summary['mode']}[/] ({state}); started {_when(baseline.started)}")
    out.print(
        f"{summary['pairs']} pairs, {summary['assets']} devices, {summary['alerted']} new "
        f"pairs alerted on, {summary['overflow']} not learned (full)"
    )
    pairs = Table(title="communication pairs", title_justify="left")
    for column in ("pair", "first seen", "last seen", "count"):
        pairs.add_column(column)
    items = sorted(baseline.pairs.items())
    for key, record in items if everything else items[:SHOWN]:
        pairs.add_row(key, _when(record.first), _when(record.last), str(record.count))
    out.print(pairs)
    if not everything and len(items) > SHOWN:
        out.print(f"... and {len(items) - SHOWN} more (--all)")
    assets = Table(title="devices on the hub segment", title_justify="left")
    for column in ("MAC", "addresses", "first seen", "last seen", "learned"):
        assets.add_column(column)
    devices = sorted(baseline.assets.items())
    for mac, asset in devices if everything else devices[:SHOWN]:
        learned = "yes" if asset.learned else "no (alerted)"
        assets.add_row(mac, ", ".join(asset.ips), _when(asset.first), _when(asset.last), learned)
    out.print(assets)


@baseline_app.command("freeze")
def freeze(state: StateOpt = None) -> None:
    """Stop learning now and protect with what was learned."""
    from gateway.state import state_dir
    from gateway.watch.baseline import BaselineStore

    root = state_dir(state)
    try:
        baseline = BaselineStore(root).freeze()
        _record(root, "freeze", {"pairs": len(baseline.pairs), "assets": len(baseline.assets)})
    except OSError as exc:
        _fail(str(exc))
    typer.echo(
        f"baseline frozen: {len(baseline.pairs)} pairs, {len(baseline.assets)} devices; protecting"
    )


@baseline_app.command("reset")
def reset(
    state: StateOpt = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
) -> None:
    """Forget every learned pair and device and start learning again."""
    from gateway.state import state_dir
    from gateway.watch.baseline import BaselineStore

    if not yes:
        if not sys.stdin.isatty():
            _fail("reset forgets everything learned: confirm with --yes", 2)
        typer.confirm("Forget every learned pair and device and learn again?", abort=True)
    root = state_dir(state)
    store = BaselineStore(root)
    try:
        before = store.read()
        store.reset()
        _record(
            root,
            "reset",
            {
                "pairs": len(before.pairs) if before else 0,
                "assets": len(before.assets) if before else 0,
            },
        )
    except OSError as exc:
        _fail(str(exc))
    typer.echo("baseline reset: learning again")
