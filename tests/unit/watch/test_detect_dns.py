"""DNS detector: unapproved resolver, long names/labels, entropy, failure bursts."""

from __future__ import annotations

import random
import socket
import string
import struct
from typing import Any

import dns.message
import dns.rcode
import pytest
from pydantic import ValidationError

from gateway.alerts.record import Trigger
from gateway.watch.detectors.base import FlowEvent, PacketEvent
from gateway.watch.detectors.dns import DnsDetector, DnsSettings, label_entropy
from gateway.watch.sources.nflog import DecodedPacket, decode_ip

APPLIANCE = {"198.18.10.1", "198.18.20.1"}
HUB = "198.18.10.11"
OUTSIDE = "198.19.0.53"


class Site:
    """Test double of the policy lookups: hubs 198.18.10.0/24, plant 198.18.20.0/24."""

    def zone_of(self, address: str) -> str | None:
        if address.startswith("198.18.10."):
            return "hubs"
        return "plant" if address.startswith("198.18.20.") else "internet"

    def role_of(self, address: str) -> str | None:
        if address in APPLIANCE:
            return "appliance"
        return "hub" if address.startswith("198.18.10.") else None

    def is_appliance(self, address: str) -> bool:
        return address in APPLIANCE

    def gate_open(self, src: str, dst: str, proto: str, port: int | None, ts: float) -> bool:
        return False


SITE = Site()


