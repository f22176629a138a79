"""`plantgate lab up|down|status|exec`: the namespace lab from the command line.

Rich tables for people, `--json` for scripts. Exit codes follow DESIGN §4: 0 ok, 1 the operation
failed, 2 bad input (nothing changed). Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:  # the lab pulls in pyroute2 and dnspython: load it only for lab commands
    from gateway.lab import probe
    from gateway.lab.lab import LabStatus

DEFAULT_POLICY = Path("policies/lab.yaml")
WATCHER_REPORT_OLD_S = 30.0  # the watcher rewrites its report every 5 s while it runs

T = TypeVar("T")

lab_app = typer.Typer(
    help="The namespace lab: a whole plant (gateway, hubs, plant, internet) on one machine.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

PrefixOpt = Annotated[
    str, typer.Option("--prefix", "-p", help="Lab name prefix (namespaces PREFIX-HOST).")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]

# Not a terminal (make run in CI, a pipe): keep table rows on one line each.
_out = Console(width=None if sys.stdout.isatty() else 120)


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"plantgate lab: error: {message}", err=True)
    raise typer.Exit(code)


def _guarded(action: Callable[[], T]) -> T:
    """Run `action`, mapping bad input to exit 2 and operational failures to exit 1."""
    from gateway.lab.lab import LabError

    try:
        return action()
    except ValueError as exc:
        _fail(str(exc), 2)
    except (LabError, OSError) as exc:
        _fail(str(exc), 1)


def _need_root() -> None:
    if os.geteuid() != 0:
        _fail("the lab needs root (network namespaces); run it with sudo", 1)


def _print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


# ---------------------------------------------------------------- rendering


def _hosts_table(status: LabStatus) -> Table:
    table = Table(title=f"lab {status.prefix}: hosts", title_justify="left")
    for column in ("host", "interface", "state", "addresses"):
        table.add_column(column, no_wrap=True)
    for host in status.hosts:
        links = [link for link in host.links if link.ifname != "lo"]
        for i, link in enumerate(links):
            state = link.operstate if link.admin_up else "admin down"
            colour = "green" if link.operstate == "UP" else "yellow"
            ifname = link.ifname + (f" @{link.master}" if link.master else "")
            name = host.name if i == 0 else ""
            table.add_row(name, ifname, f"[{colour}]{state}[/]", "\n".join(link.addresses))
    return table


def _routes_table(status: LabStatus) -> Table:
    table = Table(title=f"lab {status.prefix}: routes", title_justify="left")
    table.add_column("host", no_wrap=True)
    table.add_column("routes")
    for host in status.hosts:
        routes = [f"{r.dst} via {r.via}" for r in host.routes if r.via]
        if routes:
            table.add_row(host.name, "\n".join(routes))
    return table


def _services_table(status: LabStatus) -> Table:
    table = Table(title=f"lab {status.prefix}: services", title_justify="left")
    for column in ("service", "host", "pid", "state", "log"):
        table.add_column(column)
    for svc in status.services:
        state = "[green]running[/]" if svc.running else "[red]not running[/]"
        table.add_row(svc.name, svc.host, str(svc.pid or "-"), state, svc.log)
    return table


def _print_status(status: LabStatus) -> None:
    if status.state == "absent":
        _out.print(f"lab [bold]{status.prefix}[/]: not up (directory {status.directory})")
        return
    colour = "green" if status.state == "up" else "red"
    _out.print(
        f"lab [bold]{status.prefix}[/]: [{colour}]{status.state}[/], {status.hubs} hubs, "
        f"directory {status.directory}"
    )
    for problem in status.problems:
        _out.print(f"  [red]•[/] {problem}")
    _out.print(_hosts_table(status))
    _out.print(_routes_table(status))
    _out.print(_services_table(status))
    if status.tunnel is not None:
        _out.print(_tunnel_line(status), highlight=False)
    if status.watcher is not None:
        _out.print(_watcher_line(status), highlight=False)


def _tunnel_line(status: LabStatus) -> str:
    """plantgated's view of the support tunnel, and the concentrator's handshake age."""
    tunnel = status.tunnel
    assert tunnel is not None
    colour = {"up": "green", "connecting": "yellow", "disabled": "dim"}.get(
        tunnel.state or "", "red"
    )
    line = f"support tunnel: [{colour}]{tunnel.state or 'no report'}[/]"
    if tunnel.reason:
        line += f" ({escape(tunnel.reason)})"
    if tunnel.endpoint:
        line += f", gw → {tunnel.endpoint}"
    if tunnel.concentrator_handshake_age_s is not None:
        line += f"; concentrator: handshake {tunnel.concentrator_handshake_age_s:.0f} s ago"
    return line


def _watcher_line(status: LabStatus) -> str:
    """plantgated's traffic watcher: its state and mode, detectors, events in and lost."""
    watcher = status.watcher
    assert watcher is not None
    colour = {"running": "green", "waiting": "yellow"}.get(watcher.state or "", "red")
    line = f"traffic watcher: [{colour}]{watcher.state or 'no report'}[/]"
    if watcher.state is None:
        return line
    if watcher.mode:
        line += f" ({watcher.mode})"
    line += f", {watcher.detectors} detectors, {watcher.events} events in"
    line += f", [red]{watcher.lost} lost[/]" if watcher.lost else ", none lost"
    age = watcher.report_age_s
    if watcher.state == "running" and age is not None and age > WATCHER_REPORT_OLD_S:
        line += f" [red](old report: {age:.0f} s)[/]"
    return line


