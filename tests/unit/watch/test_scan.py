"""Port scans: thresholds, windows, exact counts, what counts as a probe, bounded state."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.watch.detectors.scan import (
    HorizontalScanDetector,
    HorizontalScanSettings,
    VerticalScanDetector,
    VerticalScanSettings,
)
from tests.unit.watch.netkit import (
    GW_LAN,
    HUB1,
    HUB2,
    T0,
    WORKSTATION,
    addresses,
    fast_syn,
    feed,
    flow,
    lab_site,
    packet,
    syn,
    tcp,
    total,
    udp,
)

SITE = lab_site()


def test_vertical_fires_at_the_threshold_with_the_ports_so_far() -> None:
    detector = VerticalScanDetector(VerticalScanSettings(threshold=20))
    before = feed(detector, [syn(HUB1, GW_LAN, p, T0 + p * 0.01) for p in range(1, 20)], SITE)
    assert before == []
    [trigger] = detector.observe(syn(HUB1, GW_LAN, 20, T0 + 0.2), SITE)
    assert trigger.rule.id == "PG-SCAN-VERTICAL" and trigger.count == 20
    assert trigger.key == f"{HUB1}>{GW_LAN}"
    assert trigger.source is not None and trigger.source.role == "hub"
    assert trigger.destination is not None and trigger.destination.role == "appliance"
    assert trigger.evidence is not None and trigger.evidence.threshold == 20
    assert trigger.technique is not None and trigger.technique.id == "T0846"


def test_a_1000_port_scan_counts_1000_whatever_is_retransmitted_or_open() -> None:
    detector = VerticalScanDetector(VerticalScanSettings())
    events = []
    for port in range(1, 1001):
        ts = T0 + port * 0.004
        if port == 443:  # open: accepted, seen by conntrack and by the sample log
            events += [
                flow(HUB1, GW_LAN, 443, ts),
                packet(tcp(HUB1, GW_LAN, 40000, 443), "new", ts),
            ]
        else:
            events.append(syn(HUB1, GW_LAN, port, ts))
        if port % 3 == 0:
            events.append(syn(HUB1, GW_LAN, port, ts + 1))  # nmap's retransmission
    triggers = feed(detector, events, SITE)
    triggers += detector.tick(T0 + 30)
    assert total(triggers) == 1000
    assert {t.key for t in triggers} == {f"{HUB1}>{GW_LAN}"}
    assert len(triggers) < 20  # reported in counted batches, not one per port
    assert triggers[-1].summary.endswith(f"probed 1000 ports on {GW_LAN}")


def test_ports_outside_the_window_do_not_add_up() -> None:
    detector = VerticalScanDetector(VerticalScanSettings(threshold=10, window_s=60))
    slow = [syn(HUB1, GW_LAN, p, T0 + p * 10) for p in range(1, 40)]  # one port per 10 s
    assert feed(detector, slow, SITE) == []


def test_what_is_not_a_probe() -> None:
    detector = VerticalScanDetector(VerticalScanSettings(threshold=2))
    not_probes = [
        packet(tcp(HUB1, GW_LAN, 40000, 1, "SA")),  # a SYN-ACK answers, it does not probe
        packet(tcp(HUB1, GW_LAN, 40000, 2, "A")),
        packet(tcp(HUB1, GW_LAN, 40000, 3, "R")),
        packet(udp(HUB1, GW_LAN, 5000, 4), "dns"),  # samples for other detectors
        flow(HUB1, GW_LAN, 5, phase="end"),
        flow(HUB1, GW_LAN, 6, proto="icmp"),
    ]
    assert feed(detector, not_probes, SITE) == []
    udp_probes = [packet(udp(HUB1, GW_LAN, 5000, p)) for p in (7, 8)]
    assert total(feed(detector, udp_probes, SITE)) == 2


def test_scans_of_two_hosts_are_two_alerts() -> None:
    detector = VerticalScanDetector(VerticalScanSettings(threshold=5))
    events = [syn(HUB1, target, p) for target in (GW_LAN, WORKSTATION) for p in range(1, 6)]
    assert {t.key for t in feed(detector, events, SITE)} == {
        f"{HUB1}>{GW_LAN}",
        f"{HUB1}>{WORKSTATION}",
    }


def test_a_scan_that_stops_and_comes_back_after_the_window_starts_over() -> None:
    detector = VerticalScanDetector(VerticalScanSettings(threshold=5, window_s=10))
    first = feed(detector, [syn(HUB1, GW_LAN, p, T0) for p in range(1, 8)], SITE)
    first += detector.tick(T0 + 60)
    assert total(first) == 7
    again = feed(detector, [syn(HUB1, GW_LAN, p, T0 + 100) for p in range(1, 6)], SITE)
    assert total(again) == 5


def test_horizontal_counts_hosts_on_one_port_and_ignores_the_appliance() -> None:
    detector = HorizontalScanDetector(HorizontalScanSettings(threshold=10))
    sweep = [syn(HUB1, f"198.18.20.{i}", 445, T0 + i * 0.01) for i in range(1, 101)]
    triggers = feed(detector, sweep, SITE) + detector.tick(T0 + 30)
    assert total(triggers) == 100
    assert {t.key for t in triggers} == {f"{HUB1}/tcp/445"}
    assert triggers[0].rule.id == "PG-SCAN-HORIZONTAL"
    # the appliance reaches every hub's agent port by design
    agent = [flow(GW_LAN, f"198.18.10.{i}", 9100) for i in range(11, 60)]
    assert feed(detector, agent, SITE) == []


def test_horizontal_needs_one_port() -> None:
    detector = HorizontalScanDetector(HorizontalScanSettings(threshold=3))
    mixed = [syn(HUB2, f"198.18.20.{i}", 1000 + i) for i in range(1, 50)]
    assert feed(detector, mixed, SITE) == []


@pytest.mark.parametrize("kind", ["vertical", "horizontal"])
def test_state_stays_bounded_under_a_flood_of_sources(kind: str) -> None:
    """(A million sources through every detector at once: test_bounds.py.)"""
    settings = {"threshold": 3, "max_tracked": 1000, "max_active": 50}
    detector: VerticalScanDetector | HorizontalScanDetector = (
        VerticalScanDetector(VerticalScanSettings(**settings))
        if kind == "vertical"
        else HorizontalScanDetector(HorizontalScanSettings(**settings))
    )
    bound = 1000 + 50 + 50  # tracked + active scans + their reporters
    for i, source in enumerate(addresses(50_000)):
        ts = T0 + i / 10_000
        detector.observe(fast_syn(source, GW_LAN, 80, ts), SITE)
        if i % 100 == 0:  # every hundredth source crosses the threshold
            detector.observe(fast_syn(source, WORKSTATION, 81, ts), SITE)
            detector.observe(fast_syn(source, HUB2, 82, ts), SITE)
            detector.observe(fast_syn(source, HUB1, 81, ts), SITE)
        if i % 10_000 == 0:
            assert detector.state_size() <= bound
            detector.tick(ts)
    assert detector.state_size() <= bound


def test_settings_refuse_nonsense() -> None:
    with pytest.raises(ValidationError):
        VerticalScanSettings(threshold=1)
    with pytest.raises(ValidationError):
        VerticalScanSettings.model_validate({"treshold": 5})
    with pytest.raises(ValidationError):
        HorizontalScanSettings.model_validate({"window_s": "60"})  # strict: no coercion


def test_a_sweep_of_a_whole_24_counts_every_host_in_any_process() -> None:
    """Host bits come from the address, not Python's per-process `hash`: 254 hosts of one
    /24 are 254, every run (a hashed bitmap lost one of 100 in some runs)."""
    detector = HorizontalScanDetector(HorizontalScanSettings(threshold=10))
    sweep = [syn(HUB1, f"198.18.20.{i}", 502, T0 + i * 0.01) for i in range(1, 255)]
    triggers = feed(detector, sweep, SITE) + detector.tick(T0 + 30)
    assert total(triggers) == 254
    assert triggers[-1].labels["distinct_hosts"] == 254


def test_vertical_counts_tcp_and_udp_ports_apart() -> None:
    """tcp/1..30 and udp/1..30 are 60 ports in two alerts, not 30 in one."""
    detector = VerticalScanDetector(VerticalScanSettings(threshold=10))
    tcp_sweep = [syn(HUB1, GW_LAN, port, T0 + port * 0.01) for port in range(1, 31)]
    udp_sweep = [
        packet(udp(HUB1, GW_LAN, 40000, port), "drop", T0 + 1 + port * 0.01)
        for port in range(1, 31)
    ]
    triggers = feed(detector, [*tcp_sweep, *udp_sweep], SITE) + detector.tick(T0 + 30)
    by_key = {t.key for t in triggers}
    assert by_key == {f"{HUB1}>{GW_LAN}", f"{HUB1}>{GW_LAN}/udp"}
    assert total(triggers) == 60
    assert any("30 udp ports" in t.summary for t in triggers)
