"""The tunnel health machine: every state and every transition, on a fake clock (no root)."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest

from gateway.vpn.health import (
    STATES,
    Sample,
    TunnelHealth,
    assess,
    next_backoff,
)

T0 = 1_796_180_000.0


class Clock:
    """A fake wall clock that the test moves by hand."""

    def __init__(self) -> None:
        self.now = T0

    def tick(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def sample(
    now: float,
    *,
    mode: str = "gated",
    interface: bool = True,
    handshake: float = 0,
    rx: int = 0,
    tx: int = 0,
    why: str = "",
) -> Sample:
    return Sample(mode, interface, int(handshake), rx, tx, now, why)


# ---------------------------------------------------------------- one sample, each state


def test_disabled_mode_is_disabled_whatever_the_interface_does() -> None:
    for interface in (True, False):
        got = assess(sample(T0, mode="disabled", interface=interface, handshake=T0))
        assert (got.state, got.reason) == ("disabled", "the support VPN is disabled")


def test_no_support_vpn_section_is_disabled_and_says_so() -> None:
    got = assess(sample(T0, mode="none", interface=False))
    assert got.state == "disabled"
    assert "no support_vpn section" in got.reason


@pytest.mark.parametrize("mode", ["gated", "always-on"])
def test_missing_interface_with_the_mode_on_is_down(mode: str) -> None:
    got = assess(sample(T0, mode=mode, interface=False))
    assert (got.state, got.reason) == ("down", "the tunnel interface is missing")
    killed = assess(sample(T0, interface=False, why="wireguard-go was killed by SIGKILL"))
    assert killed.reason == "wireguard-go was killed by SIGKILL"


def test_interface_without_any_handshake_is_connecting() -> None:
    got = assess(sample(T0, handshake=0))
    assert got.state == "connecting"
    assert got.handshake_age is None


@pytest.mark.parametrize("age", [0, 1, 119, 120, 135, 179.9, 180])
def test_a_handshake_up_to_180_s_old_is_up(age: float) -> None:
    got = assess(sample(T0 + age, handshake=T0))
    assert got.state == "up"
    assert got.handshake_age == pytest.approx(age, abs=1)


@pytest.mark.parametrize("age", [181, 300, 86_400])
def test_a_handshake_older_than_180_s_is_stale(age: float) -> None:
    got = assess(sample(T0 + age, handshake=T0))
    assert got.state == "stale"
    assert "expired" in got.reason


def test_between_135_and_180_s_sending_without_answers_is_stale() -> None:
    before = sample(T0 + 130, handshake=T0, rx=1000, tx=2000)
    silent = sample(T0 + 140, handshake=T0, rx=1000, tx=2148)
    assert assess(silent, before).state == "stale"
    assert "nothing heard" in assess(silent, before).reason


def test_between_135_and_180_s_answers_or_idleness_keep_it_up() -> None:
    before = sample(T0 + 130, handshake=T0, rx=1000, tx=2000)
    answered = sample(T0 + 140, handshake=T0, rx=1092, tx=2148)
    idle = sample(T0 + 140, handshake=T0, rx=1000, tx=2000)
    assert assess(answered, before).state == "up"
    assert assess(idle, before).state == "up"
    assert assess(sample(T0 + 140, handshake=T0, tx=9), None).state == "up"  # no delta known


def test_silence_before_135_s_is_normal_rekey_time() -> None:
    before = sample(T0 + 100, handshake=T0, rx=1000, tx=2000)
    silent = sample(T0 + 130, handshake=T0, rx=1000, tx=2500)
    assert assess(silent, before).state == "up"


def test_a_handshake_in_the_future_counts_as_just_now() -> None:
    got = assess(sample(T0, handshake=T0 + 5))  # the clock stepped back
    assert (got.state, got.handshake_age) == ("up", 0.0)


# ---------------------------------------------------------------- the machine over time


def test_life_of_a_tunnel_publishes_each_change_once() -> None:
    clock, health = Clock(), TunnelHealth()
    seen = []

    def feed(**kwargs: object) -> None:
        change = health.feed(sample(clock.now, **kwargs))  # type: ignore[arg-type]
        if change is not None:
            seen.append((change.previous, change.state))

    feed(mode="disabled", interface=False)  # plantgated starts with the VPN off
    feed(mode="disabled", interface=False)
    clock.tick(2)
    feed(handshake=0)  # `vpn enable`: the interface exists, no handshake yet
    clock.tick(0.1)
    handshake = clock.now
    feed(handshake=handshake, rx=92, tx=180)
    for _ in range(5):
        clock.tick(2)
        feed(handshake=handshake, rx=92, tx=180)
    clock.tick(2)
    feed(interface=False, why="wireguard-go was killed by SIGKILL")
    clock.tick(1)
    feed(interface=False)
    clock.tick(1)
    feed(handshake=0)
    feed(handshake=clock.now, rx=92, tx=180)
    handshake = clock.now
    clock.tick(200)
    feed(handshake=handshake, rx=92, tx=400)  # the concentrator went away
    clock.tick(5)
    feed(handshake=clock.now, rx=184, tx=580)  # and came back
    feed(mode="disabled", interface=False)
    assert seen == [
        (None, "disabled"),
        ("disabled", "connecting"),
        ("connecting", "up"),
        ("up", "down"),
        ("down", "connecting"),
        ("connecting", "up"),
        ("up", "stale"),
        ("stale", "up"),
        ("up", "disabled"),
    ]


def test_transition_carries_reason_age_and_time() -> None:
    clock, health = Clock(), TunnelHealth()
    assert health.feed(sample(clock.now, handshake=0)) is not None
    clock.tick(3)
    change = health.feed(sample(clock.now, handshake=clock.now - 1))
    assert change is not None
    assert (change.previous, change.state, change.at) == ("connecting", "up", clock.now)
    assert change.handshake_age == pytest.approx(1)
    assert health.state == "up" and health.since == clock.now
    assert health.feed(sample(clock.tick(2), handshake=clock.now - 3)) is None
    assert health.since == clock.now - 2  # unchanged while the state holds


def test_counter_deltas_are_not_taken_across_an_interface_restart() -> None:
    clock, health = Clock(), TunnelHealth()
    handshake = clock.now
    health.feed(sample(clock.tick(140), handshake=handshake, rx=5000, tx=5000))
    health.feed(sample(clock.tick(1), interface=False))
    # a new wireguard-go: counters restart at 0, no comparison with the dead one's
    change = health.feed(sample(clock.tick(1), handshake=handshake, rx=0, tx=148))
    assert change is not None
    assert (change.previous, change.state) == ("down", "up")  # 142 s old, but no delta known
    silent = health.feed(sample(clock.tick(2), handshake=handshake, rx=0, tx=296))
    assert silent is not None and silent.state == "stale"  # now the delta says: no answers


@pytest.mark.parametrize(("before", "after"), list(itertools.permutations(STATES, 2)))
def test_every_transition_between_states_is_reported(before: str, after: str) -> None:
    """From each state to each other one, the machine reports exactly that change."""
    clock, health = Clock(), TunnelHealth()
    health.feed(_sample_in(before, clock))
    clock.tick(1)
    change = health.feed(_sample_in(after, clock))
    assert change is not None
    assert (change.previous, change.state) == (before, after)
    assert health.feed(replace(_sample_in(after, clock), now=clock.now)) is None


def _sample_in(state: str, clock: Clock) -> Sample:
    now = clock.now
    return {
        "disabled": sample(now, mode="disabled", interface=False),
        "down": sample(now, interface=False),
        "connecting": sample(now, handshake=0),
        "up": sample(now, handshake=now - 10),
        "stale": sample(now, handshake=now - 500),
    }[state]


# ---------------------------------------------------------------- restart backoff


def test_backoff_doubles_to_a_minute_and_resets_after_a_stable_minute() -> None:
    delays, previous = [], 0.0
    for _ in range(9):
        previous = next_backoff(previous, uptime=0.5)
        delays.append(previous)
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60]
    assert next_backoff(60, uptime=61) == 1
