"""`/api/v1/audit`: the audit trail (read) and its verification.

Entries about export-controlled records are left out for people not cleared for them; the
verification covers the whole chain and names positions only, never content.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel

from mes import audit
from mes.api.common import NO_NUL, Limit, Offset, Out
from mes.api.deps import DB, SETTINGS_KEY, need
from mes.config import MesSettings
from mes.domain.actor import Actor
from mes.domain.roles import Permission as P
from mes.domain.visibility import cleared_for_export_control
from mes.models.audit import AuditEntry

router = APIRouter(prefix="/audit", tags=["audit"])


class EntryOut(Out):
    seq: int
    ts: str
    actor_id: int | None
    actor: str
    action: str
    entity: str
    entity_id: str
    why: str | None
    before: Any
    after: Any
    prev_hash: str
    hash: str


class ProblemOut(BaseModel):
    seq: int
    kind: str
    message: str


class VerifyOut(BaseModel):
    ok: bool
    entries: int
    last_seq: int
    problems: list[ProblemOut]


def _entry(entry: AuditEntry) -> EntryOut:
    return EntryOut(
        seq=entry.seq,
        ts=entry.ts,
        actor_id=entry.actor_id,
        actor=entry.actor,
        action=entry.action,
        entity=entry.entity,
        entity_id=entry.entity_id,
        why=entry.why,
        before=json.loads(entry.before) if entry.before else None,
        after=json.loads(entry.after) if entry.after else None,
        prev_hash=entry.prev_hash,
        hash=entry.hash,
    )


@router.get("")
def list_entries(
    db: DB,
    actor: Annotated[Actor, need(P.AUDIT_READ)],
    entity: Annotated[str | None, Query(max_length=32, pattern=NO_NUL)] = None,
    entity_id: Annotated[str | None, Query(max_length=64, pattern=NO_NUL)] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> list[EntryOut]:
    """Newest first."""
    found = audit.visible_entries(
        db,
        cleared=cleared_for_export_control(actor),
        entity=entity,
        entity_id=entity_id,
        limit=limit,
        offset=offset,
    )
    return [_entry(e) for e in found]


@router.get("/verify")
def verify(request: Request, db: DB, actor: Annotated[Actor, need(P.AUDIT_READ)]) -> VerifyOut:
    settings: MesSettings = getattr(request.app.state, SETTINGS_KEY)
    report = audit.verify(db, settings.audit_anchor)
    return VerifyOut(
        ok=report.ok,
        entries=report.entries,
        last_seq=report.last_seq,
        problems=[ProblemOut(seq=p.seq, kind=p.kind, message=p.message) for p in report.problems],
    )
