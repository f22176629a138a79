"""`PG-PAIR-NEW`: a conversation the baseline has never seen, once learning is over.

Like an OT monitor's learned communication matrix: a pair is (protocol, initiator,
responder, responder port) — `tcp 198.18.10.11 > 198.18.10.1:443`. While the watcher is
*learning* (gateway/watch/baseline.py), every accepted pair is added to the baseline;
while *protecting*, a pair not in it is alerted on once (it is then remembered as alerted,
so a new recurring conversation is one alert, not one a minute). Medium: in a plant the
set of conversations is small and stable, so a new one is a change someone should be able
to name (a new device, a new job, or an intruder using what the policy allows, ATT&CK for
ICS T0886 Remote Services).

Input: `FlowEvent` start (conntrack: every accepted connection) and `PacketEvent` kinds
`new`/`accept` (samples). Denied flows are not conversations (PG-POLICY-DENIED covers them).
A flood of spoofed sources opens at most `max_new_alerts_per_minute` alerts a minute, the
rest counted under one `many-sources` alert. The baseline is bounded by `max_pairs`.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from gateway.alerts import attack
from gateway.alerts.record import Rule, Severity, Trigger
from gateway.watch.baseline import Learned, pair_key
from gateway.watch.detectors.base import (
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
    PortNumber,
    flow_of,
)

NEW_PAIR = Rule("PG-PAIR-NEW", "New communication pair")
NO_TRIGGERS: tuple[Trigger, ...] = ()
PAIR_PROTOS = frozenset({"tcp", "udp", "icmp", "icmpv6", "sctp"})


class PairSettings(DetectorSettings):
    """New conversations after learning (PG-PAIR-NEW)."""

    enabled: bool = True
    max_pairs: int = Field(
        default=50_000, ge=1, le=10_000_000, description="Pairs the baseline holds at most."
    )
    ignore_ports: list[PortNumber] = Field(
        default_factory=list, description="Responder ports never alerted on as new pairs."
    )
    max_new_alerts_per_minute: int = Field(default=30, ge=1, le=100_000)


class NewPairDetector:
    name = "new-pair"
    accepts = frozenset({"flow", "packet:new", "packet:accept"})

    def __init__(self, settings: PairSettings, learned: Learned) -> None:
        self.settings = settings
        self.learned = learned
        learned.baseline.max_pairs = settings.max_pairs
        self._ignored = frozenset(settings.ignore_ports)
        self._budget = KeyBudget(settings.max_new_alerts_per_minute, 10_000, 3600.0)

    def state_size(self) -> int:
        baseline = self.learned.baseline
        return len(baseline.pairs) + len(baseline.alerted) + len(self._budget)

    def observe(self, event: WatchEvent, site: SiteView) -> Sequence[Trigger]:
        if not self.settings.enabled:
            return NO_TRIGGERS
        flow: tuple[str, str, str, int | None, int | None, str | None]
        if isinstance(event, FlowEvent):
            if event.phase != "start":
                return NO_TRIGGERS
            flow = (event.src, event.dst, event.proto, event.sport, event.dport, None)
        elif isinstance(event, PacketEvent) and event.kind in ("new", "accept"):
            p = event.packet
            if p.src is None or p.dst is None or p.proto is None:
                return NO_TRIGGERS
            flow = (p.src, p.dst, p.proto, p.sport, p.dport, event.mac)
        else:
            return NO_TRIGGERS
        src, dst, proto, _sport, dport, _mac = flow
        if proto not in PAIR_PROTOS:
            return NO_TRIGGERS
        port = dport if proto in ("tcp", "udp", "sctp") else None
        key = pair_key(proto, src, dst, port)
        baseline = self.learned.baseline
        if self.learned.mode(event.ts) == "learning":
            baseline.learn_pair(key, event.ts)
            return NO_TRIGGERS
        if baseline.has_pair(key):
            baseline.pairs[key].last = event.ts
            return NO_TRIGGERS
        if (port is not None and port in self._ignored) or not baseline.mark_alerted(key, event.ts):
            return NO_TRIGGERS
        admitted = self._budget.admit(key, event.ts)
        return (self._trigger(event.ts, site, admitted, key, flow),)

    def tick(self, ts: float) -> Sequence[Trigger]:
        self._budget.expire(ts)
        return NO_TRIGGERS

    def _trigger(
        self,
        ts: float,
        site: SiteView,
        admitted: str,
        key: str,
        flow: tuple[str, str, str, int | None, int | None, str | None],
    ) -> Trigger:
        src, dst, proto, sport, dport, mac = flow
        source, destination, network = flow_of(site, src, dst, proto, sport, dport, mac)
        summary = f"new conversation {key}"
        if admitted == OVERFLOW_KEY:
            summary = f"new conversations from many sources (latest {key})"
        return Trigger(
            rule=NEW_PAIR,
            key=admitted,
            severity=Severity.MEDIUM,
            summary=summary,
            ts=trigger_time(ts),
            technique=attack.REMOTE_SERVICES,
            source=source,
            destination=destination,
            network=network,
            action="allowed",
            labels={"pair": key, "baseline_pairs": len(self.learned.baseline.pairs)},
        )
