"""SSH: brute force, and SSH to a hub or the appliance outside an open support gate.

Inputs (all traffic; no component events):

- `FlowEvent` `start` for tcp to a port in `ports`: a connection conntrack confirmed, i.e.
  the ruleset accepted it (every new connection, not a sample).
- `PacketEvent` `drop` (prefix `pg drop <hook>: `) of a TCP SYN to those ports: an attempt
  the ruleset refused. Retransmissions of one SYN (same source port) count once.
- `PacketEvent` `new` (prefix `pg new <rule>: `, a rate-limited sample of accepted
  connections) and `accept` (`pg accept <rule>: `, every connection of a rule with
  `log: true`) — only for the gate rule, as sightings of an accepted connection when
  conntrack events are not available; never counted for brute force (sampled, or already
  counted as a flow).

Rules:

- `PG-SSH-BRUTE` — `brute_threshold` connection attempts (accepted or dropped) from one
  source to one target within `brute_window_s`. Password guessing opens a connection per
  few guesses (OpenSSH allows six per connection), so a burst of connections is the
  network-visible sign; the auth failures themselves are inside the encryption. Key
  `source>target`. Technique T1110 Brute Force (Enterprise: ICS has no Credential Access).
- `PG-SSH-OUTSIDE-GATE` — SSH from a `support-staff` address to a target whose role is in
  `gated_roles` (hubs, the appliance) while `SiteView.gate_open` says no open gate covers
  it. Dropped: severity medium, action denied (staff tried outside a window). Accepted:
  severity high, action allowed — the kernel let in SSH the gate did not grant, so a rule
  or the gate is wrong. Key `source>target`; the same connection seen as a flow and as a
  sample counts once. The support detector leaves SSH attempts to this rule (its
  `defer_ports`) so that one attempt makes one alert. Technique T0822 External Remote
  Services (ICS).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from gateway.alerts import attack
from gateway.alerts.record import (
    Action,
    Evidence,
    Rule,
    Severity,
    Technique,
    Trigger,
    flow_network,
)
from gateway.watch.detectors.base import (
    ATTEMPT_ROUTES,
    FlowEvent,
    PacketEvent,
    SiteView,
    WatchEvent,
    trigger_time,
)
from gateway.watch.detectors.bounded import NewSourcesPerMinute, ReportEvery
from gateway.watch.detectors.components import NO_TRIGGERS, Tally, endpoint, overflowing

BRUTE = Rule("PG-SSH-BRUTE", "SSH brute force")
OUTSIDE_GATE = Rule("PG-SSH-OUTSIDE-GATE", "SSH outside an open support gate")
STAFF_ROLE = "support-staff"  # SiteView.role_of for support_vpn.staff addresses

Port = Annotated[int, Field(ge=1, le=65535, description="A TCP port.")]


class SshSettings(BaseModel):
    """Thresholds of the SSH detector (defaults for a small plant LAN)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    enabled: bool = Field(default=True, description="Turn the SSH detections on or off.")
    ports: list[Port] = Field(
        default_factory=lambda: [22], min_length=1, description="TCP ports that are SSH."
    )
    brute_threshold: int = Field(
        default=10,
        ge=1,
        le=1_000_000,
        description="SSH connection attempts from one source to one target within "
        "brute_window_s that make an alert (PG-SSH-BRUTE).",
    )
    brute_window_s: float = Field(
        default=60.0, gt=0, le=86_400, description="Window for brute_threshold, in seconds."
    )
    gated_roles: list[str] = Field(
        default_factory=lambda: ["hub", "appliance"],
        description="Asset roles support staff may reach by SSH only while a gate is open "
        "(PG-SSH-OUTSIDE-GATE).",
    )
    report_every_s: ReportEvery = 10.0
    new_sources_per_minute: NewSourcesPerMinute = 60
    max_tracked: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="Most source-target pairs tracked per rule at once.",
    )


