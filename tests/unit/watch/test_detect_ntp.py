"""NTP detector: monitor events (offset, KoD, falseticker, lost) and `pg ntp:` packets."""

from __future__ import annotations

import datetime
import random
import socket
import struct
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.alerts.record import Severity, Trigger
from gateway.events import Event
from gateway.watch.detectors.base import ComponentEvent, FlowEvent, PacketEvent
from gateway.watch.detectors.ntp import NtpDetector, NtpSettings
from gateway.watch.sources.nflog import DecodedPacket, decode_ip

APPLIANCE = {"198.18.10.1", "198.18.20.1"}
HUB = "198.18.10.11"
UPSTREAM = "198.19.0.123"


class Site:
    """Test double of the policy lookups: hubs 198.18.10.0/24 and 10.0.0.0/8."""

    def zone_of(self, address: str) -> str | None:
        return "hubs" if self.role_of(address) == "hub" else "internet"

    def role_of(self, address: str) -> str | None:
        if address in APPLIANCE:
            return "appliance"
        return "hub" if address.startswith(("198.18.10.", "10.")) else None

    def is_appliance(self, address: str) -> bool:
        return address in APPLIANCE

    def gate_open(self, src: str, dst: str, proto: str, port: int | None, ts: float) -> bool:
        return False


SITE = Site()


def ntp_header(mode: int, stratum: int = 2, refid: bytes = b"\xc6\x13\x00\x7b") -> bytes:
    return struct.pack("!BBbbII4s", (4 << 3) | mode, stratum, 6, -20, 0, 0, refid) + bytes(32)


def ntp_packet(
    src: str, dst: str, data: bytes, ts: float = 1000.0, sport: int = 123, dport: int = 123
) -> PacketEvent:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    raw = (
        struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(udp),
            0,
            0,
            64,
            17,
            0,
            socket.inet_aton(src),
            socket.inet_aton(dst),
        )
        + udp
    )
    packet = decode_ip(raw)
    assert packet is not None
    return PacketEvent(ts=ts, kind="ntp", packet=packet, payload=raw)


def component(kind: str, fields: Any, ts: float = 1000.0) -> ComponentEvent:
    stamp = datetime.datetime.fromtimestamp(ts, datetime.UTC)
    return ComponentEvent(ts=ts, event=Event(kind, "ntp", fields, stamp))


def feed(detector: NtpDetector, *events: PacketEvent | ComponentEvent) -> list[Trigger]:
    out: list[Trigger] = []
    for e in events:
        out += detector.observe(e, SITE)
    return out


# ------------------------------------------------------------------ another time source


def test_a_hub_asking_another_server_fires() -> None:
    detector = NtpDetector()
    [trigger] = feed(detector, ntp_packet(HUB, UPSTREAM, ntp_header(3), sport=40000))
    assert trigger.rule.id == "PG-NTP-OTHER-SOURCE" and trigger.key == HUB
    assert trigger.source is not None and trigger.source.role == "hub"
    assert trigger.destination is not None and trigger.destination.address == UPSTREAM
    assert trigger.network is not None and trigger.network.community_id
    assert trigger.labels["mode"] == "client"


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (HUB, "198.18.10.1"),  # the relay: as it should be
        ("198.18.20.1", UPSTREAM),  # the appliance's own upstream query
        ("198.18.20.10", UPSTREAM),  # a plant workstation: not a hub
    ],
)
def test_allowed_time_sources_do_not_fire(src: str, dst: str) -> None:
    assert feed(NtpDetector(), ntp_packet(src, dst, ntp_header(3), sport=40000)) == []


def test_repeats_from_one_hub_are_one_key_with_their_count() -> None:
    detector = NtpDetector()
    events = [
        ntp_packet(HUB, f"198.19.0.{i % 3 + 1}", ntp_header(3), ts=1000.0 + i) for i in range(30)
    ]
    triggers = feed(detector, *events) + list(detector.tick(1100.0))
    assert {t.key for t in triggers} == {HUB}
    assert sum(t.count for t in triggers) == 30
    assert len(triggers) <= 4


