"""Roles and what each may do: the one table every API route and service checks.

Why a permission per kind of act rather than role checks scattered in code: a route declares
the permission it needs, the service checks it again, and the test matrix reads this table
to prove that each role is refused everything it was not granted.

- operator: runs work orders at a station (start units, record steps), raises nonconformances.
- lead: an operator who also opens and closes work orders, corrects recorded steps and
  unlocks locked-out operators.
- engineer: authors parts and draft process revisions; submits them for review.
- quality: reviews (returns or releases, with an e-signature), obsoletes, dispositions
  nonconformances (with an e-signature), corrects recorded steps.
- admin: people, roles, badges, PINs and stations; never releases anything.
- auditor: reads everything they are cleared for; changes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Role(StrEnum):
    OPERATOR = "operator"
    LEAD = "lead"
    ENGINEER = "engineer"
    QUALITY = "quality"
    ADMIN = "admin"
    AUDITOR = "auditor"


class Permission(StrEnum):
    PARTS_READ = "parts.read"
    PARTS_WRITE = "parts.write"
    PROCESSES_READ = "processes.read"
    PROCESSES_AUTHOR = "processes.author"
    PROCESSES_REVIEW = "processes.review"
    PROCESSES_RELEASE = "processes.release"
    PROCESSES_OBSOLETE = "processes.obsolete"
    WORK_ORDERS_READ = "work_orders.read"
    WORK_ORDERS_MANAGE = "work_orders.manage"
    UNITS_READ = "units.read"
    UNITS_RUN = "units.run"
    EXECUTIONS_CORRECT = "executions.correct"
    NC_READ = "nonconformances.read"
    NC_RAISE = "nonconformances.raise"
    NC_DISPOSITION = "nonconformances.disposition"
    PEOPLE_READ = "people.read"
    PEOPLE_MANAGE = "people.manage"
    PEOPLE_UNLOCK = "people.unlock"
    STATIONS_READ = "stations.read"
    STATIONS_MANAGE = "stations.manage"
    AUDIT_READ = "audit.read"


P = Permission
_READ_PRODUCTION = {P.PARTS_READ, P.PROCESSES_READ, P.WORK_ORDERS_READ, P.UNITS_READ}
_OPERATOR = _READ_PRODUCTION | {P.UNITS_RUN, P.NC_READ, P.NC_RAISE, P.STATIONS_READ}

ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.OPERATOR: frozenset(_OPERATOR),
    Role.LEAD: frozenset(
        _OPERATOR | {P.WORK_ORDERS_MANAGE, P.EXECUTIONS_CORRECT, P.PEOPLE_UNLOCK, P.PEOPLE_READ}
    ),
    Role.ENGINEER: frozenset(
        _READ_PRODUCTION | {P.PARTS_WRITE, P.PROCESSES_AUTHOR, P.NC_READ, P.STATIONS_READ}
    ),
    Role.QUALITY: frozenset(
        _READ_PRODUCTION
        | {
            P.PROCESSES_REVIEW,
            P.PROCESSES_RELEASE,
            P.PROCESSES_OBSOLETE,
            P.EXECUTIONS_CORRECT,
            P.NC_READ,
            P.NC_RAISE,
            P.NC_DISPOSITION,
            P.STATIONS_READ,
            P.AUDIT_READ,
        }
    ),
    Role.ADMIN: frozenset(
        {
            P.PEOPLE_READ,
            P.PEOPLE_MANAGE,
            P.PEOPLE_UNLOCK,
            P.STATIONS_READ,
            P.STATIONS_MANAGE,
            P.AUDIT_READ,
        }
    ),
    Role.AUDITOR: frozenset(p for p in Permission if p.value.endswith(".read")),
}

# Roles a lead (without admin) may unlock: the people working beside them on the floor.
LEAD_MAY_UNLOCK = frozenset({Role.OPERATOR, Role.LEAD})


def permissions_of(roles: Iterable[Role | str]) -> frozenset[Permission]:
    """The union of the roles' permissions; unknown role names grant nothing."""
    granted: set[Permission] = set()
    for role in roles:
        try:
            granted |= ROLE_PERMISSIONS[Role(role)]
        except ValueError:
            continue
    return frozenset(granted)


def allows(roles: Iterable[Role | str], permission: Permission) -> bool:
    return permission in permissions_of(roles)


def roles_with(permission: Permission) -> frozenset[Role]:
    """Which roles grant `permission` (the test matrix asks this)."""
    return frozenset(role for role, perms in ROLE_PERMISSIONS.items() if permission in perms)
