"""NTP anomalies: the relay's offset beyond its thresholds, Kiss-o'-Death, a disagreeing or
lost upstream, and a hub taking time from anything but the appliance.

Two inputs:

- `ComponentEvent`s the NTP monitor publishes (gateway/ntp/monitor.py), which already
  applies the policy's `time` thresholds (`offset_warn`, `offset_high`) with hysteresis:
  `ntp.offset` (`offset` s, `level` warn|high, `threshold`, `consensus_of`), `ntp.kod`
  (`upstream`, `address`, `code`), `ntp.upstream_lost` (`upstreams`, `rounds`, `errors`),
  `ntp.falseticker` (`falseticker`, `address`, `deviation`, `bound`; or `disagreeing`,
  `difference`). The `*_cleared`/`*_restored` kinds need no alert: the aggregator closes
  an alert that is no longer fed.
- `PacketEvent`s of kind `ntp` (prefix `pg ntp: `, udp/123 both ways, prerouting and
  output; gateway/policy/watchlog.py). The 48-byte header is read with `struct`: mode,
  stratum and the reference ID, whose ASCII code in a stratum-0 server answer is a kiss.

Rules:

- `PG-NTP-OFFSET` — `ntp.offset` with |offset| ≥ `offset_min_s` (0: every report). Severity
  medium at the monitor's `warn` level, high at `high`. Hubs have no real-time clock: their
  time, hence certificate checks and the traceability records' timestamps, is the relay's.
- `PG-NTP-KOD` — a Kiss-o'-Death from an upstream, seen by the monitor (`ntp.kod`) or in a
  server packet to the appliance (chrony's own queries). `INIT` is not a kiss. Key
  `server:code` for both, so the two sightings make one alert. Spoofed KoDs are a known way
  to stop a client's time (CVE-2015-7704): technique T0814 Denial of Service.
- `PG-NTP-FALSETICKER` — an upstream disagrees with the others beyond the bound (a wrong
  or manipulated time source; technique T0830 Adversary-in-the-Middle).
- `PG-NTP-UPSTREAM-LOST` — every upstream failed: the relay free-runs.
- `PG-NTP-OTHER-SOURCE` — an NTP packet from an address whose role is in `client_roles`
  (hubs) to anything but the appliance. The policy drops it, but a hub doing so is
  misconfigured or tampered with. Key: the hub (the latest server in the alert).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field

from gateway.alerts import attack
from gateway.alerts.record import Evidence, Rule, Severity, Trigger, flow_network
from gateway.ntp.monitor import NOT_A_KISS, kiss_code
from gateway.watch.detectors.base import (
    ComponentEvent,
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
    udp_payload,
)

OFFSET = Rule("PG-NTP-OFFSET", "Time relay offset beyond threshold")
KOD = Rule("PG-NTP-KOD", "NTP Kiss-o'-Death from an upstream")
FALSETICKER = Rule("PG-NTP-FALSETICKER", "NTP upstream disagrees with the others")
LOST = Rule("PG-NTP-UPSTREAM-LOST", "Every NTP upstream lost")
OTHER_SOURCE = Rule("PG-NTP-OTHER-SOURCE", "Hub uses a time source other than the appliance")

_HEADER = struct.Struct("!BBbbII4s")  # li/vn/mode, stratum, poll, precision, delay, disp, refid
MODE_CLIENT, MODE_SERVER = 3, 4
_MODES = ("reserved", "symmetric active", "symmetric passive", "client", "server", "broadcast")


class NtpSettings(BaseModel):
    """Thresholds of the NTP detector (defaults for a small plant LAN)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    enabled: bool = Field(default=True, description="Turn the NTP detections on or off.")
    offset_min_s: float = Field(
        default=0.0,
        ge=0,
        le=86_400,
        description="Report the NTP monitor's offset findings only from this many seconds "
        "of offset up (0: every finding; the monitor itself applies the policy's "
        "time.offset_warn and time.offset_high).",
    )
    client_roles: list[str] = Field(
        default_factory=lambda: ["hub"],
        description="Asset roles that must take time from the appliance only "
        "(PG-NTP-OTHER-SOURCE).",
    )
    report_every_s: ReportEvery = 10.0
    new_sources_per_minute: NewSourcesPerMinute = 60
    max_tracked: int = Field(
        default=10_000,
        ge=1,
        le=10_000_000,
        description="Most hub-server pairs (and kissing servers) tracked at once.",
    )


