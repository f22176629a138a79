"""`plantgate ntp status`: what the relay's chronyd says about its sources and its clock.

Asks chronyd over the instance's command socket (`<state>/ntp/chronyd.sock`), so it works
from any network namespace. Exit codes (DESIGN §4): 0 the relay answered (orphan mode
included: that is information, not failure), 1 chronyd is not running or did not answer.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:  # chrony adapters load only when a command runs
    from gateway.ntp.chronyd import RelayReport

ntp_app = typer.Typer(
    help="The NTP relay (chrony) that serves the hubs time.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

StateOpt = Annotated[
    Path | None,
    typer.Option("--state-dir", help="State directory (default: $PLANTGATE_STATE_DIR)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]

_out = Console(width=None if sys.stdout.isatty() else 120, highlight=False)


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"plantgate ntp: error: {message}", err=True)
    raise typer.Exit(code)


@ntp_app.command("status")
def status(state_dir: StateOpt = None, as_json: JsonOpt = False) -> None:
    """Sources, stratum, offset, last sync, reachability, and whether it serves as an orphan."""
    from gateway.ntp.chronyc import ChronycParseError
    from gateway.ntp.chronyd import ChronyError, NotRunningError, read_report
    from gateway.ntp.config import ChronyPaths
    from gateway.state import state_dir as resolve_state

    paths = ChronyPaths.under(resolve_state(state_dir))
    try:
        report = read_report(paths.socket)
    except NotRunningError as exc:
        _fail(
            f"the NTP relay is not running ({exc}); plantgated runs it while the loaded "
            "policy has a `time` section",
            1,
        )
    except (ChronyError, ChronycParseError) as exc:
        _fail(str(exc), 1)
    record = status_record(report, _orphan_stratum(paths.relay_file), time.time())
    if as_json:
        typer.echo(json.dumps(record, indent=2))
        return
    _print(record)


def _orphan_stratum(relay_file: Path) -> int | None:
    """The policy's orphan stratum, as plantgated wrote it beside the config."""
    try:
        value = json.loads(relay_file.read_text()).get("orphan_stratum")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) else None


# ---------------------------------------------------------------- pure: the record


def status_record(report: RelayReport, orphan_stratum: int | None, now: float) -> dict[str, Any]:
    """Everything `status` shows, as plain data (the --json answer)."""
    from gateway.ntp.chronyc import is_orphan

    tracking = report.tracking
    orphan = is_orphan(tracking, orphan_stratum)
    sources = []
    for source, name in zip(report.sources, report.names, strict=True):
        stats = report.stats_for(source.address)
        sources.append(
            {
                "name": name,
                "address": source.address,
                "mode": source.mode,
                "state": source.state,
                "stratum": source.stratum,
                "poll": source.poll,
                "reach": source.reach_octal,
                "answered_of_last_8": source.answered,
                "last_rx_s": source.last_rx,
                "offset_s": source.offset,
                "error_s": source.error,
                "jitter_s": stats.std_dev if stats is not None and stats.samples else None,
            }
        )
    return {
        "running": True,
        "orphan": orphan,
        "orphan_stratum": orphan_stratum,
        "tracking": {
            "reference": tracking.reference or ("LOCAL" if tracking.local else ""),
            "ref_id": tracking.ref_id,
            "stratum": tracking.stratum,
            "offset_s": tracking.correction,
            "last_offset_s": tracking.last_offset,
            "root_delay_s": tracking.root_delay,
            "root_dispersion_s": tracking.root_dispersion,
            "last_sync": None if tracking.local else tracking.ref_time,
            "last_sync_ago_s": None if tracking.local else max(0.0, now - tracking.ref_time),
            "leap": tracking.leap,
        },
        "sources": sources,
    }


# ---------------------------------------------------------------- text


def seconds(value: float | None, *, signed: bool = True) -> str:
    """A duration in the unit that reads best (ns, µs, ms, s); offsets carry their sign."""
    if value is None:
        return "-"
    size, sign = abs(value), "+" if signed else ""
    for limit, scale, unit in ((1e-6, 1e9, "ns"), (1e-3, 1e6, "µs"), (1.0, 1e3, "ms")):
        if size < limit:
            return f"{value * scale:{sign}.0f} {unit}"
    return f"{value:{sign}.3f} s"


def _ago(value: float | None) -> str:
    if value is None:
        return "never"
    return f"{value:.0f} s ago"


def _print(record: dict[str, Any]) -> None:
    tracking = record["tracking"]
    if record["orphan"]:
        _out.print(
            f"[bold yellow]ORPHAN: serving at stratum {tracking['stratum']} without upstream[/]"
        )
    else:
        _out.print(
            f"NTP relay: serving at stratum {tracking['stratum']}, synchronised to "
            f"{tracking['reference'] or '-'}"
        )
    last_sync = tracking["last_sync"]
    stamp = "none (local reference)"
    if last_sync is not None:
        clock = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(last_sync))
        stamp = f"{clock} ({_ago(tracking['last_sync_ago_s'])})"
    rows = (
        ("reference", f"{tracking['reference'] or '-'} ({tracking['ref_id']})"),
        ("stratum", str(tracking["stratum"])),
        ("offset", f"{seconds(tracking['offset_s'])} (NTP time minus system clock)"),
        ("last offset", seconds(tracking["last_offset_s"])),
        ("last sync", stamp),
        ("root delay", seconds(tracking["root_delay_s"], signed=False)),
        ("root dispersion", seconds(tracking["root_dispersion_s"], signed=False)),
        ("leap", tracking["leap"]),
    )
    for label, value in rows:
        _out.print(f"  {label:<16}{value}", markup=False)
    _out.print(_sources_table(record["sources"]))


def _sources_table(sources: list[dict[str, Any]]) -> Table:
    table = Table(title="sources", title_justify="left")
    for column in ("source", "state", "stratum", "reach", "last rx", "offset", "jitter"):
        table.add_column(column, justify="left" if column in ("source", "state") else "right")
    for src in sources:
        name = src["name"]
        label = name if name == src["address"] else f"{name} ({src['address']})"
        reach = f"{src['reach']} ({src['answered_of_last_8']} of last 8)"
        table.add_row(
            label,
            src["state"],
            str(src["stratum"]),
            reach,
            _ago(src["last_rx_s"]),
            f"{seconds(src['offset_s'])} ± {seconds(src['error_s'], signed=False)}",
            seconds(src["jitter_s"], signed=False),
        )
    if not sources:
        table.add_row("(no sources)", "", "", "", "", "", "")
    return table
