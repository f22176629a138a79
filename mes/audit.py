"""The MES audit trail: append-only, hash-chained, in the database (21 CFR 11.10(e)).

What: every create, change or delete of a controlled record appends one `AuditEntry` in
the same transaction as the change: who (actor), what (action, entity, id), when (UTC), why,
and the record before and after (secrets never included). Each entry's hash is sha256 over
the canonical JSON of its fields and the previous entry's hash, so entries form a chain.

`verify()` walks the chain and says precisely what is wrong: an entry whose content no longer
matches its hash (edited), a gap in the sequence (deleted), a link to an entry other than
the one before it (reordered), a link to no entry at all (an entry deleted and the rest
renumbered, or the one before rewritten with a recomputed hash), and, against the anchor
file, entries missing from the end or a last entry replaced. The sequence number is the
position and is deliberately not hashed: a renumbering shows as broken links, and an entry
that was merely moved still verifies on its own, so the report says "reordered" rather
than "edited".

The anchor (`<state>/mes/audit.head`: last sequence number and hash, written after each
commit) catches what a chain alone cannot: removing entries from the end. Database triggers
(`mes.models.guards`) refuse UPDATE and DELETE on the table as defence in depth.
"""

from __future__ import annotations

import datetime
import fcntl
import os
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from sqlalchemy import Engine, event, func, inspect, select
from sqlalchemy.orm import Session, sessionmaker

from mes.db import make_sessionmaker, utc_now
from mes.domain.actor import Actor
from mes.domain.signing import canonical_json, content_hash
from mes.models.audit import AuditEntry

GENESIS = "0" * 64
SECRET_COLUMNS = frozenset(
    {"pin_hash", "password_hash", "totp_secret", "totp_last_step", "token_hmac", "csrf_token_hash"}
)
ANCHOR_KEY = "audit_anchor"
APPENDED_KEY = "audit_appended"


