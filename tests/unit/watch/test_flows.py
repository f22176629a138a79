"""Denied flows, hub egress, the hub agent port: what fires, keys, severities, floods."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.alerts.record import Severity
from gateway.watch.detectors.bounded import OVERFLOW_KEY
from gateway.watch.detectors.denied import DeniedFlowDetector, DeniedSettings
from gateway.watch.detectors.egress import EgressDetector, EgressSettings
from gateway.watch.detectors.hubport import HubAgentDetector, HubAgentSettings
from tests.unit.watch.netkit import (
    ALICE,
    GW_LAN,
    HUB1,
    HUB2,
    RESOLVER,
    T0,
    WORKSTATION,
    addresses,
    fast_syn,
    feed,
    flow,
    lab_site,
    packet,
    syn,
    udp,
)

SITE = lab_site()


# ------------------------------------------------------------------ PG-POLICY-DENIED


def test_denied_flows_of_one_source_toward_one_zone_are_one_alert_counted() -> None:
    detector = DeniedFlowDetector(DeniedSettings(report_every_s=10))
    events = [syn(WORKSTATION, GW_LAN, p, T0 + p * 0.1) for p in range(1, 51)]
    triggers = feed(detector, events, SITE) + detector.tick(T0 + 60)
    assert {t.key for t in triggers} == {f"{WORKSTATION}>appliance"}
    assert sum(t.count for t in triggers) == 50
    assert len(triggers) == 2  # the first at once, the rest when the quiet period is over
    first = triggers[0]
    assert first.rule.id == "PG-POLICY-DENIED" and first.action == "denied"
    assert first.severity is Severity.LOW  # a workstation: informational context
    assert first.network is not None and first.network.community_id is not None


def test_a_hub_or_staff_denied_flow_is_medium() -> None:
    detector = DeniedFlowDetector(DeniedSettings())
    [hub] = detector.observe(syn(HUB1, WORKSTATION, 445), SITE)
    [staff] = detector.observe(syn(ALICE, HUB1, 22), SITE)
    assert hub.severity is Severity.MEDIUM and hub.key == f"{HUB1}>plant"
    assert staff.severity is Severity.MEDIUM and staff.key == f"{ALICE}>hubs"


def test_broadcast_multicast_and_ignored_ports_are_quiet() -> None:
    detector = DeniedFlowDetector(DeniedSettings(ignore_ports=[137]))
    quiet = [
        packet(udp(WORKSTATION, "198.18.20.255", 138, 138)),
        packet(udp(WORKSTATION, "255.255.255.255", 67, 68)),
        packet(udp(WORKSTATION, "239.255.255.250", 5000, 1900)),
        packet(udp(WORKSTATION, GW_LAN, 137, 137)),
        packet(udp(WORKSTATION, GW_LAN, 5000, 53), "dns"),  # not a drop
    ]
    assert feed(detector, quiet, SITE) == []
    noisy = DeniedFlowDetector(DeniedSettings(include_broadcast=True))
    keys = {t.key for t in feed(noisy, quiet[:3], SITE)}
    assert keys == {f"{WORKSTATION}>plant", f"{WORKSTATION}>internet"}


def test_a_flood_of_sources_opens_a_bounded_number_of_alerts() -> None:
    detector = DeniedFlowDetector(DeniedSettings(max_new_alerts_per_minute=30, max_tracked=500))
    triggers = []
    for i, source in enumerate(addresses(20_000, first=0xC6121400)):  # 198.18.20.0 upward
        triggers += detector.observe(fast_syn(source, GW_LAN, 80, T0 + i / 1000), SITE)
        assert detector.state_size() <= 1000
    triggers += detector.tick(T0 + 100)
    keys = {t.key for t in triggers}
    assert OVERFLOW_KEY in keys
    assert len(keys) <= 30 * 2 + 1  # 20 s of flood: two minutes' budgets at most
    assert sum(t.count for t in triggers) == 20_000  # nothing uncounted


# ------------------------------------------------------------------ PG-EGRESS-HUB


def test_a_hub_toward_the_plant_or_the_internet_is_egress() -> None:
    detector = EgressDetector(EgressSettings())
    [plant] = detector.observe(syn(HUB1, WORKSTATION, 445), SITE)
    [internet] = detector.observe(packet(udp(HUB1, RESOLVER, 5000, 53), hook="forward"), SITE)
    assert plant.key == f"{HUB1}>plant" and plant.technique is not None
    assert plant.technique.id == "T0886" and plant.severity is Severity.HIGH
    assert internet.key == f"{HUB1}>internet" and internet.technique is not None
    assert internet.technique.id == "T0869"
    assert internet.destination is not None and internet.destination.role == "lab-resolver"


def test_an_allowed_hub_egress_is_critical() -> None:
    detector = EgressDetector(EgressSettings())
    [trigger] = detector.observe(flow(HUB2, RESOLVER, 53, proto="udp"), SITE)
    assert trigger.severity is Severity.CRITICAL and trigger.action == "allowed"


def test_hubs_to_the_appliance_and_others_are_not_egress() -> None:
    detector = EgressDetector(EgressSettings())
    fine = [
        syn(HUB1, GW_LAN, 22),  # denied, but toward the appliance
        flow(HUB1, GW_LAN, 443),
        syn(WORKSTATION, RESOLVER, 80),  # not a hub
        packet(udp(HUB1, "198.18.10.255", 5000, 5000)),  # broadcast on its own segment
        packet(udp(HUB1, RESOLVER, 5000, 53), "dns"),  # the DNS detector's sample
    ]
    assert feed(detector, fine, SITE) == []


# ------------------------------------------------------------------ PG-HUB-AGENT-ACCESS


def test_the_hub_agent_port_from_anything_but_the_appliance() -> None:
    detector = HubAgentDetector(HubAgentSettings())
    [denied] = detector.observe(syn(WORKSTATION, HUB1, 9100), SITE)
    [allowed] = detector.observe(flow(ALICE, HUB2, 9100), SITE)
    assert denied.severity is Severity.HIGH and denied.key == f"{WORKSTATION}>{HUB1}"
    assert allowed.severity is Severity.CRITICAL
    quiet = [
        flow(GW_LAN, HUB1, 9100),  # the appliance: by design
        syn(WORKSTATION, HUB1, 9101),
        syn(WORKSTATION, GW_LAN, 9100),  # not a hub
        packet(udp(WORKSTATION, HUB1, 5000, 9100)),  # not TCP
    ]
    assert feed(detector, quiet, SITE) == []
    custom = HubAgentDetector(HubAgentSettings(ports=[9100, 502]))
    assert len(custom.observe(syn(WORKSTATION, HUB1, 502), SITE)) == 1


def test_port_settings_are_checked() -> None:
    with pytest.raises(ValidationError):
        HubAgentSettings(ports=[0])
    with pytest.raises(ValidationError):
        DeniedSettings(ignore_ports=[70000])
    with pytest.raises(ValidationError):
        EgressSettings.model_validate({"report_every": 5})