# ------------------------------------------------------------------ Kiss-o'-Death


def test_kiss_of_death_packet_from_an_upstream() -> None:
    detector = NtpDetector()
    kod = ntp_header(4, stratum=0, refid=b"RATE")
    [trigger] = feed(detector, ntp_packet(UPSTREAM, "198.18.20.1", kod, dport=40000))
    assert trigger.rule.id == "PG-NTP-KOD" and trigger.key == f"{UPSTREAM}:RATE"
    assert trigger.severity is Severity.MEDIUM
    assert trigger.technique is not None and trigger.technique.id == "T0814"
    deny = ntp_header(4, stratum=0, refid=b"DENY")
    [denied] = feed(detector, ntp_packet(UPSTREAM, "198.18.20.1", deny, dport=40000))
    assert denied.severity is Severity.HIGH


@pytest.mark.parametrize(
    ("src", "dst", "stratum", "refid"),
    [
        (UPSTREAM, "198.18.20.1", 0, b"INIT"),  # not synchronised yet: not a kiss
        (UPSTREAM, "198.18.20.1", 1, b"GPS\0"),  # a stratum-1 answer
        (UPSTREAM, "198.18.20.1", 0, b"\x01\x02\x03\x04"),  # not ASCII
        ("198.18.10.1", HUB, 0, b"RATE"),  # the relay rate-limiting a hub
    ],
)
def test_what_is_not_an_upstream_kiss(src: str, dst: str, stratum: int, refid: bytes) -> None:
    event = ntp_packet(src, dst, ntp_header(4, stratum, refid), dport=40000)
    assert feed(NtpDetector(), event) == []


def test_monitor_kod_and_packet_kod_are_one_key() -> None:
    detector = NtpDetector()
    fields = {"upstream": "ntp-upstream (198.19.0.123)", "address": UPSTREAM, "code": "RATE"}
    [first] = feed(detector, component("ntp.kod", fields))
    kod = ntp_packet(UPSTREAM, "198.18.20.1", ntp_header(4, 0, b"RATE"), ts=1001.0, dport=4000)
    assert feed(detector, kod) == []  # same key within report_every_s: counted
    [later] = detector.tick(1011.0)
    assert first.key == later.key == f"{UPSTREAM}:RATE" and later.count == 1


# ------------------------------------------------------------------ monitor events


def test_offset_levels_map_to_severity() -> None:
    detector = NtpDetector()
    warn = {"offset": 0.25, "level": "warn", "threshold": 0.1, "consensus_of": 3}
    [trigger] = feed(detector, component("ntp.offset", warn))
    assert trigger.rule.id == "PG-NTP-OFFSET" and trigger.severity is Severity.MEDIUM
    assert trigger.evidence is not None and trigger.evidence.observed == 0.25
    assert trigger.evidence.threshold == 0.1
    high = {"offset": -2.0, "level": "high", "threshold": 1.0}
    [trigger] = feed(detector, component("ntp.offset", high))
    assert trigger.severity is Severity.HIGH and "behind" in trigger.summary
    assert feed(detector, component("ntp.offset_cleared", {"offset": 0.0})) == []


def test_offset_floor_is_inclusive() -> None:
    detector = NtpDetector(NtpSettings(offset_min_s=0.5))
    assert feed(detector, component("ntp.offset", {"offset": 0.499, "level": "warn"})) == []
    assert len(feed(detector, component("ntp.offset", {"offset": -0.5, "level": "warn"}))) == 1


