"""Support detector: tunnel down/stale, staff attempts outside a gate, volume."""

from __future__ import annotations

import datetime
import random
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.alerts.record import Severity, Trigger
from gateway.events import Event
from gateway.watch.detectors.base import (
    ArpEvent,
    ComponentEvent,
    FlowEvent,
    LinkEvent,
    PacketEvent,
)
from gateway.watch.detectors.support import SupportDetector, SupportSettings
from gateway.watch.sources.nflog import DecodedPacket

APPLIANCE = {"198.18.10.1", "198.18.20.1", "198.18.200.2"}
HUB = "198.18.10.11"
STAFF = "198.18.201.5"
MIB = 1024 * 1024


class Site:
    """Test double of the policy lookups; staff are 198.18.201.0/24 and 10.0.0.0/8."""

    def __init__(self, gates: set[tuple[str, str, str, int | None]] | None = None) -> None:
        self.gates = gates or set()

    def zone_of(self, address: str) -> str | None:
        return "support" if self.role_of(address) == "support-staff" else "hubs"

    def role_of(self, address: str) -> str | None:
        if address in APPLIANCE:
            return "appliance"
        if address.startswith(("198.18.201.", "10.")):
            return "support-staff"
        return "hub" if address.startswith("198.18.10.") else None

    def is_appliance(self, address: str) -> bool:
        return address in APPLIANCE

    def gate_open(self, src: str, dst: str, proto: str, port: int | None, ts: float) -> bool:
        return (src, dst, proto, port) in self.gates


SITE = Site()


def tunnel(state: str, ts: float, **extra: Any) -> ComponentEvent:
    fields = {"state": state, "reason": f"test: {state}", "mode": "gated", **extra}
    fields.setdefault("interface", "wg-support")
    stamp = datetime.datetime.fromtimestamp(ts, datetime.UTC)
    return ComponentEvent(ts, Event("vpn.tunnel_state", "plantgated.vpn", fields, stamp))


def drop(src: str, dst: str, dport: int, ts: float = 1000.0, proto: str = "tcp") -> PacketEvent:
    packet = DecodedPacket(
        version=4, src=src, dst=dst, proto=proto, sport=40000 + dport, dport=dport, tcp_flags="S"
    )
    return PacketEvent(ts=ts, kind="drop", packet=packet, hook="forward")


