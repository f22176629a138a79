"""SYN floods, conntrack pressure, and non-TLS first payloads on the TLS ports."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.alerts.record import Severity
from gateway.watch.detectors.base import TableEvent
from gateway.watch.detectors.flood import FloodDetector, FloodSettings
from gateway.watch.detectors.tls import NonTlsDetector, TlsSettings, looks_like, tcp_payload
from tests.unit.watch.netkit import (
    GW_LAN,
    HUB1,
    HUB2,
    T0,
    addresses,
    fast_syn,
    feed,
    flow,
    lab_site,
    packet,
    tcp,
)

SITE = lab_site()
CLIENT_HELLO = bytes.fromhex("16030100f4010000f00303") + b"\x00" * 40


# ------------------------------------------------------------------ PG-DOS-SYN-FLOOD


def test_a_spoofed_flood_counts_every_opening_in_the_window() -> None:
    detector = FloodDetector(FloodSettings(syn_threshold=1000, window_s=10, report_every_s=5))
    triggers = []
    for i, source in enumerate(addresses(3000)):
        triggers += detector.observe(fast_syn(source, GW_LAN, 443, T0 + i / 500), SITE)
    triggers += detector.tick(T0 + 30)
    assert {t.key for t in triggers} == {GW_LAN}
    first = triggers[0]
    assert first.rule.id == "PG-DOS-SYN-FLOOD" and first.count == 1000
    assert first.evidence is not None and first.evidence.observed == 1000
    assert first.technique is not None and first.technique.id == "T0814"
    assert sum(t.count for t in triggers) == 3000  # every opening, those before it included
    assert int(first.labels["sources"]) > 950  # distinct sources, estimated


def test_openings_spread_over_time_are_no_flood() -> None:
    detector = FloodDetector(FloodSettings(syn_threshold=100, window_s=10))
    calm = [flow(HUB1, GW_LAN, 443, T0 + i * 0.2) for i in range(1000)]  # 5 a second
    assert feed(detector, calm, SITE) == []


def test_conntrack_flows_count_and_ends_do_not() -> None:
    detector = FloodDetector(FloodSettings(syn_threshold=10, window_s=1))
    ends = [flow(HUB1, GW_LAN, 443, T0, phase="end") for _ in range(50)]
    assert feed(detector, ends, SITE) == []
    starts = [flow(HUB2, GW_LAN, 8443, T0) for _ in range(10)]
    assert sum(t.count for t in feed(detector, starts, SITE)) == 10


def test_table_pressure_rises_once_per_level() -> None:
    detector = FloodDetector(FloodSettings(table_warn=0.8, table_critical=0.95))
    fills = [10, 81, 85, 96, 97, 50, 90]
    triggers = feed(detector, [TableEvent(T0 + i, f, 100) for i, f in enumerate(fills)], SITE)
    assert [t.severity for t in triggers] == [Severity.HIGH, Severity.CRITICAL, Severity.HIGH]
    assert {t.key for t in triggers} == {"conntrack"}
    assert triggers[0].labels["count"] == 81


def test_flood_settings_are_consistent() -> None:
    with pytest.raises(ValidationError, match="table_critical"):
        FloodSettings(table_warn=0.9, table_critical=0.5)


def test_flood_state_is_bounded() -> None:
    detector = FloodDetector(FloodSettings(max_tracked=100))
    for i, target in enumerate(addresses(20_000)):
        detector.observe(fast_syn(HUB1, target, 80, T0 + i / 1000), SITE)
        assert detector.state_size() <= 200


# ------------------------------------------------------------------ PG-TLS-NOT-TLS


def sample(sport: int, payload: bytes, dport: int = 443, ts: float = T0, flags: str = "PA"):  # type: ignore[no-untyped-def]
    return packet(tcp(HUB1, GW_LAN, sport, dport, flags, payload), "tls", ts)


def test_the_first_payload_is_judged_once_per_connection() -> None:
    detector = NonTlsDetector(TlsSettings())
    assert not detector.observe(sample(40001, b"", flags="A"), SITE)  # the handshake's ACK
    [trigger] = detector.observe(sample(40001, b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n"), SITE)
    assert trigger.rule.id == "PG-TLS-NOT-TLS" and trigger.severity is Severity.HIGH
    assert trigger.labels["looks_like"] == "http"
    assert trigger.labels["first_bytes"] == b"GET / HTTP/1.1\r\n".hex()
    assert trigger.key == f"{HUB1}>{GW_LAN}:443"
    assert not detector.observe(sample(40001, b"more plaintext"), SITE)  # judged already


def test_tls_handshakes_are_fine_and_noise_is_medium() -> None:
    detector = NonTlsDetector(TlsSettings())
    assert not detector.observe(sample(40002, CLIENT_HELLO), SITE)
    assert not detector.observe(sample(40003, CLIENT_HELLO, dport=8443), SITE)
    [noise] = detector.observe(sample(40004, b"\x00\x01\x02garbage", dport=8140), SITE)
    assert noise.severity is Severity.MEDIUM and noise.labels["looks_like"] == "unknown"
    [ssh] = detector.observe(sample(40005, b"SSH-2.0-OpenSSH_9.2\r\n"), SITE)
    assert ssh.labels["looks_like"] == "ssh"


def test_only_the_configured_ports_and_tls_samples() -> None:
    detector = NonTlsDetector(TlsSettings(ports=[443]))
    assert not detector.observe(sample(40006, b"GET /", dport=8443), SITE)
    drop = packet(tcp(HUB1, GW_LAN, 40007, 443, "PA", b"GET /"), "drop")
    assert not detector.observe(drop, SITE)


def test_payload_helpers_never_raise() -> None:
    assert looks_like(CLIENT_HELLO) == "tls"
    assert looks_like(b"\x16\x03\x09") is None  # no such TLS version
    assert looks_like(b"") is None
    raw = tcp(HUB1, GW_LAN, 1, 443, "PA", b"hello")
    assert tcp_payload(raw) == b"hello"
    for cut in range(len(raw)):
        tcp_payload(raw[:cut])
    assert tcp_payload(b"\x60" + b"\x00" * 60) is None  # IPv6 without TCP


def test_judged_flows_are_bounded() -> None:
    detector = NonTlsDetector(TlsSettings(max_tracked=1000))
    for i in range(20_000):
        detector.observe(sample(1024 + i % 60000, CLIENT_HELLO, ts=T0 + i), SITE)
    assert detector.state_size() <= 3000
