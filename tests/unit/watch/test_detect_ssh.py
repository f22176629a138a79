"""SSH detector: brute force, and SSH outside an open support gate."""

from __future__ import annotations

import random
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.alerts.record import Severity, Trigger
from gateway.watch.detectors.base import FlowEvent, LinkEvent, PacketEvent, PacketKind
from gateway.watch.detectors.ssh import SshDetector, SshSettings
from gateway.watch.sources.nflog import DecodedPacket

APPLIANCE = {"198.18.10.1", "198.18.20.1", "198.18.200.2"}
HUB = "198.18.10.11"
STAFF = "198.18.201.5"
PLANT = "198.18.20.10"


class Site:
    """Test double of the policy lookups; `gates` holds (src, dst, proto, port) granted."""

    def __init__(self, gates: set[tuple[str, str, str, int | None]] | None = None) -> None:
        self.gates = gates or set()

    def zone_of(self, address: str) -> str | None:
        role = self.role_of(address)
        return {"hub": "hubs", "support-staff": "support", "plant": "plant"}.get(role or "")

    def role_of(self, address: str) -> str | None:
        if address in APPLIANCE:
            return "appliance"
        if address.startswith("198.18.10."):
            return "hub"
        if address.startswith("198.18.201."):
            return "support-staff"
        return "plant" if address.startswith("198.18.20.") else None

    def is_appliance(self, address: str) -> bool:
        return address in APPLIANCE

    def gate_open(self, src: str, dst: str, proto: str, port: int | None, ts: float) -> bool:
        return (src, dst, proto, port) in self.gates


SITE = Site()


def flow(src: str, dst: str, sport: int, ts: float = 1000.0, dport: int = 22) -> FlowEvent:
    return FlowEvent(ts, "start", "tcp", src, dst, sport, dport, state="SYN_SENT")


def syn(
    src: str,
    dst: str,
    sport: int,
    ts: float = 1000.0,
    kind: PacketKind = "drop",
    flags: str = "S",
    dport: int = 22,
) -> PacketEvent:
    packet = DecodedPacket(
        version=4, src=src, dst=dst, proto="tcp", sport=sport, dport=dport, tcp_flags=flags
    )
    return PacketEvent(ts=ts, kind=kind, packet=packet, hook="forward")


def feed(detector: SshDetector, *events: Any, site: Site = SITE) -> list[Trigger]:
    out: list[Trigger] = []
    for e in events:
        out += detector.observe(e, site)
    return out


# ------------------------------------------------------------------ brute force


def test_brute_force_threshold_is_inclusive() -> None:
    detector = SshDetector()
    assert feed(detector, *[flow(PLANT, HUB, 40000 + i, 1000.0 + i) for i in range(9)]) == []
    [trigger] = feed(detector, flow(PLANT, HUB, 40009, 1009.0))
    assert trigger.rule.id == "PG-SSH-BRUTE" and trigger.key == f"{PLANT}>{HUB}"
    assert trigger.severity is Severity.HIGH and trigger.count == 10
    assert trigger.technique is not None and trigger.technique.id == "T1110"
    assert trigger.evidence is not None and trigger.evidence.threshold == 10
    assert trigger.evidence.window_s == 60.0 and trigger.evidence.observed == 10
    assert trigger.network is not None and trigger.network.community_id
    assert trigger.destination is not None and trigger.destination.role == "hub"


def test_attempts_outside_the_window_do_not_count() -> None:
    detector = SshDetector()
    early = [flow(PLANT, HUB, 40000 + i, 1000.0 + i) for i in range(5)]
    late = [flow(PLANT, HUB, 41000 + i, 1064.0 + i) for i in range(5)]
    assert feed(detector, *early, *late) == []  # never 10 within 60 s


def test_dropped_syns_count_and_retransmissions_count_once() -> None:
    detector = SshDetector(SshSettings(brute_threshold=3))
    retransmits = [syn(PLANT, HUB, 40000, 1000.0 + i) for i in range(5)]
    assert feed(detector, *retransmits) == []
    assert feed(detector, syn(PLANT, HUB, 40001, 1006.0)) == []
    [trigger] = feed(detector, syn(PLANT, HUB, 40002, 1007.0))
    assert trigger.rule.id == "PG-SSH-BRUTE"


def test_a_long_brute_force_is_one_key_with_the_full_count() -> None:
    detector = SshDetector()
    events = [flow(PLANT, HUB, 30000 + i, 1000.0 + i / 5) for i in range(500)]
    triggers = feed(detector, *events) + list(detector.tick(1200.0))
    assert {(t.rule.id, t.key) for t in triggers} == {("PG-SSH-BRUTE", f"{PLANT}>{HUB}")}
    assert sum(t.count for t in triggers) == 500
    assert len(triggers) <= 12


