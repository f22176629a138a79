"""The pipeline: triggers to durable alerts, health alerts for every loss, sinks by cursor."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.alerts.aggregate import AggregationPolicy, Window
from gateway.alerts.pipeline import AlertPipeline
from gateway.alerts.sinks.base import Backoff, CursorSink, SinkError
from gateway.alerts.sinks.spool import CursorStore, Spool, Spooled
from tests.unit.alerts.conftest import OBSERVER, FakeClock, trigger


def pipeline(tmp_path: Path, clock: FakeClock | None = None, **kw: object) -> AlertPipeline:
    spool = Spool(
        tmp_path / "spool",
        segment_bytes=kw.pop("segment_bytes", 1 << 20),  # type: ignore[arg-type]
        max_bytes=kw.pop("max_bytes", 1 << 24),
    ).open()  # type: ignore[arg-type]
    args: dict[str, object] = {"policy": AggregationPolicy(default=Window(update_every_s=0))}
    args.update(kw)
    if clock is not None:
        args["clock"] = clock
    return AlertPipeline(spool, OBSERVER, cursors=CursorStore(tmp_path / "cursors"), **args)  # type: ignore[arg-type]


def rules(p: AlertPipeline) -> list[tuple[str, str]]:
    return [(r.alert.rule.id, r.alert.status) for r in p.spool.read(0, 10_000)]


def test_process_spools_aggregated_alerts(tmp_path: Path, clock: FakeClock) -> None:
    p = pipeline(tmp_path, clock)
    seqs = asyncio.run(p.process([trigger("a"), trigger("a"), trigger("b")]))
    assert seqs == [1, 2, 3]
    assert [(r.alert.key, r.alert.status, r.alert.count) for r in p.spool.read(0, 10)] == [
        ("a", "new", 1),
        ("a", "update", 2),
        ("b", "new", 1),
    ]
    text = p.metrics.exposition().decode()
    assert (
        'plantgate_alerts_total{rule="PG-SCAN-VERTICAL",severity="medium",status="new"} 2.0' in text
    )
    assert 'plantgate_triggers_total{rule="PG-SCAN-VERTICAL"} 3.0' in text


def test_intake_drops_are_counted_and_alerted(tmp_path: Path, clock: FakeClock) -> None:
    async def go() -> AlertPipeline:
        p = pipeline(tmp_path, clock, intake_size=2)
        results = [p.submit(trigger(str(i))) for i in range(5)]
        assert results == [True, True, False, False, False]
        await p.process([])
        return p

    p = asyncio.run(go())
    assert p.dropped == 3
    [health] = [r.alert for r in p.spool.read(0, 10) if r.alert.rule.id == "PG-HEALTH-QUEUE-DROP"]
    assert health.count == 3 and health.severity.value == "high" and health.labels["health"]
    assert "plantgate_triggers_dropped_total 3.0" in p.metrics.exposition().decode()


def test_spool_eviction_and_lost_events_are_alerted(tmp_path: Path, clock: FakeClock) -> None:
    p = pipeline(tmp_path, clock, segment_bytes=4096, max_bytes=8192)
    p.report_lost("nflog", 7)

    async def go() -> None:
        for i in range(30):
            await p.process([trigger(str(i))])
        await p.process([])

    asyncio.run(go())
    text = p.metrics.exposition().decode()  # the early health alerts were evicted in turn
    assert 'rule="PG-HEALTH-EVENTS-LOST",severity="medium",status="new"} 1.0' in text
    assert 'rule="PG-HEALTH-SPOOL-EVICTED",severity="high",status="new"} 1.0' in text
    assert any(rule == "PG-HEALTH-SPOOL-EVICTED" for rule, _ in rules(p))
    assert 'plantgate_events_lost_total{source="nflog"} 7.0' in text
    assert "plantgate_alerts_evicted_total" in text


class Collect(CursorSink):
    name = "collect"
    persist_every_s = 0.0

    def __init__(self, fail_first: int = 0) -> None:
        super().__init__(backoff=Backoff(0.01, 0.02))
        self.got: list[int] = []
        self.fail_first = fail_first

    async def send(self, batch: list[Spooled]) -> None:
        if self.fail_first:
            self.fail_first -= 1
            raise SinkError("collector down")
        self.got += [r.seq for r in batch]


async def run_until(p: AlertPipeline, sink: Collect, want: int, timeout: float = 5.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(p.run(stop))
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while (not sink.got or sink.got[-1] < want) and loop.time() < deadline:
        await asyncio.sleep(0.01)
    stop.set()
    await task


def test_sink_gets_everything_once_and_resumes_after_restart(tmp_path: Path) -> None:
    sink = Collect(fail_first=2)
    p = pipeline(tmp_path, sinks=[sink])

    async def first() -> None:
        for i in range(50):
            p.submit(trigger(str(i)))
        await run_until(p, sink, 50)

    asyncio.run(first())
    assert sink.got[:50] == list(range(1, 51))
    assert 'plantgate_sink_errors_total{sink="collect"} 2.0' in p.metrics.exposition().decode()
    closes = p.spool.last_seq  # a clean stop closed the 50 open alerts
    assert closes == 100
    p.spool.close()
    cursor = CursorStore(tmp_path / "cursors").get("collect")
    assert 50 <= cursor <= 100

    sink2 = Collect()
    p2 = pipeline(tmp_path, sinks=[sink2])

    async def second() -> None:
        p2.submit(trigger("late"))
        await run_until(p2, sink2, 101)

    asyncio.run(second())
    assert sink2.got[0] == cursor + 1  # resumed, nothing delivered twice
    assert sink2.got[-1] >= 101


def test_sink_gap_after_eviction_is_alerted(tmp_path: Path) -> None:
    p = pipeline(tmp_path, segment_bytes=4096, max_bytes=8192)

    async def fill() -> None:
        for i in range(40):
            await p.process([trigger(str(i))])

    asyncio.run(fill())
    sink = Collect()
    p.sinks = [sink]
    asyncio.run(run_until(p, sink, p.spool.last_seq))
    assert sink.got[0] > 1
    text = p.metrics.exposition().decode()
    assert 'plantgate_sink_lost_total{sink="collect"}' in text
    assert ("PG-HEALTH-SINK-LOST", "new") in rules(p) or ("PG-HEALTH-SINK-LOST", "close") in rules(
        p
    )
