"""`plantgate mes serve`: the MES application over TLS (DESIGN §4).

`register(mes_app)` adds the command to the `mes` Typer app; `python -m mes.cli_serve` runs
the same command on its own (what the lab starts in `gw`). Exit codes: 2 for bad input
(a listen address that is no address), 1 when the server cannot start (port taken,
unreadable CA or secret files), 0 after a clean shutdown. Errors are one line on stderr.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

BindOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--bind",
        "-b",
        help="Listen address ADDRESS[:PORT] (repeatable; default 0.0.0.0:443).",
    ),
]
NameOpt = Annotated[
    list[str] | None,
    typer.Option("--name", help="Extra DNS name or address for the server certificate."),
]
StateOpt = Annotated[
    Path | None,
    typer.Option("--state-dir", help="State directory (default $PLANTGATE_STATE_DIR)."),
]


def serve_command(bind: BindOpt = None, name: NameOpt = None, state_dir: StateOpt = None) -> None:
    """Serve the MES over HTTPS (TLS 1.2/1.3, Mozilla intermediate) until stopped."""
    from mes import server
    from mes.auth.secrets import SecretError
    from mes.config import SettingsError, load_settings
    from mes.tls import TlsError

    logging.basicConfig(level=logging.INFO, format="plantgate mes: %(levelname)s: %(message)s")
    try:
        binds = [server.parse_bind(b) for b in (bind or [server.DEFAULT_BIND])]
        settings = load_settings(state_dir)
    except (ValueError, SettingsError) as exc:
        typer.echo(f"plantgate mes serve: error: {exc}", err=True)
        raise typer.Exit(2) from None
    try:
        server.serve(settings, binds, name or [])
    except (OSError, TlsError, SecretError) as exc:
        typer.echo(f"plantgate mes serve: error: {exc}", err=True)
        raise typer.Exit(1) from None


def register(mes_app: typer.Typer) -> None:
    mes_app.command("serve")(serve_command)


def main() -> None:
    standalone = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    standalone.command()(serve_command)
    standalone()


if __name__ == "__main__":
    main()
