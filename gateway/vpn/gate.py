"""The support gate's request life cycle and eligibility rules (pure: no files, no kernel).

    requested --approve (N distinct approvers)--> approved --open--> open --close--> closed
        |                                            |                  '--window end--> closed
        '--deny--> denied      '--request_ttl or window end before open--> expired

* **Who.** The requester and the approvers are plant-side people; the staff member is the
  vendor engineer being granted. Nobody approves a request they made, nobody approves twice,
  and the staff member never approves access for themselves. Each approval keeps who and when.
* **Eligibility** (on the staff list, US-person attestation, window no longer than the
  person's `max_window`) is checked at request and again at open, against the policy in force
  then, together with the targets and the number of approvals the policy now asks for.
* **Time.** Every transition takes `now`. A request not opened within `request_ttl` of its
  creation (or by the end of its window) expires; an open gate closes at the end of its
  window. The kernel enforces that end by itself (the grant elements time out); `due()` only
  brings the record up to date.

Every refusal is a `GateError` with one sentence saying what and why.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict

from gateway.policy.errors import did_you_mean
from gateway.policy.model import Policy, StaffMember, SupportVpn, duration_seconds
from gateway.vpn.targets import GateError, Target, resolve

Status = Literal["requested", "approved", "open", "closed", "expired", "denied"]
PENDING: frozenset[str] = frozenset({"requested", "approved"})
LIVE: frozenset[str] = PENDING | {"open"}
START_GRACE = datetime.timedelta(minutes=5)  # a start this far in the past is still "now"
_DURATION = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


class Approval(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    who: str
    at: datetime.datetime


class GateRequest(BaseModel):
    """One request for support access, as stored and as the API returns it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: int
    gate: str
    staff: str
    address: str  # the staff member's tunnel address (as of the request; renewed at open)
    targets: tuple[Target, ...]
    start: datetime.datetime
    end: datetime.datetime
    reason: str
    ticket: str | None = None
    requester: str
    created: datetime.datetime
    expires: datetime.datetime  # a pending request expires at this time
    status: Status = "requested"
    approvals: tuple[Approval, ...] = ()
    opened_at: datetime.datetime | None = None
    opened_by: str | None = None
    closed_at: datetime.datetime | None = None
    closed_by: str | None = None
    note: str | None = None  # why it was denied, closed or expired

    @property
    def window_s(self) -> int:
        return int((self.end - self.start).total_seconds())

    def grants(self) -> list[Grant]:
        return [Grant(self.address, t.address, t.proto, t.port) for t in self.targets]


class Grant(NamedTuple):
    """One element of the gate set: `staff . target . proto . port`."""

    staff: str
    target: str
    proto: str
    port: int


# -- durations and times ----------------------------------------------------------------------


def parse_duration(text: str) -> int:
    """'2h', '90m', '1h30m', '45s', '2d' -> seconds; GateError (invalid) otherwise."""
    match = _DURATION.match(text.strip())
    if not text.strip() or match is None:
        raise GateError(
            f"'{text}' is not a duration: expected a number with d, h, m or s, like 2h or 1h30m",
            "invalid",
        )
    seconds = sum(int(v) * unit for v, (_, unit) in zip(match.groups(), _UNITS, strict=True) if v)
    if seconds <= 0:
        raise GateError(f"'{text}' is not a duration: it must be longer than zero", "invalid")
    return seconds


def format_duration(seconds: float) -> str:
    """3600 -> '1h', 5400 -> '1h30m', 0 -> '0s'."""
    left, parts = round(seconds), []
    for name, unit in _UNITS:
        if left >= unit:
            parts.append(f"{left // unit}{name}")
            left %= unit
    return "".join(parts) or "0s"


