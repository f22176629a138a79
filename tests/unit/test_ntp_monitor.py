"""The NTP monitor, fed with ntplib answers recorded in the lab (and shifted or re-stamped
where a test needs a clock that is off, a falseticker or a Kiss-o'-Death)."""

from __future__ import annotations

from dataclasses import dataclass

import ntplib
import pytest

from gateway.dns.lookup import LookupFailed
from gateway.dns.schedule import Answer
from gateway.events import Event
from gateway.ntp import watch
from gateway.ntp.monitor import (
    Monitor,
    RelaySample,
    Round,
    Thresholds,
    UpstreamSample,
    kiss_code,
)
from gateway.ntp.service import describe_exit, next_backoff
from gateway.ntp.watch import (
    CachedResolver,
    Target,
    query_relay,
    query_upstream,
    relay_sample,
    upstream_sample,
    upstream_targets,
)
from tests.unit.conftest import BASE, load

# Answers recorded with ntplib from inside the lab's gw (chrony 4.3), with the client's
# receive (destination) timestamp. UPSTREAM: the lab's internet time server, stratum 1 from
# its local clock. RELAY: gw's chronyd synchronised to it. ORPHAN: the relay a minute after
# the upstream was stopped.
UPSTREAM = (
    "240100e700000000000000007f7f0101eeba00153ff4958beeba004756301000"
    "eeba00475639adc9eeba0047563f5a66",
    4005167175.3370175,
)
RELAY = (
    "240203e7000000050000012bc613007beeba00450fb0a621eeba00475655c000"
    "eeba004756575811eeba0047565ba340",
    4005167175.3373938,
)
ORPHAN = (
    "240a03e700000000000000007f7f0101eeba0040c8fce7ffeeba007b83f20000"
    "eeba007b83f6a04deeba007b83fbee1e",
    4005167227.5156717,
)


def recorded(
    answer: tuple[str, float], *, shift: float = 0.0, stratum: int | None = None, ref: bytes = b""
) -> ntplib.NTPStats:
    """A recorded answer; `shift` moves the server's clock, `stratum`/`ref` re-stamp it."""
    packet = bytearray.fromhex(answer[0])
    if stratum is not None:
        packet[1] = stratum
    if ref:
        packet[12:16] = ref
    stats = ntplib.NTPStats()
    stats.from_data(bytes(packet))
    stats.dest_timestamp = answer[1]
    stats.recv_timestamp += shift
    stats.tx_timestamp += shift
    return stats


def up(label: str, **options: object) -> UpstreamSample:
    stats = recorded(UPSTREAM, **options)  # type: ignore[arg-type]
    return upstream_sample(Target(label, f"192.0.2.{len(label)}"), stats)


def down(label: str) -> UpstreamSample:
    return UpstreamSample(label, "192.0.2.99", error="no answer within 1 s")


def relay(answer: tuple[str, float] = RELAY, shift: float = 0.0) -> RelaySample:
    return relay_sample(recorded(answer, shift=shift))


def kinds(events: list[Event]) -> list[str]:
    return [e.kind for e in events]


# ---------------------------------------------------------------- the ntplib adapter


def test_recorded_answers_become_samples() -> None:
    sample = up("a")
    assert sample.usable and sample.stratum == 1 and sample.ref_id == 0x7F7F0101
    assert sample.offset == pytest.approx(1.6689e-05, abs=1e-9)
    assert sample.delay == pytest.approx(0.00026, abs=1e-5)
    synced = relay()
    assert synced.stratum == 2 and synced.ref_id == 0xC613007B and synced.leap == 0
    assert relay(ORPHAN).stratum == 10


def test_failures_become_error_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    def silent(address: str, timeout: float = 1.0) -> ntplib.NTPStats:
        raise ntplib.NTPException(f"No response received from {address}.")

    monkeypatch.setattr(watch, "ask", silent)
    sample = query_upstream(Target("a", "192.0.2.1"), timeout=1.0)
    assert not sample.usable and sample.error == "no answer within 1 s"
    assert query_relay("192.0.2.1").error == "no answer within 1 s"
    unresolved = query_upstream(Target("b", None, "could not resolve: SERVFAIL"))
    assert unresolved.error == "could not resolve: SERVFAIL"


