"""`PG-TLS-NOT-TLS`: a connection to a TLS port whose first bytes are not a TLS handshake.

Operator screens (443), the hub device API (8443, mutual TLS) and enrollment (8140) speak
TLS and nothing else. A client whose first payload there is not a TLS record is tunnelling
something else through a port the policy opens (plain HTTP, SSH, a reverse shell): ATT&CK
for ICS T0885 Commonly Used Port. Medium; high when the bytes are recognisably another
protocol (HTTP, SSH) rather than noise.

Input: `PacketEvent` kind `tls` — the ruleset logs the 2nd to 4th packet the client sends
on an established connection to `ports` (`ct original packets 2-4`, rate-limited; see
gateway/policy/watchlog.py): the handshake's ACK and the first data. The first one
carrying payload is judged; a TLS client's first record is a handshake: content type 22,
version 3.x (`16 03 0x`). Flows already judged are remembered (at most `max_tracked`, LRU)
so the later samples of the same connection are not.
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from gateway.alerts import attack
from gateway.alerts.record import Rule, Severity, Trigger
from gateway.watch.detectors.base import PacketEvent, SiteView, WatchEvent, trigger_time
from gateway.watch.detectors.bounded import (
    DetectorSettings,
    KeyBudget,
    PortNumber,
    Recent,
    Reporter,
    flow_of,
)

NOT_TLS = Rule("PG-TLS-NOT-TLS", "Non-TLS traffic on a TLS port")
TLS_HANDSHAKE = 0x16
NO_TRIGGERS: tuple[Trigger, ...] = ()
_KNOWN = (
    (b"GET ", "http"),
    (b"POST", "http"),
    (b"HEAD", "http"),
    (b"PUT ", "http"),
    (b"CONN", "http"),
    (b"SSH-", "ssh"),
    (b"OPTI", "http"),
)


class TlsSettings(DetectorSettings):
    """First payloads on the TLS ports (PG-TLS-NOT-TLS); the ruleset samples these ports."""

    enabled: bool = True
    ports: list[PortNumber] = Field(
        default_factory=lambda: [443, 8443, 8140],
        description="TCP ports where only TLS is expected (the ruleset samples their first "
        "client packets for the watcher).",
        min_length=1,
        max_length=16,
    )
    report_every_s: float = Field(default=10.0, gt=0, le=3600)
    window_s: float = Field(default=300.0, gt=0, le=86_400)
    max_new_alerts_per_minute: int = Field(default=30, ge=1, le=100_000)
    max_tracked: int = Field(default=10_000, ge=1, le=1_000_000, description="Flows judged.")


def tcp_payload(packet: bytes) -> bytes | None:
    """The TCP payload of a copied IPv4/IPv6 packet (None when the headers are cut short)."""
    if len(packet) < 20:
        return None
    version = packet[0] >> 4
    if version == 4:
        offset = (packet[0] & 0x0F) * 4
        if packet[9] != 6 or offset < 20:
            return None
    elif version == 6:
        if len(packet) < 40 or packet[6] != 6:
            return None  # extension headers before TCP: not worth decoding here
        offset = 40
    else:
        return None
    if len(packet) < offset + 13:
        return None
    data = offset + (packet[offset + 12] >> 4) * 4
    if data < offset + 20 or len(packet) < data:
        return None
    return packet[data:]


def looks_like(payload: bytes) -> str | None:
    """'tls' for a TLS handshake record, a protocol name for known plaintext, else None."""
    if len(payload) >= 3 and payload[0] == TLS_HANDSHAKE and payload[1] == 3 and payload[2] <= 4:
        return "tls"
    head = payload[:4]
    for prefix, name in _KNOWN:
        if head == prefix:
            return name
    return None


class NonTlsDetector:
    name = "not-tls"
    accepts = frozenset({"packet:tls"})

    def __init__(self, settings: TlsSettings) -> None:
        self.settings = settings
        self._ports = frozenset(settings.ports)
        self._judged: Recent[tuple[str, int, str, int], None] = Recent(
            settings.max_tracked, settings.window_s
        )
        self._budget = KeyBudget(
            settings.max_new_alerts_per_minute, settings.max_tracked, settings.window_s
        )
        self._reporter = Reporter(settings.report_every_s, settings.max_tracked, settings.window_s)

    def state_size(self) -> int:
        return len(self._judged) + len(self._budget) + len(self._reporter)

    def observe(self, event: WatchEvent, site: SiteView) -> Sequence[Trigger]:
        if not isinstance(event, PacketEvent) or event.kind != "tls" or not self.settings.enabled:
            return NO_TRIGGERS
        p = event.packet
        if p.src is None or p.dst is None or p.sport is None or p.dport not in self._ports:
            return NO_TRIGGERS
        flow = (p.src, p.sport, p.dst, p.dport)
        if flow in self._judged:
            return NO_TRIGGERS
        payload = tcp_payload(event.payload)
        if not payload:
            return NO_TRIGGERS  # the handshake's ACK: wait for the data
        self._judged.put(flow, None, event.ts)
        kind = looks_like(payload)
        if kind == "tls":
            return NO_TRIGGERS
        key = self._budget.admit(f"{p.src}>{p.dst}:{p.dport}", event.ts)

        def make() -> Trigger:
            return self._trigger(event, site, key, payload, kind)

        trigger = self._reporter.add(key, event.ts, make)
        return (trigger,) if trigger is not None else NO_TRIGGERS

    def tick(self, ts: float) -> Sequence[Trigger]:
        self._judged.expire(ts)
        self._budget.expire(ts)
        return self._reporter.flush(ts)

    def _trigger(
        self, event: PacketEvent, site: SiteView, key: str, payload: bytes, kind: str | None
    ) -> Trigger:
        p = event.packet
        assert p.src is not None and p.dst is not None
        source, destination, network = flow_of(
            site, p.src, p.dst, "tcp", p.sport, p.dport, event.mac
        )
        what = kind.upper() if kind else "non-TLS data"
        return Trigger(
            rule=NOT_TLS,
            key=key,
            severity=Severity.HIGH if kind else Severity.MEDIUM,
            summary=f"{p.src} sent {what} to {p.dst} port {p.dport}, where TLS is expected",
            ts=trigger_time(event.ts),
            technique=attack.COMMONLY_USED_PORT,
            source=source,
            destination=destination,
            network=network,
            action="allowed",
            labels={"first_bytes": payload[:16].hex(), "looks_like": kind or "unknown"},
        )
