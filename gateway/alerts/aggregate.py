"""Aggregation: repeated triggers of one rule for one key become one alert with a count.

Pure and deterministic: time comes from an injectable `clock` (UTC datetimes), nothing
sleeps, and every method returns the alerts to emit.

Life of an entry, keyed by (rule id, trigger key):

- The first trigger opens an alert: status `new`, emitted at once.
- Triggers while it is open add to `count`, move `last_seen`, keep the largest severity and
  observed value (`Evidence.merge`) and the latest context (endpoints, network, summary).
  An `update` is emitted at most every `update_every_s` seconds, and only when something
  changed since the last emission: a port scan of a thousand probes is one `new`, a few
  `update`s with growing counts, and one `close` — not a thousand alerts.
- With no trigger for `window_s` seconds (idle), or `max_open_s` after it opened, the entry
  is closed: a final `close` carries the totals. A trigger after that opens a new alert.

The table is bounded (`max_entries`): when full, the least recently touched entry is closed
early (emitted as `close` with label `closed_by: eviction`) and counted in `evicted`.
"""

from __future__ import annotations

import datetime
import heapq
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from gateway.alerts.record import (
    Alert,
    Evidence,
    Observer,
    Severity,
    Status,
    Trigger,
    new_alert_id,
    utc_now,
)

Clock = Callable[[], datetime.datetime]
Key = tuple[str, str]


@dataclass(frozen=True)
class Window:
    """Aggregation timing for a rule."""

    window_s: float = 60.0  # idle time that closes the alert
    update_every_s: float = 10.0  # at most one `update` per this many seconds
    max_open_s: float = 3600.0  # an alert open this long is closed and a new one starts

    def __post_init__(self) -> None:
        if self.window_s <= 0 or self.update_every_s < 0 or self.max_open_s <= 0:
            raise ValueError("aggregation window: times must be positive")


@dataclass(frozen=True)
class AggregationPolicy:
    default: Window = field(default_factory=Window)
    per_rule: Mapping[str, Window] = field(default_factory=dict)
    max_entries: int = 10_000

    def window(self, rule_id: str) -> Window:
        return self.per_rule.get(rule_id, self.default)


@dataclass
class _Entry:
    alert: Alert
    window: Window
    opened: datetime.datetime  # clock time
    touched: datetime.datetime  # clock time of the last trigger
    emitted: datetime.datetime  # clock time of the last emission
    dirty: bool = False