# ---------------------------------------------------------------- lost and restored


def test_lost_once_after_n_rounds_and_restored_once() -> None:
    monitor = Monitor(Thresholds(lost_after=2))
    assert monitor.feed(Round((up("a"),))) == []
    assert monitor.feed(Round((down("a"),))) == []
    lost = monitor.feed(Round((down("a"),)))
    assert kinds(lost) == ["ntp.upstream_lost"]
    assert lost[0].fields["errors"] == {"a": "no answer within 1 s"}
    assert monitor.feed(Round((down("a"),))) == []  # once, not every round
    restored = monitor.feed(Round((up("a"),)))
    assert kinds(restored) == ["ntp.upstream_restored"]
    assert restored[0].fields == {"upstreams": ["a"]}
    assert monitor.feed(Round((up("a"),))) == []


def test_lost_needs_every_upstream() -> None:
    monitor = Monitor(Thresholds(lost_after=1))
    for _ in range(3):
        assert "ntp.upstream_lost" not in kinds(monitor.feed(Round((down("a"), up("b")))))
    assert kinds(monitor.feed(Round((down("a"), down("b"))))) == ["ntp.upstream_lost"]


def test_a_round_without_upstreams_is_no_news() -> None:
    monitor = Monitor(Thresholds(lost_after=1))
    assert monitor.feed(Round(())) == []
    assert not monitor.lost


# ---------------------------------------------------------------- kiss-o'-death


def test_kiss_of_death_is_reported_once_per_code() -> None:
    monitor = Monitor(Thresholds(lost_after=5))
    rate = up("a", stratum=0, ref=b"RATE")
    assert rate.kiss == "RATE" and not rate.usable
    first = monitor.feed(Round((rate,)))
    assert kinds(first) == ["ntp.kod"]
    assert first[0].fields == {"upstream": "a", "address": "192.0.2.1", "code": "RATE"}
    assert monitor.feed(Round((rate,))) == []
    deny = monitor.feed(Round((up("a", stratum=0, ref=b"DENY"),)))
    assert [e.fields["code"] for e in deny] == ["DENY"]
    monitor.feed(Round((up("a"),)))  # a normal answer ends the episode
    assert kinds(monitor.feed(Round((rate,)))) == ["ntp.kod"]


def test_kiss_of_death_counts_as_a_failure() -> None:
    monitor = Monitor(Thresholds(lost_after=2))
    kod = up("a", stratum=0, ref=b"RSTR")
    monitor.feed(Round((kod,)))
    lost = monitor.feed(Round((kod,)))
    assert kinds(lost) == ["ntp.upstream_lost"]
    assert lost[0].fields["errors"] == {"a": "kiss-o'-death RSTR"}


def test_init_and_binary_reference_ids_are_not_kisses() -> None:
    assert kiss_code(0, int.from_bytes(b"INIT", "big")) == "INIT"  # a code, but harmless
    assert Monitor().feed(Round((up("a", stratum=0, ref=b"INIT"),))) == []
    assert kiss_code(0, 0) is None
    assert kiss_code(0, 0xC613007B) is None  # an address, not ASCII
    assert kiss_code(2, int.from_bytes(b"RATE", "big")) is None  # not stratum 0


def test_unsynchronised_upstream_is_unusable_but_no_kiss() -> None:
    sample = up("a", stratum=0, ref=b"\0\0\0\0")
    assert not sample.usable and sample.kiss is None
    assert Monitor().feed(Round((sample,))) == []


# ---------------------------------------------------------------- offset