class SshDetector:
    """Flows and packets to SSH ports -> triggers. State: two `Tally`s."""

    name = "ssh"
    accepts = ATTEMPT_ROUTES

    def __init__(self, settings: SshSettings | None = None) -> None:
        self.settings = s = settings or SshSettings()
        self._ports = frozenset(s.ports)
        self._roles = frozenset(s.gated_roles)
        self._brute = Tally(s.brute_threshold, s.brute_window_s, s.report_every_s, s.max_tracked)
        self._gate = Tally(
            1, s.report_every_s, s.report_every_s, s.max_tracked, s.new_sources_per_minute
        )

    def observe(self, event: WatchEvent, site: SiteView) -> Sequence[Trigger]:
        if type(event) is FlowEvent:
            if event.phase != "start" or event.dport not in self._ports or event.proto != "tcp":
                return NO_TRIGGERS
            if not self.settings.enabled:
                return NO_TRIGGERS
            return self._seen(event.ts, site, event.src, event.dst, event.sport, event.dport, "a")
        if type(event) is PacketEvent:
            packet = event.packet
            if packet.dport not in self._ports or packet.proto != "tcp":
                return NO_TRIGGERS
            if event.kind == "drop":
                flags = packet.tcp_flags or ""
                if "S" not in flags or "A" in flags or "R" in flags:
                    return NO_TRIGGERS  # not a connection attempt
                how = "d"
            elif event.kind in ("new", "accept"):
                how = "s"
            else:
                return NO_TRIGGERS
            if packet.src is None or packet.dst is None or not self.settings.enabled:
                return NO_TRIGGERS
            return self._seen(
                event.ts, site, packet.src, packet.dst, packet.sport, packet.dport, how, event.mac
            )
        return NO_TRIGGERS

    def tick(self, ts: float) -> Sequence[Trigger]:
        return self._brute.flush(ts) + self._gate.flush(ts)

    def state_size(self) -> int:
        return len(self._brute) + len(self._gate)

    def _seen(
        self,
        ts: float,
        site: SiteView,
        src: str,
        dst: str,
        sport: int | None,
        dport: int | None,
        how: str,  # "a" accepted flow, "d" dropped SYN, "s" sampled accepted connection
        mac: str | None = None,
    ) -> Sequence[Trigger]:
        key = f"{src}>{dst}"
        out: list[Trigger] = []
        s = self.settings
        if how != "s":
            count = self._brute.add(key, ts, sport)
            if count:
                total = self._brute.total(key)
                trigger = self._trigger(
                    BRUTE,
                    key,
                    Severity.HIGH,
                    f"{total} SSH connection attempts from {src} to {dst} within "
                    f"{s.brute_window_s:g} s",
                    ts,
                    site,
                    src,
                    dst,
                    sport,
                    dport,
                    mac,
                    count,
                    attack.BRUTE_FORCE,
                    None,
                    Evidence(s.brute_threshold, s.brute_window_s, float(total)),
                )
                self._brute.remember(key, trigger)
                out.append(trigger)
        if site.role_of(src) != STAFF_ROLE or not self._gated(site, dst):
            return out
        if site.gate_open(src, dst, "tcp", dport, ts):
            return out
        key = self._gate.admit(key, ts)
        count = self._gate.add(key, ts, sport)
        if not count:
            return out
        denied = how == "d"
        trigger = self._trigger(
            OUTSIDE_GATE,
            key,
            Severity.MEDIUM if denied else Severity.HIGH,
            overflowing(
                key,
                f"Support staff {src} {'tried' if denied else 'opened'} SSH to {dst} "
                f"with no open gate{'' if denied else ' and the firewall let it through'}",
            ),
            ts,
            site,
            src,
            dst,
            sport,
            dport,
            mac,
            count,
            attack.EXTERNAL_REMOTE_SERVICES,
            "denied" if denied else "allowed",
            None,
        )
        self._gate.remember(key, trigger)
        out.append(trigger)
        return out

    def _gated(self, site: SiteView, dst: str) -> bool:
        if site.role_of(dst) in self._roles:
            return True
        return "appliance" in self._roles and site.is_appliance(dst)

    def _trigger(
        self,
        rule: Rule,
        key: str,
        severity: Severity,
        summary: str,
        ts: float,
        site: SiteView,
        src: str,
        dst: str,
        sport: int | None,
        dport: int | None,
        mac: str | None,
        count: int,
        technique: Technique,
        action: Action | None,
        evidence: Evidence | None,
    ) -> Trigger:
        source = endpoint(site, src, sport, mac)
        destination = endpoint(site, dst, dport)
        network = None
        if source is not None and destination is not None:
            network = flow_network(source, destination, "tcp", "ssh")
        return Trigger(
            rule=rule,
            key=key,
            severity=severity,
            summary=summary,
            ts=trigger_time(ts),
            technique=technique,
            source=source,
            destination=destination,
            network=network,
            action=action,
            evidence=evidence,
            count=count,
        )
