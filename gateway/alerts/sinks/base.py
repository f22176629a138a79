"""What every sink shares: read the spool from its own cursor, deliver, retry, persist.

A sink never receives alerts pushed at it, so it can never drop one: it pulls records from
the spool after its cursor into a bounded in-memory backlog, delivers them in batches, and
persists the cursor of what is *confirmed* (`CursorStore`, throttled to every
`persist_every_s`). A failed delivery (`SinkError`) discards the backlog, backs off
exponentially (`Backoff`) and starts again from the confirmed cursor: delivery is at least
once, and a receiver deduplicates by alert id and revision.

The only way a sink misses a record is the spool's own bound: when the oldest segment is
deleted before the sink got to it. The gap is counted (`plantgate_sink_lost_total`) and
reported to the pipeline, which raises `PG-HEALTH-SINK-LOST`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from gateway.alerts.metrics import AlertMetrics
from gateway.alerts.sinks.spool import CursorStore, Spool, Spooled

log = logging.getLogger(__name__)


class SinkError(RuntimeError):
    """A delivery failed in a way worth retrying (connection, timeout, 5xx)."""


class Notifier:
    """Wakes readers when the spool's `last_seq` moves (one asyncio loop)."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool
        self._event = asyncio.Event()

    def notify(self) -> None:
        event, self._event = self._event, asyncio.Event()
        event.set()

    async def wait_after(self, seq: int, timeout: float) -> bool:
        """True as soon as the spool holds a record after `seq`; False after `timeout`."""
        if self.spool.last_seq > seq:
            return True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        return self.spool.last_seq > seq


@dataclass
class SinkContext:
    spool: Spool
    notifier: Notifier
    cursors: CursorStore
    metrics: AlertMetrics
    report_lost: Callable[[str, int], None]


class Backoff:
    """Exponential backoff with a cap: 0.5, 1, 2, ... `cap` seconds."""

    def __init__(self, initial: float = 0.5, cap: float = 30.0) -> None:
        self.initial, self.cap = initial, cap
        self._next = initial

    def next(self) -> float:
        delay = self._next
        self._next = min(self.cap, self._next * 2)
        return delay

    def reset(self) -> None:
        self._next = self.initial


class CursorSink:
    """Subclasses implement `send`, and may override `confirmed`, `idle` and `close`."""

    name = "sink"
    batch_size = 100
    backlog_max = 1000
    persist_every_s = 0.5

    def __init__(self, *, backoff: Backoff | None = None) -> None:
        self.backoff = backoff or Backoff()
        self.confirmed_seq = 0

    async def send(self, batch: list[Spooled]) -> None:
        """Deliver `batch` or raise SinkError."""
        raise NotImplementedError

    def confirmed(self, sent: int) -> int:
        """The highest seq whose delivery is certain, given that `sent` was handed over."""
        return sent

    async def idle(self) -> None:
        """Called when there is nothing to send (keep-alive checks)."""

    async def close(self) -> None:
        """Release connections."""

    async def run(self, ctx: SinkContext, stop: asyncio.Event) -> None:
        spool, metrics = ctx.spool, ctx.metrics
        confirmed = ctx.cursors.get(self.name)
        if confirmed > spool.last_seq:  # the spool was reset under us: start over
            log.warning(
                "%s: cursor %d beyond the spool (%d); restarting",
                self.name,
                confirmed,
                spool.last_seq,
            )
            confirmed = 0
        sent = confirmed
        persisted, persisted_at = confirmed, time.monotonic()
        backlog: deque[Spooled] = deque()
        try:
            while not stop.is_set():
                tail = backlog[-1].seq if backlog else sent
                if len(backlog) < self.backlog_max and spool.last_seq > tail:
                    records = await asyncio.to_thread(
                        spool.read, tail, self.backlog_max - len(backlog)
                    )
                    if records and records[0].seq > tail + 1:
                        lost = records[0].seq - tail - 1
                        metrics.sink_lost.labels(sink=self.name).inc(lost)
                        ctx.report_lost(self.name, lost)
                        log.error("%s: %d alerts evicted before delivery", self.name, lost)
                        if not backlog:
                            sent = records[0].seq - 1
                    backlog.extend(records)
                metrics.queue_depth.labels(queue=f"sink:{self.name}").set(len(backlog))
                metrics.sink_lag.labels(sink=self.name).set(spool.last_seq - sent)
                try:
                    if backlog:
                        batch = [backlog[i] for i in range(min(self.batch_size, len(backlog)))]
                        await self.send(batch)
                        for _ in batch:
                            backlog.popleft()
                        sent = batch[-1].seq
                        metrics.sink_delivered.labels(sink=self.name).inc(len(batch))
                        self.backoff.reset()
                    else:
                        await self.idle()
                        await ctx.notifier.wait_after(sent, 1.0)
                    confirmed = max(confirmed, self.confirmed(sent))
                except SinkError as exc:
                    metrics.sink_errors.labels(sink=self.name).inc()
                    log.warning("%s: %s", self.name, exc)
                    await self.close()
                    backlog.clear()
                    sent = confirmed  # resend whatever was not confirmed
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.backoff.next())
                self.confirmed_seq = confirmed
                now = time.monotonic()
                if confirmed != persisted and now - persisted_at >= self.persist_every_s:
                    await asyncio.to_thread(ctx.cursors.set, self.name, confirmed)
                    persisted, persisted_at = confirmed, now
        finally:
            with contextlib.suppress(SinkError):
                confirmed = max(confirmed, self.confirmed(sent))
            await self.close()
            if confirmed != persisted:
                ctx.cursors.set(self.name, confirmed)