def test_offset_crossings_with_hysteresis() -> None:
    monitor = Monitor(Thresholds(offset_warn=0.1, offset_high=1.0))
    upstream = (up("a"),)

    def step(shift: float) -> list[Event]:
        return monitor.feed(Round(upstream, relay(shift=shift)))

    assert step(0.0) == []
    warn = step(0.15)
    assert kinds(warn) == ["ntp.offset"]
    assert warn[0].fields["level"] == "warn" and warn[0].fields["threshold"] == 0.1
    assert warn[0].fields["offset"] == pytest.approx(0.15, abs=0.001)
    assert step(0.12) == [] and step(0.09) == []  # above 0.8 x warn: still warn
    assert kinds(step(0.05)) == ["ntp.offset_cleared"]
    high = step(-1.5)
    assert kinds(high) == ["ntp.offset"] and high[0].fields["level"] == "high"
    assert step(-0.9) == []  # between 0.8 x high and high
    back = step(-0.5)
    assert kinds(back) == ["ntp.offset"] and back[0].fields["level"] == "warn"


def test_offset_is_against_the_consensus_of_upstreams() -> None:
    monitor = Monitor(Thresholds(offset_warn=0.1, falseticker_bound=5.0))
    upstreams = (up("a", shift=0.3), up("b", shift=0.3), up("c", shift=0.31))
    assert monitor.feed(Round(upstreams, relay(shift=0.3))) == []  # all agree with the relay
    assert kinds(monitor.feed(Round(upstreams, relay(shift=0.0)))) == ["ntp.offset"]


def test_offset_needs_an_upstream_and_a_relay_answer() -> None:
    monitor = Monitor()
    assert monitor.feed(Round((down("a"),), relay(shift=5.0))) == []
    assert monitor.feed(Round((up("a"),), RelaySample(error="no answer"))) == []
    assert monitor.feed(Round((up("a"),), None)) == []


# ---------------------------------------------------------------- falsetickers


def test_one_of_three_upstreams_is_named_a_falseticker() -> None:
    monitor = Monitor(Thresholds(falseticker_bound=0.5))
    good = (up("a"), up("b", shift=0.001))
    found = monitor.feed(Round((*good, up("c", shift=0.9))))
    assert kinds(found) == ["ntp.falseticker"]
    fields = found[0].fields
    assert fields["falseticker"] == "c" and fields["answers"] == 3
    assert fields["deviation"] == pytest.approx(0.8995, abs=0.001)
    assert monitor.feed(Round((*good, up("c", shift=0.9)))) == []
    cleared = monitor.feed(Round((*good, up("c", shift=0.002))))
    assert kinds(cleared) == ["ntp.falseticker_cleared"]


def test_two_upstreams_that_disagree_name_no_one() -> None:
    monitor = Monitor(Thresholds(falseticker_bound=0.5))
    assert monitor.feed(Round((up("a"), up("b", shift=0.4)))) == []
    found = monitor.feed(Round((up("a"), up("b", shift=0.8))))
    assert kinds(found) == ["ntp.falseticker"]
    assert found[0].fields["falseticker"] is None
    assert found[0].fields["disagreeing"] == ["a", "b"]


def test_a_single_answer_judges_nothing() -> None:
    monitor = Monitor(Thresholds(falseticker_bound=0.5))
    monitor.feed(Round((up("a"), up("b"), up("c", shift=2.0))))
    assert monitor.feed(Round((up("c", shift=2.0), down("a"), down("b")))) == []
    assert "c" in monitor.findings  # unjudged, so not cleared


# ---------------------------------------------------------------- orphan


def test_orphan_and_cleared() -> None:
    monitor = Monitor(Thresholds(orphan_stratum=10))
    assert monitor.feed(Round((), relay())) == []  # synced at start: nothing to say
    orphan = monitor.feed(Round((), relay(ORPHAN)))
    assert kinds(orphan) == ["ntp.orphan"]
    assert orphan[0].fields == {"stratum": 10, "reference": "LOCAL"}
    assert monitor.feed(Round((), relay(ORPHAN))) == []
    cleared = monitor.feed(Round((), relay()))
    assert kinds(cleared) == ["ntp.orphan_cleared"]
    assert cleared[0].fields == {"stratum": 2, "reference": "C613007B"}


