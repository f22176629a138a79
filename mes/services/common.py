"""Helpers shared by the services: visibility filters and lookups that hide what is hidden."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import ColumnElement, true
from sqlalchemy.orm import Session

from mes.db import Base
from mes.domain.actor import Actor
from mes.domain.errors import NotFound
from mes.domain.visibility import cleared_for_export_control, may_see
from mes.models.parts import Part

T = TypeVar("T", bound=Base)
MAX_PAGE = 500


def visible_parts(actor: Actor) -> ColumnElement[bool]:
    """SQL condition on `Part`: rows this actor may see."""
    if cleared_for_export_control(actor):
        return true()
    return Part.export_controlled.is_(False)


def get_or_404(session: Session, model: type[T], record_id: int, what: str) -> T:
    found = session.get(model, record_id)
    if found is None:
        raise NotFound(f"no {what} {record_id}")
    return found


def visible_part(session: Session, actor: Actor, part_id: int, what: str = "part") -> Part:
    """The part, if it exists and the actor may see it; otherwise NotFound (never 403)."""
    part = session.get(Part, part_id)
    if part is None or not may_see(actor, part.export_controlled):
        raise NotFound(f"no {what} {part_id}")
    return part


def page(limit: int, offset: int) -> tuple[int, int]:
    return max(1, min(limit, MAX_PAGE)), max(0, offset)


def changed(before: dict[str, Any], after: dict[str, Any]) -> bool:
    return before != after
