"""Sliding-window limits with a fake clock."""

from __future__ import annotations

import pytest

from mes.auth.ratelimit import Limit, LoginLimiter, LoginLimits, SlidingWindow, guesses_per_minute


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_window_allows_limit_then_refuses_until_oldest_ages_out() -> None:
    clock = Clock()
    window = SlidingWindow(Limit(3, 60.0), clock=clock)
    for _ in range(3):
        assert window.check("k").allowed
        window.hit("k")
        clock.now += 1
    decision = window.check("k")
    assert not decision.allowed
    assert decision.retry_after_s == pytest.approx(57.0)
    clock.now = 1000.0 + 60.0
    assert window.check("k").allowed


def test_identity_limit_is_five_per_minute() -> None:
    clock = Clock()
    limiter = LoginLimiter(clock=clock)
    allowed = 0
    for i in range(20):
        if limiter.attempt("badge:x", f"station{i}", f"10.0.0.{i}").allowed:
            allowed += 1
        clock.now += 1
    assert allowed == 5


def test_station_limit_is_ten_per_minute_across_identities() -> None:
    clock = Clock()
    limiter = LoginLimiter(clock=clock)
    allowed = sum(limiter.attempt(f"emp:{i}", "ST-1", "10.0.0.1").allowed for i in range(30))
    assert allowed == 10


def test_refused_attempt_does_not_consume_other_limits() -> None:
    clock = Clock()
    limiter = LoginLimiter(LoginLimits(identity=Limit(1, 60), station=Limit(5, 60)), clock)
    assert limiter.attempt("emp:1", "ST-1", None).allowed
    assert not limiter.attempt("emp:1", "ST-1", None).allowed
    for i in range(4):
        assert limiter.attempt(f"emp:{i + 2}", "ST-1", None).allowed


def test_memory_is_bounded() -> None:
    clock = Clock()
    limiter = LoginLimiter(LoginLimits(max_keys=100), clock)
    for i in range(5000):
        limiter.attempt(f"emp:{i}", f"ST-{i}", f"10.{i // 256 % 256}.{i % 256}.1")
        clock.now += 0.001
    assert all(size <= 100 for size in limiter.sizes())


def test_expired_keys_are_dropped() -> None:
    clock = Clock()
    window = SlidingWindow(Limit(2, 10.0), clock=clock)
    window.hit("a")
    clock.now += 11
    window.hit("b")
    assert len(window) == 1


def test_guesses_per_minute() -> None:
    limits = LoginLimits()
    assert guesses_per_minute(limits.identity) == 5
    assert guesses_per_minute(limits.station) == 10
    assert guesses_per_minute(Limit(2, 30.0)) == 4


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError):
        SlidingWindow(Limit(0, 60.0))
