"""`PG-HUB-AGENT-ACCESS`: something other than the appliance connecting to a hub's agent port.

The port matrix gives tcp/9100 on the hubs (raw print jobs, the hub agent) to the appliance
alone. A workstation, a support address or another hub connecting there is either a person
printing around the MES or someone driving the shop floor directly, which is what an
attacker who reached the plant network would do (ATT&CK for ICS T0886 Remote Services).
High when denied, critical when the flow was allowed (the policy let it through).

Input: `PacketEvent` kinds `drop`, `new`, `accept` (TCP SYN) and `FlowEvent` start, whose
destination is a hub (role `hub`) on one of `ports`. Key `src>dst`.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from gateway.alerts import attack
from gateway.alerts.record import Evidence, Rule, Severity, Trigger
from gateway.watch.detectors.base import ATTEMPT_ROUTES, SiteView, WatchEvent, trigger_time
from gateway.watch.detectors.bounded import (
    DetectorSettings,
    KeyBudget,
    PortNumber,
    Reporter,
    flow_of,
)
from gateway.watch.detectors.scan import Attempt, attempt_of

HUB_AGENT = Rule("PG-HUB-AGENT-ACCESS", "Hub agent port reached by other than the appliance")
NO_TRIGGERS: tuple[Trigger, ...] = ()


class HubAgentSettings(DetectorSettings):
    """Connections to the hubs' agent port (PG-HUB-AGENT-ACCESS)."""

    enabled: bool = True
    ports: list[PortNumber] = Field(
        default_factory=lambda: [9100], description="TCP ports only the appliance may use."
    )
    report_every_s: float = Field(default=10.0, gt=0, le=3600)
    window_s: float = Field(default=300.0, gt=0, le=86_400)
    max_new_alerts_per_minute: int = Field(default=30, ge=1, le=100_000)
    max_tracked: int = Field(default=10_000, ge=1, le=1_000_000)


class HubAgentDetector:
    name = "hub-agent"
    accepts = ATTEMPT_ROUTES

    def __init__(self, settings: HubAgentSettings) -> None:
        self.settings = settings
        self._ports = frozenset(settings.ports)
        self._budget = KeyBudget(
            settings.max_new_alerts_per_minute, settings.max_tracked, settings.window_s
        )
        self._reporter = Reporter(settings.report_every_s, settings.max_tracked, settings.window_s)

    def state_size(self) -> int:
        return len(self._budget) + len(self._reporter)

    def observe(self, event: WatchEvent, site: SiteView) -> Sequence[Trigger]:
        if not self.settings.enabled:
            return NO_TRIGGERS
        attempt = attempt_of(event)
        if attempt is None or attempt.proto != "tcp" or attempt.dport not in self._ports:
            return NO_TRIGGERS
        if site.is_appliance(attempt.src) or site.role_of(attempt.dst) != "hub":
            return NO_TRIGGERS
        key = self._budget.admit(f"{attempt.src}>{attempt.dst}", attempt.ts)
        trigger = self._reporter.add(key, attempt.ts, lambda: self._trigger(attempt, site, key))
        return (trigger,) if trigger is not None else NO_TRIGGERS

    def tick(self, ts: float) -> Sequence[Trigger]:
        self._budget.expire(ts)
        return self._reporter.flush(ts)

    def _trigger(self, attempt: Attempt, site: SiteView, key: str) -> Trigger:
        source, destination, network = flow_of(
            site, attempt.src, attempt.dst, "tcp", attempt.sport, attempt.dport, attempt.mac
        )
        allowed = attempt.action == "allowed"
        who = f"{attempt.src} ({source.role})" if source.role else attempt.src
        verb = "connected to" if allowed else "tried"
        return Trigger(
            rule=HUB_AGENT,
            key=key,
            severity=Severity.CRITICAL if allowed else Severity.HIGH,
            summary=f"{who} {verb} the hub agent port {attempt.dport} on {attempt.dst}",
            ts=trigger_time(attempt.ts),
            technique=attack.REMOTE_SERVICES,
            source=source,
            destination=destination,
            network=network,
            action="allowed" if allowed else "denied",
            evidence=Evidence(window_s=self.settings.window_s),
        )
