"""What every detector sees and returns: watch events in, alert triggers out.

The watcher's sources (NFLOG, conntrack, links, the daemon's bus) turn what they read into
the small frozen records below; the engine hands each one to every detector, then calls
`tick` about once a second so windows can close without new traffic. A detector is pure
over its inputs and its own bounded state: it never reads a socket, a file or the clock,
and it never builds an `Alert` (the aggregator does). That is what lets each be tested
with hand-made events and an injected time.

Times are float seconds since the epoch (`ts`), as the kernel reports them; `Trigger.ts`
is built from them with `trigger_time`.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, get_args

from gateway.alerts.record import Trigger
from gateway.events import Event
from gateway.watch.sources.nflog import DecodedPacket

PacketKind = Literal["drop", "new", "accept", "dns", "ntp", "arp", "tls"]


@dataclass(slots=True, unsafe_hash=True)  # read-only, not frozen: sources/nflog.py says why
class PacketEvent:
    """One packet the ruleset logged to the watcher (prefix `pg <kind> ...: `).

    `rule` is the policy rule named in a `pg new <rule>: ` (a sample of new accepted
    connections) or `pg accept <rule>: ` (every connection of a rule with `log: true`)
    prefix, `hook` the hook named in `pg drop <hook>: `. Kind `tls` is a sample of the
    first client packets of connections to the TLS ports (`pg tls: `). `payload` is the
    copied packet from the IP header on (for ARP, the ARP message); `mac` the sender's
    hardware address when the kernel gave one.
    """

    ts: float
    kind: PacketKind
    packet: DecodedPacket
    payload: bytes = b""
    rule: str | None = None
    hook: str | None = None
    indev: str | None = None
    outdev: str | None = None
    mac: str | None = None


@dataclass(slots=True, unsafe_hash=True)  # read-only, not frozen: sources/nflog.py says why
class ArpEvent:
    """An ARP message seen on the hub segment: who says which IP is at which MAC."""

    ts: float
    interface: str
    op: Literal["request", "reply"]
    sender_mac: str
    sender_ip: str
    target_ip: str


@dataclass(slots=True, unsafe_hash=True)  # read-only, not frozen: sources/nflog.py says why
class FlowEvent:
    """A conntrack flow starting or ending; counters are present on `end` when the
    kernel's accounting is on (orig = initiator to responder)."""

    ts: float
    phase: Literal["start", "end"]
    proto: str
    src: str
    dst: str
    sport: int | None = None
    dport: int | None = None
    orig_packets: int = 0
    orig_bytes: int = 0
    reply_packets: int = 0
    reply_bytes: int = 0
    state: str | None = None  # tcp state at the event (e.g. SYN_SENT, ESTABLISHED)


@dataclass(frozen=True)
class TableEvent:
    """The conntrack table's fill, sampled by the watcher (pressure detection)."""

    ts: float
    count: int
    maximum: int


@dataclass(frozen=True)
class LinkEvent:
    """An interface (or the support tunnel) changing state."""

    ts: float
    interface: str
    up: bool
    kind: str | None = None  # e.g. "wireguard"


@dataclass(frozen=True)
class ComponentEvent:
    """An event a component published on the daemon's bus (policy.*, vpn.*, gate.*,
    ntp.*, mes.*), with its time as seconds."""

    ts: float
    event: Event

    @property
    def kind(self) -> str:
        return self.event.kind


WatchEvent = PacketEvent | ArpEvent | FlowEvent | TableEvent | LinkEvent | ComponentEvent


class SiteView(Protocol):
    """What detectors may ask about the site, built from the applied policy and live state.

    `zone_of` answers with the policy's zone name for an address (None when in none);
    `role_of` with the asset role the alert shows (`appliance`, `hub`, `plant`,
    `support-staff`, `upstream`, an endpoint's name, or None); `gate_open` whether an open
    gate grant covers this flow now.
    """

    def zone_of(self, address: str) -> str | None: ...

    def role_of(self, address: str) -> str | None: ...

    def is_appliance(self, address: str) -> bool: ...

    def gate_open(self, src: str, dst: str, proto: str, port: int | None, ts: float) -> bool: ...


class Detector(Protocol):
    """One detection: `observe` each event, `tick` on time passing; both return triggers.

    State must be bounded (TTL/LRU tables with a stated maximum); `state_size` reports it
    so tests and metrics can prove the bound.

    A detector may also have `accepts`, the set of routes (`route_of`) of the events it
    looks at; the engine then hands it only those. Without it, it sees every event. It is a
    promise about `observe`: an event on another route must give no triggers.
    """

    name: str

    def observe(self, event: WatchEvent, site: SiteView) -> Sequence[Trigger]: ...

    def tick(self, ts: float) -> Sequence[Trigger]: ...

    def state_size(self) -> int: ...


ROUTES: dict[type, str] = {
    ArpEvent: "arp",
    FlowEvent: "flow",
    TableEvent: "table",
    LinkEvent: "link",
    ComponentEvent: "component",
}
"""The route of each event type but `PacketEvent`, whose route is `packet:<kind>`."""

PACKET_ROUTES: dict[str, str] = {kind: f"packet:{kind}" for kind in get_args(PacketKind)}
# the routes of events that reach the scan, hub-agent, egress and SSH detectors
ATTEMPT_ROUTES = frozenset({"packet:drop", "packet:new", "packet:accept", "flow"})


def route_of(event: WatchEvent) -> str:
    """`packet:drop`, `packet:dns`, ..., `arp`, `flow`, `table`, `link`, `component`."""
    if isinstance(event, PacketEvent):
        return PACKET_ROUTES.get(event.kind, f"packet:{event.kind}")
    return ROUTES.get(type(event), type(event).__name__)


def trigger_time(ts: float) -> datetime.datetime:
    """An event's epoch seconds as the aware UTC time a `Trigger` carries."""
    return datetime.datetime.fromtimestamp(ts, datetime.UTC)
