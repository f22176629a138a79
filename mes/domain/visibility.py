"""Export control: who may see ITAR-flagged parts and everything built from them.

The rule is one predicate, applied by every list, search, detail and input in the services:
a record derived from an export-controlled part exists only for people who are active,
US persons and ITAR-authorised. For everyone else it is absent (404, never 403), so its
existence is not disclosed either.
"""

from __future__ import annotations

from typing import Protocol


class Clearance(Protocol):
    @property
    def us_person(self) -> bool: ...

    @property
    def itar_authorised(self) -> bool: ...


def cleared_for_export_control(who: Clearance) -> bool:
    return bool(who.us_person and who.itar_authorised)


def may_see(who: Clearance, export_controlled: bool) -> bool:
    """Whether `who` may see (and use) a record with this export-control flag."""
    return not export_controlled or cleared_for_export_control(who)


def check_authorisation(us_person: bool, itar_authorised: bool) -> str | None:
    """The problem with a person's export-control attributes, or None."""
    if itar_authorised and not us_person:
        return "only US persons may be ITAR-authorised"
    return None
