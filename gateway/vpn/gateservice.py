"""Gate operations: the pure machine (gate.py) + the store + the kernel + audit + events.

Each operation takes the store's lock, first brings every request up to date (pending ones
past their deadline expire; for open, close and expire_due, open ones past their window are
recorded closed and their conntrack entries removed), then does its transition against the
policy of the current revision, changes the kernel if it must, saves the request, appends
to the audit log and publishes a `gate.*` event. The kernel changes before the record does:
a refused kernel change leaves the request as it was.

Events: `gate.requested`, `gate.approved`, `gate.denied`, `gate.opened`, `gate.closed` (by a
person or at the window's end, `by: expiry`), `gate.expired` (a pending request that was
never opened). The CLI sends them to plantgated's event socket; the daemon publishes them on
its bus (`bus_publisher`).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from gateway.audit import AuditLog
from gateway.events import Bus, Event, send_event, utc_now
from gateway.policy.errors import PolicyError
from gateway.policy.load import load_text
from gateway.policy.model import Policy
from gateway.policy.nft import NftError
from gateway.policy.revisions import RevisionStore
from gateway.vpn import gate
from gateway.vpn.gate import LIVE, PENDING, GateRequest, Grant, format_duration, held_grants
from gateway.vpn.gatekernel import GateKernel, NftGateKernel
from gateway.vpn.gatestore import GateStore
from gateway.vpn.targets import GateError

log = logging.getLogger(__name__)
SOURCE = "plantgate"
EXPIRY = "plantgate-expiry"
Publisher = Callable[[Event], object]
Clock = Callable[[], datetime.datetime]


class PolicyReader:
    """The policy of the current revision (with its VPN override), cached per revision."""

    def __init__(self, state: Path) -> None:
        self.store = RevisionStore(state)
        self._cache: tuple[tuple[int, str, str | None], Policy] | None = None

    def __call__(self) -> Policy:
        revision = self.store.current()
        if revision is None:
            raise GateError("no policy is loaded: apply one first (plantgate policy apply)")
        key = (revision.number, revision.sha256, revision.vpn_mode)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        try:
            loaded = load_text(self.store.policy_text(revision.number), revision.file)
        except (PolicyError, OSError) as exc:
            raise GateError(f"revision {revision.number}'s policy cannot be read: {exc}") from None
        if revision.vpn_mode is not None:
            loaded = loaded.with_vpn_mode(revision.vpn_mode)
        self._cache = (key, loaded.policy)
        return loaded.policy


class GateService:
    """The gate's operations on one state directory, in the calling thread's namespace."""

    def __init__(
        self,
        state: Path,
        *,
        kernel: GateKernel | None = None,
        publish: Publisher | None = None,
        clock: Clock = utc_now,
        policy: Callable[[], Policy] | None = None,
        source: str = SOURCE,
    ) -> None:
        self.state = state
        self.store = GateStore(state)
        self.kernel = kernel or NftGateKernel()
        self.publish: Publisher = publish or (lambda event: send_event(state, event))
        self.clock = clock
        self.policy = policy or PolicyReader(state)
        self.source = source

    # -- operations -----------------------------------------------------------------------

    def request(
        self,
        staff: str,
        targets: Iterable[str],
        window: str | int,
        *,
        reason: str,
        requester: str,
        start: datetime.datetime | None = None,
        ticket: str | None = None,
    ) -> GateRequest:
        window_s = gate.parse_duration(window) if isinstance(window, str) else window
        with self.store.locked():
            now = self.clock()
            self._expire_locked(now, kernel=False)
            created = gate.new_request(
                self.policy(),
                id=self.store.next_id(),
                staff=staff,
                targets=list(targets),
                window_s=window_s,
                reason=reason,
                requester=requester,
                now=now,
                start=start,
                ticket=ticket,
            )
            self.store.save(created)
            self._record(requester, "gate.requested", created)
            return created

    def approve(self, number: int, who: str) -> GateRequest:
        with self.store.locked():
            now = self.clock()
            self._expire_locked(now, kernel=False)
            approved = gate.approve(self.store.get(number), self.policy(), who, now)
            self.store.save(approved)
            self._record(who, "gate.approved", approved)
            return approved

    def deny(self, number: int, who: str, reason: str) -> GateRequest:
        with self.store.locked():
            now = self.clock()
            self._expire_locked(now, kernel=False)
            denied = gate.deny(self.store.get(number), who, reason, now)
            self.store.save(denied)
            self._record(who, "gate.denied", denied)
            return denied

    def open(self, number: int, who: str) -> GateRequest:
        with self.store.locked():
            now = self.clock()
            self._expire_locked(now)
            opened = gate.open_request(self.store.get(number), self.policy(), who, now)
            others = [r for r in self.store.all() if r.id != number]
            held = held_grants([*others, opened], now)
            keep = {g: held[g] for g in opened.grants()}
            self._sync(opened.gate, keep, [], "open")
            self.store.save(opened)
            self._record(who, "gate.opened", opened)
            return opened

    def close(self, number: int, who: str) -> GateRequest:
        with self.store.locked():
            now = self.clock()
            self._expire_locked(now)
            closed = gate.close(self.store.get(number), who, now)
            flows = self._release(closed, now, "close")
            self.store.save(closed)
            self._record(who, "gate.closed", closed, flows_ended=flows)
            return closed

    def list_requests(self, include_all: bool = False) -> list[GateRequest]:
        """Requests as of now (what is due shown applied, nothing stored); live ones only
        unless `include_all`."""
        now = self.clock()
        shown = [gate.current(r, now) for r in self.store.all()]
        return shown if include_all else [r for r in shown if r.status in LIVE]

    def expire_due(self) -> list[GateRequest]:
        """Record what time has done (expired requests, ended windows); returns them."""
        with self.store.locked():
            return self._expire_locked(self.clock())

    # -- helpers ----------------------------------------------------------------------------

    def _expire_locked(self, now: datetime.datetime, kernel: bool = True) -> list[GateRequest]:
        """Record what is due. Without `kernel`, only pending requests: an ended window
        waits for an operation that may touch the kernel (open, close, expire_due), so
        that requesting, approving and denying never do."""
        changed = []
        requests = self.store.all()
        for request in requests:
            after = gate.due(request, now)
            if after is None or (not kernel and request.status == "open"):
                continue
            flows = 0
            if request.status == "open":
                others = [r for r in requests if r.id != request.id]
                flows = self._release(after, now, "expiry", others=others, best_effort=True)
            self.store.save(after)
            kind = "gate.expired" if request.status in PENDING else "gate.closed"
            self._record(EXPIRY, kind, after, flows_ended=flows)
            changed.append(after)
        return changed

    def _release(
        self,
        request: GateRequest,
        now: datetime.datetime,
        what: str,
        *,
        others: list[GateRequest] | None = None,
        best_effort: bool = False,
    ) -> int:
        """Remove a request's grants that no other open request holds; delete their flows."""
        rest = others if others is not None else self.store.all()
        held = held_grants([r for r in rest if r.id != request.id], now)
        grants = request.grants()
        keep = {g: held[g] for g in grants if g in held}
        drop = [g for g in grants if g not in held]
        try:
            return self._sync(request.gate, keep, drop, what)
        except GateError as exc:
            if not best_effort:
                raise
            log.warning("gate request %d: %s", request.id, exc.message)
            return 0

    def _sync(self, gate_name: str, keep: dict[Grant, float], drop: list[Grant], what: str) -> int:
        try:
            return self.kernel.sync(gate_name, keep, drop)
        except NftError as exc:
            hint = (
                " (is the policy loaded in this namespace?)" if "No such file" in str(exc) else ""
            )
            raise GateError(f"the kernel refused the gate {what}: {exc}{hint}") from None
        except OSError as exc:
            raise GateError(f"the gate {what} failed in the kernel: {exc}") from None

    def _record(self, actor: str, action: str, request: GateRequest, **extra: Any) -> None:
        details = {**summary(request), "by": actor, **extra}
        AuditLog(self.state).append(actor, action, details)
        self.publish(Event(action, self.source, details))


