"""The alert pipeline: Triggers in, durable alerts out, sinks fed from the spool.

    detector --submit(Trigger)--> intake queue (bounded) --> Aggregator --> Spool (fsync)
                                                                             |--> feed (cursor)
                                                                             '--> sinks (cursors)

- `submit` never blocks and never raises: when the intake queue is full the trigger is
  dropped and counted. Drops are themselves an alert, `PG-HEALTH-QUEUE-DROP`, raised by the
  pipeline directly into the aggregator (never through the queue that is full).
- An alert is *accepted* when the spool has fsynced it; only then do the feed and the sinks
  see it. Appends are batched (group commit): one fsync covers every alert of a round.
- Other losses are alerts too: spool segments evicted to bound the disk
  (`PG-HEALTH-SPOOL-EVICTED`), alerts a sink never delivered because of that
  (`PG-HEALTH-SINK-LOST`), and events a source lost before any detector saw them
  (`report_lost`, `PG-HEALTH-EVENTS-LOST`, for the watcher's NFLOG overruns and the like).
- On a clean stop every open alert is closed, so the SOC sees the final counts.

Everything runs on one asyncio loop; only the spool's append and reads go to a thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.alerts.aggregate import AggregationPolicy, Aggregator, Clock
from gateway.alerts.metrics import AlertMetrics
from gateway.alerts.record import (
    Alert,
    Evidence,
    Observer,
    Rule,
    Severity,
    Trigger,
    utc_now,
)
from gateway.alerts.sinks.base import CursorSink, Notifier, SinkContext
from gateway.alerts.sinks.spool import CursorStore, Eviction, Spool

log = logging.getLogger(__name__)

HEALTH_QUEUE_DROP = Rule("PG-HEALTH-QUEUE-DROP", "Alert pipeline dropped triggers", "1")
HEALTH_SPOOL_EVICTED = Rule("PG-HEALTH-SPOOL-EVICTED", "Spooled alerts deleted to bound disk", "1")
HEALTH_SINK_LOST = Rule("PG-HEALTH-SINK-LOST", "Alerts never delivered to a sink", "1")
HEALTH_EVENTS_LOST = Rule("PG-HEALTH-EVENTS-LOST", "Events lost before detection", "1")
BATCH = 512
TICK_S = 1.0


@dataclass
class _Losses:
    """Loss counts reported from any thread, turned into health triggers by `run`."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    evicted: int = 0
    sinks: dict[str, int] = field(default_factory=dict)
    events: dict[str, int] = field(default_factory=dict)

    def take(self) -> tuple[int, dict[str, int], dict[str, int]]:
        with self.lock:
            out = (self.evicted, self.sinks, self.events)
            self.evicted, self.sinks, self.events = 0, {}, {}
        return out


