"""`PG-POLICY-DENIED`: flows the policy dropped, one alert per source and destination zone.

Input: `PacketEvent` kind `drop` — what the ruleset logs before its default verdict (the
first drop of each (source, destination, protocol, port) once a minute, then a
rate-limited trickle; gateway/policy/watchlog.py).

Why it matters in a plant: the port matrix is the plant's documented truth, so every drop
is traffic somebody's device believes it needs. Most of it is misconfiguration; some of it
is the first sign of something probing. Severity is low (informational context for the
rules that judge intent: scans, egress, the hub agent port) and medium when the source is
a hub or support staff, whose matrix is narrow enough that a denied flow is unusual.

Aggregation key: `src>zone` (`appliance` for the appliance's own addresses, else the
destination's zone, or its address when it is in none):
a host trying many ports on one zone is one alert with a count, not one per port.
Broadcast and multicast destinations (role `broadcast`/`multicast` from the site: NetBIOS,
SSDP and mDNS chatter that every office network makes) are ignored unless
`include_broadcast`. A flood of spoofed sources opens at most `max_new_alerts_per_minute`
alerts a minute; the rest is counted under one `many-sources` alert.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from gateway.alerts.record import Evidence, Rule, Severity, Trigger
from gateway.watch.detectors.base import PacketEvent, SiteView, WatchEvent, trigger_time
from gateway.watch.detectors.bounded import (
    OVERFLOW_KEY,
    DetectorSettings,
    KeyBudget,
    PortNumber,
    Reporter,
    flow_of,
)

DENIED = Rule("PG-POLICY-DENIED", "Flow denied by policy")
NOISY_ROLES = frozenset({"broadcast", "multicast"})
NARROW_ROLES = frozenset({"hub", "support-staff"})  # a denied flow from these is unusual
NO_TRIGGERS: tuple[Trigger, ...] = ()


class DeniedSettings(DetectorSettings):
    """Dropped flows (PG-POLICY-DENIED)."""

    enabled: bool = True
    include_broadcast: bool = Field(
        default=False, description="Also report drops to broadcast and multicast addresses."
    )
    ignore_ports: list[PortNumber] = Field(
        default_factory=list, description="Destination ports whose drops are not reported."
    )
    report_every_s: float = Field(default=10.0, gt=0, le=3600)
    max_new_alerts_per_minute: int = Field(
        default=30,
        ge=1,
        le=100_000,
        description="New sources reported a minute; the rest "
        "are counted under one 'many-sources' alert.",
    )
    max_tracked: int = Field(default=10_000, ge=1, le=1_000_000)
    window_s: float = Field(
        default=60.0,
        gt=0,
        le=86_400,
        description="Idle time that ends a source's run of denied flows.",
    )


class DeniedFlowDetector:
    name = "policy-denied"
    accepts = frozenset({"packet:drop"})

    def __init__(self, settings: DeniedSettings) -> None:
        self.settings = settings
        self._ignored = frozenset(settings.ignore_ports)
        self._budget = KeyBudget(
            settings.max_new_alerts_per_minute, settings.max_tracked, settings.window_s
        )
        self._reporter = Reporter(settings.report_every_s, settings.max_tracked, settings.window_s)

    def state_size(self) -> int:
        return len(self._budget) + len(self._reporter)

    def observe(self, event: WatchEvent, site: SiteView) -> Sequence[Trigger]:
        if not isinstance(event, PacketEvent) or event.kind != "drop" or not self.settings.enabled:
            return NO_TRIGGERS
        p = event.packet
        if p.src is None or p.dst is None or p.dport in self._ignored:
            return NO_TRIGGERS
        dst_role = site.role_of(p.dst)
        if dst_role in NOISY_ROLES and not self.settings.include_broadcast:
            return NO_TRIGGERS
        where = "appliance" if site.is_appliance(p.dst) else site.zone_of(p.dst) or p.dst
        key = self._budget.admit(f"{p.src}>{where}", event.ts)

        def make() -> Trigger:
            return self._trigger(event, site, key, where)

        trigger = self._reporter.add(key, event.ts, make)
        return (trigger,) if trigger is not None else NO_TRIGGERS

    def tick(self, ts: float) -> Sequence[Trigger]:
        self._budget.expire(ts)
        return self._reporter.flush(ts)

    def _trigger(self, event: PacketEvent, site: SiteView, key: str, where: str) -> Trigger:
        p = event.packet
        assert p.src is not None and p.dst is not None
        source, destination, network = flow_of(
            site, p.src, p.dst, p.proto, p.sport, p.dport, event.mac
        )
        severity = Severity.MEDIUM if source.role in NARROW_ROLES else Severity.LOW
        service = f"{p.proto}/{p.dport}" if p.dport is not None else (p.proto or "ip")
        who = f"{p.src} ({source.role})" if source.role else p.src
        summary = f"{who} denied toward {p.dst} {service} ({where})"
        if key == OVERFLOW_KEY:
            summary = f"denied flows from many sources (latest {p.src} toward {p.dst} {service})"
        return Trigger(
            rule=DENIED,
            key=key,
            severity=severity,
            summary=summary + (f", hook {event.hook}" if event.hook else ""),
            ts=trigger_time(event.ts),
            source=source,
            destination=destination,
            network=network,
            action="denied",
            evidence=Evidence(window_s=self.settings.window_s),
            labels={"hook": event.hook or "", "interface": event.indev or ""},
        )
