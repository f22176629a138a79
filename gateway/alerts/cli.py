"""`plantgate alerts tail`: read the alert feed, like `tail` reads a file.

    plantgate alerts tail [--format ecs|ocsf|cef|syslog] [--follow] [--after CURSOR]
                          [--lines N] [--state-dir DIR]

Through plantgated's feed socket (`<state>/run/alerts.sock`) when the daemon runs, else from
the spool directly (read only, complete records only), so alerts can be read on an appliance
whose daemon is down. Without `--after`, the last N alerts (default 10) are shown; with it,
everything after that cursor. `--follow` keeps printing new alerts as they come (the feed's
server-sent events, or polling the spool). One alert per line in every format.
Exit codes: 0 ok, 1 the feed or spool could not be read, 2 bad input.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gateway.alerts.render import FORMATS, Format, render_text
from gateway.state import state_dir

if TYPE_CHECKING:  # the feed client pulls in httpx; load it only when tailing
    import httpx

    from gateway.alerts.sinks.spool import SpoolReader

alerts_app = typer.Typer(help="The alert feed (SOC formats).", no_args_is_help=True)
PAGE = 1000
POLL_S = 0.5


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.echo(f"plantgate alerts: {message}", err=True)
    return typer.Exit(code)


@alerts_app.command("tail")
def tail(
    format: Annotated[str, typer.Option("--format", "-f", help="ecs, ocsf, cef or syslog")] = "ecs",
    follow: Annotated[bool, typer.Option("--follow", help="keep printing new alerts")] = False,
    after: Annotated[
        int | None, typer.Option("--after", min=0, help="start after this cursor")
    ] = None,
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="last N alerts")] = 10,
    state: Annotated[Path | None, typer.Option("--state-dir", help="state directory")] = None,
    direct: Annotated[
        bool, typer.Option("--spool", help="read the spool even if the daemon runs")
    ] = False,
) -> None:
    """Print alerts from the feed, oldest first; `--follow` waits for more."""
    if format not in FORMATS:
        raise _fail(f"unknown format {format!r}: expected one of {', '.join(FORMATS)}", 2)
    import httpx

    from gateway.alerts.feed import feed_socket
    from gateway.alerts.sinks.spool import spool_dir

    fmt: Format = format
    root = state_dir(state)
    socket_path = feed_socket(root)
    try:
        if socket_path.exists() and not direct:
            try:
                _from_feed(socket_path, fmt, after, lines, follow)
                return
            except httpx.TransportError:
                pass  # a stale socket: the daemon is gone
        _from_spool(spool_dir(root), fmt, after, lines, follow)
    except KeyboardInterrupt:
        return
    except (OSError, httpx.HTTPError) as exc:
        raise _fail(str(exc)) from None


def _client(socket_path: Path) -> httpx.Client:
    import httpx

    transport = httpx.HTTPTransport(uds=str(socket_path))
    return httpx.Client(transport=transport, base_url="http://plantgated", timeout=10.0)


def _from_feed(socket_path: Path, fmt: Format, after: int | None, lines: int, follow: bool) -> None:
    import httpx
    from httpx_sse import connect_sse

    with _client(socket_path) as client:
        if after is None:
            last = int(client.get("/").json()["last"])
            after = max(0, last - lines)
        cursor = after
        while True:  # pages of text lines, whatever the format (JSON formats: one per line)
            answer = client.get("/alerts", params={"after": cursor, "format": fmt, "limit": PAGE})
            answer.raise_for_status()
            if fmt in ("ecs", "ocsf"):
                for doc in answer.json():
                    typer.echo(_compact(doc))
            else:
                typer.echo(answer.text, nl=False)
            new_cursor = int(answer.headers.get("PlantGate-Cursor", cursor))
            if new_cursor == cursor:
                break
            cursor = new_cursor
        if not follow:
            return
        with httpx.Client(
            transport=httpx.HTTPTransport(uds=str(socket_path)),
            base_url="http://plantgated",
            timeout=httpx.Timeout(10.0, read=None),
        ) as streaming:
            params = {"after": str(cursor), "format": fmt}
            with connect_sse(streaming, "GET", "/alerts/stream", params=params) as source:
                for event in source.iter_sse():
                    if event.event == "alert":
                        typer.echo(event.data)


def _compact(doc: object) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"))


def _from_spool(directory: Path, fmt: Format, after: int | None, lines: int, follow: bool) -> None:
    from gateway.alerts.sinks.spool import SpoolReader

    reader = SpoolReader(directory)
    if not directory.is_dir():
        raise FileNotFoundError(f"no spool at {directory} (no alert was ever spooled)")
    if after is None:
        _, last = reader.bounds()
        after = max(0, last - lines)
    cursor = after
    for line, seq in _spool_lines(reader, fmt, cursor, follow):
        typer.echo(line)
        cursor = seq


def _spool_lines(
    reader: SpoolReader, fmt: Format, cursor: int, follow: bool
) -> Iterator[tuple[str, int]]:
    while True:
        records = reader.read(cursor, PAGE)
        for record in records:
            yield render_text(record.alert, fmt, record.seq), record.seq
            cursor = record.seq
        if not records:
            if not follow:
                return
            time.sleep(POLL_S)