def when(moment: datetime.datetime) -> str:
    """A time in messages: '2025-03-01 14:00:00 UTC'."""
    return moment.astimezone(datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


# -- eligibility --------------------------------------------------------------------------------


def gated_support(policy: Policy) -> SupportVpn:
    """The policy's support_vpn section, if it has a gate to open; GateError otherwise."""
    support = policy.support_vpn
    if support is None:
        raise GateError("the loaded policy has no support_vpn section: there is no gate")
    if support.mode == "disabled":
        raise GateError("the support VPN is disabled (by the policy or `plantgate vpn disable`)")
    if support.mode == "always-on":
        raise GateError("support_vpn.mode is always-on: listed staff need no gate")
    return support


def check_eligible(
    support: SupportVpn, staff: str, window_s: int, *, unknown: Literal["invalid", "refused"]
) -> StaffMember:
    """The staff member, if they may be granted a window this long; GateError otherwise."""
    member = next((m for m in support.staff if m.name == staff), None)
    if member is None:
        hint = did_you_mean(staff, (m.name for m in support.staff))
        raise GateError(f"not on the staff list: {staff}{hint}", unknown)
    if not member.us_person:
        raise GateError(f"{staff} has no US-person attestation: support access needs one")
    longest = duration_seconds(member.max_window)
    if window_s > longest:
        raise GateError(
            f"{staff} may get at most {format_duration(longest)}; asked for "
            f"{format_duration(window_s)}"
        )
    return member


def resolve_targets(policy: Policy, support: SupportVpn, specs: Iterable[str]) -> list[Target]:
    """Every spec resolved, duplicates removed, in the order given."""
    targets: list[Target] = []
    for spec in specs:
        targets += [t for t in resolve(policy, support, spec) if t not in targets]
    if not targets:
        raise GateError("name at least one target, like --to self:ssh", "invalid")
    return targets


# -- transitions --------------------------------------------------------------------------------


def new_request(
    policy: Policy,
    *,
    id: int,
    staff: str,
    targets: Iterable[str],
    window_s: int,
    reason: str,
    requester: str,
    now: datetime.datetime,
    start: datetime.datetime | None = None,
    ticket: str | None = None,
) -> GateRequest:
    """A new request, checked against the policy in force; GateError if it cannot be made."""
    support = gated_support(policy)
    if not reason.strip():
        raise GateError("give a reason: what the support session is for", "invalid")
    member = check_eligible(support, staff, window_s, unknown="invalid")
    resolved = resolve_targets(policy, support, targets)
    _check_versions(member.address, resolved)
    begin = start or now
    expires = now + datetime.timedelta(seconds=duration_seconds(support.request_ttl))
    if begin < now - START_GRACE:
        raise GateError(f"the window cannot start in the past ({when(begin)})", "invalid")
    if begin >= expires:
        raise GateError(
            f"the window starts {when(begin)}, after the request would expire ({when(expires)}: "
            f"request_ttl {support.request_ttl}); request nearer the time"
        )
    return GateRequest(
        id=id,
        gate=support.gate,
        staff=staff,
        address=member.address,
        targets=tuple(resolved),
        start=begin,
        end=begin + datetime.timedelta(seconds=window_s),
        reason=reason.strip(),
        ticket=ticket or None,
        requester=requester,
        created=now,
        expires=expires,
    )


def approve(request: GateRequest, policy: Policy, who: str, now: datetime.datetime) -> GateRequest:
    """One more approval; approved once the policy's `approvals_required` distinct people agree."""
    _check_pending(request, now, "approve")
    if who == request.requester:
        raise GateError(
            f"{who} cannot approve request {request.id}: they requested it (an approver must "
            "be someone else)"
        )
    if who == request.staff:
        raise GateError(f"{who} cannot approve access for themselves (request {request.id})")
    if any(a.who == who for a in request.approvals):
        raise GateError(f"{who} has already approved request {request.id}")
    approvals = (*request.approvals, Approval(who=who, at=now))
    needed = gated_support(policy).approvals_required
    status: Status = "approved" if len(approvals) >= needed else "requested"
    return request.model_copy(update={"approvals": approvals, "status": status})


def deny(request: GateRequest, who: str, reason: str, now: datetime.datetime) -> GateRequest:
    """Refuse (or withdraw) a request that is not open yet."""
    if request.status == "open":
        raise GateError(f"request {request.id} is open: close it instead")
    _check_pending(request, now, "deny")
    if not reason.strip():
        raise GateError("give a reason for the denial", "invalid")
    return request.model_copy(
        update={"status": "denied", "closed_at": now, "closed_by": who, "note": reason.strip()}
    )


def open_request(
    request: GateRequest, policy: Policy, who: str, now: datetime.datetime
) -> GateRequest:
    """Open an approved request's window, re-checking everything against today's policy."""
    if request.status == "open":
        raise GateError(f"request {request.id} is already open (until {when(request.end)})")
    _check_pending(request, now, "open")
    support = gated_support(policy)
    member = check_eligible(support, request.staff, request.window_s, unknown="refused")
    have, needed = len(request.approvals), support.approvals_required
    if have < needed:
        noun = "approval" if needed == 1 else "approvals"
        raise GateError(f"request {request.id} needs {needed} {noun}, has {have}")
    _recheck_targets(request, policy, support)
    if now < request.start:
        raise GateError(
            f"request {request.id}'s window starts at {when(request.start)} (in "
            f"{format_duration((request.start - now).total_seconds())}); open it then"
        )
    _check_versions(member.address, request.targets)
    return request.model_copy(
        update={
            "status": "open",
            "address": member.address,
            "opened_at": now,
            "opened_by": who,
            "gate": support.gate,
        }
    )


def close(request: GateRequest, who: str, now: datetime.datetime) -> GateRequest:
    """Close an open gate before the end of its window."""
    if request.status in PENDING:
        raise GateError(
            f"request {request.id} is not open ({request.status}): deny it to withdraw it"
        )
    if request.status != "open":
        raise GateError(f"request {request.id} is already {request.status}")
    if now >= request.end:
        return _ended(request)
    return request.model_copy(update={"status": "closed", "closed_at": now, "closed_by": who})


def due(request: GateRequest, now: datetime.datetime) -> GateRequest | None:
    """The request as time has left it (expired, or closed at its window's end), or None if
    nothing is due."""
    if request.status in PENDING:
        deadline = min(request.expires, request.end)
        if now >= deadline:
            why = (
                "not opened before its window ended"
                if deadline == request.end
                else ("not opened within request_ttl")
            )
            return request.model_copy(
                update={
                    "status": "expired",
                    "closed_at": deadline,
                    "closed_by": "expiry",
                    "note": why,
                }
            )
    if request.status == "open" and now >= request.end:
        return _ended(request)
    return None


def current(request: GateRequest, now: datetime.datetime) -> GateRequest:
    """The request with whatever is due applied (for display; nothing is stored)."""
    return due(request, now) or request


def held_grants(requests: Iterable[GateRequest], now: datetime.datetime) -> dict[Grant, float]:
    """Grant -> seconds left, for every open request whose window has not ended.

    Two open requests may grant the same element; it stays until the later window ends.
    """
    held: dict[Grant, float] = {}
    for request in requests:
        left = (request.end - now).total_seconds()
        if request.status != "open" or left <= 0:
            continue
        for grant in request.grants():
            held[grant] = max(held.get(grant, 0.0), left)
    return held


# -- helpers ------------------------------------------------------------------------------------


def _ended(request: GateRequest) -> GateRequest:
    return request.model_copy(
        update={
            "status": "closed",
            "closed_at": request.end,
            "closed_by": "expiry",
            "note": "window ended",
        }
    )


def _check_pending(request: GateRequest, now: datetime.datetime, action: str) -> None:
    expired = request if request.status == "expired" else due(request, now)
    if expired is not None and expired.status == "expired" and expired.closed_at is not None:
        raise GateError(
            f"request {request.id} expired at {when(expired.closed_at)} ({expired.note})"
        )
    if request.status not in PENDING:
        raise GateError(f"cannot {action} request {request.id}: it is {request.status}")


def _recheck_targets(request: GateRequest, policy: Policy, support: SupportVpn) -> None:
    for target in request.targets:
        spec = f"[{target.address}]:{target.service}"
        try:
            still = resolve(policy, support, spec)
        except GateError as exc:
            raise GateError(
                f"request {request.id} can no longer be opened: {exc.message}"
            ) from None
        if target not in still:
            raise GateError(
                f"request {request.id} can no longer be opened: the policy no longer grants "
                f"{target.label()}"
            )


def _check_versions(staff_address: str, targets: Iterable[Target]) -> None:
    staff_v6 = ":" in staff_address
    for target in targets:
        if (":" in target.address) != staff_v6:
            raise GateError(
                f"{target.address} and the staff address {staff_address} are of different IP "
                "versions: a gate grant joins the two"
            )