def test_falseticker_and_lost_upstreams() -> None:
    detector = NtpDetector()
    one = {
        "falseticker": "b (198.19.0.2)",
        "address": "198.19.0.2",
        "deviation": -0.9,
        "bound": 0.5,
    }
    [trigger] = feed(detector, component("ntp.falseticker", one))
    assert trigger.rule.id == "PG-NTP-FALSETICKER" and trigger.evidence is not None
    assert trigger.evidence.observed == 0.9 and trigger.source is not None
    two = {"falseticker": None, "disagreeing": ["a", "b"], "difference": 0.7, "bound": 0.5}
    [trigger] = feed(detector, component("ntp.falseticker", two))
    assert trigger.key == "a / b"
    lost = {"upstreams": ["a", "b"], "rounds": 2, "errors": {}}
    [trigger] = feed(detector, component("ntp.upstream_lost", lost))
    assert trigger.rule.id == "PG-NTP-UPSTREAM-LOST" and "a, b" in trigger.summary


# ------------------------------------------------------------------ robustness


def test_malformed_input_never_raises() -> None:
    detector = NtpDetector()
    rng = random.Random(9)
    for _ in range(3000):
        data = rng.randbytes(rng.randrange(0, 60))
        src, dst = rng.choice([(HUB, UPSTREAM), (UPSTREAM, "198.18.20.1")])
        detector.observe(ntp_packet(src, dst, data, sport=rng.choice([123, 5])), SITE)
        packet = DecodedPacket(version=4, src=src, dst=dst, proto="udp", sport=123, dport=123)
        detector.observe(PacketEvent(1.0, "ntp", packet, data), SITE)
    detector.observe(PacketEvent(1.0, "ntp", DecodedPacket(version=6), b""), SITE)
    junk: list[Any] = [
        {"offset": "far", "level": 3},
        {"offset": True},
        {"code": None, "address": 5},
        {"code": "RATE", "address": "not an address"},
        {"falseticker": 1, "disagreeing": "ab", "difference": "x"},
        {"upstreams": "a"},
        ["not", "a", "dict"],
    ]
    for kind in ("ntp.offset", "ntp.kod", "ntp.falseticker", "ntp.upstream_lost"):
        for fields in junk:
            detector.observe(component(kind, fields), SITE)
    detector.tick(2000.0)
    assert detector.malformed > 0


def test_other_events_are_ignored() -> None:
    detector = NtpDetector()
    assert detector.observe(FlowEvent(1.0, "start", "udp", HUB, UPSTREAM, 1, 123), SITE) == ()
    assert feed(detector, component("policy.applied", {"offset": 5.0})) == []
    assert (
        feed(NtpDetector(NtpSettings(enabled=False)), component("ntp.offset", {"offset": 5.0}))
        == []
    )


def test_state_is_bounded_under_a_flood_of_distinct_hubs() -> None:
    detector = NtpDetector(NtpSettings(max_tracked=1000))
    data = ntp_header(3)
    payload = ntp_packet(HUB, UPSTREAM, data).payload
    observe, fired = detector.observe, 0
    for i in range(1_000_000):
        hub = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        packet = DecodedPacket(version=4, src=hub, dst=UPSTREAM, proto="udp", sport=9, dport=123)
        fired += len(observe(PacketEvent(i / 1000, "ntp", packet, payload), SITE))
        if i % 10_000 == 0:
            fired += len(detector.tick(i / 1000))
    assert detector.state_size() <= 2 * 1000
    assert fired < 2000  # 60 new hubs a minute for ~17 minutes, then "many sources"


# ------------------------------------------------------------------ settings


def test_settings_defaults_and_schema() -> None:
    assert NtpSettings().client_roles == ["hub"]
    schema = NtpSettings.model_json_schema()
    assert all("description" in field for field in schema["properties"].values())


@pytest.mark.parametrize(
    "bad",
    [
        {"offset_min_s": -0.1},
        {"offset_min_s": "0.5"},
        {"report_every_s": 0},
        {"max_tracked": -5},
        {"client_roles": "hub"},
        {"new_sources_per_minute": 0},
        {"kod": True},
    ],
)
def test_bad_settings_fail_validation(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        NtpSettings(**bad)
