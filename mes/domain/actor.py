"""Who is acting: the person behind a request, as the services see them.

The auth layer decides who is calling; the services only ever receive an `Actor`, which
carries what the rules need (roles, export-control clearance, the station the session is
bound to) and nothing secret.
"""

from __future__ import annotations

from dataclasses import dataclass

from mes.domain.errors import Forbidden
from mes.domain.roles import Permission, Role, permissions_of


@dataclass(frozen=True)
class Actor:
    person_id: int
    employee_number: str
    name: str
    roles: frozenset[Role]
    us_person: bool = False
    itar_authorised: bool = False
    station_id: int | None = None  # an operator session is bound to its station

    @property
    def label(self) -> str:
        """How the audit log names the actor: employee number and name."""
        return f"{self.employee_number} {self.name}"

    def can(self, permission: Permission) -> bool:
        return permission in permissions_of(self.roles)

    def require(self, permission: Permission) -> None:
        """Forbidden unless one of the actor's roles grants `permission`."""
        if not self.can(permission):
            raise Forbidden(f"your roles do not allow {permission.value}")
