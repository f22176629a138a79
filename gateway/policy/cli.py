"""`plantgate policy ...`: check, render, apply and schema, with DESIGN §4's exit codes.

0 ok, 1 the operation failed (the kernel refused, no permission), 2 bad input (nothing
changed). Problems print as `FILE:LINE:COL: error: message`, one per line on stderr.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from gateway.policy.errors import PolicyError, Position, Problem
from gateway.policy.load import load_file
from gateway.policy.model import Policy
from gateway.state import state_dir

_START = Position(1, 1)
policy_app = typer.Typer(
    help="The site policy: validate, render, apply.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

FileArg = Annotated[Path, typer.Argument(help="Policy YAML file.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
StateOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir", help="State directory (default $PLANTGATE_STATE_DIR or /var/lib/plantgate)."
    ),
]


def report_problems(problems: Iterable[Problem]) -> None:
    for problem in problems:
        typer.echo(problem.render(), err=True)


def fail_with_problems(
    problems: list[Problem], code: int, as_json: bool, extra: dict[str, Any] | None = None
) -> NoReturn:
    """Print located problems (and the JSON form for --json) and exit with `code`."""
    if as_json:
        items = [p.to_json() for p in problems]
        typer.echo(json.dumps({"ok": False, "problems": items, **(extra or {})}))
    report_problems(problems)
    raise typer.Exit(code)


@policy_app.command()
def check(file: FileArg, as_json: JsonOpt = False) -> None:
    """Validate a policy; every problem is reported with its line and column."""
    try:
        loaded = load_file(file)
    except PolicyError as exc:
        fail_with_problems(exc.problems, 2, as_json)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": True,
                    "rules": len(loaded.policy.rules),
                    "problems": [w.to_json() for w in loaded.warnings],
                }
            )
        )
    else:
        report_problems(loaded.warnings)
        typer.echo(
            f"{file}: ok ({len(loaded.policy.rules)} rules, {len(loaded.policy.zones)} zones)"
        )


@policy_app.command()
def render(file: FileArg) -> None:
    """Print the nftables ruleset that `apply` would load."""
    from gateway.policy.compile import compile_policy

    try:
        compiled = compile_policy(load_file(file))
    except PolicyError as exc:
        fail_with_problems(exc.problems, 2, False)
    typer.echo(compiled.text, nl=False)


@policy_app.command()
def apply(
    file: FileArg,
    state: StateOpt = None,
    user: Annotated[str | None, typer.Option("--user", help="Who applies (default: you).")] = None,
    message: Annotated[str, typer.Option("--message", "-m", help="Why (kept in history).")] = "",
    confirm_within: Annotated[
        float | None,
        typer.Option(
            "--confirm-within",
            min=5,
            max=86400,
            help="Revert unless `policy confirm` arrives within SECONDS.",
        ),
    ] = None,
    no_resolve: Annotated[
        bool,
        typer.Option("--no-resolve", help="Skip resolving names now; the daemon fills FQDN sets."),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Load a policy into the kernel in one transaction (other tables untouched)."""
    # The resolver and libnftables are needed by apply only; check and render stay light.
    from gateway.policy.apply import ApplyError
    from gateway.policy.nft import NftError
    from gateway.policy.operations import OperationError, apply_file

    try:
        applied = apply_file(
            file,
            state_dir(state),
            user=user,
            message=message,
            confirm_within=confirm_within,
            resolve=not no_resolve,
        )
    except PolicyError as exc:
        fail_with_problems(exc.problems, 2, as_json)
    except ApplyError as exc:
        fail_with_problems(exc.problems, 1, as_json, {"detail": exc.detail})
    except (OperationError, NftError, OSError) as exc:
        fail_with_problems([Problem(str(file), _START, f"apply failed: {exc}")], 1, as_json)
    revision, report = applied.revision, applied.report
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": True,
                    "revision": asdict(revision),
                    "carried": report.carried,
                    "resolved": report.resolved,
                }
            )
        )
        return
    report_problems(applied.loaded.warnings)
    typer.echo(
        f"applied {file} as revision {revision.number} ({len(applied.loaded.policy.rules)} "
        f"rules, sha256 {revision.sha256[:12]}) in {report.seconds * 1000:.0f} ms; "
        f"{report.resolved} addresses resolved, {report.carried} run-time elements carried over"
    )
    if revision.deadline:
        typer.echo(
            f"PENDING: run `plantgate policy confirm` before {revision.deadline} "
            "or it is reverted to the last confirmed revision"
        )


@policy_app.command()
def schema() -> None:
    """Print the policy's JSON Schema (what policies/schema.json holds)."""
    typer.echo(schema_text(), nl=False)


def schema_text() -> str:
    data = Policy.model_json_schema(by_alias=True, mode="validation")
    data["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
