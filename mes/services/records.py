"""Signed records: their current content hashes, and checks of the signatures on them.

Each kind of signable record has a function that recomputes its content hash from the rows
as they are now (never from a stored copy), which `mes.signatures.verify_signature` compares
with what was signed. A process revision is hashed from its steps and actions, so a step
edited behind the application's back breaks its release signature.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from mes.domain.actor import Actor
from mes.domain.errors import NotFound
from mes.domain.roles import Permission
from mes.models.processes import Process
from mes.models.production import ActionRecord, StepExecution
from mes.models.quality import ESignature, Nonconformance
from mes.services import processes, quality, units
from mes.signatures import SignatureCheck, verify_signature


def _process_hash(session: Session, record_id: int) -> str | None:
    process = session.get(Process, record_id)
    return processes.compute_hash(session, process) if process is not None else None


def _execution_hash(session: Session, record_id: int) -> str | None:
    execution = session.get(StepExecution, record_id)
    if execution is None:
        return None
    records = session.scalars(
        select(ActionRecord).where(ActionRecord.execution_id == execution.id)
    ).all()
    return units.execution_hash(execution, records)


def _nc_hash(session: Session, record_id: int) -> str | None:
    nc = session.get(Nonconformance, record_id)
    return quality.nc_hash(nc) if nc is not None else None


HASHERS: dict[str, Callable[[Session, int], str | None]] = {
    "process": _process_hash,
    "step_execution": _execution_hash,
    "nonconformance": _nc_hash,
}

# The read permission and the visibility check for each kind of record.
_VISIBLE: dict[str, Callable[[Session, Actor, int], object]] = {
    "process": lambda s, a, i: processes.get_process(s, a, i),
    "step_execution": lambda s, a, i: _visible_execution(s, a, i),
    "nonconformance": lambda s, a, i: quality.get_nc(s, a, i),
}


def _visible_execution(session: Session, actor: Actor, execution_id: int) -> None:
    actor.require(Permission.UNITS_READ)
    execution = session.get(StepExecution, execution_id)
    if execution is None:
        raise NotFound(f"no step execution {execution_id}")
    units.visible_unit(session, actor, execution.unit_id)


def check(session: Session, signature: ESignature) -> SignatureCheck:
    """Whether the signature still holds for the record it names."""
    hasher = HASHERS.get(signature.record_type)
    current = hasher(session, signature.record_id) if hasher else None
    return verify_signature(signature, signature.record_type, signature.record_id, current)


@dataclass(frozen=True)
class CheckedSignature:
    signature: ESignature
    check: SignatureCheck


def signatures_of(
    session: Session, actor: Actor, record_type: str, record_id: int
) -> Sequence[CheckedSignature]:
    """The signatures on a record the actor may see, each verified now."""
    visible = _VISIBLE.get(record_type)
    if visible is None:
        raise NotFound(f"no signed records of type {record_type}")
    visible(session, actor, record_id)
    found = session.scalars(
        select(ESignature)
        .where(ESignature.record_type == record_type, ESignature.record_id == record_id)
        .order_by(ESignature.id)
    ).all()
    return [CheckedSignature(s, check(session, s)) for s in found]
