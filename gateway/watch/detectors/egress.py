"""`PG-EGRESS-HUB`: a hub reaching for anything but the appliance.

DESIGN §1: hubs never reach the plant network or the internet; the appliance is their only
peer. A hub that tries anyway is misconfigured at best, and at worst a compromised device
looking for a way out (command and control, exfiltration) or into the plant (lateral
movement). Either way a person should look, so it is high, and critical when the attempt
was *allowed* (a flow that conntrack confirmed: the policy itself has a hole).

Input: `PacketEvent` kinds `drop`, `new`, `accept` and `FlowEvent` start, from a hub to
anything that is not the appliance (a hub's DNS query to an outside resolver is dropped
and logged like any other flow; the DNS detector judges its content from the `dns`
samples). Key `src>zone` (the destination's zone, or its address), so a hub hammering the
internet is one alert with a count of attempts.

Technique: toward the plant network, ATT&CK for ICS T0886 Remote Services (lateral
movement); toward anything else, T0869 Standard Application Layer Protocol (command and
control), the usual reason a device calls out.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from gateway.alerts import attack
from gateway.alerts.record import Evidence, Rule, Severity, Trigger
from gateway.watch.detectors.base import (
    ATTEMPT_ROUTES,
    FlowEvent,
    PacketEvent,
    SiteView,
    WatchEvent,
    trigger_time,
)
from gateway.watch.detectors.bounded import (
    OVERFLOW_KEY,
    DetectorSettings,
    KeyBudget,
    Reporter,
    flow_of,
)

EGRESS = Rule("PG-EGRESS-HUB", "Hub traffic toward the plant network or the internet")
PACKET_KINDS = frozenset({"drop", "new", "accept"})
LOCAL_ROLES = frozenset({"hub", "appliance", "broadcast", "multicast"})
NO_TRIGGERS: tuple[Trigger, ...] = ()


class EgressSettings(DetectorSettings):
    """Hubs toward anything but the appliance (PG-EGRESS-HUB)."""

    enabled: bool = True
    report_every_s: float = Field(default=10.0, gt=0, le=3600)
    window_s: float = Field(
        default=300.0, gt=0, le=86_400, description="Idle time that ends a hub's run of attempts."
    )
    max_new_alerts_per_minute: int = Field(default=30, ge=1, le=100_000)
    max_tracked: int = Field(default=10_000, ge=1, le=1_000_000)


class EgressDetector:
    name = "egress"
    accepts = ATTEMPT_ROUTES

    def __init__(self, settings: EgressSettings) -> None:
        self.settings = settings
        self._budget = KeyBudget(
            settings.max_new_alerts_per_minute, settings.max_tracked, settings.window_s
        )
        self._reporter = Reporter(settings.report_every_s, settings.max_tracked, settings.window_s)

    def state_size(self) -> int:
        return len(self._budget) + len(self._reporter)

    def observe(self, event: WatchEvent, site: SiteView) -> Sequence[Trigger]:
        if not self.settings.enabled:
            return NO_TRIGGERS
        if isinstance(event, PacketEvent):
            p = event.packet
            src, dst = p.src, p.dst
            if event.kind not in PACKET_KINDS or src is None or dst is None:
                return NO_TRIGGERS
        elif isinstance(event, FlowEvent) and event.phase == "start":
            src, dst = event.src, event.dst
        else:
            return NO_TRIGGERS
        # most traffic is not from a hub: ask that first, build the flow only for a hub's
        if site.role_of(src) != "hub" or site.is_appliance(dst) or site.role_of(dst) in LOCAL_ROLES:
            return NO_TRIGGERS
        if isinstance(event, PacketEvent):
            p = event.packet
            flow = (src, dst, p.proto, p.sport, p.dport, event.mac)
            allowed = event.kind in ("new", "accept")
        else:
            assert isinstance(event, FlowEvent)
            flow = (src, dst, event.proto, event.sport, event.dport, None)
            allowed = True
        where = site.zone_of(dst) or dst
        key = self._budget.admit(f"{src}>{where}", event.ts)

        def make() -> Trigger:
            return self._trigger(event.ts, site, key, flow, where, allowed)

        trigger = self._reporter.add(key, event.ts, make)
        return (trigger,) if trigger is not None else NO_TRIGGERS

    def tick(self, ts: float) -> Sequence[Trigger]:
        self._budget.expire(ts)
        return self._reporter.flush(ts)

    def _trigger(
        self,
        ts: float,
        site: SiteView,
        key: str,
        flow: tuple[str, str, str | None, int | None, int | None, str | None],
        where: str,
        allowed: bool,
    ) -> Trigger:
        src, dst, proto, sport, dport, mac = flow
        source, destination, network = flow_of(site, src, dst, proto, sport, dport, mac)
        # A PolicySite knows zone kinds (zone names are the site's own); any other SiteView
        # is judged by the role alone.
        kind_of = getattr(site, "zone_kind", None)
        kind = kind_of(where) if callable(kind_of) else None
        toward_plant = kind == "plant" or destination.role == "plant"
        service = f"{proto}/{dport}" if dport is not None else (proto or "ip")
        verb = "reached" if allowed else "tried to reach"
        summary = f"hub {src} {verb} {dst} {service} ({where})"
        if key == OVERFLOW_KEY:
            summary = f"hubs reaching out toward many destinations (latest: {summary})"
        return Trigger(
            rule=EGRESS,
            key=key,
            severity=Severity.CRITICAL if allowed else Severity.HIGH,
            summary=summary,
            ts=trigger_time(ts),
            technique=(
                attack.REMOTE_SERVICES
                if toward_plant
                else attack.STANDARD_APPLICATION_LAYER_PROTOCOL
            ),
            source=source,
            destination=destination,
            network=network,
            action="allowed" if allowed else "denied",
            evidence=Evidence(window_s=self.settings.window_s),
            labels={"toward": where},
        )