def jsonable(value: Any) -> Any:
    """A value as it appears in an audit snapshot."""
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.UTC).isoformat()
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [jsonable(v) for v in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    return value


def snapshot(record: object, **extra: Any) -> dict[str, Any]:
    """A record's columns (secrets left out) plus `extra`, ready for `before`/`after`."""
    mapper = inspect(record).mapper
    data = {
        attr.key: jsonable(getattr(record, attr.key))
        for attr in mapper.column_attrs
        if attr.key not in SECRET_COLUMNS
    }
    data.update({k: jsonable(v) for k, v in extra.items()})
    return data


def entry_hash(entry: AuditEntry) -> str:
    """sha256 over everything in an entry but its position and its own hash."""
    return content_hash(
        {
            "ts": entry.ts,
            "actor_id": entry.actor_id,
            "actor": entry.actor,
            "action": entry.action,
            "entity": entry.entity,
            "entity_id": entry.entity_id,
            "why": entry.why,
            "before": entry.before,
            "after": entry.after,
            "export_controlled": bool(entry.export_controlled),
            "prev": entry.prev_hash,
        }
    )


def _lock_chain(session: Session) -> None:
    """Serialise appenders. SQLite: every transaction already holds the write lock
    (`BEGIN IMMEDIATE`, see `mes.db`). PostgreSQL: a transaction-scoped advisory lock."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(0x4D4553)))


def record(
    session: Session,
    actor: Actor | str,
    action: str,
    entity: str,
    entity_id: object,
    *,
    why: str | None = None,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    export_controlled: bool = False,
) -> AuditEntry:
    """Append one entry in the caller's transaction (it commits or rolls back with it).

    `actor` is the acting person, or a name like "system" for the machine itself.
    `export_controlled` hides the entry from people not cleared for ITAR data.
    """
    _lock_chain(session)
    session.flush()
    head = session.execute(
        select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    seq, prev = (head[0] + 1, head[1]) if head else (1, GENESIS)
    entry = AuditEntry(
        seq=seq,
        ts=utc_now().isoformat(timespec="microseconds"),
        actor_id=actor.person_id if isinstance(actor, Actor) else None,
        actor=actor.label if isinstance(actor, Actor) else actor,
        action=action,
        entity=entity,
        entity_id=str(entity_id),
        why=why,
        before=canonical_json(jsonable(before)) if before is not None else None,
        after=canonical_json(jsonable(after)) if after is not None else None,
        export_controlled=export_controlled,
        prev_hash=prev,
    )
    entry.hash = entry_hash(entry)
    session.add(entry)
    session.flush()
    session.info.setdefault(APPENDED_KEY, []).append((entry.seq, entry.hash))
    return entry


# -- the anchor -------------------------------------------------------------------------


@dataclass(frozen=True)
class Anchor:
    seq: int
    hash: str


def read_anchor(path: Path) -> Anchor | None:
    try:
        seq, digest = path.read_text().split()
        return Anchor(int(seq), digest)
    except (FileNotFoundError, ValueError):
        return None


def advance_anchor(path: Path, seq: int, digest: str) -> None:
    """Record (seq, hash) as the chain's head unless the file already names a later one.

    Committers of one process share the writes: while one writes (and fsyncs), those that
    commit meanwhile leave their head with it, and the next write takes the latest of them
    (an anchor names a committed entry, never one ahead of the log; under load there is one
    fsync per batch of commits instead of one per commit)."""
    writer = _AnchorWriter.for_path(path)
    writer.offer(seq, digest)
    writer.flush(path)


class _AnchorWriter:
    _writers: ClassVar[dict[str, _AnchorWriter]] = {}
    _registry = threading.Lock()

    def __init__(self) -> None:
        self._mutex = threading.Lock()  # guards `wanted`
        self._writing = threading.Lock()  # one write (and fsync) at a time
        self.wanted: tuple[int, str] | None = None

    @classmethod
    def for_path(cls, path: Path) -> _AnchorWriter:
        with cls._registry:
            return cls._writers.setdefault(str(path), cls())

    def offer(self, seq: int, digest: str) -> None:
        with self._mutex:
            if self.wanted is None or seq > self.wanted[0]:
                self.wanted = (seq, digest)

    def flush(self, path: Path) -> None:
        with self._writing:
            with self._mutex:
                wanted, self.wanted = self.wanted, None
            if wanted is not None:  # None: written meanwhile by the committer before us
                _write_anchor(path, *wanted)


def _write_anchor(path: Path, seq: int, digest: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(".audit.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # other processes (the CLI) write it too
        current = read_anchor(path)
        if current is not None and current.seq >= seq:
            return
        tmp = path.with_name(f".{path.name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
        try:
            os.write(fd, f"{seq} {digest}\n".encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)


def after_commit(session: Session) -> None:
    """Session hook: move the anchor to the last entry this transaction appended."""
    appended = session.info.pop(APPENDED_KEY, None)
    anchor = session.info.get(ANCHOR_KEY)
    if appended and anchor is not None:
        seq, digest = max(appended)
        advance_anchor(Path(anchor), seq, digest)


def after_rollback(session: Session) -> None:
    session.info.pop(APPENDED_KEY, None)


def anchored_sessions(engine: Engine, anchor: Path | None) -> sessionmaker[Session]:
    """Sessions whose commits move the audit anchor (None: no anchor, e.g. in tests)."""
    maker = make_sessionmaker(engine)
    if anchor is not None:
        maker.kw["info"] = {ANCHOR_KEY: str(anchor)}
        event.listen(maker, "after_commit", after_commit)
        event.listen(maker, "after_rollback", after_rollback)
    return maker


# -- verification -----------------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    seq: int
    kind: str  # edited | deleted | reordered | link_broken | rewritten | truncated
    message: str


@dataclass(frozen=True)
class Report:
    ok: bool
    entries: int
    last_seq: int
    problems: tuple[Problem, ...]


def _check_links(rows: list[AuditEntry], content_ok: list[bool]) -> list[Problem]:
    position = {row.hash: row.seq for row in rows}
    problems: list[Problem] = []
    for i, row in enumerate(rows):
        expected_seq = rows[i - 1].seq + 1 if i else 1
        if row.seq > expected_seq:
            first, last = expected_seq, row.seq - 1
            span = f"entry {first} is" if first == last else f"entries {first} to {last} are"
            problems.append(Problem(first, "deleted", f"{span} missing (deleted)"))
        expected_prev = rows[i - 1].hash if i else GENESIS
        if row.prev_hash == expected_prev:
            continue
        if row.prev_hash in position:
            problems.append(
                Problem(
                    row.seq,
                    "reordered",
                    f"entry {row.seq} was written after entry {position[row.prev_hash]}, "
                    "not after the one before it (entries reordered)",
                )
            )
        elif row.seq > expected_seq:
            continue  # explained by the gap reported above
        elif i and content_ok[i - 1]:
            problems.append(
                Problem(
                    row.seq,
                    "link_broken",
                    f"entry {row.seq} does not follow entry {rows[i - 1].seq}: an entry between "
                    f"them was deleted (and the rest renumbered), or entry {rows[i - 1].seq} was "
                    "rewritten with a recomputed hash",
                )
            )
        elif not i:
            problems.append(
                Problem(row.seq, "deleted", f"entries before {row.seq} are missing (deleted)")
            )
    return problems


def verify(session: Session, anchor: Path | None = None) -> Report:
    """Check the whole chain (and the anchor, if given); read-only."""
    rows = list(session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
    content_ok = [entry_hash(row) == row.hash for row in rows]
    problems = [
        Problem(row.seq, "edited", f"entry {row.seq} does not match its hash (edited)")
        for row, ok in zip(rows, content_ok, strict=True)
        if not ok
    ]
    problems += _check_links(rows, content_ok)
    last_seq = rows[-1].seq if rows else 0
    head = read_anchor(anchor) if anchor is not None else None
    if head is not None:
        by_seq = {row.seq: row for row in rows}
        if head.seq > last_seq:
            problems.append(
                Problem(
                    last_seq + 1,
                    "truncated",
                    f"the log ends at entry {last_seq} but its anchor names entry {head.seq} "
                    "(entries deleted from the end)",
                )
            )
        elif head.seq in by_seq and by_seq[head.seq].hash != head.hash:
            problems.append(
                Problem(
                    head.seq,
                    "rewritten",
                    f"entry {head.seq} is not the entry the anchor recorded (log replaced)",
                )
            )
    problems.sort(key=lambda p: (p.seq, p.kind))
    return Report(not problems, len(rows), last_seq, tuple(problems))


def visible_entries(
    session: Session,
    *,
    cleared: bool,
    entity: str | None = None,
    entity_id: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> Iterable[AuditEntry]:
    """Entries, newest first, without export-controlled ones unless `cleared`."""
    query = select(AuditEntry).order_by(AuditEntry.seq.desc())
    if not cleared:
        query = query.where(AuditEntry.export_controlled.is_(False))
    if entity is not None:
        query = query.where(AuditEntry.entity == entity)
    if entity_id is not None:
        query = query.where(AuditEntry.entity_id == entity_id)
    return session.scalars(query.limit(limit).offset(offset))
