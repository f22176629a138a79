"""Port scans: many ports on one host (vertical), one port on many hosts (horizontal).

Input: connection attempts, whatever their verdict —
* `PacketEvent` kind `drop` (the ruleset logs the *first* drop of each (source,
  destination, protocol, port) once a minute, see gateway/policy/watchlog.py, so a
  retransmitted probe is not a second port) and kinds `new`/`accept` (samples of accepted
  connections); TCP only when it carries SYN without ACK;
* `FlowEvent` start (conntrack: every accepted connection, so open ports count too).

Like Zeek's scan detection, an attempt is (source, destination, protocol, port); a scan is
`threshold` distinct ports (or hosts) within `window_s`. From then on the scan is *active*:
every further distinct port (host) is counted until the source has been quiet for
`window_s`, and reported in counted triggers at most every `report_every_s`. The alert's
count is therefore the number of distinct ports (hosts) probed, e.g. 1000 for
`nmap -p 1-1000`, and the scan is one alert with that count.

Rules:
* `PG-SCAN-VERTICAL` (key `src>dst`): high — in a plant LAN nothing legitimate walks a
  host's ports; it is reconnaissance before an attack (ATT&CK for ICS T0846).
* `PG-SCAN-HORIZONTAL` (key `src/proto/port`): high — a sweep for one service (Modbus,
  SMB, SSH) across hosts, the usual first step of lateral movement (T0846). The appliance
  as a source is ignored (it talks to every hub on the hub agent port by design).

State: at most `max_tracked` (source, target) entries, each holding at most `threshold`
timestamps before the threshold and, once active, one 8 KiB bitmap of its targets (active
scans are at most `max_active`, the least recently seen evicted first).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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
    DetectorSettings,
    Recent,
    Reporter,
    flow_of,
    host_bit,
)

VERTICAL = Rule("PG-SCAN-VERTICAL", "Port scan of one host (vertical)")
HORIZONTAL = Rule("PG-SCAN-HORIZONTAL", "Sweep of one port across hosts (horizontal)")
SCANNED_PROTOS = frozenset({"tcp", "udp"})
NO_TRIGGERS: tuple[Trigger, ...] = ()


class VerticalScanSettings(DetectorSettings):
    """Many ports on one host (PG-SCAN-VERTICAL)."""

    enabled: bool = True
    threshold: int = Field(
        default=20, ge=2, le=65535, description="Distinct ports on one host within window_s."
    )
    window_s: float = Field(default=60.0, gt=0, le=86_400, description="Seconds.")
    report_every_s: float = Field(
        default=5.0, gt=0, le=3600, description="Further ports are reported this often."
    )
    max_tracked: int = Field(
        default=10_000, ge=1, le=1_000_000, description="(source, host) pairs tracked at once."
    )
    max_active: int = Field(
        default=256, ge=1, le=100_000, description="Scans followed at once (8 KiB each)."
    )


class HorizontalScanSettings(DetectorSettings):
    """One port on many hosts (PG-SCAN-HORIZONTAL)."""

    enabled: bool = True
    threshold: int = Field(
        default=10, ge=2, le=1_000_000, description="Distinct hosts on one port within window_s."
    )
    window_s: float = Field(default=60.0, gt=0, le=86_400, description="Seconds.")
    report_every_s: float = Field(default=5.0, gt=0, le=3600)
    max_tracked: int = Field(default=10_000, ge=1, le=1_000_000)
    max_active: int = Field(
        default=256, ge=1, le=100_000, description="Sweeps followed at once (8 KiB each)."
    )


@dataclass(slots=True)  # read-only, not frozen: sources/nflog.py says why
class Attempt:
    """One connection attempt, from any source event."""

    ts: float
    src: str
    dst: str
    proto: str
    sport: int | None
    dport: int
    action: str  # allowed | denied
    mac: str | None


def is_syn(flags: str | None) -> bool:
    """A connection opening: SYN without ACK (not a SYN-ACK answer)."""
    return flags is not None and "S" in flags and "A" not in flags


class _Last:
    """The last event `attempt_of` was asked about, and its answer: the engine hands one
    event to the scan, hub-agent detectors in turn, and each asks."""

    __slots__ = ("attempt", "event")

    def __init__(self) -> None:
        self.event: WatchEvent | None = None
        self.attempt: Attempt | None = None


_LAST = _Last()


def attempt_of(event: WatchEvent) -> Attempt | None:
    """The connection attempt an event shows (None: not one, or not TCP/UDP)."""
    last = _LAST
    if last.event is event:
        return last.attempt
    attempt = _attempt_of(event)
    last.event, last.attempt = event, attempt
    return attempt


def _attempt_of(event: WatchEvent) -> Attempt | None:
    if isinstance(event, PacketEvent):
        p = event.packet
        if event.kind not in ("drop", "new", "accept") or p.proto not in SCANNED_PROTOS:
            return None
        if p.src is None or p.dst is None or p.dport is None:
            return None
        if p.proto == "tcp" and (
            p.tcp_flags is None or "S" not in p.tcp_flags or "A" in p.tcp_flags
        ):
            return None
        action = "denied" if event.kind == "drop" else "allowed"
        return Attempt(event.ts, p.src, p.dst, p.proto, p.sport, p.dport, action, event.mac)
    if isinstance(event, FlowEvent):
        if event.phase != "start" or event.proto not in SCANNED_PROTOS or event.dport is None:
            return None
        return Attempt(
            event.ts, event.src, event.dst, event.proto, event.sport, event.dport, "allowed", None
        )
    return None


class _Active:
    """A scan past its threshold: the distinct targets so far, as a 65,536-bit map.

    Ports index the map directly (exact). IPv4 hosts by their last 16 bits: exact for a sweep
    within one /16, which is what a plant's segments are. Other addresses by CRC-32, so two may
    share a bit and the count may fall short by a little. Never Python's `hash`: it changes
    with every process, so the same sweep would count differently from run to run (and did,
    in tests). 8 KiB either way, whatever the scan's size.
    """

    __slots__ = ("bits", "ports", "total")

    def __init__(self, targets: Sequence[object], ports: bool) -> None:
        self.bits = bytearray(8192)
        self.ports = ports
        self.total = 0
        for target in targets:
            self.add(target)

    def add(self, target: object) -> bool:
        """True when `target` is new to this scan."""
        index = target if self.ports and isinstance(target, int) else host_bit(target)
        byte, bit = (index & 0xFFFF) >> 3, index & 7
        if self.bits[byte] >> bit & 1:
            return False
        self.bits[byte] |= 1 << bit
        self.total += 1
        return True


class _ScanDetector:
    """Shared machinery; subclasses say what the key and the target of an attempt are."""

    name = "scan"
    accepts = ATTEMPT_ROUTES
    rule = VERTICAL
    ports = True  # targets are ports (vertical) or hosts (horizontal)

    def __init__(self, settings: VerticalScanSettings | HorizontalScanSettings) -> None:
        self.settings = settings
        window = settings.window_s
        # (source, target) -> {port or host: last seen}, before the threshold
        self._tracks: Recent[str, dict[object, float]] = Recent(settings.max_tracked, window)
        self._active: Recent[str, _Active] = Recent(settings.max_active, window)
        self._reporter = Reporter(settings.report_every_s, settings.max_active, window)

    def state_size(self) -> int:
        return len(self._tracks) + len(self._active) + len(self._reporter)

    def _key_target(self, attempt: Attempt, site: SiteView) -> tuple[str, object] | None:
        raise NotImplementedError

    def observe(self, event: WatchEvent, site: SiteView) -> Sequence[Trigger]:
        if not self.settings.enabled:
            return NO_TRIGGERS
        attempt = attempt_of(event)
        if attempt is None:
            return NO_TRIGGERS
        found = self._key_target(attempt, site)
        if found is None:
            return NO_TRIGGERS
        key, target = found
        ts = attempt.ts
        current = self._active.touch(key, ts)
        if current is not None:
            if not current.add(target):
                return NO_TRIGGERS
            trigger = self._reporter.add(key, ts, lambda: self._trigger(attempt, site, current))
            return (trigger,) if trigger is not None else NO_TRIGGERS
        seen = self._tracks.touch(key, ts)
        if seen is None:
            seen = {}
            self._tracks.put(key, seen, ts)
        seen[target] = ts
        if len(seen) < self.settings.threshold:
            return NO_TRIGGERS
        horizon = ts - self.settings.window_s
        for old in [t for t, at in seen.items() if at <= horizon]:
            del seen[old]
        if len(seen) < self.settings.threshold:
            return NO_TRIGGERS
        self._tracks.pop(key)
        active = _Active(list(seen), self.ports)
        self._active.put(key, active, ts)
        first = self._trigger(attempt, site, active)
        trigger = self._reporter.add(key, ts, lambda: first, count=active.total)
        return (trigger,) if trigger is not None else NO_TRIGGERS

    def tick(self, ts: float) -> Sequence[Trigger]:
        self._tracks.expire(ts)
        self._active.expire(ts)
        return self._reporter.flush(ts)

    def _trigger(self, attempt: Attempt, site: SiteView, active: _Active) -> Trigger:
        raise NotImplementedError

    def _evidence(self, active: _Active) -> Evidence:
        return Evidence(
            threshold=float(self.settings.threshold),
            window_s=self.settings.window_s,
            observed=float(active.total),
        )


class VerticalScanDetector(_ScanDetector):
    """`PG-SCAN-VERTICAL`: `threshold` distinct ports of one host within `window_s`."""

    name = "scan-vertical"
    rule = VERTICAL
    ports = True

    def __init__(self, settings: VerticalScanSettings) -> None:
        super().__init__(settings)

    def _key_target(self, attempt: Attempt, site: SiteView) -> tuple[str, object] | None:
        return _vertical_key(attempt), attempt.dport

    def _trigger(self, attempt: Attempt, site: SiteView, active: _Active) -> Trigger:
        source, destination, network = flow_of(
            site, attempt.src, attempt.dst, attempt.proto, attempt.sport, attempt.dport, attempt.mac
        )
        who = f"{attempt.src} ({source.role})" if source.role else attempt.src
        return Trigger(
            rule=VERTICAL,
            key=_vertical_key(attempt),
            severity=Severity.HIGH,
            summary=f"{who} probed {active.total} {_ports(attempt)} on {attempt.dst}",
            ts=trigger_time(attempt.ts),
            technique=attack.REMOTE_SYSTEM_DISCOVERY,
            source=source,
            destination=destination,
            network=network,
            action="denied" if attempt.action == "denied" else "allowed",
            evidence=self._evidence(active),
            labels={"distinct_ports": active.total, "last_port": attempt.dport},
        )


def _vertical_key(attempt: Attempt) -> str:
    """`source>host` for TCP, `source>host/udp` for UDP: tcp/123 and udp/123 are two ports,
    and a UDP sweep is its own alert."""
    key = f"{attempt.src}>{attempt.dst}"
    return key if attempt.proto == "tcp" else f"{key}/{attempt.proto}"


def _ports(attempt: Attempt) -> str:
    return "ports" if attempt.proto == "tcp" else f"{attempt.proto} ports"


class HorizontalScanDetector(_ScanDetector):
    """`PG-SCAN-HORIZONTAL`: one port on `threshold` distinct hosts within `window_s`."""

    name = "scan-horizontal"
    rule = HORIZONTAL
    ports = False

    def __init__(self, settings: HorizontalScanSettings) -> None:
        super().__init__(settings)

    def _key_target(self, attempt: Attempt, site: SiteView) -> tuple[str, object] | None:
        if site.is_appliance(attempt.src):
            return None
        return f"{attempt.src}/{attempt.proto}/{attempt.dport}", attempt.dst

    def _trigger(self, attempt: Attempt, site: SiteView, active: _Active) -> Trigger:
        source, destination, network = flow_of(
            site, attempt.src, attempt.dst, attempt.proto, attempt.sport, attempt.dport, attempt.mac
        )
        who = f"{attempt.src} ({source.role})" if source.role else attempt.src
        service = f"{attempt.proto}/{attempt.dport}"
        return Trigger(
            rule=HORIZONTAL,
            key=f"{attempt.src}/{attempt.proto}/{attempt.dport}",
            severity=Severity.HIGH,
            summary=f"{who} tried {service} on {active.total} hosts",
            ts=trigger_time(attempt.ts),
            technique=attack.REMOTE_SYSTEM_DISCOVERY,
            source=source,
            destination=destination,
            network=network,
            action="denied" if attempt.action == "denied" else "allowed",
            evidence=self._evidence(active),
            labels={"distinct_hosts": active.total, "port": attempt.dport},
        )