class AlertPipeline:
    """Owns the aggregator and drives the spool and the sinks; see the module doc."""

    def __init__(
        self,
        spool: Spool,
        observer: Observer,
        *,
        cursors: CursorStore,
        policy: AggregationPolicy | None = None,
        metrics: AlertMetrics | None = None,
        sinks: Sequence[CursorSink] = (),
        intake_size: int = 10_000,
        clock: Clock = utc_now,
    ) -> None:
        self.spool = spool
        self.metrics = metrics or AlertMetrics()
        self.aggregator = Aggregator(observer, policy, clock=clock)
        self.cursors = cursors
        self.sinks = list(sinks)
        self.intake_size = intake_size
        self.clock = clock
        self.dropped = 0
        self._dropped_reported = 0
        self._agg_evicted = 0
        self._losses = _Losses()
        self._queue: asyncio.Queue[Trigger] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.notifier = Notifier(spool)
        spool.on_evict = self._on_evict
        # Called with the alerts and their seqs after each durable commit (latency probes).
        self.on_commit: list[Callable[[Sequence[Alert], Sequence[int]], None]] = []

    # ------------------------------------------------------------------ detectors' API

    @property
    def observer(self) -> Observer:
        return self.aggregator.observer

    def set_observer(self, observer: Observer) -> None:
        """New site/mode (a policy change, learning -> protecting): stamped on later emissions."""
        self.aggregator.observer = observer

    def submit(self, trigger: Trigger) -> bool:
        """Hand a trigger over (event-loop thread); False when dropped (queue full)."""
        queue = self._intake()
        try:
            queue.put_nowait(trigger)
        except asyncio.QueueFull:
            self.dropped += 1
            self.metrics.triggers_dropped.inc()
            return False
        return True

    def submit_threadsafe(self, trigger: Trigger) -> None:
        """`submit` from another thread (a blocking reader): scheduled on the loop."""
        if self._loop is None:
            raise RuntimeError("the pipeline is not running")
        self._loop.call_soon_threadsafe(self.submit, trigger)

    def report_lost(self, source: str, count: int) -> None:
        """A source lost `count` events (e.g. NFLOG ENOBUFS): counted, and alerted on."""
        if count <= 0:
            return
        self.metrics.events_lost.labels(source=source).inc(count)
        with self._losses.lock:
            self._losses.events[source] = self._losses.events.get(source, 0) + count

    def count_event(self, source: str, n: int = 1) -> None:
        """`n` events came in from `source` (the watcher counts per batch, not per event)."""
        if n > 0:
            self.metrics.events_in.labels(source=source).inc(n)

    # ------------------------------------------------------------------ running

    def _intake(self) -> asyncio.Queue[Trigger]:
        if self._queue is None:
            self._queue = asyncio.Queue(self.intake_size)
        return self._queue

    async def run(self, stop: asyncio.Event) -> None:
        """Aggregate, spool and feed the sinks until `stop`; then close open alerts."""
        self._loop = asyncio.get_running_loop()
        queue = self._intake()
        ctx = SinkContext(self.spool, self.notifier, self.cursors, self.metrics, self._sink_lost)
        tasks = [asyncio.create_task(sink.run(ctx, stop)) for sink in self.sinks]
        try:
            while not stop.is_set():
                triggers = await self._next_batch(queue, stop)
                await self.process(triggers)
        finally:
            with contextlib.suppress(Exception):
                await self._commit(self.aggregator.close_all())
            stop.set()
            for task in tasks:
                with contextlib.suppress(Exception):
                    await task

    async def process(self, triggers: Sequence[Trigger]) -> list[int]:
        """One round: aggregate `triggers`, emit what is due, raise health alerts, commit."""
        alerts: list[Alert] = []
        for trigger in triggers:
            self.metrics.triggers.labels(rule=trigger.rule.id).inc()
            alerts += self.aggregator.observe(trigger)
        for trigger in self._health_triggers():
            alerts += self.aggregator.observe(trigger)
        alerts += self.aggregator.due()
        if self.aggregator.evicted > self._agg_evicted:
            self.metrics.aggregator_evicted.inc(self.aggregator.evicted - self._agg_evicted)
            self._agg_evicted = self.aggregator.evicted
        return await self._commit(alerts)

    async def _next_batch(
        self, queue: asyncio.Queue[Trigger], stop: asyncio.Event
    ) -> list[Trigger]:
        batch: list[Trigger] = []
        if queue.empty():
            timeout = TICK_S
            due = self.aggregator.next_due()
            if due is not None:
                timeout = min(TICK_S, max(0.0, (due - self.clock()).total_seconds()))
            getter = asyncio.ensure_future(queue.get())
            stopper = asyncio.ensure_future(stop.wait())
            done, _ = await asyncio.wait(
                {getter, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
            )
            stopper.cancel()
            if getter in done:
                batch.append(getter.result())
            else:
                getter.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await getter
        while len(batch) < BATCH and not queue.empty():
            batch.append(queue.get_nowait())
        self.metrics.queue_depth.labels(queue="intake").set(queue.qsize())
        return batch

    async def _commit(self, alerts: list[Alert]) -> list[int]:
        self.metrics.aggregator_open.set(len(self.aggregator))
        if not alerts:
            return []
        loop = asyncio.get_running_loop()
        started = loop.time()
        seqs = await asyncio.to_thread(self.spool.append, alerts)
        self.metrics.fsync_seconds.observe(loop.time() - started)
        for alert in alerts:
            self.metrics.alerts.labels(
                rule=alert.rule.id, severity=alert.severity.value, status=alert.status
            ).inc()
        self.metrics.spool_last_seq.set(self.spool.last_seq)
        self.metrics.spool_bytes.set(self.spool.total_bytes())
        self.notifier.notify()
        for hook in self.on_commit:
            hook(alerts, seqs)
        return seqs

    # ------------------------------------------------------------------ health

    def _on_evict(self, eviction: Eviction) -> None:  # called from the spool's thread
        self.metrics.alerts_evicted.inc(eviction.count)
        log.error(
            "spool full: deleted %s (alerts %d-%d)",
            eviction.segment,
            eviction.first_seq,
            eviction.last_seq,
        )
        with self._losses.lock:
            self._losses.evicted += eviction.count

    def _sink_lost(self, sink: str, count: int) -> None:
        with self._losses.lock:
            self._losses.sinks[sink] = self._losses.sinks.get(sink, 0) + count

    def _health_triggers(self) -> list[Trigger]:
        now = self.clock()
        out: list[Trigger] = []
        drops = self.dropped - self._dropped_reported
        if drops > 0:
            self._dropped_reported = self.dropped
            out.append(
                _health(
                    HEALTH_QUEUE_DROP,
                    "intake",
                    Severity.HIGH,
                    f"alert pipeline dropped {drops} triggers: intake queue full "
                    f"({self.intake_size})",
                    drops,
                    now,
                    threshold=float(self.intake_size),
                )
            )
        evicted, sinks, events = self._losses.take()
        if evicted:
            out.append(
                _health(
                    HEALTH_SPOOL_EVICTED,
                    "spool",
                    Severity.HIGH,
                    f"{evicted} spooled alerts deleted to keep the spool within its bound",
                    evicted,
                    now,
                )
            )
        for sink, count in sorted(sinks.items()):
            out.append(
                _health(
                    HEALTH_SINK_LOST,
                    sink,
                    Severity.HIGH,
                    f"{count} alerts were deleted from the spool before {sink} delivered them",
                    count,
                    now,
                )
            )
        for source, count in sorted(events.items()):
            out.append(
                _health(
                    HEALTH_EVENTS_LOST,
                    source,
                    Severity.MEDIUM,
                    f"{count} events from {source} were lost before detection",
                    count,
                    now,
                )
            )
        return out


def _health(
    rule: Rule,
    key: str,
    severity: Severity,
    summary: str,
    count: int,
    now: datetime.datetime,
    *,
    threshold: float | None = None,
) -> Trigger:
    return Trigger(
        rule=rule,
        key=key,
        severity=severity,
        summary=summary,
        ts=now,
        count=count,
        evidence=Evidence(threshold=threshold, observed=float(count)),
        labels={"health": True},
    )
