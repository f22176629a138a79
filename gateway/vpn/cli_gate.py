"""`plantgate gate request|approve|deny|open|close|list|token`: the support gate by hand.

Who acts is the invoking user (sudo's caller if any), or `--as NAME` for automation and
tests. Exit codes (DESIGN §4): 0 done; 1 refused by the gate's rules (not eligible,
self-approval, not enough approvals, expired, wrong state) or by the kernel; 2 bad input
(an unknown staff member or request, a malformed duration, time or target).
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from gateway.state import state_dir
from gateway.vpn.gate import GateRequest, format_duration, when
from gateway.vpn.targets import GateError

T = TypeVar("T")
gate_app = typer.Typer(
    help="The support gate: request, approve, open and close time-boxed support access.",
    no_args_is_help=True,
)
token_app = typer.Typer(help="Bearer tokens for the local admin API.", no_args_is_help=True)
gate_app.add_typer(token_app, name="token")

StateOpt = Annotated[Path | None, typer.Option("--state-dir", help="State directory.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
AsOpt = Annotated[
    str | None, typer.Option("--as", help="Act as this person (default: the invoking user).")
]
IdArg = Annotated[int, typer.Argument(help="Request number.", min=1)]
_out = Console(width=140)
EXIT = {"invalid": 2, "missing": 2, "refused": 1}


def _fail(message: str, code: int) -> NoReturn:
    typer.echo(f"plantgate gate: error: {message}", err=True)
    raise typer.Exit(code)


def _run(action: Callable[[], T]) -> T:
    try:
        return action()
    except GateError as exc:
        _fail(exc.message, EXIT[exc.kind])
    except OSError as exc:
        _fail(str(exc), 1)


def _who(name: str | None) -> str:
    from gateway.policy.operations import invoking_user
    from gateway.vpn.tokens import check_person

    return _run(lambda: check_person(name or invoking_user()))


def _parse_start(text: str | None) -> datetime.datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.datetime.fromisoformat(text)
    except ValueError:
        _fail(f"--start '{text}' is not a time: expected ISO 8601, like 2025-03-01T14:00Z", 2)
    if moment.tzinfo is None:
        _fail(f"--start '{text}' needs a UTC offset, like {text}Z or {text}+01:00", 2)
    return moment.astimezone(datetime.UTC)


def describe(request: GateRequest) -> str:
    """One paragraph about a request, for people."""
    targets = ", ".join(t.label() for t in request.targets)
    lines = [
        f"request {request.id} [{request.status}]: {request.staff} ({request.address}) -> "
        f"{targets}",
        f"  window {format_duration(request.window_s)}: {when(request.start)} to "
        f"{when(request.end)}",
        f"  reason: {request.reason}" + (f" (ticket {request.ticket})" if request.ticket else ""),
        f"  requested by {request.requester} at {when(request.created)}",
    ]
    lines += [f"  approved by {a.who} at {when(a.at)}" for a in request.approvals]
    if request.status in ("requested", "approved"):
        lines.append(f"  must be opened before {when(min(request.expires, request.end))}")
    if request.opened_at:
        lines.append(f"  opened by {request.opened_by} at {when(request.opened_at)}")
    if request.closed_at:
        lines.append(
            f"  {request.status} at {when(request.closed_at)} by {request.closed_by}"
            + (f": {request.note}" if request.note else "")
        )
    return "\n".join(lines)


def _show(request: GateRequest, as_json: bool) -> None:
    if as_json:
        typer.echo(request.model_dump_json())
    else:
        typer.echo(describe(request))


@gate_app.command()
def request(
    staff: Annotated[str, typer.Argument(help="The staff member to grant (support_vpn.staff).")],
    to: Annotated[
        list[str],
        typer.Option("--to", help="Target ADDRESS[:SERVICE] or self[:SERVICE]; repeatable."),
    ],
    window: Annotated[str, typer.Option("--for", help="The window: 2h, 90m, 1h30m.")],
    reason: Annotated[str, typer.Option("--reason", help="What the session is for.")],
    start: Annotated[
        str | None, typer.Option("--start", help="ISO 8601 with offset (default: now).")
    ] = None,
    ticket: Annotated[str | None, typer.Option("--ticket", help="Ticket reference.")] = None,
    who: AsOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Ask for a support window for STAFF on the given targets."""
    from gateway.vpn.gateservice import GateService

    person = _who(who)
    begin = _parse_start(start)
    service = GateService(state_dir(state))
    made = _run(
        lambda: service.request(
            staff, to, window, reason=reason, requester=person, start=begin, ticket=ticket
        )
    )
    _show(made, as_json)


@gate_app.command()
def approve(
    number: IdArg, who: AsOpt = None, state: StateOpt = None, as_json: JsonOpt = False
) -> None:
    """Approve a request (never your own)."""
    from gateway.vpn.gateservice import GateService

    person = _who(who)
    _show(_run(lambda: GateService(state_dir(state)).approve(number, person)), as_json)


@gate_app.command()
def deny(
    number: IdArg,
    reason: Annotated[str, typer.Option("--reason", help="Why it is refused.")],
    who: AsOpt = None,
    state: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Refuse (or withdraw) a request that is not open."""
    from gateway.vpn.gateservice import GateService

    person = _who(who)
    _show(_run(lambda: GateService(state_dir(state)).deny(number, person, reason)), as_json)


@gate_app.command("open")
def open_(
    number: IdArg, who: AsOpt = None, state: StateOpt = None, as_json: JsonOpt = False
) -> None:
    """Open an approved request's window: the kernel lets the staff member in until it ends."""
    from gateway.vpn.gateservice import GateService

    person = _who(who)
    _show(_run(lambda: GateService(state_dir(state)).open(number, person)), as_json)


@gate_app.command()
def close(
    number: IdArg, who: AsOpt = None, state: StateOpt = None, as_json: JsonOpt = False
) -> None:
    """Close an open gate now, ending its sessions."""
    from gateway.vpn.gateservice import GateService

    person = _who(who)
    _show(_run(lambda: GateService(state_dir(state)).close(number, person)), as_json)


@gate_app.command("list")
def list_(
    include_all: Annotated[
        bool, typer.Option("--all", help="Also closed, expired and denied requests.")
    ] = False,
    state: StateOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Requests waiting, approved or open (with --all, every request)."""
    from gateway.vpn.gateservice import GateService

    found = _run(lambda: GateService(state_dir(state)).list_requests(include_all))
    if as_json:
        typer.echo(json.dumps([json.loads(r.model_dump_json()) for r in found]))
        return
    if not found:
        typer.echo(
            "no gate requests" + ("" if include_all else " waiting or open (--all: every one)")
        )
        return
    table = Table("id", "status", "staff", "targets", "window (UTC)", "requester", "approvals")
    for r in found:
        table.add_row(
            str(r.id),
            r.status,
            r.staff,
            "\n".join(t.label() for t in r.targets),
            f"{r.start:%Y-%m-%d %H:%M:%S} +{format_duration(r.window_s)}",
            r.requester,
            ", ".join(a.who for a in r.approvals) or "—",
        )
    _out.print(table)


@token_app.command("create")
def token_create(
    name: Annotated[str, typer.Argument(help="The person the token acts as.")],
    state: StateOpt = None,
) -> None:
    """Make an API token for NAME and print it once (only its hash is kept)."""
    from gateway.vpn.tokens import create_token

    token = _run(lambda: create_token(state_dir(state), name))
    typer.echo(token)
    typer.echo(f"token for {name}: store it now, it is not shown again", err=True)