def _probe_table(results: Sequence[probe.ProbeResult]) -> Table:
    table = Table(title="port matrix, real packets", title_justify="left")
    for column in ("what", "path", "service", "expect", "got", ""):
        table.add_column(column, no_wrap=column != "what")
    for res in results:
        p = res.probe
        path = f"{p.src} → {p.dst} {p.addr}"
        match = "[green]✓[/]" if res.matched else "[red]✗[/]"
        got = res.verdict if res.matched else f"[red]{res.verdict}[/]"
        table.add_row(p.label, path, p.service, p.expect, got, match)
    return table


def _probe_dict(res: probe.ProbeResult) -> dict[str, Any]:
    return {**asdict(res), "matched": res.matched}


# ---------------------------------------------------------------- commands


@lab_app.command("up")
def up_cmd(
    hubs: Annotated[int, typer.Option("--hubs", "-n", help="Number of hubs (1-200).")] = 3,
    prefix: PrefixOpt = "pg",
    policy: Annotated[
        Path, typer.Option("--policy", help="Policy YAML for plantgated in gw.")
    ] = DEFAULT_POLICY,
    no_daemon: Annotated[
        bool, typer.Option("--no-daemon", help="Do not start plantgated (no firewall in gw).")
    ] = False,
    run_probe: Annotated[
        bool, typer.Option("--probe", help="Then send real packets along the port matrix.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Build the lab (harmless when it is already up) and start its services."""
    from gateway.lab import lab, probe

    _need_root()
    status = _guarded(lambda: lab.up(prefix, hubs, None if no_daemon else policy))
    results = (
        _guarded(lambda: probe.run_probes(prefix, probe.matrix_probes(hubs))) if run_probe else []
    )
    mismatched = [r for r in results if not r.matched]
    if as_json:
        _print_json({"status": status.to_dict(), "probes": [_probe_dict(r) for r in results]})
    else:
        _print_status(status)
        if results:
            _out.print(_probe_table(results))
            summary = f"{len(results) - len(mismatched)} of {len(results)} probes match the matrix"
            _out.print(f"[{'red' if mismatched else 'green'}]{summary}[/]")
        _out.print(f"Take it down with: sudo make down  (or: plantgate lab down --prefix {prefix})")
    if mismatched:
        raise typer.Exit(1)


@lab_app.command("down")
def down_cmd(prefix: PrefixOpt = "pg", as_json: JsonOpt = False) -> None:
    """Stop the lab's processes and remove its namespaces (works after a crash too)."""
    from gateway.lab import lab

    _need_root()
    report = _guarded(lambda: lab.down(prefix))
    if as_json:
        _print_json(asdict(report))
    elif not report.namespaces:
        _out.print(f"lab [bold]{prefix}[/]: nothing to remove")
    else:
        _out.print(
            f"lab [bold]{prefix}[/] down: removed {len(report.namespaces)} namespaces, "
            f"stopped {len(report.killed)} processes ({report.seconds:.2f} s)"
        )


@lab_app.command("status")
def status_cmd(prefix: PrefixOpt = "pg", as_json: JsonOpt = False) -> None:
    """Hosts, addresses, link states, running services and the lab directory."""
    from gateway.lab import lab

    status = _guarded(lambda: lab.status(prefix))
    if as_json:
        _print_json(status.to_dict())
    else:
        _print_status(status)


@lab_app.command(
    "exec", context_settings={"ignore_unknown_options": True, "allow_extra_args": False}
)
def exec_cmd(
    host: Annotated[str, typer.Argument(help="gw, hubN, plant, upstream or hubsw.")],
    command: Annotated[list[str], typer.Argument(help="The command, after `--`.")],
    prefix: PrefixOpt = "pg",
) -> None:
    """Run a command on a lab host: plantgate lab exec hub1 -- ping -c1 gw.plant.test"""
    from gateway.lab import lab

    _need_root()
    sys.stdout.flush()
    code = _guarded(lambda: lab.exec_in(prefix, host, command))
    raise typer.Exit(code)
