"""Helpers for the network detectors' tests: real packets (bytes, decoded by the NFLOG
source's decoder), the lab policy's site view, and addresses by the million."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator, Sequence

from gateway.alerts.record import Trigger
from gateway.policy.load import load_file
from gateway.watch.baseline import Baseline, Learned
from gateway.watch.detectors.base import (
    ArpEvent,
    Detector,
    FlowEvent,
    PacketEvent,
    PacketKind,
    WatchEvent,
)
from gateway.watch.site import PolicySite
from gateway.watch.sources.nflog import DecodedPacket, decode_ip
from tests.unit.conftest import POLICIES

T0 = 1_740_830_400.0  # 2025-03-01 12:00:00 UTC
GW_LAN, GW_WAN = "198.18.10.1", "198.18.20.1"
HUB1, HUB2 = "198.18.10.11", "198.18.10.12"
WORKSTATION = "198.18.20.10"
RESOLVER = "198.19.0.53"
ALICE = "198.18.201.5"
_FLAGS = {c: 1 << i for i, c in enumerate("FSRPAUECN")}
_LAB = load_file(POLICIES / "lab.yaml")


def lab_site() -> PolicySite:
    """The lab policy's site view, with gw's addresses as the appliance's."""
    return PolicySite(_LAB.policy, [GW_LAN, GW_WAN])


def learned(mode: str = "learning", started: float = T0, window_s: float = 3600.0) -> Learned:
    return Learned(Baseline(started=started), "protecting" if mode == "protecting" else "learning",
                   window_s)  # fmt: skip


def ipv4(src: str, dst: str, proto: int, l4: bytes) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(l4),
        1,
        0,
        64,
        proto,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    return header + l4


def tcp(
    src: str, dst: str, sport: int, dport: int, flags: str = "S", payload: bytes = b""
) -> bytes:
    bits = sum(_FLAGS[c] for c in flags)
    segment = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, bits & 0xFF, 64240, 0, 0)
    return ipv4(src, dst, 6, segment + payload)


def udp(src: str, dst: str, sport: int, dport: int, payload: bytes = b"") -> bytes:
    return ipv4(src, dst, 17, struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload)


def packet(
    raw: bytes,
    kind: PacketKind = "drop",
    ts: float = T0,
    *,
    hook: str | None = "input",
    mac: str | None = None,
    rule: str | None = None,
) -> PacketEvent:
    decoded = decode_ip(raw)
    assert decoded is not None
    return PacketEvent(
        ts=ts, kind=kind, packet=decoded, payload=raw, hook=hook, mac=mac, rule=rule,
        indev="lan0",
    )  # fmt: skip


def syn(src: str, dst: str, dport: int, ts: float = T0, sport: int = 40000) -> PacketEvent:
    return packet(tcp(src, dst, sport, dport), "drop", ts)


def flow(
    src: str, dst: str, dport: int, ts: float = T0, proto: str = "tcp", phase: str = "start"
) -> FlowEvent:
    return FlowEvent(
        ts=ts, phase="end" if phase == "end" else "start", proto=proto, src=src, dst=dst,
        sport=40000, dport=dport,
    )  # fmt: skip


def arp(mac: str, ip: str, ts: float = T0, op: str = "request") -> ArpEvent:
    return ArpEvent(
        ts=ts, interface="lan0", op="reply" if op == "reply" else "request", sender_mac=mac,
        sender_ip=ip, target_ip=GW_LAN,
    )  # fmt: skip


def addresses(count: int, first: int = 0x0A000000) -> Iterator[str]:
    """`count` distinct IPv4 addresses (10.0.0.0 upward by default)."""
    for value in range(first, first + count):
        yield socket.inet_ntoa(value.to_bytes(4, "big"))


def feed(
    detector: Detector, events: Sequence[WatchEvent] | Iterator[WatchEvent], site: PolicySite
) -> list[Trigger]:
    out: list[Trigger] = []
    for event in events:
        out.extend(detector.observe(event, site))
    return out


def total(triggers: Sequence[Trigger], rule: str | None = None) -> int:
    """The count the aggregator would show: the triggers' counts added up."""
    return sum(t.count for t in triggers if rule is None or t.rule.id == rule)


def fast_syn(src: str, dst: str, dport: int, ts: float, kind: PacketKind = "drop") -> PacketEvent:
    """A SYN as `decode_ip` would decode it, without building its bytes (floods in tests)."""
    decoded = DecodedPacket(
        version=4, src=src, dst=dst, proto="tcp", proto_num=6, ttl=64, length=40,
        sport=40000, dport=dport, tcp_flags="S",
    )  # fmt: skip
    return PacketEvent(ts=ts, kind=kind, packet=decoded, hook="input", indev="lan0")


MILLION = 1_000_000
