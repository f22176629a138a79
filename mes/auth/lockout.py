"""Lockout after consecutive credential failures (pure).

Five consecutive wrong PINs (or, for Manage Page accounts, passwords or TOTP codes) lock
the person's logins and signatures until someone with the `people.unlock` permission
unlocks them (see `unlock_refusal`); a correct credential resets the count. Counting is per
person, not per badge, so a second badge gives no extra tries.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterable
from dataclasses import dataclass

from mes.domain.roles import LEAD_MAY_UNLOCK, Permission, Role, allows

MAX_FAILURES = 5


@dataclass(frozen=True)
class FailureOutcome:
    failures: int
    locked_now: bool  # this failure reached the limit


def after_failure(failures: int, limit: int = MAX_FAILURES) -> FailureOutcome:
    count = failures + 1
    return FailureOutcome(count, count == limit)


def is_locked(
    locked_at: datetime.datetime | None, failures: int, limit: int = MAX_FAILURES
) -> bool:
    return locked_at is not None or failures >= limit


def unlock_refusal(
    actor_id: object,
    actor_roles: Iterable[str],
    target_id: object,
    target_roles: Iterable[str],
) -> str | None:
    """Why `actor` may not unlock `target` (None: they may).

    Unlocking needs the `people.unlock` permission (lead, admin); a lead who is not an admin
    may unlock only operators and leads (`roles.LEAD_MAY_UNLOCK`); nobody unlocks themselves.
    """
    actor = set(actor_roles)
    if not allows(actor, Permission.PEOPLE_UNLOCK):
        return "only a lead or an admin can unlock a person"
    if actor_id == target_id:
        return "nobody can unlock their own account"
    if Role.ADMIN not in actor and not set(target_roles) <= set(LEAD_MAY_UNLOCK):
        return "a lead can unlock operators and leads only"
    return None
