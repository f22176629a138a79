"""Policy operations shared by the command line and the daemon: check, render, apply.

Each returns plain results and raises PolicyError (bad input: nothing changed) or
ApplyError/NftError (the kernel refused: nothing changed); callers decide how to report.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from gateway.dns.lookup import resolve_all
from gateway.events import utc_now
from gateway.policy.apply import ApplyReport, apply_compiled
from gateway.policy.compile import Compiled, compile_policy
from gateway.policy.load import LoadedPolicy, load_file
from gateway.policy.nft import Nft
from gateway.state import ensure_dir, write_atomic

APPLIED = "policy/applied"  # <state>/policy/applied.{yaml,nft,json}


@dataclass(frozen=True)
class AppliedRecord:
    """What is loaded in the kernel now, and where it came from."""

    file: str
    sha256: str
    applied_at: str
    user: str
    rules: int
    seconds: float


@dataclass(frozen=True)
class Applied:
    loaded: LoadedPolicy
    compiled: Compiled
    report: ApplyReport
    record: AppliedRecord


def invoking_user() -> str:
    """The person behind the command: sudo's caller if any, else the login name."""
    return os.environ.get("SUDO_USER") or getpass.getuser()


def compile_file(path: str | Path) -> tuple[LoadedPolicy, Compiled]:
    loaded = load_file(path)
    return loaded, compile_policy(loaded)


def apply_file(
    path: str | Path,
    state: Path,
    *,
    user: str | None = None,
    resolve: bool = True,
    nft: Nft | None = None,
) -> Applied:
    """Validate, compile, resolve names, load into the kernel, and record what is loaded."""
    loaded, compiled = compile_file(path)
    resolved = resolve_all(compiled.fqdn, loaded.policy) if resolve else {}
    report = apply_compiled(compiled, nft or Nft(), loaded.file, resolved)
    record = AppliedRecord(
        file=str(Path(path).resolve()),
        sha256=hashlib.sha256(loaded.source.text.encode()).hexdigest(),
        applied_at=utc_now().isoformat(),
        user=user or invoking_user(),
        rules=len(loaded.policy.rules),
        seconds=round(report.seconds, 4),
    )
    _record(state, loaded, compiled, record)
    return Applied(loaded, compiled, report, record)


def _record(state: Path, loaded: LoadedPolicy, compiled: Compiled, record: AppliedRecord) -> None:
    base = ensure_dir(state / "policy") / "applied"
    write_atomic(base.with_suffix(".yaml"), loaded.source.text)
    write_atomic(base.with_suffix(".nft"), compiled.text)
    write_atomic(base.with_suffix(".json"), json.dumps(asdict(record), indent=2) + "\n")


def applied_record(state: Path) -> AppliedRecord | None:
    path = state / "policy" / "applied.json"
    try:
        return AppliedRecord(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def applied_policy_path(state: Path) -> Path:
    return state / "policy" / "applied.yaml"
