"""FQDN refresh schedule with a fake clock: TTLs honoured, refreshed before expiry."""

from __future__ import annotations

from gateway.dns.schedule import Answer, Schedule, TtlPolicy
from gateway.policy.compile import FqdnBinding
from gateway.policy.nft import Element

BINDING = FqdnBinding("ntp", ("ntp.example.org",), {4: "ep_ntp_v4", 6: "ep_ntp_v6"})


def test_everything_is_due_at_first() -> None:
    schedule = Schedule.for_bindings([BINDING])
    assert schedule.due(0.0) == [("ntp.example.org", 4), ("ntp.example.org", 6)]


def test_answer_installs_elements_for_ttl_plus_grace_and_refreshes_before() -> None:
    schedule = Schedule.for_bindings([BINDING], TtlPolicy(grace=30, refresh_fraction=0.75))
    now = 1000.0
    elements = schedule.record(now, Answer("ntp.example.org", 4, ("192.0.2.2", "192.0.2.1"), 300))
    assert elements == {"ep_ntp_v4": [Element("192.0.2.1", 330), Element("192.0.2.2", 330)]}
    assert schedule.due(now + 224) == [("ntp.example.org", 6)]  # v6 never resolved yet
    assert ("ntp.example.org", 4) in schedule.due(now + 225)  # 75% of 300 s
    # the refresh comes well before the kernel would drop the elements (at now + 330)
    assert schedule.entries[("ntp.example.org", 4)].refresh_at < now + 330


def test_ttls_are_clamped() -> None:
    policy = TtlPolicy(min_ttl=30, max_ttl=3600, grace=10)
    schedule = Schedule.for_bindings([BINDING], policy)
    zero = schedule.record(0.0, Answer("ntp.example.org", 4, ("192.0.2.1",), 0))
    assert zero["ep_ntp_v4"][0].timeout_s == 40
    assert schedule.next_wakeup() == 0.0  # v6 still due
    week = schedule.record(0.0, Answer("ntp.example.org", 6, ("2001:db8::1",), 604800))
    assert week["ep_ntp_v6"][0].timeout_s == 3610


def test_empty_answer_installs_nothing_but_is_rechecked() -> None:
    schedule = Schedule.for_bindings([BINDING])
    assert schedule.record(0.0, Answer("ntp.example.org", 6, (), 120)) == {}
    assert schedule.entries[("ntp.example.org", 6)].refresh_at == 90.0


def test_failures_back_off_but_retry_before_addresses_expire() -> None:
    schedule = Schedule.for_bindings([BINDING], TtlPolicy(grace=30, retry_first=5, retry_max=60))
    schedule.record(0.0, Answer("ntp.example.org", 4, ("192.0.2.1",), 100))  # expires at 130
    retries = [schedule.record_failure(t, "ntp.example.org", 4) for t in (75.0, 80.0, 90.0)]
    assert retries == [80.0, 90.0, 110.0]
    late = schedule.record_failure(112.0, "ntp.example.org", 4)
    assert late == 115.0  # would be 112 + 40, but expiry (130) minus half the grace comes first


def test_names_shared_by_endpoints_fill_every_set() -> None:
    other = FqdnBinding("ntp2", ("ntp.example.org",), {4: "ep_ntp2_v4"})
    schedule = Schedule.for_bindings([BINDING, other])
    elements = schedule.record(0.0, Answer("ntp.example.org", 4, ("192.0.2.9",), 60))
    assert set(elements) == {"ep_ntp_v4", "ep_ntp2_v4"}
