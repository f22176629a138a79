"""The append-only, hash-chained audit log (DESIGN §7): who did what, when, and why.

Each entry is one JSON line holding a sequence number, UTC time, actor, action, details, the
previous entry's hash and its own hash (sha256 over the canonical JSON of everything else).
Editing, removing or reordering any entry breaks the chain from there on, and `verify` says
where. The file is only ever opened for appending, under an exclusive lock.

Truncating the tail cannot be detected from the file alone; the last hash is also kept in a
separate `audit.head` file so that `verify` notices a log shorter than its head.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from gateway.events import utc_now
from gateway.state import exclusive, write_atomic

GENESIS = "0" * 64


@dataclass(frozen=True)
class Entry:
    seq: int
    ts: str
    actor: str
    action: str
    details: dict[str, Any] = field(default_factory=dict)
    prev: str = GENESIS
    hash: str = ""

    def body(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("hash")
        return data


def entry_hash(entry: Entry) -> str:
    canonical = json.dumps(entry.body(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class Verification:
    ok: bool
    entries: int
    problems: tuple[str, ...]


def verify_lines(lines: list[str], head: str | None) -> Verification:
    """Check the chain of a log's lines (pure); `head` is the separately kept last hash."""
    problems: list[str] = []
    prev, count = GENESIS, 0
    for number, line in enumerate(lines, 1):
        try:
            entry = Entry(**json.loads(line))
        except (ValueError, TypeError) as exc:
            problems.append(f"line {number}: not an audit entry ({exc})")
            break
        count += 1
        if entry.seq != number:
            problems.append(f"line {number}: sequence {entry.seq}, expected {number}")
        if entry.prev != prev:
            problems.append(f"line {number}: previous-hash link broken (entry removed or moved)")
        if entry_hash(entry) != entry.hash:
            problems.append(f"line {number}: content does not match its hash (entry edited)")
        prev = entry.hash
    if head is not None and head != prev:
        problems.append(
            f"the log ends at {prev[:12]}… but its head says {head[:12]}… "
            "(entries removed from the end)"
        )
    return Verification(not problems, count, tuple(problems))


class AuditLog:
    """The audit log in `<state>/audit/`."""

    def __init__(self, state: Path) -> None:
        self.dir = state / "audit"
        self.path = self.dir / "audit.jsonl"
        self.head = self.dir / "audit.head"

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with exclusive(self.dir / ".lock"):
            yield

    def append(self, actor: str, action: str, details: dict[str, Any] | None = None) -> Entry:
        with self._locked():
            lines = self._lines()
            prev = json.loads(lines[-1])["hash"] if lines else GENESIS
            draft = Entry(len(lines) + 1, utc_now().isoformat(), actor, action, details or {}, prev)
            entry = Entry(**{**asdict(draft), "hash": entry_hash(draft)})
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                os.write(fd, (json.dumps(asdict(entry), sort_keys=True) + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            write_atomic(self.head, entry.hash + "\n")
            return entry

    def entries(self) -> list[Entry]:
        return [Entry(**json.loads(line)) for line in self._lines()]

    def verify(self) -> Verification:
        head = self.head.read_text().strip() if self.head.exists() else None
        return verify_lines(self._lines(), head)

    def _lines(self) -> list[str]:
        try:
            return [line for line in self.path.read_text().splitlines() if line.strip()]
        except FileNotFoundError:
            return []
