"""Support-tunnel anomalies: the tunnel down or stale, a staff connection attempt outside a
gate window, unusual volume over the tunnel.

Inputs:

- `ComponentEvent` `vpn.tunnel_state` (gateway/vpn/tunnel.py; states from
  gateway/vpn/health.py): fields `state` (disabled|connecting|up|stale|down), `previous`,
  `reason`, `mode`, `interface`, `endpoint`, `handshake_age_s`. Published on each change.
- `LinkEvent` for the tunnel interface (`interface`, or any `kind == "wireguard"` link):
  a link going down is a `down` state even before the VPN service's next round says so.
- `PacketEvent` `drop` whose source's role is `support-staff` (SiteView.role_of).
- `FlowEvent` `end` whose source's role is `support-staff`, with conntrack's byte counters.

Rules:

- `PG-SUPPORT-TUNNEL-DOWN` / `PG-SUPPORT-TUNNEL-STALE` — the tunnel has been `down` (or
  still `connecting`: never a handshake) / `stale` (the session expired) for `down_grace_s`.
  The grace keeps restarts and brief outages quiet; each outage is reported once (checked in
  `tick`, so it fires without further events). `disabled` (the plant turned the VPN off)
  and `up` end an outage. In gated mode the tunnel should always be up: down means the
  vendor cannot help when asked, and may mean someone stopped it. Key: the interface.
- `PG-SUPPORT-OUTSIDE-GATE` — a dropped packet from a staff address that no open gate grant
  covers (`SiteView.gate_open` false): a staff member (or whoever holds a staff key) trying
  to reach the plant outside an approved window or beyond its targets. Ports in
  `defer_ports` (SSH) are left to `PG-SSH-OUTSIDE-GATE` so one attempt makes one alert.
  Key: the staff address. Technique T0822 External Remote Services (ICS).
- `PG-SUPPORT-VOLUME` — `volume_bytes` or more (both directions) in the flows of one staff
  address that ended within `volume_window_s`. A diagnosis session moves kilobytes to a few
  megabytes; hundreds of megabytes is a bulk copy out of the plant (technique T1041
  Exfiltration Over C2 Channel: Enterprise, as ICS has no Exfiltration tactic). Counters
  arrive when a flow ends, so a transfer is counted when its connection closes. Key: the
  staff address.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from gateway.alerts import attack
from gateway.alerts.record import Evidence, Rule, Severity, Trigger, flow_network
from gateway.watch.detectors.base import (
    ComponentEvent,
    FlowEvent,
    LinkEvent,
    PacketEvent,
    SiteView,
    WatchEvent,
    trigger_time,
)
from gateway.watch.detectors.bounded import NewSourcesPerMinute, ReportEvery
from gateway.watch.detectors.components import (
    NO_TRIGGERS,
    Tally,
    endpoint,
    number,
    overflowing,
    text,
)

TUNNEL_DOWN = Rule("PG-SUPPORT-TUNNEL-DOWN", "Support tunnel down")
TUNNEL_STALE = Rule("PG-SUPPORT-TUNNEL-STALE", "Support tunnel stale")
OUTSIDE_GATE = Rule("PG-SUPPORT-OUTSIDE-GATE", "Support staff connection outside a gate")
VOLUME = Rule("PG-SUPPORT-VOLUME", "Unusual volume over the support tunnel")
STAFF_ROLE = "support-staff"
_BAD = {"down": TUNNEL_DOWN, "connecting": TUNNEL_DOWN, "stale": TUNNEL_STALE}
_GOOD = frozenset({"up", "disabled"})
_BUCKETS = 60  # the volume window is summed in this many slices

Port = Annotated[int, Field(ge=1, le=65535, description="A TCP port.")]


class SupportSettings(BaseModel):
    """Thresholds of the support-tunnel detector (defaults for a small plant LAN)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    enabled: bool = Field(default=True, description="Turn the support detections on or off.")
    interface: str = Field(
        default="wg-support",
        pattern=r"^[A-Za-z0-9_.:-]{1,15}$",
        description="The support tunnel's interface (its link events mean tunnel state).",
    )
    down_grace_s: float = Field(
        default=60.0,
        ge=0,
        le=86_400,
        description="A tunnel down, connecting or stale for less than this many seconds is "
        "not reported (restarts, brief outages).",
    )
    defer_ports: list[Port] = Field(
        default_factory=lambda: [22],
        description="TCP ports whose staff attempts PG-SSH-OUTSIDE-GATE reports instead, so "
        "that one attempt makes one alert (empty: report them here too).",
    )
    volume_bytes: int = Field(
        default=100 * 1024 * 1024,
        ge=1,
        description="Bytes (both directions) in one staff address's flows within "
        "volume_window_s that make an alert (PG-SUPPORT-VOLUME).",
    )
    volume_window_s: float = Field(
        default=3600.0, gt=0, le=7 * 86_400, description="Window for volume_bytes, in seconds."
    )
    report_every_s: ReportEvery = 10.0
    new_sources_per_minute: NewSourcesPerMinute = 60
    max_tracked: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="Most staff addresses tracked per rule at once.",
    )