def ip_udp(src: str, dst: str, sport: int, dport: int, data: bytes) -> bytes:
    udp = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    if ":" in src:
        header = struct.pack("!IHBB", 6 << 28, len(udp), 17, 64)
        return (
            header
            + socket.inet_pton(socket.AF_INET6, src)
            + socket.inet_pton(socket.AF_INET6, dst)
            + udp
        )
    return (
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


def event(payload: bytes, ts: float = 1000.0, kind: Any = "dns") -> PacketEvent:
    packet = decode_ip(payload)
    assert packet is not None
    return PacketEvent(ts=ts, kind=kind, packet=packet, payload=payload)


def query(name: str, src: str = HUB, dst: str = "198.18.10.1", ts: float = 1000.0) -> PacketEvent:
    wire = dns.message.make_query(name, "A").to_wire()
    return event(ip_udp(src, dst, 40000, 53, wire), ts)


def answer(
    name: str, rcode: dns.rcode.Rcode, client: str = "198.18.20.1", ts: float = 1000.0
) -> PacketEvent:
    response = dns.message.make_response(dns.message.make_query(name, "A"))
    response.set_rcode(rcode)
    return event(ip_udp(OUTSIDE, client, 53, 40000, response.to_wire()), ts)


def feed(detector: DnsDetector, *events: PacketEvent) -> list[Trigger]:
    out: list[Trigger] = []
    for e in events:
        out += detector.observe(e, SITE)
    return out


def random_label(n: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    return "".join(rng.choice(string.ascii_lowercase + "234567") for _ in range(n))


# ------------------------------------------------------------------ resolver


def test_a_hub_querying_an_outside_resolver_fires_once_per_pair() -> None:
    detector = DnsDetector()
    [trigger] = feed(detector, query("ntp.upstream.test", dst=OUTSIDE))
    assert trigger.rule.id == "PG-DNS-RESOLVER"
    assert trigger.key == f"{HUB}>{OUTSIDE}"
    assert trigger.source is not None and trigger.source.role == "hub"
    assert trigger.source.zone == "hubs"
    assert trigger.network is not None and trigger.network.community_id
    assert trigger.technique is not None and trigger.technique.id == "T0869"
    assert "ntp.upstream.test" in trigger.summary
    # the same pair again within report_every_s: counted, reported by tick as one trigger
    more = [query("ntp.upstream.test", dst=OUTSIDE, ts=1000.0 + i) for i in range(1, 6)]
    assert feed(detector, *more) == []
    [later] = detector.tick(1011.0)
    assert later.key == trigger.key and later.count == 5


@pytest.mark.parametrize(
    ("src", "dst", "approved"),
    [
        (HUB, "198.18.10.1", []),  # the appliance is the resolver
        ("198.18.20.1", OUTSIDE, []),  # the appliance resolving for itself
        (HUB, OUTSIDE, [OUTSIDE]),  # an approved resolver
    ],
)
def test_approved_resolvers_do_not_fire(src: str, dst: str, approved: list[str]) -> None:
    detector = DnsDetector(DnsSettings(approved_resolvers=approved))
    assert feed(detector, query("ntp.upstream.test", src=src, dst=dst)) == []


# ------------------------------------------------------------------ long names


def test_long_label_threshold_is_inclusive() -> None:
    detector = DnsDetector()
    assert feed(detector, query("a" * 49 + ".example.test")) == []
    [trigger] = feed(detector, query("a" * 50 + ".example.test"))
    assert trigger.rule.id == "PG-DNS-LONG-NAME"
    assert trigger.evidence is not None and trigger.evidence.threshold == 50
    assert trigger.evidence.observed == 50


def test_long_name_threshold_is_inclusive() -> None:
    detector = DnsDetector()
    labels = ["b" * 39] * 3  # 119 characters with the dots
    assert len(".".join(labels)) == 119
    assert feed(detector, query(".".join(labels))) == []
    [trigger] = feed(detector, query(".".join([*labels[:2], "b" * 40])))
    assert trigger.rule.id == "PG-DNS-LONG-NAME" and trigger.key == HUB
    assert trigger.evidence is not None and trigger.evidence.observed == 120


def test_ignored_suffixes_are_not_judged() -> None:
    detector = DnsDetector(DnsSettings(ignore_suffixes=["cdn.example"]))
    assert feed(detector, query("a" * 60 + ".cdn.example")) == []
    assert feed(detector, query(random_label(40) + ".cdn.example")) == []
    assert len(feed(detector, query("a" * 60 + ".other.example"))) == 1


# ------------------------------------------------------------------ entropy


def test_entropy_of_labels() -> None:
    assert label_entropy(b"") == 0.0
    assert label_entropy(b"aaaa") == 0.0
    assert label_entropy(b"ab") == 1.0
    assert label_entropy(bytes(range(32))) == 5.0


def test_high_entropy_label_fires_from_the_minimum_length() -> None:
    detector = DnsDetector(DnsSettings(long_label_length=63))
    short = string.ascii_lowercase[:23]  # 23 distinct letters: log2(23) = 4.52
    assert label_entropy(short.encode()) >= 4.0
    assert feed(detector, query(short + ".t.example")) == []  # too short to judge
    label = bytes(range(97, 97 + 24)).decode()  # 24 distinct letters: log2(24) = 4.58
    [trigger] = feed(detector, query(label + ".t.example"))
    assert trigger.rule.id == "PG-DNS-ENTROPY"
    assert trigger.evidence is not None and trigger.evidence.observed == pytest.approx(4.585, 1e-3)


def test_entropy_threshold_is_inclusive() -> None:
    label = "abcdefghijklmnop" * 2  # 16 symbols, twice: exactly 4.0 bits per character
    assert label_entropy(label.encode()) == 4.0
    assert len(feed(DnsDetector(DnsSettings(entropy_threshold=4.0)), query(label + ".x"))) == 1
    assert feed(DnsDetector(DnsSettings(entropy_threshold=4.01)), query(label + ".x")) == []


def test_dns_0x20_case_randomisation_does_not_raise_entropy() -> None:
    rng = random.Random(3)
    word = "connectivitycheckgooglecom"  # 26 characters, ~3.4 bits lower-cased
    mixed = "".join(c.upper() if rng.random() < 0.5 else c for c in word)
    assert feed(DnsDetector(), query(mixed + ".example")) == []


def test_a_tunnel_is_one_alert_key_per_rule() -> None:
    detector = DnsDetector()
    events = [query(random_label(55, seed=i) + ".t.example", ts=1000.0 + i / 10) for i in range(50)]
    triggers = feed(detector, *events) + list(detector.tick(1100.0))
    keys = {(t.rule.id, t.key) for t in triggers}
    assert keys == {("PG-DNS-LONG-NAME", HUB), ("PG-DNS-ENTROPY", HUB)}
    counts = {r: sum(t.count for t in triggers if t.rule.id == r) for r, _ in keys}
    assert counts == {"PG-DNS-LONG-NAME": 50, "PG-DNS-ENTROPY": 50}


# ------------------------------------------------------------------ failures


def test_failure_burst_threshold_and_window() -> None:
    detector = DnsDetector()
    nx = dns.rcode.NXDOMAIN
    assert feed(detector, *[answer(f"n{i}.example", nx, ts=1000.0 + i) for i in range(19)]) == []
    [trigger] = feed(detector, answer("n19.example", dns.rcode.SERVFAIL, ts=1019.0))
    assert trigger.rule.id == "PG-DNS-FAILURES" and trigger.key == "198.18.20.1"
    assert trigger.count == 20
    assert trigger.evidence is not None and trigger.evidence.window_s == 60.0
    assert "SERVFAIL" in trigger.summary and "n19.example" in trigger.summary


def test_failures_outside_the_window_do_not_count() -> None:
    detector = DnsDetector()
    nx = dns.rcode.NXDOMAIN
    assert feed(detector, *[answer("x.example", nx, ts=1000.0 + i) for i in range(10)]) == []
    # 60 s after the first ten, they no longer count: ten more make ten, not twenty
    late = [answer("x.example", nx, ts=1069.0 + i) for i in range(10)]
    assert feed(detector, *late) == []
    assert len(feed(detector, answer("x.example", nx, ts=1079.5))) == 0  # 11 in window


def test_noerror_answers_never_count() -> None:
    detector = DnsDetector(DnsSettings(failure_threshold=1))
    assert feed(detector, answer("ok.example", dns.rcode.NOERROR)) == []
    assert feed(detector, answer("r.example", dns.rcode.REFUSED)) == []


def test_a_failure_burst_is_one_key_with_the_full_count() -> None:
    detector = DnsDetector()
    events = [answer(f"d{i}.example", dns.rcode.NXDOMAIN, ts=1000.0 + i / 4) for i in range(200)]
    triggers = feed(detector, *events) + list(detector.tick(1200.0))
    assert {t.key for t in triggers} == {"198.18.20.1"}
    assert sum(t.count for t in triggers) == 200
    assert len(triggers) <= 8  # a handful of reports, not 200
    assert max(t.evidence.observed or 0 for t in triggers if t.evidence) == 200


# ------------------------------------------------------------------ robustness


def test_ipv6_queries_are_decoded() -> None:
    wire = dns.message.make_query("a" * 55 + ".example", "AAAA").to_wire()
    triggers = feed(DnsDetector(), event(ip_udp("2001:db8::11", "2001:db8::53", 4000, 53, wire)))
    assert {t.rule.id for t in triggers} == {"PG-DNS-RESOLVER", "PG-DNS-LONG-NAME"}


def test_malformed_input_never_raises() -> None:
    detector = DnsDetector(DnsSettings(failure_threshold=1, long_label_length=1))
    rng = random.Random(5)
    good = dns.message.make_query("a.example", "A").to_wire()
    samples = [b"", b"\x45", b"\x60" + bytes(10), bytes(40)]
    for _ in range(3000):
        body = bytearray(good if rng.random() < 0.5 else rng.randbytes(rng.randrange(0, 80)))
        for _ in range(rng.randrange(0, 6)):
            if body:
                body[rng.randrange(len(body))] = rng.randrange(256)
        samples.append(ip_udp(HUB, OUTSIDE, 53 if rng.random() < 0.5 else 4000, 53, bytes(body)))
        samples.append(ip_udp(OUTSIDE, HUB, 53, 4000, bytes(body)[: rng.randrange(0, 40)]))
    packet = DecodedPacket(version=4, src=HUB, dst=OUTSIDE, proto="udp", sport=53, dport=53)
    for payload in samples:
        detector.observe(PacketEvent(1.0, "dns", packet, payload), SITE)
        decoded = decode_ip(payload)
        if decoded is not None:
            detector.observe(PacketEvent(1.0, "dns", decoded, payload), SITE)
    detector.observe(PacketEvent(1.0, "dns", DecodedPacket(version=4), b""), SITE)
    detector.tick(2.0)
    assert detector.malformed > 0


def test_other_events_are_ignored() -> None:
    detector = DnsDetector()
    assert detector.observe(FlowEvent(1.0, "start", "udp", HUB, OUTSIDE, 1, 53), SITE) == ()
    assert feed(detector, event(query("a" * 60).payload, kind="ntp")) == []
    assert feed(DnsDetector(DnsSettings(enabled=False)), query("a" * 60)) == []


def test_state_is_bounded_under_a_flood_of_distinct_clients() -> None:
    detector = DnsDetector(DnsSettings(max_tracked=1000))
    response = dns.message.make_response(dns.message.make_query("x.example", "A"))
    response.set_rcode(dns.rcode.NXDOMAIN)
    payload = ip_udp(OUTSIDE, HUB, 53, 4000, response.to_wire())
    observe = detector.observe
    for i in range(1_000_000):
        client = f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
        packet = DecodedPacket(version=4, src=OUTSIDE, dst=client, proto="udp", sport=53, dport=9)
        observe(PacketEvent(float(i) / 1000, "dns", packet, payload), SITE)
    assert detector.state_size() <= 4 * 1000


# ------------------------------------------------------------------ settings


def test_settings_defaults_and_schema() -> None:
    settings = DnsSettings()
    assert settings.failure_threshold == 20 and settings.entropy_min_length == 24
    schema = DnsSettings.model_json_schema()
    assert all("description" in field for field in schema["properties"].values())
    assert DnsSettings(approved_resolvers=["2001:DB8::1"]).approved_resolvers == ["2001:db8::1"]


@pytest.mark.parametrize(
    "bad",
    [
        {"failure_threshold": -1},
        {"failure_threshold": 0},
        {"failure_window_s": 0},
        {"failure_threshold": "20"},
        {"entropy_threshold": 9},
        {"long_label_length": 64},
        {"approved_resolvers": ["not-an-address"]},
        {"ignore_suffixes": ["bad..name"]},
        {"max_tracked": 0},
        {"unknown": 1},
    ],
)
def test_bad_settings_fail_validation(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        DnsSettings(**bad)


def test_new_source_budget_folds_a_flood_into_one_key() -> None:
    detector = DnsDetector(DnsSettings(new_sources_per_minute=5))
    events = [
        query("a.example", src=f"198.18.10.{20 + i}", dst=OUTSIDE, ts=1000.0) for i in range(8)
    ]
    triggers = feed(detector, *events) + list(detector.tick(1020.0))
    keys = [t.key for t in triggers]
    assert len(set(keys)) == 6 and "many-sources" in keys
    assert sum(t.count for t in triggers) == 8
    many = [t for t in triggers if t.key == "many-sources"]
    assert many and all(t.summary.startswith("Many sources") for t in many)