def summary(request: GateRequest) -> dict[str, Any]:
    """What events and audit entries say about a request (JSON-ready)."""
    return {
        "id": request.id,
        "gate": request.gate,
        "status": request.status,
        "staff": request.staff,
        "address": request.address,
        "targets": [t.label() for t in request.targets],
        "start": request.start.isoformat(),
        "end": request.end.isoformat(),
        "window": format_duration(request.window_s),
        "reason": request.reason,
        "ticket": request.ticket,
        "requester": request.requester,
        "approvals": [{"who": a.who, "at": a.at.isoformat()} for a in request.approvals],
        "note": request.note,
    }


def bus_publisher(bus: Bus, loop: asyncio.AbstractEventLoop) -> Publisher:
    """A publisher that may be called from worker threads: events go onto the daemon's bus."""

    def publish(event: Event) -> None:
        asyncio.run_coroutine_threadsafe(bus.publish(event), loop)

    return publish


async def gate_upkeep(service: GateService, stop: asyncio.Event, interval: float = 5.0) -> None:
    """For plantgated: record expiries as they fall due (the kernel has already enforced
    them), until `stop` is set."""
    while not stop.is_set():
        try:
            await asyncio.to_thread(service.expire_due)
        except (GateError, OSError) as exc:
            log.error("gate upkeep failed: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
