"""Component detector: policy drift, reverts, failed applies, MES login bursts; and the
shared `Tally` the other detectors count with."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from pydantic import ValidationError

from gateway.alerts.record import Severity, Trigger
from gateway.events import Event
from gateway.watch.detectors.base import ComponentEvent, FlowEvent
from gateway.watch.detectors.components import (
    OVERFLOW_KEY,
    ComponentDetector,
    ComponentSettings,
    Tally,
    udp_payload,
)

APPLIANCE = {"198.18.20.1"}
STATION = "198.18.10.11"


class Site:
    """Test double of the policy lookups."""

    def zone_of(self, address: str) -> str | None:
        return "hubs" if address.startswith("198.18.10.") else None

    def role_of(self, address: str) -> str | None:
        if address in APPLIANCE:
            return "appliance"
        return "hub" if address.startswith("198.18.10.") else None

    def is_appliance(self, address: str) -> bool:
        return address in APPLIANCE

    def gate_open(self, src: str, dst: str, proto: str, port: int | None, ts: float) -> bool:
        return False


SITE = Site()


def component(kind: str, fields: Any, ts: float = 1000.0, source: str = "x") -> ComponentEvent:
    stamp = datetime.datetime.fromtimestamp(ts, datetime.UTC)
    return ComponentEvent(ts=ts, event=Event(kind, source, fields, stamp))


def failed(address: str | None, ts: float, station: str | None = "ST-01") -> ComponentEvent:
    fields = {"reason": "bad_pin", "via": "pin", "station": station, "context": "login"}
    if address is not None:
        fields["source_ip"] = address
    return component("mes.login_failed", fields, ts, "mes")


def feed(detector: ComponentDetector, *events: ComponentEvent) -> list[Trigger]:
    out: list[Trigger] = []
    for e in events:
        out += detector.observe(e, SITE)
    return out


# ------------------------------------------------------------------ policy


def test_drift_is_high_and_a_missing_table_critical() -> None:
    detector = ComponentDetector()
    fields = {
        "revision": 7,
        "table_missing": False,
        "added": 2,
        "removed": 1,
        "differences": ["+ x"],
        "summary": "drift: the live table differs from revision 7: 2 line(s) added, 1 removed",
    }
    [trigger] = feed(detector, component("policy.drift", fields))
    assert trigger.rule.id == "PG-POLICY-DRIFT" and trigger.key == "revision:7"
    assert trigger.severity is Severity.HIGH and "revision 7" in trigger.summary
    assert trigger.technique is not None and trigger.technique.id == "T1562.004"
    assert trigger.evidence is not None and trigger.evidence.observed == 3
    missing = {"revision": 7, "table_missing": True, "summary": "drift: table missing"}
    [trigger] = feed(detector, component("policy.drift", missing))
    assert trigger.severity is Severity.CRITICAL and trigger.key == "revision:7"
    assert feed(detector, component("policy.drift_cleared", {"revision": 7})) == []


def test_a_revert_announced_twice_is_one_trigger() -> None:
    detector = ComponentDetector()
    from_operations = {
        "user": "plantgate-watchdog",
        "revision": 12,
        "of": 10,
        "kind": "revert",
        "message": "automatic revert: revision 11 was not confirmed by 10:00:00 UTC",
    }
    from_runtime = {"revision": 11, "by": 12}
    [trigger] = feed(detector, component("policy.reverted", from_operations))
    assert trigger.rule.id == "PG-POLICY-REVERTED" and trigger.key == "revision:12"
    assert trigger.severity is Severity.MEDIUM and "revision 10" in trigger.summary
    assert feed(detector, component("policy.reverted", from_runtime, 1001.0)) == []
    # in the other order, the runtime's names the unconfirmed revision
    other = ComponentDetector()
    [trigger] = feed(other, component("policy.reverted", from_runtime))
    assert "revision 11 was not confirmed" in trigger.summary and trigger.key == "revision:12"
    assert feed(other, component("policy.reverted", from_operations, 1001.0)) == []
    # a later revert of another revision is news
    assert len(feed(other, component("policy.reverted", {"revision": 13, "by": 14}, 1002))) == 1


def test_failed_apply() -> None:
    fields = {"file": "site.yaml", "user": "alice", "kind": "apply", "error": "nft refused"}
    [trigger] = feed(ComponentDetector(), component("policy.apply_failed", fields))
    assert trigger.rule.id == "PG-POLICY-APPLY-FAILED" and trigger.key == "file:site.yaml"
    assert "alice" in trigger.summary and "nft refused" in trigger.summary


def test_policy_rules_can_be_turned_off() -> None:
    detector = ComponentDetector(ComponentSettings(drift=False, applies=False))
    assert feed(detector, component("policy.drift", {"revision": 1})) == []
    assert feed(detector, component("policy.reverted", {"revision": 1, "by": 2})) == []
    assert feed(ComponentDetector(ComponentSettings(enabled=False)), failed(STATION, 1)) == []


# ------------------------------------------------------------------ MES


def test_login_failure_threshold_is_inclusive() -> None:
    detector = ComponentDetector()
    assert feed(detector, *[failed(STATION, 1000.0 + i) for i in range(9)]) == []
    [trigger] = feed(detector, failed(STATION, 1009.0))
    assert trigger.rule.id == "PG-MES-LOGIN-FAILURES" and trigger.key == STATION
    assert trigger.count == 10 and trigger.severity is Severity.MEDIUM
    assert trigger.source is not None and trigger.source.role == "hub"
    assert trigger.technique is not None and trigger.technique.id == "T1110"
    assert trigger.evidence is not None and trigger.evidence.window_s == 300.0
    assert trigger.labels["station"] == "ST-01" and trigger.labels["via"] == "pin"


def test_login_failures_outside_the_window_do_not_count() -> None:
    detector = ComponentDetector()
    early = [failed(STATION, 1000.0 + i) for i in range(5)]
    late = [failed(STATION, 1301.0 + i) for i in range(5)]
    assert feed(detector, *early, *late) == []


def test_login_failures_are_keyed_by_address_then_station() -> None:
    detector = ComponentDetector(ComponentSettings(login_threshold=2))
    triggers = feed(
        detector,
        failed(None, 1000.0, "ST-09"),
        failed(None, 1001.0, "ST-09"),
        failed(None, 1002.0, None),
        failed(None, 1003.0, None),
    )
    assert [t.key for t in triggers] == ["station:ST-09", "unknown"]
    assert all(t.source is None for t in triggers)


def test_a_login_burst_is_one_key_with_the_full_count() -> None:
    detector = ComponentDetector()
    events = [failed(STATION, 1000.0 + i / 2) for i in range(120)]
    triggers = feed(detector, *events) + list(detector.tick(1100.0))
    assert {t.key for t in triggers} == {STATION}
    assert sum(t.count for t in triggers) == 120
    assert max(t.evidence.observed or 0 for t in triggers if t.evidence) == 120


def test_lockouts_burst_across_accounts() -> None:
    detector = ComponentDetector()
    lockouts = [
        component("mes.lockout", {"employee_number": f"E{i}", "failures": 5}, 1000.0 + i * 60)
        for i in range(3)
    ]
    assert feed(detector, *lockouts[:2]) == []
    [trigger] = feed(detector, lockouts[2])
    assert trigger.rule.id == "PG-MES-LOCKOUTS" and trigger.severity is Severity.HIGH
    assert trigger.key == "mes" and "E2" in trigger.summary
    spread = ComponentDetector()
    far = [component("mes.lockout", {"employee_number": "E"}, 1000.0 + i * 500) for i in range(3)]
    assert feed(spread, *far) == []  # 3 in 1000 s: never 3 within 900 s


# ------------------------------------------------------------------ robustness


def test_a_broken_mes_audit_trail_is_critical_every_time() -> None:
    """`plantgate mes audit verify` finding damage: one alert per damage, updated on repeats."""
    fields = {"problems": 2, "first": "entry 17: hash mismatch (edited)"}
    detector = ComponentDetector()
    [first] = feed(detector, component("mes.audit_broken", fields))
    [again] = feed(detector, component("mes.audit_broken", fields, 2000.0))
    assert first.rule.id == "PG-MES-AUDIT-BROKEN" and first.severity is Severity.CRITICAL
    assert first.key == again.key == "first:entry 17: hash mismatch (edited)"
    assert "2 problems" in first.summary and "entry 17" in first.summary
    assert first.technique is not None and first.technique.id == "T0872"
    other = component("mes.audit_broken", {"problems": 1, "first": "entry 3: missing"})
    assert feed(detector, other)[0].key != first.key


def test_malformed_events_never_raise() -> None:
    detector = ComponentDetector(ComponentSettings(login_threshold=1, lockout_threshold=1))
    junk: list[Any] = [
        {},
        {"revision": None, "summary": 5, "added": "x", "table_missing": "yes"},
        {"revision": [1], "by": {"a": 1}, "of": 3.5},
        {"source_ip": "not an address", "station": 42, "employee_number": ["x"]},
        {"source_ip": 12345, "failures": "many"},
        {"file": None, "error": "e" * 10_000},
        ["a", "list"],
        "text",
    ]
    kinds = ("policy.drift", "policy.reverted", "policy.apply_failed", "mes.login_failed")
    for kind in (*kinds, "mes.lockout", "mes.audit_broken", "mes.unknown"):
        for i, fields in enumerate(junk):
            for trigger in detector.observe(component(kind, fields, 1000.0 + i), SITE):
                assert len(trigger.summary) < 1000
    assert detector.observe(FlowEvent(1.0, "start", "tcp", "a", "b"), SITE) == ()
    detector.tick(5000.0)


def test_state_is_bounded_under_a_flood_of_distinct_clients() -> None:
    detector = ComponentDetector(ComponentSettings(max_tracked=1000))
    stamp = datetime.datetime.fromtimestamp(0, datetime.UTC)
    observe = detector.observe
    for i in range(1_000_000):
        fields = {"source_ip": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"}
        observe(ComponentEvent(i / 1000, Event("mes.login_failed", "mes", fields, stamp)), SITE)
    assert detector.state_size() <= 1000 + 1 + 64


# ------------------------------------------------------------------ Tally


def test_tally_token_repeats_count_once_and_idle_keys_expire() -> None:
    tally = Tally(threshold=2, window_s=10.0, every_s=5.0, max_keys=10)
    assert tally.add("k", 0.0, token=1) == 0
    assert tally.add("k", 1.0, token=1) == 0  # the same thing again
    assert tally.add("k", 2.0, token=2) == 2
    assert tally.add("k", 3.0, token=3) == 0  # follow-up, due at 7.0
    assert tally.add("k", 8.0, token=4) == 2
    assert tally.flush(100.0) == [] and len(tally) == 0


def test_tally_a_burst_ends_after_an_idle_window() -> None:
    tally = Tally(threshold=2, window_s=10.0, every_s=5.0, max_keys=10)
    assert [tally.add("k", t) for t in (0.0, 1.0)] == [0, 2]
    assert tally.add("k", 20.0) == 0  # idle > window: detect afresh
    assert tally.add("k", 21.0) == 2


def test_tally_budget_of_new_keys() -> None:
    tally = Tally(1, 10.0, 10.0, 100, new_per_minute=2)
    keys = []
    for name in ("a", "b", "c", "a", "e"):
        keys.append(tally.admit(name, 0.0))
        tally.add(keys[-1], 0.0)
    assert keys == ["a", "b", OVERFLOW_KEY, "a", OVERFLOW_KEY]  # known keys stay admitted
    assert tally.overflowed == 2
    assert tally.admit("d", 60.0) == "d"  # a new minute, a new budget


def test_udp_payload_of_short_and_odd_packets() -> None:
    assert udp_payload(b"") is None
    assert udp_payload(bytes(19)) is None
    assert udp_payload(b"\x45" + bytes(8) + b"\x06" + bytes(10)) is None  # TCP
    assert udp_payload(b"\x70" + bytes(50)) is None  # not IP
    later_fragment = bytearray(b"\x45" + bytes(27))
    later_fragment[9], later_fragment[7] = 17, 1
    assert udp_payload(bytes(later_fragment)) is None


# ------------------------------------------------------------------ settings


def test_settings_defaults_and_schema() -> None:
    settings = ComponentSettings()
    assert settings.login_threshold == 10 and settings.lockout_threshold == 3
    schema = ComponentSettings.model_json_schema()
    assert all("description" in field for field in schema["properties"].values())


@pytest.mark.parametrize(
    "bad",
    [
        {"login_threshold": 0},
        {"login_threshold": -3},
        {"login_window_s": 0},
        {"lockout_window_s": -1.0},
        {"login_threshold": "10"},
        {"drift": "yes"},
        {"dedupe_s": 0},
        {"lockouts": 3},
    ],
)
def test_bad_settings_fail_validation(bad: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ComponentSettings(**bad)