def ended(src: str, size: int, ts: float, dst: str = HUB) -> FlowEvent:
    return FlowEvent(ts, "end", "tcp", src, dst, 40000, 22, 10, size // 10, 10, size - size // 10)


def feed(detector: SupportDetector, *events: Any, site: Site = SITE) -> list[Trigger]:
    out: list[Trigger] = []
    for e in events:
        out += detector.observe(e, site)
    return out


# ------------------------------------------------------------------ tunnel state


def test_tunnel_down_fires_once_after_the_grace() -> None:
    detector = SupportDetector()
    assert feed(detector, tunnel("down", 1000.0)) == []
    assert detector.tick(1059.0) == []
    [trigger] = detector.tick(1060.0)
    assert trigger.rule.id == "PG-SUPPORT-TUNNEL-DOWN" and trigger.key == "wg-support"
    assert trigger.severity is Severity.MEDIUM
    assert trigger.evidence is not None and trigger.evidence.threshold == 60.0
    assert trigger.evidence.observed == 60.0
    assert detector.tick(1200.0) == []  # one report per outage
    assert feed(detector, tunnel("down", 1300.0)) == []  # still the same outage


def test_a_short_outage_is_quiet_and_recovery_rearms() -> None:
    detector = SupportDetector()
    assert feed(detector, tunnel("down", 1000.0), tunnel("connecting", 1010.0)) == []
    assert feed(detector, tunnel("up", 1020.0)) == []
    assert detector.tick(2000.0) == []
    feed(detector, tunnel("stale", 3000.0))
    [trigger] = detector.tick(3060.0)
    assert trigger.rule.id == "PG-SUPPORT-TUNNEL-STALE" and trigger.severity is Severity.LOW


def test_connecting_for_too_long_is_down_and_disabled_is_fine() -> None:
    detector = SupportDetector(SupportSettings(down_grace_s=0))
    [trigger] = feed(detector, tunnel("connecting", 1000.0))
    assert trigger.rule.id == "PG-SUPPORT-TUNNEL-DOWN"
    assert feed(detector, tunnel("disabled", 1001.0), tunnel("up", 1002.0)) == []
    assert detector.state_size() == 0


def test_link_down_of_the_tunnel_interface() -> None:
    detector = SupportDetector(SupportSettings(down_grace_s=30))
    assert feed(detector, LinkEvent(1000.0, "lan0", False)) == []
    assert feed(detector, LinkEvent(1000.0, "wg-support", False, "wireguard")) == []
    assert feed(detector, LinkEvent(1010.0, "wg-support", True, "wireguard")) == []
    [trigger] = feed(detector, tunnel("down", 1031.0))  # the outage began with the link
    assert "wg-support" in trigger.summary


# ------------------------------------------------------------------ outside the gate


def test_staff_attempt_outside_a_gate() -> None:
    detector = SupportDetector()
    [trigger] = feed(detector, drop(STAFF, HUB, 443))
    assert trigger.rule.id == "PG-SUPPORT-OUTSIDE-GATE" and trigger.key == STAFF
    assert trigger.action == "denied" and trigger.severity is Severity.MEDIUM
    assert trigger.destination is not None and trigger.destination.role == "hub"
    assert trigger.network is not None and trigger.network.community_id
    assert trigger.technique is not None and trigger.technique.id == "T0822"


def test_ssh_is_left_to_the_ssh_detector_unless_asked() -> None:
    assert feed(SupportDetector(), drop(STAFF, HUB, 22)) == []
    assert len(feed(SupportDetector(SupportSettings(defer_ports=[])), drop(STAFF, HUB, 22))) == 1
    assert len(feed(SupportDetector(), drop(STAFF, HUB, 22, proto="udp"))) == 1


def test_no_trigger_with_a_gate_or_from_others() -> None:
    open_gate = Site({(STAFF, HUB, "tcp", 443)})
    assert feed(SupportDetector(), drop(STAFF, HUB, 443), site=open_gate) == []
    assert feed(SupportDetector(), drop("198.18.20.10", HUB, 443)) == []


def test_repeated_attempts_are_one_key_with_their_count() -> None:
    detector = SupportDetector()
    events = [drop(STAFF, f"198.18.10.{11 + i % 4}", 443, 1000.0 + i) for i in range(40)]
    triggers = feed(detector, *events) + list(detector.tick(1100.0))
    assert {t.key for t in triggers} == {STAFF}
    assert sum(t.count for t in triggers) == 40


# ------------------------------------------------------------------ volume


def test_volume_threshold_is_inclusive() -> None:
    detector = SupportDetector(SupportSettings(volume_bytes=100 * MIB))
    assert feed(detector, ended(STAFF, 60 * MIB, 1000.0), ended(STAFF, 40 * MIB - 1, 1100.0)) == []
    [trigger] = feed(detector, ended(STAFF, 1, 1200.0))
    assert trigger.rule.id == "PG-SUPPORT-VOLUME" and trigger.key == STAFF
    assert trigger.evidence is not None and trigger.evidence.observed == 100 * MIB
    assert trigger.technique is not None and trigger.technique.id == "T1041"
    assert trigger.network is not None and trigger.network.bytes == 1


def test_volume_outside_the_window_does_not_count() -> None:
    detector = SupportDetector(SupportSettings(volume_bytes=100 * MIB, volume_window_s=3600))
    assert feed(detector, ended(STAFF, 90 * MIB, 1000.0)) == []
    assert feed(detector, ended(STAFF, 90 * MIB, 1000.0 + 3700)) == []
    assert len(feed(detector, ended(STAFF, 10 * MIB, 1000.0 + 3710))) == 1


def test_volume_ignores_non_staff_and_starts() -> None:
    detector = SupportDetector(SupportSettings(volume_bytes=1))
    assert feed(detector, ended("198.18.20.10", MIB, 1000.0)) == []
    start = FlowEvent(1000.0, "start", "tcp", STAFF, HUB, 1, 22, 5, MIB, 5, MIB)
    assert feed(detector, start) == []


# ------------------------------------------------------------------ robustness


def test_malformed_input_never_raises() -> None:
    detector = SupportDetector(SupportSettings(down_grace_s=0, volume_bytes=1))
    junk: list[Any] = [
        {"state": 5},
        {"state": "down", "interface": None, "handshake_age_s": "x"},
        {"state": "stale", "reason": ["a"], "mode": {}},
        {"state": "exploded"},
        {},
    ]
    for i, fields in enumerate(junk):
        stamp = datetime.datetime.fromtimestamp(i, datetime.UTC)
        detector.observe(ComponentEvent(i, Event("vpn.tunnel_state", "x", fields, stamp)), SITE)
    rng = random.Random(4)
    for _ in range(2000):
        packet = DecodedPacket(
            version=4,
            src=rng.choice([None, STAFF, "nonsense"]),
            dst=rng.choice([None, HUB, "::"]),
            proto=rng.choice([None, "tcp", "icmp", "gre"]),
            sport=rng.choice([None, 70000]),
            dport=rng.choice([None, 443, -1]),
            icmp_type=rng.choice([None, 8, 300]),
        )
        detector.observe(PacketEvent(1.0, "drop", packet), SITE)
        size = rng.choice([-5, 0, 3])
        flow = FlowEvent(1.0, "end", rng.choice(["tcp", "weird"]), STAFF, "x", -1, None, 0, size)
        detector.observe(flow, SITE)
    detector.observe(ArpEvent(1.0, "lan0", "reply", "aa:bb:cc:dd:ee:ff", HUB, HUB), SITE)
    detector.tick(5000.0)


def test_state_is_bounded_under_a_flood_of_distinct_staff_addresses() -> None:
    detector = SupportDetector(SupportSettings(max_tracked=1000))
    observe = detector.observe
    for i in range(1_000_000):
        staff = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        observe(FlowEvent(i / 1000, "end", "tcp", staff, HUB, 1, 22, 1, 100, 1, 100), SITE)
    assert detector.state_size() <= 2 * 1000 + 1


# ------------------------------------------------------------------ settings


def test_settings_defaults_and_schema() -> None:
    settings = SupportSettings()
    assert settings.interface == "wg-support" and settings.volume_bytes == 100 * MIB
    schema = SupportSettings.model_json_schema()
    assert all("description" in field for field in schema["properties"].values())


@pytest.mark.parametrize(
    "bad",
    [
        {"volume_bytes": 0},
        {"volume_bytes": -1},
        {"volume_window_s": 0},
        {"down_grace_s": -1},
        {"interface": "a-name-far-too-long"},
        {"interface": 3},
        {"defer_ports": [70000]},
        {"volume_bytes": "100M"},
        {"grace": 10},
    ],
)
def test_bad_settings_fail_validation(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SupportSettings(**bad)
