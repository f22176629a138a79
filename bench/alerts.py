"""Alerts: what one core does through aggregation + spool + render, and what fsync costs.

No namespaces: the alert pipeline is pure Python over a spool on this machine's disk (a
temporary directory under the bench's work directory).

- **Throughput**: `TRIGGERS` triggers through `AlertPipeline.process` in rounds of `ROUND`
  (as the run loop batches them), fsync on, in two shapes: every trigger a new alert (distinct
  keys: a spool line each, the worst case) and a scan (one key: aggregated, a few lines).
  Then every spooled alert rendered in each format.
- **fsync**: the durable append of one alert, of a batch of 100, and of one without fsync,
  `APPENDS` times each: the price of "accepted means on disk".
- **Latency**: trigger submitted -> alert durable (the pipeline's run loop, `RATE` triggers a
  second for `LATENCY_S`), p50 and p99. The detectors engineer extends this to packet -> alert.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from bench.report import seconds, spread
from bench.stats import Summary, summarize
from gateway.alerts import attack
from gateway.alerts.aggregate import AggregationPolicy, Window
from gateway.alerts.pipeline import AlertPipeline
from gateway.alerts.record import Alert, Endpoint, Evidence, Observer, Rule, Severity, Trigger
from gateway.alerts.render import FORMATS, render_text
from gateway.alerts.sinks.spool import CursorStore, Spool

TRIGGERS = 20_000
ROUND = 256
APPENDS = 200
RATE = 500
LATENCY_S = 4.0
OBSERVER = Observer("bench", "bench", "0")
RULE = Rule("PG-BENCH", "Bench rule", "1")


@dataclass(frozen=True)
class AlertsRun:
    distinct_per_s: Summary  # triggers/s, each a new alert
    scan_per_s: Summary  # triggers/s, one aggregated alert
    render_per_s: dict[str, Summary]  # alerts rendered per second, by format
    fsync_one: Summary  # seconds per durable append of one alert
    fsync_batch: Summary  # seconds per durable append of 100 alerts
    nofsync_one: Summary  # seconds per append of one alert without fsync
    latency_p50: float  # seconds, trigger -> durable
    latency_p99: float
    latency_samples: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "triggers_per_s_distinct": self.distinct_per_s.to_dict(),
            "triggers_per_s_scan": self.scan_per_s.to_dict(),
            "render_per_s": {k: v.to_dict() for k, v in self.render_per_s.items()},
            "append_fsync_one_s": self.fsync_one.to_dict(),
            "append_fsync_batch100_s": self.fsync_batch.to_dict(),
            "append_nofsync_one_s": self.nofsync_one.to_dict(),
            "trigger_to_durable_p50_s": self.latency_p50,
            "trigger_to_durable_p99_s": self.latency_p99,
            "latency_samples": self.latency_samples,
        }


def _trigger(i: int, key: str) -> Trigger:
    src = Endpoint("198.18.10.11", 40000 + i % 20000, zone="hubs", role="hub")
    dst = Endpoint("198.18.10.1", i % 1024 + 1, zone="self", role="appliance")
    return Trigger(
        rule=RULE,
        key=key,
        severity=Severity.MEDIUM,
        summary=f"probe {i}",
        technique=attack.REMOTE_SYSTEM_DISCOVERY,
        source=src,
        destination=dst,
        action="denied",
        evidence=Evidence(threshold=100, window_s=10, observed=float(i)),
    )


def _pipeline(directory: Path) -> AlertPipeline:
    spool = Spool(directory / "spool", max_bytes=1 << 30).open()
    policy = AggregationPolicy(default=Window(window_s=600, update_every_s=10))
    return AlertPipeline(
        spool, OBSERVER, cursors=CursorStore(directory / "c"), policy=policy, intake_size=100_000
    )


def _throughput(directory: Path, distinct: bool) -> tuple[float, list[Alert]]:
    p = _pipeline(directory)
    triggers = [_trigger(i, str(i) if distinct else "scanner") for i in range(TRIGGERS)]

    async def go() -> float:
        started = time.perf_counter()
        for start in range(0, len(triggers), ROUND):
            await p.process(triggers[start : start + ROUND])
        return time.perf_counter() - started

    seconds = asyncio.run(go())
    alerts = [r.alert for r in p.spool.read(0, TRIGGERS * 2)]
    p.spool.close()
    return TRIGGERS / seconds, alerts


def _render_rate(alerts: Sequence[Alert], fmt: str) -> float:
    started = time.perf_counter()
    for seq, alert in enumerate(alerts, 1):
        render_text(alert, fmt, seq)  # type: ignore[arg-type]
    return len(alerts) / (time.perf_counter() - started)


def _appends(directory: Path, size: int, fsync: bool) -> list[float]:
    spool = Spool(directory, fsync=fsync, max_bytes=1 << 30).open()
    alerts = [_alert(i) for i in range(size)]
    out = []
    for _ in range(APPENDS):
        started = time.perf_counter()
        spool.append(alerts)
        out.append(time.perf_counter() - started)
    spool.close()
    return out


def _alert(i: int) -> Alert:
    t = _trigger(i, str(i))
    return Alert(
        id=f"bench-{i}",
        rule=t.rule,
        severity=t.severity,
        status="new",
        summary=t.summary,
        first_seen=t.ts,
        last_seen=t.ts,
        count=1,
        observer=OBSERVER,
        source=t.source,
        destination=t.destination,
        evidence=t.evidence,
    )


def _latency(directory: Path) -> list[float]:
    p = _pipeline(directory)
    submitted: dict[str, float] = {}
    delays: list[float] = []

    def on_commit(alerts: Sequence[Alert], seqs: Sequence[int]) -> None:
        now = time.perf_counter()
        for alert in alerts:
            if alert.status == "new" and alert.key in submitted:
                delays.append(now - submitted.pop(alert.key))

    p.on_commit.append(on_commit)

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(p.run(stop))
        count = int(RATE * LATENCY_S)
        for i in range(count):
            key = f"k{i}"
            submitted[key] = time.perf_counter()
            p.submit(_trigger(i, key))
            await asyncio.sleep(1 / RATE)
        await asyncio.sleep(0.5)
        stop.set()
        await task

    asyncio.run(go())
    p.spool.close()
    return delays


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(workdir: Path, reps: int, progress: Callable[[str], None]) -> AlertsRun:
    distinct: list[float] = []
    scan: list[float] = []
    renders: dict[str, list[float]] = {fmt: [] for fmt in FORMATS}
    with tempfile.TemporaryDirectory(dir=workdir, prefix="alerts-") as tmp:
        base = Path(tmp)
        for rep in range(reps):
            progress(
                f"alerts: {TRIGGERS:,} triggers through aggregation + spool ({rep + 1}/{reps})"
            )
            rate, alerts = _throughput(base / f"d{rep}", distinct=True)
            distinct.append(rate)
            scan.append(_throughput(base / f"s{rep}", distinct=False)[0])
            for fmt in FORMATS:
                renders[fmt].append(_render_rate(alerts[:5000], fmt))
        progress("alerts: spool append with and without fsync")
        one = _appends(base / "one", 1, True)
        batch = _appends(base / "batch", 100, True)
        nofsync = _appends(base / "nofsync", 1, False)
        progress(f"alerts: trigger -> durable latency at {RATE}/s for {LATENCY_S:.0f} s")
        delays = _latency(base / "lat")
    return AlertsRun(
        distinct_per_s=summarize(distinct),
        scan_per_s=summarize(scan),
        render_per_s={fmt: summarize(v) for fmt, v in renders.items()},
        fsync_one=summarize(one),
        fsync_batch=summarize(batch),
        nofsync_one=summarize(nofsync),
        latency_p50=statistics.median(delays) if delays else float("nan"),
        latency_p99=_percentile(delays, 0.99) if delays else float("nan"),
        latency_samples=len(delays),
    )


def table(run: AlertsRun) -> Table:
    """Throughput, render rates, fsync cost and trigger -> durable latency."""
    out = Table(
        title="Alerts: one core through aggregation + spool (fsync) + render "
        "(median, min–max below)",
        title_justify="left",
    )
    out.add_column("what", justify="left")
    out.add_column("figure", justify="right")

    def rate(s: Summary) -> str:
        return spread(s, lambda v: f"{v:,.0f}/s")

    out.add_row("triggers, each a new alert (a spool line each)", rate(run.distinct_per_s))
    out.add_row("triggers of one scan (aggregated)", rate(run.scan_per_s))
    for fmt, summary in run.render_per_s.items():
        out.add_row(f"render {fmt}", rate(summary))
    out.add_row("durable append, 1 alert (write + fsync)", spread(run.fsync_one))
    out.add_row("durable append, 100 alerts (one fsync)", spread(run.fsync_batch))
    out.add_row("append, 1 alert, no fsync", spread(run.nofsync_one))
    out.add_row(
        f"trigger → durable, p50 / p99 ({run.latency_samples} at {RATE}/s)",
        f"{seconds(run.latency_p50)} / {seconds(run.latency_p99)}",
    )
    return out
