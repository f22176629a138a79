"""Aggregation with a fake clock: new, throttled updates, idle and age closes, bounds."""

from __future__ import annotations

import itertools

import pytest

from gateway.alerts.aggregate import AggregationPolicy, Aggregator, Window
from gateway.alerts.record import Evidence, Severity
from tests.unit.alerts.conftest import OBSERVER, FakeClock, trigger


def make(clock: FakeClock, **policy: object) -> Aggregator:
    counter = itertools.count(1)
    return Aggregator(
        OBSERVER,
        AggregationPolicy(**policy),  # type: ignore[arg-type]
        clock=clock,
        new_id=lambda: f"id-{next(counter)}",
    )


def test_first_trigger_opens_a_new_alert(clock: FakeClock) -> None:
    agg = make(clock)
    [alert] = agg.observe(trigger())
    assert (alert.status, alert.count, alert.revision, alert.id) == ("new", 1, 0, "id-1")
    assert alert.first_seen == alert.last_seen == clock.now
    assert alert.observer == OBSERVER and len(agg) == 1


def test_a_port_scan_is_one_alert_with_a_count(clock: FakeClock) -> None:
    agg = make(clock, default=Window(window_s=30, update_every_s=10))
    emitted = []
    for i in range(1000):  # 1000 probes over 25 s
        clock.advance(0.025)
        emitted += agg.observe(trigger(ts=clock.now, evidence=Evidence(observed=float(i))))
        emitted += agg.due()
    clock.advance(31)
    emitted += agg.due()
    assert [a.status for a in emitted] == ["new", "update", "update", "close"]
    assert {a.id for a in emitted} == {"id-1"}
    assert [a.revision for a in emitted] == [0, 1, 2, 3]
    final = emitted[-1]
    assert final.count == 1000
    assert final.evidence is not None and final.evidence.observed == 999
    assert final.last_seen > final.first_seen
    assert len(agg) == 0


def test_updates_wait_for_the_quiet_period_and_need_a_change(clock: FakeClock) -> None:
    agg = make(clock, default=Window(window_s=60, update_every_s=10))
    agg.observe(trigger())
    clock.advance(3)
    assert agg.observe(trigger(ts=clock.now)) == []  # too soon: held back
    assert agg.due() == []
    clock.advance(7)
    [update] = agg.due()
    assert (update.status, update.count) == ("update", 2)
    clock.advance(10)
    assert agg.due() == []  # nothing new since the last emission: no update


def test_update_every_zero_emits_each_repeat(clock: FakeClock) -> None:
    agg = make(clock, default=Window(window_s=60, update_every_s=0))
    agg.observe(trigger())
    [update] = agg.observe(trigger())
    assert update.status == "update" and update.count == 2


def test_idle_window_closes_and_the_next_trigger_opens_a_new_alert(clock: FakeClock) -> None:
    agg = make(clock, default=Window(window_s=30, update_every_s=10))
    agg.observe(trigger())
    clock.advance(30)
    out = agg.observe(trigger(ts=clock.now))
    assert [(a.status, a.id) for a in out] == [("close", "id-1"), ("new", "id-2")]


def test_max_open_closes_a_never_ending_alert(clock: FakeClock) -> None:
    agg = make(clock, default=Window(window_s=30, update_every_s=100, max_open_s=60))
    agg.observe(trigger())
    for _ in range(5):
        clock.advance(10)
        agg.observe(trigger(ts=clock.now))
    assert agg.due() == []
    clock.advance(10)  # still active, but open for 60 s
    [close] = agg.due()
    assert close.status == "close" and close.count == 6


def test_severity_and_labels_accumulate(clock: FakeClock) -> None:
    agg = make(clock, default=Window(update_every_s=0))
    agg.observe(trigger(labels={"a": 1}))
    [update] = agg.observe(trigger(severity=Severity.CRITICAL, labels={"b": 2}))
    assert update.severity is Severity.CRITICAL
    [again] = agg.observe(trigger(severity=Severity.LOW))
    assert again.severity is Severity.CRITICAL  # never lowered
    assert again.labels == {"a": 1, "b": 2}


def test_keys_and_rules_aggregate_separately(clock: FakeClock) -> None:
    agg = make(clock)
    agg.observe(trigger("a"))
    agg.observe(trigger("b"))
    assert len(agg) == 2


def test_table_is_bounded_by_lru_eviction(clock: FakeClock) -> None:
    agg = make(clock, max_entries=3)
    for key in "abc":
        clock.advance(1)
        agg.observe(trigger(key))
    agg.observe(trigger("a"))  # touch a: b is now the least recently used
    out = agg.observe(trigger("d"))
    assert [(a.status, a.key) for a in out] == [("close", "b"), ("new", "d")]
    assert out[0].labels["closed_by"] == "eviction"
    assert len(agg) == 3 and agg.evicted == 1


def test_next_due_and_close_all(clock: FakeClock) -> None:
    agg = make(clock, default=Window(window_s=30, update_every_s=10))
    assert agg.next_due() is None
    agg.observe(trigger())
    assert (agg.next_due() - clock.now).total_seconds() == 30  # type: ignore[operator]
    agg.observe(trigger())
    assert (agg.next_due() - clock.now).total_seconds() == 10  # type: ignore[operator]
    [close] = agg.close_all()
    assert close.status == "close" and close.count == 2 and len(agg) == 0


def test_per_rule_windows_and_bad_settings(clock: FakeClock) -> None:
    policy = AggregationPolicy(per_rule={"PG-SCAN-VERTICAL": Window(window_s=5)})
    assert policy.window("PG-SCAN-VERTICAL").window_s == 5
    assert policy.window("OTHER").window_s == 60
    with pytest.raises(ValueError):
        Window(window_s=0)
    with pytest.raises(ValueError):
        Aggregator(OBSERVER, AggregationPolicy(max_entries=0))


def test_observer_changes_show_on_later_emissions(clock: FakeClock) -> None:
    agg = make(clock, default=Window(update_every_s=0))
    agg.observe(trigger())
    agg.observer = OBSERVER.__class__("lab-plant", "gw", "0.1.0", mode="learning")
    [update] = agg.observe(trigger())
    assert update.observer.mode == "learning"