def test_orphan_stratum_alone_counts() -> None:
    monitor = Monitor(Thresholds(orphan_stratum=2))
    assert kinds(monitor.feed(Round((), relay()))) == ["ntp.orphan"]


def test_thresholds_come_from_the_time_section() -> None:
    text = BASE.replace(
        "services:\n",
        "endpoints:\n  t:\n    addresses: [192.0.2.1]\ntime:\n  upstreams: [t]\n"
        "  orphan_stratum: 7\n  offset_warn: 0.2\n  offset_high: 2.0\n"
        "  falseticker_bound: 0.3\nservices:\n",
    )
    time_ = load(text).policy.time
    assert time_ is not None
    assert Thresholds.from_time(time_) == Thresholds(7, 0.2, 2.0, 0.3)


# ---------------------------------------------------------------- upstream addresses


def time_policy() -> tuple[object, object]:
    text = BASE.replace("  name: t\n", "  name: t\n  resolver: dns\n").replace(
        "services:\n",
        "endpoints:\n  dns:\n    addresses: [10.20.0.53]\n"
        "  up:\n    addresses: [192.0.2.1, 192.0.2.0/28]\n    fqdn: [pool.example.org]\n"
        "time:\n  upstreams: [up]\nservices:\n",
    )
    policy = load(text).policy
    return policy, policy.time


def test_targets_addresses_and_resolved_names() -> None:
    policy, time_ = time_policy()
    many = [f"198.51.100.{i}" for i in range(1, 7)]
    targets = upstream_targets(policy, time_, lambda name: (many, 60.0))  # type: ignore[arg-type]
    assert [t.address for t in targets] == ["192.0.2.1", *many[:4]]  # no network, 4 per name
    assert targets[1].label == "up pool.example.org (198.51.100.1)"


def test_names_without_addresses_are_failed_targets() -> None:
    policy, time_ = time_policy()

    def broken(name: str) -> tuple[list[str], float]:
        raise LookupFailed("pool.example.org (A): timeout")

    failed = upstream_targets(policy, time_, broken)[1]  # type: ignore[arg-type]
    assert failed.address is None and failed.error is not None
    assert "could not resolve" in failed.error
    empty = upstream_targets(policy, time_, lambda n: ([], 60.0))[1]  # type: ignore[arg-type]
    assert empty.error == "the name has no address"
    none = upstream_targets(policy, time_, None)[1]  # type: ignore[arg-type]
    assert none.error == "the policy names no resolver"


@dataclass
class FakeLookup:
    calls: int = 0

    def lookup(self, name: str, version: int) -> Answer:
        self.calls += 1
        return Answer(name, version, ("198.51.100.7",), 60)


def test_cached_resolver_keeps_answers_for_their_ttl() -> None:
    now = [0.0]
    fake = FakeLookup()
    resolver = CachedResolver(fake, clock=lambda: now[0])  # type: ignore[arg-type]
    assert resolver("ntp.example.org") == (["198.51.100.7"], 60.0)
    now[0] = 59.0
    resolver("ntp.example.org")
    assert fake.calls == 1
    now[0] = 61.0
    resolver("ntp.example.org")
    assert fake.calls == 2


# ---------------------------------------------------------------- supervision (pure parts)


def test_restart_backoff_doubles_and_resets_after_a_stable_run() -> None:
    assert next_backoff(0.0, 1.0) == 1.0
    assert next_backoff(1.0, 2.0) == 2.0
    assert next_backoff(32.0, 2.0) == 60.0
    assert next_backoff(60.0, 5.0) == 60.0
    assert next_backoff(60.0, 300.0) == 1.0


def test_exit_status_in_words() -> None:
    assert describe_exit(1) == "exited with status 1"
    assert describe_exit(-9) == "was killed by SIGKILL"
