"""Policy revisions in the state directory: every successful apply, kept and numbered.

`<state>/policy/revisions/NNNNNN/` holds `policy.yaml` (the text applied), `ruleset.nft`
(what was loaded), `kernel.nft` (the table as the kernel listed it right after the load,
for drift checks) and `meta.json`. `<state>/policy/current` names the revision loaded now.
All changes happen under one lock file, so an apply, a confirm and an automatic revert never
interleave.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Literal

from gateway.state import ensure_dir, exclusive, write_atomic

Status = Literal["pending", "confirmed", "reverted", "superseded"]
Kind = Literal["apply", "rollback", "revert"]


@dataclass(frozen=True)
class Revision:
    number: int
    created: str  # UTC, ISO 8601
    user: str
    message: str
    sha256: str  # of the policy text
    file: str  # the policy's file name as the user gave it (comments cite its basename)
    kind: Kind = "apply"
    of: int | None = None  # for rollback/revert: the revision whose policy was re-applied
    status: Status = "confirmed"
    deadline: str | None = None  # pending revisions: confirm before this (UTC, ISO 8601)
    watchdog: str | None = None  # how the revert was scheduled (pid:N or systemd:UNIT)
    seconds: float = 0.0  # how long the load took
    vpn_mode: str | None = None  # `plantgate vpn disable` in force when it was applied

    def deadline_at(self) -> datetime.datetime | None:
        return datetime.datetime.fromisoformat(self.deadline) if self.deadline else None


class RevisionStore:
    """Revisions under `<state>/policy/`."""

    def __init__(self, state: Path) -> None:
        self.state = state
        self.root = state / "policy"
        self.dir = self.root / "revisions"

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive lock for every change to revisions and to what is loaded."""
        with exclusive(self.root / ".lock"):
            yield

    def path(self, number: int) -> Path:
        return self.dir / f"{number:06d}"

    def all(self) -> list[Revision]:
        if not self.dir.exists():
            return []
        revisions = []
        for entry in sorted(self.dir.iterdir()):
            meta = entry / "meta.json"
            if entry.name.isdigit() and meta.exists():
                revisions.append(Revision(**json.loads(meta.read_text())))
        return revisions

    def get(self, number: int) -> Revision | None:
        meta = self.path(number) / "meta.json"
        return Revision(**json.loads(meta.read_text())) if meta.exists() else None

    def current(self) -> Revision | None:
        try:
            return self.get(int((self.root / "current").read_text().strip()))
        except (OSError, ValueError):
            return None

    def pending(self) -> Revision | None:
        return next((r for r in reversed(self.all()) if r.status == "pending"), None)

    def last_confirmed(self, before: int | None = None) -> Revision | None:
        return next(
            (
                r
                for r in reversed(self.all())
                if r.status == "confirmed" and (before is None or r.number < before)
            ),
            None,
        )

    def policy_text(self, number: int) -> str:
        return (self.path(number) / "policy.yaml").read_text(encoding="utf-8")

    def ruleset_text(self, number: int) -> str:
        return (self.path(number) / "ruleset.nft").read_text(encoding="utf-8")

    def kernel_view(self, number: int) -> str | None:
        path = self.path(number) / "kernel.nft"
        return path.read_text(encoding="utf-8") if path.exists() else None

    def next_number(self) -> int:
        """The number `add` gives the next revision (stable while the lock is held)."""
        return max((r.number for r in self.all()), default=0) + 1

    def add(
        self, draft: Revision, policy_text: str, ruleset: str, kernel_view: str | None
    ) -> Revision:
        """Store a new revision (numbered after the last) and make it current."""
        revision = replace(draft, number=self.next_number())
        folder = ensure_dir(self.path(revision.number))
        write_atomic(folder / "policy.yaml", policy_text)
        write_atomic(folder / "ruleset.nft", ruleset)
        if kernel_view is not None:
            write_atomic(folder / "kernel.nft", kernel_view)
        self.save(revision)
        self.set_current(revision.number)
        return revision

    def save(self, revision: Revision) -> None:
        write_atomic(
            self.path(revision.number) / "meta.json", json.dumps(asdict(revision), indent=2) + "\n"
        )

    def set_current(self, number: int) -> None:
        write_atomic(self.root / "current", f"{number}\n")