def test_what_is_not_an_ssh_attempt() -> None:
    detector = SshDetector(SshSettings(brute_threshold=1))
    assert feed(detector, flow(PLANT, HUB, 1, dport=443)) == []
    assert feed(detector, FlowEvent(1.0, "end", "tcp", PLANT, HUB, 1, 22)) == []
    assert feed(detector, FlowEvent(1.0, "start", "udp", PLANT, HUB, 1, 22)) == []
    assert feed(detector, syn(PLANT, HUB, 2, flags="SA")) == []
    assert feed(detector, syn(PLANT, HUB, 3, flags="R")) == []
    assert feed(detector, syn(PLANT, HUB, 4, kind="dns")) == []
    assert feed(detector, syn(PLANT, HUB, 5, kind="new")) == []  # samples are not counted
    assert feed(detector, LinkEvent(1.0, "lan0", False)) == []


def test_other_ssh_ports() -> None:
    detector = SshDetector(SshSettings(ports=[2222], brute_threshold=1))
    assert feed(detector, flow(PLANT, HUB, 1)) == []
    assert len(feed(detector, flow(PLANT, HUB, 1, dport=2222))) == 1


# ------------------------------------------------------------------ outside the gate


def test_staff_ssh_dropped_outside_a_gate() -> None:
    detector = SshDetector()
    [trigger] = feed(detector, syn(STAFF, HUB, 50000, flags="SEC"))  # an ECN SYN
    assert trigger.rule.id == "PG-SSH-OUTSIDE-GATE" and trigger.key == f"{STAFF}>{HUB}"
    assert trigger.action == "denied" and trigger.severity is Severity.MEDIUM
    assert trigger.source is not None and trigger.source.role == "support-staff"
    assert trigger.technique is not None and trigger.technique.id == "T0822"


def test_staff_ssh_accepted_without_a_gate_is_high() -> None:
    detector = SshDetector()
    [trigger] = feed(detector, flow(STAFF, "198.18.200.2", 50000))
    assert trigger.action == "allowed" and trigger.severity is Severity.HIGH
    # the same connection sampled too: counted once
    assert feed(detector, syn(STAFF, "198.18.200.2", 50000, 1000.5, kind="new")) == []
    assert detector.tick(1100.0) == []


def test_an_open_gate_or_a_non_staff_source_does_not_fire() -> None:
    open_gate = Site({(STAFF, HUB, "tcp", 22)})
    assert feed(SshDetector(), syn(STAFF, HUB, 1), flow(STAFF, HUB, 2), site=open_gate) == []
    assert feed(SshDetector(), syn(PLANT, HUB, 1)) == []
    assert feed(SshDetector(), syn(STAFF, PLANT, 1)) == []  # not a gated target


def test_repeated_staff_attempts_are_one_key() -> None:
    detector = SshDetector()
    events = [syn(STAFF, HUB, 50000 + i, 1000.0 + i) for i in range(25)]
    triggers = feed(detector, *events) + list(detector.tick(1100.0))
    gate = [t for t in triggers if t.rule.id == "PG-SSH-OUTSIDE-GATE"]
    assert {t.key for t in gate} == {f"{STAFF}>{HUB}"}
    assert sum(t.count for t in gate) == 25


# ------------------------------------------------------------------ robustness


def test_malformed_input_never_raises() -> None:
    detector = SshDetector(SshSettings(brute_threshold=1))
    rng = random.Random(2)
    for _ in range(2000):
        packet = DecodedPacket(
            version=rng.choice([4, 6]),
            src=rng.choice([None, STAFF, "bogus"]),
            dst=rng.choice([None, HUB, "::1"]),
            proto=rng.choice([None, "tcp", "udp"]),
            sport=rng.choice([None, -1, 70000, 5]),
            dport=rng.choice([None, 22]),
            tcp_flags=rng.choice([None, "", "S", "SA"]),
        )
        kinds: list[PacketKind] = ["drop", "new", "accept", "arp"]
        kind = rng.choice(kinds)
        detector.observe(PacketEvent(1.0, kind, packet), SITE)
        sport = rng.choice([None, -3, 99999, 1])
        detector.observe(FlowEvent(1.0, "start", "tcp", "x", "y", sport, 22), SITE)
    detector.tick(100.0)


def test_state_is_bounded_under_a_flood_of_distinct_sources() -> None:
    detector = SshDetector(SshSettings(max_tracked=1000))
    observe = detector.observe
    for i in range(1_000_000):
        source = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        observe(FlowEvent(i / 1000, "start", "tcp", source, HUB, 40000, 22), SITE)
    assert detector.state_size() <= 2 * 1000


# ------------------------------------------------------------------ settings


def test_settings_defaults_and_schema() -> None:
    settings = SshSettings()
    assert settings.ports == [22] and settings.brute_threshold == 10
    schema = SshSettings.model_json_schema()
    assert all("description" in field for field in schema["properties"].values())


@pytest.mark.parametrize(
    "bad",
    [
        {"ports": []},
        {"ports": [0]},
        {"ports": [65536]},
        {"ports": ["22"]},
        {"brute_threshold": -1},
        {"brute_threshold": 2.5},
        {"brute_window_s": -60},
        {"gated_roles": [1]},
        {"treshold": 3},
    ],
)
def test_bad_settings_fail_validation(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        SshSettings(**bad)
