"""The detection engine: every event through every detector, triggers to the alert pipeline.

    sources --offer(source, event)--> bounded queue --> detectors --> AlertPipeline.submit
                                          |                 '-- tick() about once a second
                                          '-- full: dropped, counted, reported as lost

* `offer` never blocks: a full queue drops the event and counts it per source; `run`
  reports those counts through `report_lost` (the pipeline raises `PG-HEALTH-EVENTS-LOST`),
  so a loss is never silent. Every accepted event is counted per source, and the counts go
  to `count` (the pipeline's `count_event`, Prometheus) once a tick rather than per event.
* `process` drains the queue in batches, so sources read the kernel's sockets promptly
  (the kernel's own buffers are the first queue, and their overruns are counted by the
  sources) and the detectors run between reads.
* A detector that raises is logged (once a minute at most per detector) and counted; the
  others go on, and so does the engine.
* `observe` runs one event synchronously (the benchmark and tests use it).
* Events are routed: a detector that declares `accepts` (its routes, `route_of`) is handed
  only those events, in the registry's order; one without sees every event. Most events
  concern two to seven of the fourteen detectors, and at tens of thousands of events a
  second the calls that would return nothing are most of the work.

Everything runs on the daemon's asyncio loop; detectors are pure and single-threaded.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from gateway.alerts.record import Trigger
from gateway.watch.detectors.base import (
    PACKET_ROUTES,
    ROUTES,
    Detector,
    PacketEvent,
    SiteView,
    WatchEvent,
    route_of,
)

log = logging.getLogger(__name__)
TICK_S = 1.0
BATCH = 2048


@dataclass
class EngineStats:
    events: dict[str, int] = field(default_factory=dict)  # accepted, by source
    dropped: dict[str, int] = field(default_factory=dict)  # queue full, by source
    triggers: int = 0
    failures: dict[str, int] = field(default_factory=dict)  # exceptions, by detector


class Engine:
    """Runs `detectors` over events for `site`; hands triggers to `submit`."""

    def __init__(
        self,
        detectors: Sequence[Detector],
        site: SiteView,
        submit: Callable[[Trigger], object],
        *,
        count: Callable[[str, int], None] | None = None,
        lost: Callable[[str, int], None] | None = None,
        queue_size: int = 50_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.detectors = list(detectors)
        # route -> the detectors that accept it; events of other routes go to every
        # detector without `accepts` (bounded: the routes come from the event types)
        self._by_kind = {kind: self._route(r) for kind, r in PACKET_ROUTES.items()}
        self._by_type = {cls: self._route(r) for cls, r in ROUTES.items()}
        self.site = site
        self.submit = submit
        self.count = count or (lambda _source, _n: None)
        self.lost = lost or (lambda _source, _n: None)
        self.queue_size = queue_size
        self.clock = clock
        self.stats = EngineStats()
        self._queue: deque[WatchEvent] = deque()
        self._reported: dict[str, int] = {}
        self._counted: dict[str, int] = {}
        self._logged: dict[str, float] = {}
        self._wake: asyncio.Event | None = None
        self._last_tick = 0.0

    # -- intake --

    def offer(self, source: str, event: WatchEvent) -> bool:
        """Queue an event from `source`; False (counted) when the queue is full."""
        if len(self._queue) >= self.queue_size:
            self.stats.dropped[source] = self.stats.dropped.get(source, 0) + 1
            return False
        self._queue.append(event)
        self.stats.events[source] = self.stats.events.get(source, 0) + 1
        if self._wake is not None:
            self._wake.set()
        return True

    def depth(self) -> int:
        return len(self._queue)

    # -- detection --

    def _route(self, route: str) -> list[Detector]:
        out = []
        for detector in self.detectors:
            accepts = getattr(detector, "accepts", None)
            if accepts is None or route in accepts:
                out.append(detector)
        return out

    def detectors_for(self, event: WatchEvent) -> list[Detector]:
        """The detectors that see `event`, in order."""
        if type(event) is PacketEvent:
            found = self._by_kind.get(event.kind)
        else:
            found = self._by_type.get(type(event))
        if found is None:  # a kind or type the tables do not know: by its route
            found = self._route(route_of(event))
        return found

    def observe(self, event: WatchEvent) -> list[Trigger]:
        """Every (accepting) detector's triggers for one event (submitted, and returned)."""
        out: list[Trigger] = []
        site = self.site
        if type(event) is PacketEvent:  # detectors_for, inline: this runs per event
            detectors = self._by_kind.get(event.kind)
        else:
            detectors = self._by_type.get(type(event))
        if detectors is None:
            detectors = self.detectors_for(event)
        for detector in detectors:
            try:
                triggers = detector.observe(event, site)
            except Exception:  # one broken detector must not blind the others
                self._failed(detector.name)
                continue
            if triggers:
                out.extend(triggers)
        if out:
            for trigger in out:
                self.submit(trigger)
            self.stats.triggers += len(out)
        return out

    def process(self, budget: int = BATCH) -> int:
        """Run up to `budget` queued events; how many ran."""
        queue, done = self._queue, 0
        while queue and done < budget:
            self.observe(queue.popleft())
            done += 1
        return done

    def tick(self, ts: float | None = None) -> list[Trigger]:
        """Time passes: every detector's `tick`, and the queue's losses reported."""
        now = self.clock() if ts is None else ts
        out: list[Trigger] = []
        for detector in self.detectors:
            try:
                out.extend(detector.tick(now))
            except Exception:
                self._failed(detector.name)
        for trigger in out:
            self.submit(trigger)
        self.stats.triggers += len(out)
        self._report_counts()
        self._report_drops()
        self._last_tick = now
        return out

    def state_size(self) -> dict[str, int]:
        return {d.name: d.state_size() for d in self.detectors}

    def carry_over(self, previous: Engine) -> None:
        """Go on from `previous` (rebuilt on a policy change): its counts, and how much of
        them was already reported, so that no event is counted and no loss reported twice."""
        self.stats = previous.stats
        self._counted = previous._counted
        self._reported = previous._reported

    def _report_counts(self) -> None:
        for source, seen in self.stats.events.items():
            new = seen - self._counted.get(source, 0)
            if new > 0:
                self._counted[source] = seen
                self.count(source, new)

    def _report_drops(self) -> None:
        for source, dropped in self.stats.dropped.items():
            new = dropped - self._reported.get(source, 0)
            if new > 0:
                self._reported[source] = dropped
                self.lost(f"{source} (watcher queue full)", new)

    def _failed(self, name: str) -> None:
        self.stats.failures[name] = self.stats.failures.get(name, 0) + 1
        now = time.monotonic()
        if now - self._logged.get(name, -3600.0) >= 60.0:
            self._logged[name] = now
            log.exception("detector %s failed (%d so far)", name, self.stats.failures[name])

    # -- running --

    async def run(self, stop: asyncio.Event) -> None:
        """Process queued events as they come and tick about once a second until `stop`."""
        self._wake = asyncio.Event()
        next_tick = time.monotonic() + TICK_S
        try:
            while not stop.is_set():
                if self.process():
                    await asyncio.sleep(0)  # let the sources read between batches
                else:
                    timeout = max(0.0, next_tick - time.monotonic())
                    self._wake.clear()
                    waiter = asyncio.ensure_future(self._wake.wait())
                    stopper = asyncio.ensure_future(stop.wait())
                    await asyncio.wait(
                        {waiter, stopper}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                    )
                    waiter.cancel()
                    stopper.cancel()
                if time.monotonic() >= next_tick:
                    self.tick()
                    next_tick = time.monotonic() + TICK_S
        finally:
            self._wake = None
            self.process(len(self._queue))
            self.tick()