class NtpDetector:
    """NTP monitor events and `pg ntp:` packets -> triggers. State: two `Tally`s."""

    name = "ntp"
    accepts = frozenset({"packet:ntp", "component"})

    def __init__(self, settings: NtpSettings | None = None) -> None:
        self.settings = s = settings or NtpSettings()
        every, most, budget = s.report_every_s, s.max_tracked, s.new_sources_per_minute
        self._other = Tally(1, every, every, most, budget)
        self._kisses = Tally(1, every, every, most, budget)
        self._roles = frozenset(s.client_roles)
        self.malformed = 0

    def observe(self, event: WatchEvent, site: SiteView) -> Sequence[Trigger]:
        if type(event) is PacketEvent:
            if event.kind != "ntp" or not self.settings.enabled:
                return NO_TRIGGERS
            return self._packet(event, site)
        if type(event) is ComponentEvent:
            if not event.event.kind.startswith("ntp.") or not self.settings.enabled:
                return NO_TRIGGERS
            if not isinstance(event.event.fields, dict):
                return NO_TRIGGERS
            return self._component(event, site)
        return NO_TRIGGERS

    def tick(self, ts: float) -> Sequence[Trigger]:
        return self._other.flush(ts) + self._kisses.flush(ts)

    def state_size(self) -> int:
        return len(self._other) + len(self._kisses)

    # ------------------------------------------------------------ packets

    def _packet(self, event: PacketEvent, site: SiteView) -> Sequence[Trigger]:
        packet = event.packet
        src, dst = packet.src, packet.dst
        if src is None or dst is None:
            return NO_TRIGGERS
        wire = udp_payload(event.payload)
        if wire is None or len(wire) < _HEADER.size:
            self.malformed += 1
            return NO_TRIGGERS
        first, stratum, _poll, _precision, _delay, _disp, refid = _HEADER.unpack_from(wire)
        mode = first & 0x07
        if (
            mode == MODE_SERVER
            and stratum == 0
            and packet.sport == 123
            and site.is_appliance(dst)  # an upstream kissing the appliance, not the relay
            and not site.is_appliance(src)  # rate-limiting a hub (that is the relay's job)
        ):
            code = kiss_code(0, int.from_bytes(refid, "big"))
            if code is not None and code not in NOT_A_KISS:
                return self._kiss(event.ts, site, src, code, event)
        if site.role_of(src) not in self._roles or site.is_appliance(dst):
            return NO_TRIGGERS
        key = self._other.admit(src, event.ts)
        count = self._other.add(key, event.ts)
        if not count:
            return NO_TRIGGERS
        source = endpoint(site, src, packet.sport, event.mac)
        destination = endpoint(site, dst, packet.dport)
        trigger = Trigger(
            rule=OTHER_SOURCE,
            key=key,
            severity=Severity.MEDIUM,
            summary=overflowing(
                key,
                f"{src} ({source.role if source else 'hub'}) sent NTP ({_mode(mode)}) to {dst}, "
                "not to the appliance",
            ),
            ts=trigger_time(event.ts),
            technique=attack.STANDARD_APPLICATION_LAYER_PROTOCOL,
            source=source,
            destination=destination,
            network=flow_network(source, destination, "udp", "ntp")
            if source is not None and destination is not None
            else None,
            count=count,
            labels={"mode": _mode(mode), "version": (first >> 3) & 0x07},
        )
        self._other.remember(key, trigger)
        return (trigger,)

    def _kiss(
        self,
        ts: float,
        site: SiteView,
        server: str,
        code: str,
        event: PacketEvent | None = None,
        upstream: str | None = None,
    ) -> Sequence[Trigger]:
        key = self._kisses.admit(f"{server}:{code}", ts)
        count = self._kisses.add(key, ts)
        if not count:
            return NO_TRIGGERS
        source = endpoint(site, server, event.packet.sport if event else 123)
        destination = None
        network = None
        if event is not None:
            destination = endpoint(site, event.packet.dst, event.packet.dport)
            if source is not None and destination is not None:
                network = flow_network(source, destination, "udp", "ntp")
        name = f"{upstream} " if upstream and server not in upstream else ""
        trigger = Trigger(
            rule=KOD,
            key=key,
            # DENY/RSTR: the server refuses us for good; RATE: we are asking too often.
            severity=Severity.MEDIUM if code == "RATE" else Severity.HIGH,
            summary=overflowing(
                key,
                f"NTP upstream {name}{server} sent a Kiss-o'-Death ({code}): "
                "it will not serve time to the appliance",
            ),
            ts=trigger_time(ts),
            technique=attack.DENIAL_OF_SERVICE,
            source=source,
            destination=destination,
            network=network,
            count=count,
            labels={"code": code},
        )
        self._kisses.remember(key, trigger)
        return (trigger,)

    # ------------------------------------------------------------ monitor events

    def _component(self, event: ComponentEvent, site: SiteView) -> Sequence[Trigger]:
        kind, f = event.event.kind, event.event.fields
        if kind == "ntp.kod":
            code = text(f, "code", 8)
            upstream = text(f, "upstream")
            server = text(f, "address", 64) or upstream
            if code is None or server is None:
                return NO_TRIGGERS
            return self._kiss(event.ts, site, server, code, upstream=upstream)
        if kind == "ntp.offset":
            offset = number(f, "offset")
            if offset is None or abs(offset) < self.settings.offset_min_s:
                return NO_TRIGGERS
            level = text(f, "level", 8) or "warn"
            threshold = number(f, "threshold")
            ahead = "ahead of" if offset > 0 else "behind"
            return (
                Trigger(
                    rule=OFFSET,
                    key="relay",
                    severity=Severity.HIGH if level == "high" else Severity.MEDIUM,
                    summary=f"The time relay is {abs(offset):.3f} s {ahead} its upstreams' "
                    f"consensus (limit {threshold if threshold is not None else '?'} s)",
                    ts=trigger_time(event.ts),
                    evidence=Evidence(threshold=threshold, observed=abs(offset)),
                    labels={"level": level},
                ),
            )
        if kind == "ntp.falseticker":
            who = text(f, "falseticker")
            if who is None:
                pair = f.get("disagreeing")
                names = [x for x in pair if isinstance(x, str)] if isinstance(pair, list) else []
                who = " / ".join(names[:2]) or "two upstreams"
                what = f"NTP upstreams {who} disagree by {number(f, 'difference')} s"
                observed = number(f, "difference")
            else:
                observed = number(f, "deviation")
                what = f"NTP upstream {who} is {observed} s off the others' median"
            return (
                Trigger(
                    rule=FALSETICKER,
                    key=who,
                    severity=Severity.MEDIUM,
                    summary=f"{what} (bound {number(f, 'bound')} s)",
                    ts=trigger_time(event.ts),
                    technique=attack.ADVERSARY_IN_THE_MIDDLE,
                    source=endpoint(site, f.get("address"), 123),
                    evidence=Evidence(
                        threshold=number(f, "bound"),
                        observed=abs(observed) if observed is not None else None,
                    ),
                ),
            )
        if kind == "ntp.upstream_lost":
            ups = f.get("upstreams")
            names = [x for x in ups if isinstance(x, str)][:5] if isinstance(ups, list) else []
            return (
                Trigger(
                    rule=LOST,
                    key="upstreams",
                    severity=Severity.MEDIUM,
                    summary="No NTP upstream answers (" + (", ".join(names) or "none") + "): "
                    "the relay serves time from its own clock",
                    ts=trigger_time(event.ts),
                    evidence=Evidence(threshold=number(f, "rounds")),
                ),
            )
        return NO_TRIGGERS


def _mode(mode: int) -> str:
    return _MODES[mode] if mode < len(_MODES) else f"mode {mode}"
