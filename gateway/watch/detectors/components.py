"""Component events as alerts: policy drift, failed or reverted applies, MES login bursts.

Also the helpers the DNS, NTP, SSH and support detectors share: `Tally` (bounded per-key
burst counting and throttling, with a budget of new keys a minute), `endpoint`,
`udp_payload` and the untrusted-field readers. `gateway/watch/detectors/bounded.py` has
close relatives (`Reporter`, `KeyBudget`, `Recent`); the two sets should become one module.

Rules (all from `ComponentEvent`s; no packets):

- `PG-POLICY-DRIFT` — `policy.drift` (gateway/policy/drift.py): the live nftables table
  differs from the applied revision. Fields used: `revision`, `table_missing`, `added`,
  `removed`, `summary`. Critical when the table is missing (no protection), high otherwise.
  Key: the revision, so a drift that changes while uncorrected updates one alert.
- `PG-POLICY-REVERTED` — `policy.reverted`: a revision applied with `--confirm-within` was
  not confirmed and the watchdog loaded the last confirmed one again. Published once, by
  gateway/policy/operations.py `_record` (`revision` = the new revision, `of` = its
  target, `user`, `message`). The older shape (`revision` = the unconfirmed one, `by` = the
  new one) is still understood; both are keyed by the new revision and a second event about
  the same revert within `dedupe_s` is dropped.
- `PG-POLICY-APPLY-FAILED` — `policy.apply_failed` (fields `file`, `user`, `kind`,
  `error`), published by gateway/policy/operations.py when the kernel refuses a load
  (nothing changed; validation errors are not failures of this kind).
- `PG-MES-LOGIN-FAILURES` — `mes.login_failed` (mes/auth/notify.py: `reason`, `via`,
  `station`, `source_ip`, `employee_number`, `failures`, `context`): `login_threshold`
  failures from one client (its address, else its station) within `login_window_s`.
- `PG-MES-LOCKOUTS` — `mes.lockout` (`employee_number`, `station`, `source_ip`,
  `failures`): `lockout_threshold` account lockouts across the MES within
  `lockout_window_s` (many accounts locked at once is password spraying, one is a person
  who forgot a PIN).
- `PG-MES-AUDIT-BROKEN` — `mes.audit_broken` (mes/cli_audit.py: `problems`, `first`):
  `plantgate mes audit verify` found the MES's hash-chained audit trail edited, deleted,
  reordered or truncated. Critical, every time (keyed by the first problem, so a repeated
  verify of the same damage updates one alert): the plant's quality records are in doubt.

Fields of events that arrive over the Unix socket are untrusted JSON: every read is
type-checked and a malformed event is ignored, never raised.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from gateway.alerts import attack
from gateway.alerts.record import Endpoint, Evidence, Rule, Severity, Trigger
from gateway.watch.detectors.base import ComponentEvent, SiteView, WatchEvent, trigger_time

NO_TRIGGERS: tuple[Trigger, ...] = ()
OVERFLOW_KEY = "many-sources"

# ------------------------------------------------------------------------ shared helpers


class _Slot:
    __slots__ = ("active", "last_emit", "last_seen", "pending", "times", "token", "total", "trig")

    def __init__(self, threshold: int) -> None:
        self.times: deque[float] = deque(maxlen=threshold)
        self.active = False  # threshold reached; follow-ups are counted, not re-detected
        self.last_emit = 0.0
        self.last_seen = 0.0
        self.pending = 0  # follow-ups not reported yet
        self.total = 0  # occurrences in the current burst
        self.token: object = None
        self.trig: Trigger | None = None


class Tally:
    """Per key: fire when `threshold` occurrences fall within `window_s` (at or above).

    Then the burst is *active*: further occurrences are counted, not detected again, and
    reported at most every `every_s` as one trigger carrying their count (`add` answers the
    count when one is due, `flush` from `tick` reports what is left). So the aggregator's
    count is the true number of occurrences while a flood makes a handful of triggers.
    A key idle for `window_s` forgets its burst. With `threshold=1` it is a throttle.

    Memory: at most `max_keys` keys (least recently seen evicted first; an evicted key's
    unreported count is lost), each holding at most `threshold` times.

    `admit` caps how many *new* keys a minute may start reporting (`new_per_minute`):
    beyond it, occurrences are counted under `OVERFLOW_KEY`, so a flood of distinct (or
    spoofed) sources makes one "many sources" alert instead of one alert per source.
    """

    def __init__(
        self,
        threshold: int,
        window_s: float,
        every_s: float,
        max_keys: int,
        new_per_minute: int | None = None,
    ) -> None:
        self.threshold, self.window, self.every, self.max_keys = (
            threshold,
            window_s,
            every_s,
            max_keys,
        )
        self.new_per_minute = new_per_minute
        self._slots: OrderedDict[str, _Slot] = OrderedDict()
        self._pending: dict[str, None] = {}  # keys whose slot has an unreported count
        self._minute, self._admitted = -1, 0
        self.evicted = 0
        self.overflowed = 0

    def __len__(self) -> int:
        return len(self._slots)

    def admit(self, key: str, ts: float) -> str:
        """The key to count this occurrence under: `key`, or `OVERFLOW_KEY` when the
        minute's budget of new keys is spent."""
        if self.new_per_minute is None or key in self._slots:
            return key
        minute = int(ts // 60)
        if minute != self._minute:
            self._minute, self._admitted = minute, 0
        if self._admitted >= self.new_per_minute:
            self.overflowed += 1
            return OVERFLOW_KEY
        self._admitted += 1
        return key

    def add(self, key: str, ts: float, token: object = None) -> int:
        """Count one occurrence; the count to report now (0: nothing to report yet).

        A `token` equal to the previous one for this key is a repeat of the same thing (a
        retransmitted SYN from the same port) and is not counted.
        """
        slots = self._slots
        slot = slots.get(key)
        if slot is None:
            slot = slots[key] = _Slot(self.threshold)
            if len(slots) > self.max_keys:
                old, _ = slots.popitem(last=False)
                self._pending.pop(old, None)
                self.evicted += 1
        else:
            slots.move_to_end(key)
            if token is not None and token == slot.token:
                return 0
            if slot.active and ts - slot.last_seen > self.window:
                slot.active, slot.pending = False, 0  # the burst ended: detect afresh
                self._pending.pop(key, None)
        slot.token, slot.last_seen = token, ts
        if slot.active:
            slot.total += 1
            slot.pending += 1
            if ts - slot.last_emit < self.every:
                self._pending[key] = None
                return 0
            count, slot.pending, slot.last_emit = slot.pending, 0, ts
            self._pending.pop(key, None)
            return count
        times = slot.times
        times.append(ts)
        horizon = ts - self.window
        while times[0] <= horizon:  # outside the window: no longer counts
            times.popleft()
        if len(times) < self.threshold:
            return 0
        slot.active, slot.last_emit, slot.total = True, ts, len(times)
        times.clear()
        return slot.total

    def total(self, key: str) -> int:
        slot = self._slots.get(key)
        return slot.total if slot is not None else 0

    def remember(self, key: str, trigger: Trigger) -> None:
        """The trigger `flush` repeats (with a new count) for this key's follow-ups."""
        slot = self._slots.get(key)
        if slot is not None:
            slot.trig = trigger

    def flush(self, ts: float) -> list[Trigger]:
        """Report follow-ups due by `ts`, and drop keys idle for longer than the window."""
        out: list[Trigger] = []
        for key in list(self._pending):
            slot = self._slots[key]
            if ts - slot.last_emit < self.every:
                continue
            del self._pending[key]
            if slot.trig is not None and slot.pending:
                out.append(_repeat(slot.trig, slot.pending, slot.total, slot.last_seen))
            slot.pending, slot.last_emit = 0, ts
        horizon = ts - max(self.window, self.every)
        slots = self._slots
        while slots:
            key, slot = next(iter(slots.items()))
            if slot.last_seen > horizon or key in self._pending:
                break
            del slots[key]
        return out


def _repeat(trigger: Trigger, count: int, total: int, seen: float) -> Trigger:
    evidence = trigger.evidence
    if evidence is not None and evidence.observed is not None:
        evidence = dataclasses.replace(evidence, observed=float(total))
    return dataclasses.replace(trigger, count=count, ts=trigger_time(seen), evidence=evidence)


def overflowing(key: str, summary: str) -> str:
    """The summary of a trigger counted under `OVERFLOW_KEY` says so."""
    if key == OVERFLOW_KEY:
        return f"Many sources (more new ones a minute than reported one by one); latest: {summary}"
    return summary


def endpoint(
    site: SiteView, address: object, port: object = None, mac: object = None
) -> Endpoint | None:
    """The alert's view of an address (zone and role from the site); None when it is not
    an address. A bad port or MAC is left out rather than losing the endpoint."""
    if not isinstance(address, str) or not address:
        return None
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return None
    zone, role = site.zone_of(address), site.role_of(address)
    port_ = port if isinstance(port, int) and 0 <= port <= 65535 else None
    try:
        return Endpoint(address, port_, zone, role, mac if isinstance(mac, str) else None)
    except ValueError:
        return Endpoint(address, port_, zone, role)


def udp_payload(packet: bytes) -> bytes | None:
    """The UDP payload of a copied IPv4/IPv6 packet (as NFLOG hands it); None when the
    packet is not a first-or-only UDP fragment or is too short to say. Never raises."""
    if len(packet) < 20:
        return None
    version = packet[0] >> 4
    if version == 4:
        offset = (packet[0] & 0x0F) * 4
        if packet[9] != 17 or offset < 20 or (packet[6] & 0x1F) or packet[7]:
            return None  # not UDP, bad header length, or a later fragment
    elif version == 6 and len(packet) >= 40:
        next_header, offset = packet[6], 40
        while next_header in (0, 43, 44, 60):  # hop-by-hop, routing, fragment, dest. options
            if len(packet) < offset + 8:
                return None
            if next_header == 44:
                if (packet[offset + 2] << 8 | packet[offset + 3]) >> 3:
                    return None  # a later fragment: no UDP header
                next_header, offset = packet[offset], offset + 8
            else:
                next_header, offset = packet[offset], offset + (packet[offset + 1] + 1) * 8
        if next_header != 17:
            return None
    else:
        return None
    if len(packet) < offset + 8:
        return None
    length = packet[offset + 4] << 8 | packet[offset + 5]
    end = offset + length if length >= 8 else len(packet)
    return packet[offset + 8 : end]  # shorter when the snaplen cut it: decoders cope


def text(fields: Mapping[str, Any], name: str, limit: int = 200) -> str | None:
    """A string field of an untrusted event, cut to `limit` characters; None otherwise."""
    value = fields.get(name)
    if isinstance(value, str) and value:
        return value[:limit]
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def number(fields: Mapping[str, Any], name: str) -> float | None:
    value = fields.get(name)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


# ------------------------------------------------------------------------ settings


class ComponentSettings(BaseModel):
    """Alerts from component events: policy drift, failed or reverted applies, MES logins."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    enabled: bool = Field(default=True, description="Turn component-event alerts on or off.")
    drift: bool = Field(
        default=True,
        description="Alert when the live firewall table differs from the applied revision "
        "(policy.drift).",
    )
    applies: bool = Field(
        default=True,
        description="Alert on automatic reverts of unconfirmed revisions (policy.reverted) "
        "and on failed applies (policy.apply_failed).",
    )
    dedupe_s: float = Field(
        default=300.0,
        gt=0,
        le=86_400,
        description="Seconds within which a second event about the same revert is ignored "
        "(two components announce each one).",
    )
    login_threshold: int = Field(
        default=10,
        ge=1,
        le=100_000,
        description="MES login failures from one client (address, else station) that make "
        "an alert when they fall within login_window_s.",
    )
    login_window_s: float = Field(
        default=300.0, gt=0, le=86_400, description="Window for login_threshold, in seconds."
    )
    lockout_threshold: int = Field(
        default=3,
        ge=1,
        le=100_000,
        description="MES account lockouts (any accounts) within lockout_window_s that make "
        "an alert.",
    )
    lockout_window_s: float = Field(
        default=900.0, gt=0, le=86_400, description="Window for lockout_threshold, in seconds."
    )
    report_every_s: float = Field(
        default=10.0,
        gt=0,
        le=3600,
        description="While a burst goes on, its further occurrences are reported at most "
        "this often, as one trigger with their count.",
    )
    max_tracked: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="Most clients tracked at once (least recently seen forgotten first).",
    )


# ------------------------------------------------------------------------ rules

DRIFT = Rule("PG-POLICY-DRIFT", "Live firewall differs from the applied policy")
REVERTED = Rule("PG-POLICY-REVERTED", "Unconfirmed policy revision reverted")
APPLY_FAILED = Rule("PG-POLICY-APPLY-FAILED", "Policy apply failed")
LOGIN_FAILURES = Rule("PG-MES-LOGIN-FAILURES", "Burst of MES login failures")
LOCKOUTS = Rule("PG-MES-LOCKOUTS", "Burst of MES account lockouts")
AUDIT_BROKEN = Rule("PG-MES-AUDIT-BROKEN", "MES audit trail broken")


class ComponentDetector:
    """Policy and MES events -> triggers. State: two `Tally`s and a small dedupe table."""

    name = "components"
    accepts = frozenset({"component"})

    def __init__(self, settings: ComponentSettings | None = None) -> None:
        self.settings = s = settings or ComponentSettings()
        self._logins = Tally(s.login_threshold, s.login_window_s, s.report_every_s, s.max_tracked)
        self._lockouts = Tally(s.lockout_threshold, s.lockout_window_s, s.report_every_s, 1)
        self._seen: OrderedDict[str, float] = OrderedDict()  # revert keys -> when
        self._handlers: dict[str, Callable[[ComponentEvent, SiteView], Sequence[Trigger]]] = {}
        if s.drift:
            self._handlers["policy.drift"] = self._drift
        if s.applies:
            self._handlers["policy.reverted"] = self._reverted
            self._handlers["policy.apply_failed"] = self._apply_failed
        self._handlers["mes.login_failed"] = self._login_failed
        self._handlers["mes.lockout"] = self._lockout
        self._handlers["mes.audit_broken"] = _audit_broken

    def observe(self, event: WatchEvent, site: SiteView) -> Sequence[Trigger]:
        if type(event) is not ComponentEvent or not self.settings.enabled:
            return NO_TRIGGERS
        handler = self._handlers.get(event.event.kind)
        if handler is None or not isinstance(event.event.fields, dict):
            return NO_TRIGGERS
        return handler(event, site)

    def tick(self, ts: float) -> Sequence[Trigger]:
        return self._logins.flush(ts) + self._lockouts.flush(ts)

    def state_size(self) -> int:
        return len(self._logins) + len(self._lockouts) + len(self._seen)

    # ------------------------------------------------------------ policy

    def _drift(self, event: ComponentEvent, site: SiteView) -> Sequence[Trigger]:
        f = event.event.fields
        revision = text(f, "revision") or "unknown"
        missing = f.get("table_missing") is True
        summary = text(f, "summary") or f"the live table differs from revision {revision}"
        added, removed = number(f, "added"), number(f, "removed")
        changed = (added or 0) + (removed or 0)
        return (
            Trigger(
                rule=DRIFT,
                key=f"revision:{revision}",
                severity=Severity.CRITICAL if missing else Severity.HIGH,
                summary=f"Firewall {summary}",
                ts=trigger_time(event.ts),
                technique=attack.DISABLE_OR_MODIFY_FIREWALL,
                evidence=Evidence(observed=changed) if changed else None,
                labels={"revision": revision, "table_missing": missing},
            ),
        )

    def _reverted(self, event: ComponentEvent, site: SiteView) -> Sequence[Trigger]:
        f = event.event.fields
        by = text(f, "by")
        # runtime.py: revision = unconfirmed, by = new; operations.py: revision = new.
        new = by or text(f, "revision") or "unknown"
        unconfirmed = text(f, "revision") if by else None
        key = f"revision:{new}"
        if self._duplicate(key, event.ts):
            return NO_TRIGGERS
        target = text(f, "of")
        if unconfirmed:
            what = f"Policy revision {unconfirmed} was not confirmed in time"
        else:
            what = text(f, "message") or "A policy revision was not confirmed in time"
        back = f"revision {target}" if target else "the last confirmed revision"
        labels: dict[str, str] = {"revision": new}
        if target:
            labels["reverted_to"] = target
        return (
            Trigger(
                rule=REVERTED,
                key=key,
                severity=Severity.MEDIUM,
                summary=f"{what}: the watchdog loaded {back} again (revision {new})",
                ts=trigger_time(event.ts),
                labels=labels,
            ),
        )

    def _duplicate(self, key: str, ts: float) -> bool:
        seen = self._seen
        before = seen.get(key)
        seen[key] = ts
        seen.move_to_end(key)
        while len(seen) > 64:  # a few reverts a day at most: a small table is plenty
            seen.popitem(last=False)
        return before is not None and ts - before < self.settings.dedupe_s

    def _apply_failed(self, event: ComponentEvent, site: SiteView) -> Sequence[Trigger]:
        f = event.event.fields
        file, user = text(f, "file") or "a policy", text(f, "user") or "someone"
        error = text(f, "error", 300) or "no reason given"
        return (
            Trigger(
                rule=APPLY_FAILED,
                key=f"file:{file}",
                severity=Severity.MEDIUM,
                summary=f"{user} failed to apply {file}: {error}",
                ts=trigger_time(event.ts),
                labels={"file": file, "user": user, "kind": text(f, "kind") or "apply"},
            ),
        )

    # ------------------------------------------------------------ MES

    def _login_failed(self, event: ComponentEvent, site: SiteView) -> Sequence[Trigger]:
        f = event.event.fields
        address, station = text(f, "source_ip", 64), text(f, "station", 64)
        key = address or (f"station:{station}" if station else "unknown")
        count = self._logins.add(key, event.ts)
        if not count:
            return NO_TRIGGERS
        s = self.settings
        total = self._logins.total(key)
        where = address or (f"station {station}" if station else "an unknown client")
        labels = _mes_labels(f)
        trigger = Trigger(
            rule=LOGIN_FAILURES,
            key=key,
            severity=Severity.MEDIUM,
            summary=f"{total} failed MES logins from {where} within {s.login_window_s:g} s",
            ts=trigger_time(event.ts),
            technique=attack.BRUTE_FORCE,
            source=endpoint(site, address),
            evidence=Evidence(s.login_threshold, s.login_window_s, float(total)),
            count=count,
            labels=labels,
        )
        self._logins.remember(key, trigger)
        return (trigger,)

    def _lockout(self, event: ComponentEvent, site: SiteView) -> Sequence[Trigger]:
        f = event.event.fields
        count = self._lockouts.add("mes", event.ts)
        if not count:
            return NO_TRIGGERS
        s = self.settings
        total = self._lockouts.total("mes")
        address = text(f, "source_ip", 64)
        trigger = Trigger(
            rule=LOCKOUTS,
            key="mes",
            severity=Severity.HIGH,
            summary=f"{total} MES accounts locked out within {s.lockout_window_s:g} s "
            f"(latest {text(f, 'employee_number', 64) or 'unknown'})",
            ts=trigger_time(event.ts),
            technique=attack.BRUTE_FORCE,
            source=endpoint(site, address),
            evidence=Evidence(s.lockout_threshold, s.lockout_window_s, float(total)),
            count=count,
            labels=_mes_labels(f),
        )
        self._lockouts.remember("mes", trigger)
        return (trigger,)


def _audit_broken(event: ComponentEvent, site: SiteView) -> Sequence[Trigger]:
    f = event.event.fields
    first = text(f, "first", 300) or "no detail given"
    problems = number(f, "problems")
    how_many = f"{problems:g} problems" if problems else "problems"
    return (
        Trigger(
            rule=AUDIT_BROKEN,
            key=f"first:{first}",
            severity=Severity.CRITICAL,
            summary=f"MES audit trail failed verification ({how_many}): {first}",
            ts=trigger_time(event.ts),
            technique=attack.INDICATOR_REMOVAL,
            evidence=Evidence(observed=problems) if problems else None,
            labels={"first_problem": first},
        ),
    )


def _mes_labels(fields: Mapping[str, Any]) -> dict[str, str]:
    labels = {}
    for name in ("station", "via", "reason", "employee_number", "context"):
        value = text(fields, name, 64)
        if value is not None:
            labels[name] = value
    return labels
