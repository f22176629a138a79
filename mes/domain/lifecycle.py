"""Life cycles: process revisions, work orders, units, nonconformances.

Process revisions move

    draft --submit--> review --release (e-signature)--> released --obsolete--> obsolete
      ^                  |
      '-----return-------'

Only a draft's content can change; review freezes it (the reviewer signs what they read),
and a released revision never changes again: a change is a new draft revision copied from
it. Releasing a revision obsoletes the previously released one of the same part, so a part
has at most one released revision, the one new work orders take. Work orders already made
keep the revision they were created with.
"""

from __future__ import annotations

from enum import StrEnum

from mes.domain.errors import Conflict


class ProcessStatus(StrEnum):
    DRAFT = "draft"
    REVIEW = "review"
    RELEASED = "released"
    OBSOLETE = "obsolete"


PROCESS_TRANSITIONS: dict[ProcessStatus, frozenset[ProcessStatus]] = {
    ProcessStatus.DRAFT: frozenset({ProcessStatus.REVIEW}),
    ProcessStatus.REVIEW: frozenset({ProcessStatus.DRAFT, ProcessStatus.RELEASED}),
    ProcessStatus.RELEASED: frozenset({ProcessStatus.OBSOLETE}),
    ProcessStatus.OBSOLETE: frozenset(),
}


def check_process_transition(current: str, target: ProcessStatus) -> None:
    """Refuse (Conflict) a move the life cycle does not have, naming the allowed ones."""
    allowed = PROCESS_TRANSITIONS[ProcessStatus(current)]
    if target not in allowed:
        options = ", ".join(sorted(allowed)) or "none: it is final"
        raise Conflict(f"a {current} process revision cannot become {target} (possible: {options})")


def content_editable(status: str) -> bool:
    """Only drafts may change their steps and actions."""
    return ProcessStatus(status) is ProcessStatus.DRAFT


class WorkOrderStatus(StrEnum):
    OPEN = "open"
    CLOSED = "closed"


class UnitStatus(StrEnum):
    IN_PROGRESS = "in_progress"
    ON_HOLD = "on_hold"  # an open nonconformance
    COMPLETED = "completed"
    SCRAPPED = "scrapped"


class Tracking(StrEnum):
    NONE = "none"
    LOT = "lot"
    SERIAL = "serial"


class Outcome(StrEnum):
    PASSED = "passed"
    FAILED = "failed"


class NcStatus(StrEnum):
    OPEN = "open"
    DISPOSITIONED = "dispositioned"


class Disposition(StrEnum):
    USE_AS_IS = "use_as_is"
    REWORK = "rework"
    REPAIR = "repair"
    SCRAP = "scrap"
    RETURN_TO_VENDOR = "return_to_vendor"


def unit_status_after(disposition: Disposition, before_hold: str) -> UnitStatus:
    """Where a held unit goes once its nonconformance is dispositioned.

    Scrapped or returned units are finished with; rework and repair send the unit back into
    production; use-as-is puts it back where it was when the nonconformance was raised.
    """
    if disposition in (Disposition.SCRAP, Disposition.RETURN_TO_VENDOR):
        return UnitStatus.SCRAPPED
    if disposition in (Disposition.REWORK, Disposition.REPAIR):
        return UnitStatus.IN_PROGRESS
    return UnitStatus(before_hold)