class _Outage:
    __slots__ = ("fields", "reason", "reported", "since", "state")

    def __init__(self, state: str, since: float, reason: str, fields: dict[str, object]) -> None:
        self.state, self.since, self.reason, self.fields = state, since, reason, fields
        self.reported = False


class _Volume:
    __slots__ = ("buckets", "total")

    def __init__(self) -> None:
        self.buckets: deque[list[int]] = deque()  # [bucket index, bytes], oldest first
        self.total = 0


class SupportDetector:
    """Tunnel state, staff drops and staff flows -> triggers. State: the current outage,
    a `Tally` of staff addresses, and a volume table of at most `max_tracked` addresses."""

    name = "support"
    accepts = frozenset({"flow", "packet:drop", "component", "link"})

    def __init__(self, settings: SupportSettings | None = None) -> None:
        self.settings = s = settings or SupportSettings()
        self._defer = frozenset(s.defer_ports)
        self._outside = Tally(
            1, s.report_every_s, s.report_every_s, s.max_tracked, s.new_sources_per_minute
        )
        self._volume: OrderedDict[str, _Volume] = OrderedDict()
        self._bucket_s = s.volume_window_s / _BUCKETS
        self._outage: _Outage | None = None

    def observe(self, event: WatchEvent, site: SiteView) -> Sequence[Trigger]:
        if not self.settings.enabled:
            return NO_TRIGGERS
        if type(event) is FlowEvent:
            if event.phase != "end" or site.role_of(event.src) != STAFF_ROLE:
                return NO_TRIGGERS
            return self._flow(event, site)
        if type(event) is PacketEvent:
            if event.kind != "drop" or event.packet.src is None:
                return NO_TRIGGERS
            return self._drop(event, site)
        if type(event) is ComponentEvent:
            if event.event.kind != "vpn.tunnel_state" or not isinstance(event.event.fields, dict):
                return NO_TRIGGERS
            f = event.event.fields
            state = text(f, "state", 16) or ""
            reason = text(f, "reason", 300) or state
            interface = text(f, "interface", 15) or self.settings.interface
            extra: dict[str, object] = {"mode": text(f, "mode", 16) or "", "interface": interface}
            age = number(f, "handshake_age_s")
            if age is not None:
                extra["handshake_age_s"] = age
            return self._state(event.ts, state, reason, extra)
        if type(event) is LinkEvent:
            if event.interface != self.settings.interface and event.kind != "wireguard":
                return NO_TRIGGERS
            if event.up:
                return NO_TRIGGERS  # up is not yet a session: wait for vpn.tunnel_state
            reason = f"interface {event.interface} went down"
            fields: dict[str, object] = {"interface": event.interface}
            return self._state(event.ts, "down", reason, fields)
        return NO_TRIGGERS

    def tick(self, ts: float) -> Sequence[Trigger]:
        out = self._outside.flush(ts)
        trigger = self._due(ts)
        if trigger is not None:
            out.append(trigger)
        horizon = ts - self.settings.volume_window_s
        while self._volume:  # forget staff addresses whose flows all left the window
            address, volume = next(iter(self._volume.items()))
            last = volume.buckets[-1][0] * self._bucket_s if volume.buckets else horizon
            if last > horizon:
                break
            del self._volume[address]
        return out

    def state_size(self) -> int:
        return len(self._outside) + len(self._volume) + (self._outage is not None)

    # ------------------------------------------------------------ tunnel state

    def _state(
        self, ts: float, state: str, reason: str, fields: dict[str, object]
    ) -> list[Trigger]:
        if state in _GOOD:
            self._outage = None
            return []
        if state not in _BAD:
            return []
        outage = self._outage
        if outage is None or _BAD[outage.state] is not _BAD[state]:
            self._outage = _Outage(state, ts, reason, fields)
        else:
            outage.reason, outage.fields = reason, {**outage.fields, **fields}
        trigger = self._due(ts)
        return [trigger] if trigger is not None else []

    def _due(self, ts: float) -> Trigger | None:
        outage = self._outage
        grace = self.settings.down_grace_s
        if outage is None or outage.reported or ts - outage.since < grace:
            return None
        outage.reported = True
        rule = _BAD[outage.state]
        interface = str(outage.fields.get("interface") or self.settings.interface)
        lasted = ts - outage.since
        what = "stale (no valid session)" if rule is TUNNEL_STALE else outage.state
        labels: dict[str, str | float] = {"state": outage.state, "reason": outage.reason}
        labels.update({k: v for k, v in outage.fields.items() if isinstance(v, str | float)})
        return Trigger(
            rule=rule,
            key=interface,
            severity=Severity.LOW if rule is TUNNEL_STALE else Severity.MEDIUM,
            summary=f"Support tunnel {interface} {what} for {lasted:.0f} s: {outage.reason}",
            ts=trigger_time(ts),
            evidence=Evidence(threshold=grace, observed=round(lasted, 1)),
            labels=labels,
        )

    # ------------------------------------------------------------ staff traffic

    def _drop(self, event: PacketEvent, site: SiteView) -> Sequence[Trigger]:
        packet = event.packet
        src, dst, proto, dport = packet.src, packet.dst, packet.proto, packet.dport
        if src is None or site.role_of(src) != STAFF_ROLE or dst is None:
            return NO_TRIGGERS
        if proto == "tcp" and dport in self._defer:
            return NO_TRIGGERS
        if site.gate_open(src, dst, proto or "", dport, event.ts):
            return NO_TRIGGERS  # granted yet dropped: not a gate question
        key = self._outside.admit(src, event.ts)
        count = self._outside.add(key, event.ts, (dst, dport, packet.sport))
        if not count:
            return NO_TRIGGERS
        source = endpoint(site, src, packet.sport)
        destination = endpoint(site, dst, dport)
        network = None
        if source is not None and destination is not None and proto:
            network = flow_network(
                source,
                destination,
                proto,
                icmp_type=packet.icmp_type,
                icmp_code=packet.icmp_code,
            )
        service = f"{proto}/{dport}" if dport is not None else (proto or "a packet")
        role = destination.role if destination and destination.role else "no known role"
        trigger = Trigger(
            rule=OUTSIDE_GATE,
            key=key,
            severity=Severity.MEDIUM,
            summary=overflowing(
                key,
                f"Support staff {src} tried {service} to {dst} ({role}) "
                "with no open gate covering it",
            ),
            ts=trigger_time(event.ts),
            technique=attack.EXTERNAL_REMOTE_SERVICES,
            source=source,
            destination=destination,
            network=network,
            action="denied",
            count=count,
        )
        self._outside.remember(key, trigger)
        return (trigger,)

    def _flow(self, event: FlowEvent, site: SiteView) -> Sequence[Trigger]:
        size = max(0, event.orig_bytes) + max(0, event.reply_bytes)
        if size == 0:
            return NO_TRIGGERS
        table = self._volume
        volume = table.get(event.src)
        if volume is None:
            volume = table[event.src] = _Volume()
            if len(table) > self.settings.max_tracked:
                table.popitem(last=False)
        else:
            table.move_to_end(event.src)
        index = int(event.ts // self._bucket_s)
        buckets = volume.buckets
        if buckets and buckets[-1][0] == index:
            buckets[-1][1] += size
        else:
            buckets.append([index, size])
        volume.total += size
        while buckets and buckets[0][0] <= index - _BUCKETS:  # left the window
            volume.total -= buckets.popleft()[1]
        s = self.settings
        if volume.total < s.volume_bytes:
            return NO_TRIGGERS
        source = endpoint(site, event.src, event.sport)
        destination = endpoint(site, event.dst, event.dport)
        network = None
        if source is not None and destination is not None:
            network = flow_network(
                source,
                destination,
                event.proto,
                bytes=size,
                packets=event.orig_packets + event.reply_packets,
            )
        mib = volume.total / 1_048_576
        return (
            Trigger(
                rule=VOLUME,
                key=event.src,
                severity=Severity.HIGH,
                summary=f"Support staff {event.src} moved {mib:.1f} MiB over the tunnel within "
                f"{s.volume_window_s:g} s (limit {s.volume_bytes / 1_048_576:.1f} MiB); "
                f"latest flow to {event.dst}",
                ts=trigger_time(event.ts),
                technique=attack.EXFILTRATION_OVER_C2,
                source=source,
                destination=destination,
                network=network,
                action="allowed",
                evidence=Evidence(s.volume_bytes, s.volume_window_s, float(volume.total)),
                labels={"bytes_to_staff": max(0, event.reply_bytes)},
            ),
        )
