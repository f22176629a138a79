"""SYN floods and conntrack table pressure: attempts to exhaust the appliance.

* `PG-DOS-SYN-FLOOD` (key: the destination) — `syn_threshold` connection openings toward
  one destination within `window_s`, counted from conntrack (every accepted SYN makes an
  entry, `FlowEvent` start, TCP) and from logged drops of SYNs (spoofed floods toward a
  closed port: each new source is a new logged tuple). Evidence: openings in the window
  and how many distinct sources made them (spoofed floods have as many as openings). High:
  the hubs and operator screens share this appliance (ATT&CK for ICS T0814 Denial of
  Service). A single source repeating one closed port is logged once a minute by the
  ruleset and so does not count here; it costs the appliance nothing.
* `PG-DOS-CONNTRACK` (key `conntrack`) — the connection tracking table's fill
  (`TableEvent`, sampled by the watcher) at or above `table_warn` (high) or
  `table_critical` (critical) of its maximum: a full table drops *every* new connection,
  the plant's legitimate ones included.

Counting is in one-second buckets per destination (a bounded deque each); destinations are
at most `max_tracked` (LRU). Distinct sources are counted up to 65,536 with a bitmap.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from pydantic import Field, model_validator

from gateway.alerts import attack
from gateway.alerts.record import Evidence, Rule, Severity, Trigger
from gateway.watch.detectors.base import (
    FlowEvent,
    PacketEvent,
    SiteView,
    TableEvent,
    WatchEvent,
    trigger_time,
)
from gateway.watch.detectors.bounded import (
    DetectorSettings,
    Recent,
    Reporter,
    host_bit,
    site_endpoint,
)
from gateway.watch.detectors.scan import is_syn

SYN_FLOOD = Rule("PG-DOS-SYN-FLOOD", "SYN flood toward one destination")
CONNTRACK = Rule("PG-DOS-CONNTRACK", "Connection tracking table nearly full")
NO_TRIGGERS: tuple[Trigger, ...] = ()


class FloodSettings(DetectorSettings):
    """SYN floods (PG-DOS-SYN-FLOOD) and conntrack table pressure (PG-DOS-CONNTRACK)."""

    enabled: bool = True
    syn_threshold: int = Field(
        default=2000,
        ge=10,
        le=100_000_000,
        description="Connection openings toward one destination within window_s.",
    )
    window_s: float = Field(default=10.0, gt=0, le=3600, description="Seconds (whole).")
    report_every_s: float = Field(default=10.0, gt=0, le=3600)
    max_tracked: int = Field(default=1024, ge=1, le=1_000_000, description="Destinations.")
    table_warn: float = Field(
        default=0.8, gt=0, le=1, description="Fill of the conntrack table that is high."
    )
    table_critical: float = Field(
        default=0.95, gt=0, le=1, description="Fill of the conntrack table that is critical."
    )

    @model_validator(mode="after")
    def _ordered(self) -> FloodSettings:
        if self.table_critical < self.table_warn:
            raise ValueError(
                f"table_critical ({self.table_critical}) must not be below "
                f"table_warn ({self.table_warn})"
            )
        return self


class _Rate:
    """Openings toward one destination in one-second buckets, and distinct sources."""

    __slots__ = ("buckets", "in_window", "sources", "total")

    def __init__(self, seconds: int) -> None:
        self.buckets: deque[list[int]] = deque(maxlen=seconds)  # [second, count]
        self.in_window = 0
        self.sources = bytearray(8192)
        self.total = 0  # distinct sources seen (bitmap estimate)

    def add(self, ts: float, source: str, seconds: int) -> int:
        second = int(ts)
        buckets = self.buckets
        while buckets and buckets[0][0] <= second - seconds:
            self.in_window -= buckets.popleft()[1]
        if buckets and buckets[-1][0] == second:
            buckets[-1][1] += 1
        else:
            if len(buckets) == buckets.maxlen:
                self.in_window -= buckets[0][1]
            buckets.append([second, 1])
        self.in_window += 1
        index = host_bit(source)
        if not self.sources[index >> 3] >> (index & 7) & 1:
            self.sources[index >> 3] |= 1 << (index & 7)
            self.total += 1
        return self.in_window


class FloodDetector:
    name = "flood"
    accepts = frozenset({"table", "flow", "packet:drop"})

    def __init__(self, settings: FloodSettings) -> None:
        self.settings = settings
        self._seconds = max(1, round(settings.window_s))
        self._rates: Recent[str, _Rate] = Recent(settings.max_tracked, settings.window_s)
        self._reporter = Reporter(settings.report_every_s, settings.max_tracked, settings.window_s)
        self._table_level: Severity | None = None

    def state_size(self) -> int:
        return len(self._rates) + len(self._reporter)

    def observe(self, event: WatchEvent, site: SiteView) -> Sequence[Trigger]:
        if not self.settings.enabled:
            return NO_TRIGGERS
        if isinstance(event, TableEvent):
            return self._table(event)
        if isinstance(event, FlowEvent):
            if event.phase != "start" or event.proto != "tcp":
                return NO_TRIGGERS
            src, dst, dport = event.src, event.dst, event.dport
        elif isinstance(event, PacketEvent) and event.kind == "drop":
            p = event.packet
            if p.proto != "tcp" or not is_syn(p.tcp_flags) or p.src is None or p.dst is None:
                return NO_TRIGGERS
            src, dst, dport = p.src, p.dst, p.dport
        else:
            return NO_TRIGGERS
        rate = self._rates.touch(dst, event.ts)
        if rate is None:
            rate = _Rate(self._seconds)
            self._rates.put(dst, rate, event.ts)
        in_window = rate.add(event.ts, src, self._seconds)
        if in_window < self.settings.syn_threshold:
            return NO_TRIGGERS
        count = 1 if dst in self._reporter else in_window  # the first report has them all

        def make() -> Trigger:
            return self._syn_trigger(event.ts, site, dst, dport, rate, in_window)

        trigger = self._reporter.add(dst, event.ts, make, count=count)
        return (trigger,) if trigger is not None else NO_TRIGGERS

    def tick(self, ts: float) -> Sequence[Trigger]:
        self._rates.expire(ts)
        return self._reporter.flush(ts)

    def _syn_trigger(
        self, ts: float, site: SiteView, dst: str, dport: int | None, rate: _Rate, in_window: int
    ) -> Trigger:
        destination = site_endpoint(site, dst, dport)
        return Trigger(
            rule=SYN_FLOOD,
            key=dst,
            severity=Severity.HIGH,
            summary=f"{in_window} connection openings toward {dst} in {self._seconds} s "
            f"from about {rate.total} sources",
            ts=trigger_time(ts),
            technique=attack.DENIAL_OF_SERVICE,
            destination=destination,
            evidence=Evidence(
                threshold=float(self.settings.syn_threshold),
                window_s=float(self._seconds),
                observed=float(in_window),
            ),
            labels={"sources": rate.total},
        )

    def _table(self, event: TableEvent) -> Sequence[Trigger]:
        if event.maximum <= 0:
            return NO_TRIGGERS
        fill = event.count / event.maximum
        level: Severity | None = None
        if fill >= self.settings.table_critical:
            level = Severity.CRITICAL
        elif fill >= self.settings.table_warn:
            level = Severity.HIGH
        previous, self._table_level = self._table_level, level
        if level is None or (previous is not None and level <= previous):
            return NO_TRIGGERS  # reported when it rises, and again if it falls and comes back
        return (
            Trigger(
                rule=CONNTRACK,
                key="conntrack",
                severity=level,
                summary=f"conntrack table {fill:.0%} full ({event.count} of {event.maximum})",
                ts=trigger_time(event.ts),
                technique=attack.DENIAL_OF_SERVICE,
                evidence=Evidence(threshold=self.settings.table_warn, observed=round(fill, 4)),
                labels={"count": event.count, "maximum": event.maximum},
            ),
        )