class Aggregator:
    """Bounded (rule id, key) -> open alert table. Not thread-safe: one owner."""

    def __init__(
        self,
        observer: Observer,
        policy: AggregationPolicy | None = None,
        *,
        clock: Clock = utc_now,
        new_id: Callable[[], str] = new_alert_id,
    ) -> None:
        self.observer = observer
        self.policy = policy or AggregationPolicy()
        if self.policy.max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.clock = clock
        self.new_id = new_id
        self._open: OrderedDict[Key, _Entry] = OrderedDict()  # least recently touched first
        self._dirty: set[Key] = set()
        # One (deadline, key) per open entry; a deadline only moves later, so a popped
        # entry that is not due yet is pushed back with its real deadline.
        self._deadlines: list[tuple[datetime.datetime, Key]] = []
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._open)

    def observe(self, trigger: Trigger) -> list[Alert]:
        """Take one trigger; return what to emit now (possibly nothing)."""
        now = self.clock()
        key: Key = (trigger.rule.id, trigger.key)
        out: list[Alert] = []
        entry = self._open.get(key)
        if entry is not None and self._expired(entry, now):
            out.append(self._close(key, now))
            entry = None
        if entry is None:
            if len(self._open) >= self.policy.max_entries:
                oldest = next(iter(self._open))
                out.append(self._close(oldest, now, evicted=True))
                self.evicted += 1
            out.append(self._open_entry(key, trigger, now))
            return out
        entry.alert = _absorb(entry.alert, trigger)
        entry.touched = now
        self._open.move_to_end(key)
        if (now - entry.emitted).total_seconds() >= entry.window.update_every_s:
            out.append(self._emit(key, entry, "update", now))
        else:
            entry.dirty = True
            self._dirty.add(key)
        return out

    def due(self) -> list[Alert]:
        """Updates whose quiet period has passed and closes of idle or too-old alerts."""
        now = self.clock()
        out: list[Alert] = []
        while self._deadlines and self._deadlines[0][0] <= now:
            _, key = heapq.heappop(self._deadlines)
            entry = self._open.get(key)
            if entry is None:
                continue  # closed already (eviction, or reopened under a new deadline)
            if self._expired(entry, now):
                out.append(self._close(key, now))
            else:
                heapq.heappush(self._deadlines, (self._deadline(entry), key))
        for key in sorted(self._dirty):
            entry = self._open[key]
            if (now - entry.emitted).total_seconds() >= entry.window.update_every_s:
                out.append(self._emit(key, entry, "update", now))
        return out

    def close_all(self) -> list[Alert]:
        """Close every open alert (a clean shutdown): the SOC sees final counts."""
        now = self.clock()
        return [self._close(key, now) for key in list(self._open)]

    def next_due(self) -> datetime.datetime | None:
        """The earliest time `due` may have something to emit (None: nothing open)."""
        times = [self._deadlines[0][0]] if self._deadlines else []
        times += [
            self._open[k].emitted + datetime.timedelta(seconds=self._open[k].window.update_every_s)
            for k in self._dirty
        ]
        return min(times) if times else None

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _deadline(entry: _Entry) -> datetime.datetime:
        idle = entry.touched + datetime.timedelta(seconds=entry.window.window_s)
        too_old = entry.opened + datetime.timedelta(seconds=entry.window.max_open_s)
        return min(idle, too_old)

    def _expired(self, entry: _Entry, now: datetime.datetime) -> bool:
        return now >= self._deadline(entry)

    def _open_entry(self, key: Key, trigger: Trigger, now: datetime.datetime) -> Alert:
        alert = Alert(
            id=self.new_id(),
            rule=trigger.rule,
            severity=trigger.severity,
            status="new",
            summary=trigger.summary,
            first_seen=trigger.ts,
            last_seen=trigger.ts,
            count=trigger.count,
            observer=self.observer,
            revision=0,
            emitted=now,
            technique=trigger.technique,
            source=trigger.source,
            destination=trigger.destination,
            network=trigger.network,
            action=trigger.action,
            evidence=trigger.evidence,
            key=trigger.key,
            labels=dict(trigger.labels),
        )
        entry = _Entry(alert, self.policy.window(key[0]), now, now, now)
        self._open[key] = entry
        heapq.heappush(self._deadlines, (self._deadline(entry), key))
        if len(self._deadlines) > 2 * self.policy.max_entries:
            self._compact()
        return alert

    def _compact(self) -> None:
        """Drop heap items of closed entries (an entry closed early leaves one behind)."""
        self._deadlines = [(self._deadline(e), k) for k, e in self._open.items()]
        heapq.heapify(self._deadlines)

    def _emit(self, key: Key, entry: _Entry, status: Status, now: datetime.datetime) -> Alert:
        entry.alert = replace(
            entry.alert,
            status=status,
            revision=entry.alert.revision + 1,
            emitted=now,
            observer=self.observer,
        )
        entry.emitted = now
        entry.dirty = False
        self._dirty.discard(key)
        return entry.alert

    def _close(self, key: Key, now: datetime.datetime, *, evicted: bool = False) -> Alert:
        entry = self._open.pop(key)
        self._dirty.discard(key)
        if evicted:
            entry.alert = replace(
                entry.alert, labels={**entry.alert.labels, "closed_by": "eviction"}
            )
        return self._emit(key, entry, "close", now)


def _absorb(alert: Alert, trigger: Trigger) -> Alert:
    evidence: Evidence | None = trigger.evidence
    if alert.evidence is not None:
        evidence = alert.evidence.merge(trigger.evidence or Evidence())
    severity: Severity = max(alert.severity, trigger.severity, key=lambda s: s.rank)
    return replace(
        alert,
        severity=severity,
        summary=trigger.summary,
        first_seen=min(alert.first_seen, trigger.ts),
        last_seen=max(alert.last_seen, trigger.ts),
        count=alert.count + trigger.count,
        technique=trigger.technique or alert.technique,
        source=trigger.source or alert.source,
        destination=trigger.destination or alert.destination,
        network=trigger.network or alert.network,
        action=trigger.action or alert.action,
        evidence=evidence,
        labels={**alert.labels, **trigger.labels},
    )
