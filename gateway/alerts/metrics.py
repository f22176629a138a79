"""Prometheus metrics of the watcher and the alert pipeline (prometheus-client).

Each pipeline has its own `CollectorRegistry`, so tests and two pipelines in one process never
share counters; the feed serves it at `GET /metrics` in the text exposition format.

    plantgate_events_in_total{source}           events and packets taken in, by source
    plantgate_events_lost_total{source}         lost before a detector saw them (overruns, ...)
    plantgate_triggers_total{rule}              triggers taken by the pipeline
    plantgate_triggers_dropped_total            triggers dropped: the intake queue was full
    plantgate_alerts_total{rule,severity,status} alert emissions spooled
    plantgate_alerts_evicted_total              spooled alerts deleted to bound the disk
    plantgate_aggregator_evicted_total          open alerts closed early: the table was full
    plantgate_queue_depth{queue}                items waiting (intake, sink backlogs)
    plantgate_aggregator_open                   alerts open in the aggregation table
    plantgate_spool_last_seq / plantgate_spool_bytes
    plantgate_sink_delivered_total{sink}        alerts a sink delivered
    plantgate_sink_errors_total{sink}           failed attempts (connect, send, HTTP status)
    plantgate_sink_lost_total{sink}             alerts evicted from the spool before delivery
    plantgate_sink_lag{sink}                    spool records the sink has not delivered yet
    plantgate_spool_fsync_seconds               time per durable append (histogram)

The detectors engineer feeds the first two from `gateway.watch` (`events_in.labels(source=
"nflog").inc()`); the rest are the pipeline's.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["CONTENT_TYPE_LATEST", "AlertMetrics"]


class AlertMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.events_in = Counter(
            "plantgate_events_in", "Events taken in, by source", ["source"], registry=r
        )
        self.events_lost = Counter(
            "plantgate_events_lost", "Events lost before detection", ["source"], registry=r
        )
        self.triggers = Counter(
            "plantgate_triggers", "Triggers taken by the pipeline", ["rule"], registry=r
        )
        self.triggers_dropped = Counter(
            "plantgate_triggers_dropped", "Triggers dropped: intake queue full", registry=r
        )
        self.alerts = Counter(
            "plantgate_alerts",
            "Alert emissions spooled",
            ["rule", "severity", "status"],
            registry=r,
        )
        self.alerts_evicted = Counter(
            "plantgate_alerts_evicted", "Spooled alerts deleted to bound the disk", registry=r
        )
        self.aggregator_evicted = Counter(
            "plantgate_aggregator_evicted", "Open alerts closed early: table full", registry=r
        )
        self.queue_depth = Gauge(
            "plantgate_queue_depth", "Items waiting in a queue", ["queue"], registry=r
        )
        self.aggregator_open = Gauge(
            "plantgate_aggregator_open", "Alerts open in the aggregation table", registry=r
        )
        self.spool_last_seq = Gauge(
            "plantgate_spool_last_seq", "Newest durable spool sequence number", registry=r
        )
        self.spool_bytes = Gauge("plantgate_spool_bytes", "Bytes held by the spool", registry=r)
        self.sink_delivered = Counter(
            "plantgate_sink_delivered", "Alerts delivered by a sink", ["sink"], registry=r
        )
        self.sink_errors = Counter(
            "plantgate_sink_errors", "Failed sink attempts", ["sink"], registry=r
        )
        self.sink_lost = Counter(
            "plantgate_sink_lost",
            "Alerts evicted before a sink delivered them",
            ["sink"],
            registry=r,
        )
        self.sink_lag = Gauge(
            "plantgate_sink_lag", "Spool records not yet delivered by a sink", ["sink"], registry=r
        )
        self.fsync_seconds = Histogram(
            "plantgate_spool_fsync_seconds",
            "Seconds per durable spool append",
            buckets=(0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5, 1.0),
            registry=r,
        )

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
