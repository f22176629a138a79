"""`plantgate policy plan FILE`, and the drift report that `policy status` prints.

Plan compares FILE with the policy of the current revision (what the last apply loaded),
not with the live kernel: the revision is what people wrote and reviewed. It first checks the
live table against that revision, and says so at the top when they differ, because then the
plan's baseline is not what is enforced. Exit codes (DESIGN §4): 0 when a plan is computed,
whatever it shows; 2 when FILE is invalid (located errors, as `check` prints them); 1 when
the stored revision cannot be read.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from gateway.policy.cli import fail_with_problems
from gateway.policy.drift import Drift, check_drift
from gateway.policy.errors import PolicyError, Position, Problem
from gateway.policy.load import LoadedPolicy, load_file, load_text
from gateway.policy.plan import Plan, plan
from gateway.policy.revisions import Revision, RevisionStore
from gateway.state import state_dir

FileArg = Annotated[Path, typer.Argument(help="Policy YAML file.", show_default=False)]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
StateOpt = Annotated[
    Path | None,
    typer.Option(
        "--state-dir", help="State directory (default $PLANTGATE_STATE_DIR or /var/lib/plantgate)."
    ),
]
CallerOpt = Annotated[
    str | None,
    typer.Option(
        "--caller",
        help="Address your session comes from, for the lockout check "
        "(default: the client address in $SSH_CONNECTION).",
        show_default=False,
    ),
]


def register(policy_app: typer.Typer) -> None:
    """Add `plan` to the `plantgate policy` app."""
    policy_app.command("plan")(plan_command)


def plan_command(
    file: FileArg, state: StateOpt = None, as_json: JsonOpt = False, caller: CallerOpt = None
) -> None:
    """Show what `apply` would change against what is loaded, rule by rule, with risk flags."""
    try:
        new = load_file(file)
    except PolicyError as exc:
        fail_with_problems(exc.problems, 2, as_json)
    directory = state_dir(state)
    try:
        baseline = read_baseline(directory)
    except (OSError, PolicyError) as exc:
        problems = exc.problems if isinstance(exc, PolicyError) else []
        detail = "; ".join(p.render() for p in problems) or str(exc)
        message = f"cannot read the current revision in {directory}: {detail}"
        fail_with_problems([Problem(str(file), Position(1, 1), message)], 1, as_json)
    check = live_drift(directory, baseline.old)
    result = plan(baseline.old, new, caller=caller or session_address())
    if as_json:
        typer.echo(json.dumps(plan_json(result, baseline, check), indent=2))
        return
    for problem in new.warnings:
        typer.echo(problem.render(), err=True)
    typer.echo(render_plan(result, baseline, check), nl=False)


@dataclass(frozen=True)
class Baseline:
    """What the plan compares against: the current revision and its policy (None: nothing)."""

    revision: Revision | None
    old: LoadedPolicy | None


def read_baseline(state: Path) -> Baseline:
    store = RevisionStore(state)
    revision = store.current()
    if revision is None:
        return Baseline(None, None)
    return Baseline(revision, load_text(store.policy_text(revision.number), revision.file))


@dataclass(frozen=True)
class DriftCheck:
    """The live table against the current revision, or why it could not be checked."""

    drift: Drift | None  # None: no revision to compare with, or not checked
    error: str | None = None


def live_drift(state: Path, policy: LoadedPolicy | None = None) -> DriftCheck:
    """Check drift with a fresh libnftables context; failures (no root, no binding) are
    reported, not raised: a plan is still useful without the check. `policy`: the current
    revision's policy, if loaded already."""
    try:
        from gateway.policy.nft import Nft, NftError
    except ImportError as exc:  # the libnftables binding is not installed
        return DriftCheck(None, f"live table not checked: {exc}")
    try:
        return DriftCheck(check_drift(state, Nft(), policy))
    except (NftError, OSError, PolicyError) as exc:
        return DriftCheck(None, f"live table not checked: {str(exc).strip()}")


def session_address(environ: dict[str, str] | None = None) -> str | None:
    """The client address of the SSH session we run in ($SSH_CONNECTION), if any.

    sudo drops SSH_CONNECTION unless its env_keep lists it; `--caller` covers that case.
    """
    value = (environ if environ is not None else os.environ).get("SSH_CONNECTION", "")
    return value.split()[0] if value.split() else None


# -- output --------------------------------------------------------------------------------


def baseline_line(new_file: str, baseline: Baseline) -> str:
    revision = baseline.revision
    if revision is None:
        return f"plan: {new_file} against nothing applied yet (no revision)"
    return (
        f"plan: {new_file} against revision {revision.number} ({revision.file}, "
        f"applied {revision.created} by {revision.user})"
    )


def drift_warning(check: DriftCheck) -> list[str]:
    """The lines that warn that the plan's baseline is not what the kernel holds."""
    if check.error is not None:
        return [f"note: {check.error}"]
    if check.drift is None or check.drift.clean:
        return []
    lines = [
        "WARNING: the live table has drifted from the revision this plan compares against;",
        "         apply would also undo these differences:",
    ]
    return lines + ["  " + line for line in render_drift(check.drift).splitlines()]


def render_plan(result: Plan, baseline: Baseline, check: DriftCheck) -> str:
    lines = [baseline_line(result.new_file, baseline), *drift_warning(check), ""]
    return "\n".join(lines) + "\n" + result.render()


def plan_json(result: Plan, baseline: Baseline, check: DriftCheck) -> dict[str, Any]:
    revision = baseline.revision
    return {
        "ok": True,
        "baseline": {
            "revision": None if revision is None else revision.number,
            "file": None if revision is None else revision.file,
            "drift": None if check.drift is None else drift_json(check.drift),
            "drift_error": check.error,
        },
        **result.to_json(),
    }


def render_drift(drift: Drift) -> str:
    """Drift for people: a summary line, then differences grouped by chain or set."""
    return drift.render()


def drift_json(drift: Drift) -> dict[str, Any]:
    """Drift for tools (what `policy status --json` embeds)."""
    return drift.to_json()
