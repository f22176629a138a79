"""The canonical record: severity mappings, endpoints, Community ID, UUIDv7, JSON form."""

from __future__ import annotations

import uuid

import pytest

from gateway.alerts import attack
from gateway.alerts.record import (
    Alert,
    Endpoint,
    Evidence,
    Rule,
    Severity,
    community_id_of,
    flow_network,
    new_alert_id,
)
from tests.unit.alerts.conftest import sample_alert


def test_severity_mappings_are_monotonic_and_in_range() -> None:
    ordered = list(Severity)
    assert [s.rank for s in ordered] == [1, 2, 3, 4, 5]
    assert [s.cef for s in ordered] == sorted(s.cef for s in ordered)
    assert all(0 <= s.cef <= 10 for s in ordered)
    assert [s.syslog for s in ordered] == [6, 5, 4, 3, 2]  # more severe = lower number
    assert Severity.CRITICAL.ocsf_caption == "Critical" and Severity.INFO.ocsf_caption == (
        "Informational"
    )
    assert max(Severity.LOW, Severity.HIGH, Severity.MEDIUM, key=lambda s: s.rank) is Severity.HIGH


def test_rule_id_must_fit_an_rfc5424_msgid() -> None:
    Rule("PG-SCAN-VERTICAL", "x")
    for bad in ("", "has space", "X" * 33, "tab\there"):
        with pytest.raises(ValueError):
            Rule(bad, "x")


def test_endpoint_checks_address_port_and_normalizes_mac() -> None:
    assert Endpoint("198.18.10.11", mac="02-00-5E-10-00-0B").mac == "02:00:5e:10:00:0b"
    with pytest.raises(ValueError):
        Endpoint("not-an-ip")
    with pytest.raises(ValueError):
        Endpoint("198.18.10.11", port=70000)
    with pytest.raises(ValueError):
        Endpoint("198.18.10.11", mac="02:00")


def test_community_id_matches_the_specification_vectors() -> None:
    # Vectors from the Community ID specification (corelight/community-id-spec, baseline).
    src, dst = Endpoint("128.232.110.120", 34855), Endpoint("66.35.250.204", 80)
    assert community_id_of(src, dst, "tcp") == "1:LQU9qZlK+B5F3KDmev6m5PMibrg="
    assert community_id_of(dst, src, "tcp") == "1:LQU9qZlK+B5F3KDmev6m5PMibrg="  # symmetric
    ping = community_id_of(
        Endpoint("192.168.0.89"), Endpoint("192.168.0.1"), "icmp", icmp_type=8, icmp_code=0
    )
    assert ping == "1:X0snYXpgwiv9TZtqg64sgzUn6Dk="
    assert community_id_of(Endpoint("10.0.0.1"), Endpoint("10.0.0.2"), "tcp") is None
    assert community_id_of(src, dst, "gre") is None
    net = flow_network(src, dst, "tcp", "http", bytes=10)
    assert net.community_id == "1:LQU9qZlK+B5F3KDmev6m5PMibrg=" and net.bytes == 10


def test_alert_ids_are_uuid7_and_time_ordered() -> None:
    ids = [new_alert_id() for _ in range(50)]
    assert all(uuid.UUID(i).version == 7 for i in ids)
    assert ids == sorted(ids)


def test_evidence_merge_keeps_the_largest_observation() -> None:
    merged = Evidence(100, 10, 150, 1.0).merge(Evidence(observed=120, baseline=2.0))
    assert merged == Evidence(threshold=100, window_s=10, observed=150, baseline=2.0)


def test_json_form_round_trips() -> None:
    alert = sample_alert()
    assert Alert.from_dict(alert.to_dict()) == alert
    bare = sample_alert(
        technique=None, source=None, destination=None, network=None, evidence=None, action=None
    )
    assert Alert.from_dict(bare.to_dict()) == bare
    with pytest.raises(ValueError):
        Alert.from_dict({**alert.to_dict(), "schema": 99})
    with pytest.raises(ValueError):
        Alert.from_dict({**alert.to_dict(), "status": "open"})


def test_catalogue_ids_are_unique_and_enterprise_only_where_ics_has_none() -> None:
    ids = [t.id for t in attack.CATALOGUE]
    assert len(ids) == len(set(ids))
    for technique in attack.CATALOGUE:
        if technique.matrix == "ics":
            assert technique.id.startswith("T08") and technique.tactic_id.startswith("TA01")
        else:
            assert technique.tactic_id in {"TA0010", "TA0006", "TA0005"}
