"""Alerts: one canonical record, its renderers (ECS, OCSF, CEF, RFC 5424), sinks and feed.

Detectors (`gateway.watch`) emit `Trigger`s into an `AlertPipeline`; the pipeline aggregates
them (`aggregate.Aggregator`), makes each emitted `Alert` durable in the spool, and the sinks
and the feed read the spool by cursor. See docs/decisions/0010-alerts.md.
"""
