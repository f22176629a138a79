"""The detection engine: a bounded queue whose losses are reported, detectors that fail
alone, counts that survive a rebuild, and the loop that runs it all."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from gateway.alerts.record import Rule, Severity, Trigger
from gateway.watch.detectors.base import SiteView, WatchEvent, trigger_time
from gateway.watch.engine import Engine
from tests.unit.watch.netkit import GW_LAN, HUB1, T0, lab_site, syn

RULE = Rule("PG-TEST-SEEN", "An event was seen")


class Recorder:
    """Sees every event (no `accepts`): one trigger per event, and records its ticks."""

    name = "recorder"

    def __init__(self) -> None:
        self.seen: list[WatchEvent] = []
        self.ticks: list[float] = []

    def observe(self, event: WatchEvent, site: SiteView) -> Sequence[Trigger]:
        self.seen.append(event)
        return (Trigger(RULE, "k", Severity.LOW, "seen", ts=trigger_time(T0)),)

    def tick(self, ts: float) -> Sequence[Trigger]:
        self.ticks.append(ts)
        return ()

    def state_size(self) -> int:
        return len(self.seen)


class Broken:
    name = "broken"

    def observe(self, event: WatchEvent, site: SiteView) -> Sequence[Trigger]:
        raise RuntimeError("a detector bug")

    def tick(self, ts: float) -> Sequence[Trigger]:
        raise RuntimeError("a detector bug")

    def state_size(self) -> int:
        return 0


class Calls:
    def __init__(self) -> None:
        self.submitted: list[Trigger] = []
        self.counted: list[tuple[str, int]] = []
        self.lost: list[tuple[str, int]] = []

    def engine(self, *detectors: object, queue_size: int = 100) -> Engine:
        return Engine(
            list(detectors),
            lab_site(),
            self.submitted.append,
            count=lambda source, n: self.counted.append((source, n)),
            lost=lambda source, n: self.lost.append((source, n)),
            queue_size=queue_size,
            clock=lambda: T0,
        )


def event(port: int = 22) -> WatchEvent:
    return syn(HUB1, GW_LAN, port)


def test_a_full_queue_drops_and_the_loss_is_reported_once_per_tick() -> None:
    calls = Calls()
    engine = calls.engine(Recorder(), queue_size=2)
    assert [engine.offer("nflog-drop", event(p)) for p in (1, 2, 3)] == [True, True, False]
    assert engine.offer("conntrack", event(4)) is False
    assert engine.depth() == 2
    assert engine.stats.dropped == {"nflog-drop": 1, "conntrack": 1}
    engine.tick()
    assert sorted(calls.lost) == [
        ("conntrack (watcher queue full)", 1),
        ("nflog-drop (watcher queue full)", 1),
    ]
    assert calls.counted == [("nflog-drop", 2)]  # accepted events, counted once a tick
    engine.tick()
    assert len(calls.lost) == 2 and len(calls.counted) == 1  # nothing new, nothing said
    assert engine.process() == 2 and engine.depth() == 0
    assert engine.offer("nflog-drop", event(5)) is True  # room again
    assert engine.offer("nflog-drop", event(6)) is True
    assert engine.offer("nflog-drop", event(7)) is False
    engine.tick()
    assert calls.lost[-1] == ("nflog-drop (watcher queue full)", 1)  # only the new loss


def test_a_raising_detector_does_not_stop_the_others() -> None:
    calls = Calls()
    broken, recorder = Broken(), Recorder()
    engine = calls.engine(broken, recorder)
    triggers = engine.observe(event())
    assert recorder.seen == [event()] and len(triggers) == 1
    assert calls.submitted == triggers
    engine.offer("nflog-drop", event(23))
    assert engine.process() == 1
    assert len(recorder.seen) == 2
    engine.tick(T0 + 1)
    assert recorder.ticks == [T0 + 1]  # its tick ran after the broken one's raised
    assert engine.stats.failures == {"broken": 3}
    assert engine.stats.triggers == 2


def test_a_rebuilt_engine_goes_on_counting_without_repeating_itself() -> None:
    """A policy change builds a new engine: what the old one counted and reported is not
    counted or reported as lost a second time (it would raise PG-HEALTH-EVENTS-LOST anew
    and double the Prometheus counters)."""
    calls = Calls()
    old = calls.engine(Recorder(), queue_size=1)
    old.offer("nflog-drop", event(1))
    old.offer("nflog-drop", event(2))  # dropped
    old.tick()
    assert calls.lost == [("nflog-drop (watcher queue full)", 1)]
    assert calls.counted == [("nflog-drop", 1)]
    new = calls.engine(Recorder(), queue_size=1)
    new.carry_over(old)
    new.tick()
    assert calls.lost == [("nflog-drop (watcher queue full)", 1)]
    assert calls.counted == [("nflog-drop", 1)]
    assert new.stats.events == {"nflog-drop": 1} and new.stats.dropped == {"nflog-drop": 1}
    new.offer("nflog-drop", event(3))
    new.offer("nflog-drop", event(4))  # dropped
    new.tick()
    assert calls.lost[-1] == ("nflog-drop (watcher queue full)", 1)
    assert calls.counted[-1] == ("nflog-drop", 1)


def test_run_processes_what_is_offered_and_drains_the_queue_on_stop() -> None:
    calls = Calls()
    recorder = Recorder()
    engine = calls.engine(recorder)

    async def scenario() -> None:
        stop = asyncio.Event()
        runner = asyncio.create_task(engine.run(stop))
        await asyncio.sleep(0)
        engine.offer("bus", event(1))
        for _ in range(100):
            if recorder.seen:
                break
            await asyncio.sleep(0.01)
        assert len(recorder.seen) == 1  # woken by the offer, not by the next tick
        for port in range(2, 6):
            engine.offer("bus", event(port))
        stop.set()
        await asyncio.wait_for(runner, 5)

    asyncio.run(scenario())
    assert len(recorder.seen) == 5 and engine.depth() == 0
    assert recorder.ticks  # a last tick on the way out: windows close, counts reported
    assert calls.counted == [("bus", 5)]
