"""Sliding-window rate limits on login and signature attempts (pure, bounded memory).

Every attempt counts, right or wrong (it also bounds the argon2 work a client can cause).
The numbers (`LoginLimits`):

- per identity (a badge's HMAC or an employee number): 5 attempts per 60 s;
- per station code: 10 attempts per 60 s;
- per client address: 30 attempts per 60 s (a hub may serve several stations, and a client
  could claim any station code, so the address bounds that too).

With the lockout after 5 consecutive failures, one badge gets at most 5 guesses in all
before a lead must unlock it; a station can try at most 10 per minute across identities.

Memory: each limiter keeps at most `max_keys` keys (least recently used evicted first) and
at most `limit` timestamps per key, and drops keys whose window has passed.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass(frozen=True)
class Limit:
    attempts: int
    window_s: float

    def per_minute(self) -> float:
        return self.attempts * 60.0 / self.window_s


@dataclass(frozen=True)
class LoginLimits:
    identity: Limit = Limit(5, 60.0)
    station: Limit = Limit(10, 60.0)
    address: Limit = Limit(30, 60.0)
    max_keys: int = 10_000


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: float = 0.0


class SlidingWindow:
    """At most `limit.attempts` hits per key in any `limit.window_s` seconds."""

    def __init__(self, limit: Limit, max_keys: int = 10_000, clock: Clock = time.monotonic):
        if limit.attempts < 1 or limit.window_s <= 0 or max_keys < 1:
            raise ValueError("a limit needs attempts >= 1, a positive window and max_keys >= 1")
        self.limit = limit
        self.max_keys = max_keys
        self._clock = clock
        self._hits: OrderedDict[str, deque[float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._hits)

    def _window(self, key: str, now: float) -> deque[float]:
        hits = self._hits.get(key)
        if hits is None:
            hits = deque(maxlen=self.limit.attempts)
            self._hits[key] = hits
        else:
            self._hits.move_to_end(key)
        cutoff = now - self.limit.window_s
        while hits and hits[0] <= cutoff:
            hits.popleft()
        return hits

    def check(self, key: str) -> Decision:
        """Would a hit on `key` be allowed now? (Does not record it.)"""
        now = self._clock()
        hits = self._window(key, now)
        if len(hits) < self.limit.attempts:
            return Decision(True)
        return Decision(False, max(0.0, hits[0] + self.limit.window_s - now))

    def hit(self, key: str) -> None:
        now = self._clock()
        self._window(key, now).append(now)
        self._prune(now)

    def _prune(self, now: float) -> None:
        cutoff = now - self.limit.window_s
        while self._hits:
            oldest_key, oldest = next(iter(self._hits.items()))
            if len(self._hits) > self.max_keys or not oldest or oldest[-1] <= cutoff:
                del self._hits[oldest_key]
            else:
                break


class LoginLimiter:
    """The three limits together: an attempt is allowed only if every key is under its limit."""

    def __init__(self, limits: LoginLimits = LoginLimits(), clock: Clock = time.monotonic):
        self.limits = limits
        self._identity = SlidingWindow(limits.identity, limits.max_keys, clock)
        self._station = SlidingWindow(limits.station, limits.max_keys, clock)
        self._address = SlidingWindow(limits.address, limits.max_keys, clock)

    def _pairs(
        self, identity: str, station: str | None, address: str | None
    ) -> list[tuple[SlidingWindow, str]]:
        pairs = [(self._identity, identity)]
        if station:
            pairs.append((self._station, station))
        if address:
            pairs.append((self._address, address))
        return pairs

    def attempt(self, identity: str, station: str | None, address: str | None) -> Decision:
        """Record an attempt if every limit allows it; otherwise refuse and record nothing."""
        pairs = self._pairs(identity, station, address)
        refusals = [w.check(k) for w, k in pairs]
        blocked = [d for d in refusals if not d.allowed]
        if blocked:
            return Decision(False, max(d.retry_after_s for d in blocked))
        for window, key in pairs:
            window.hit(key)
        return Decision(True)

    def sizes(self) -> tuple[int, int, int]:
        return len(self._identity), len(self._station), len(self._address)


def guesses_per_minute(limit: Limit) -> int:
    """Most attempts one key can make in any 60 s under `limit` (a sliding window)."""
    return limit.attempts * max(1, math.ceil(60.0 / limit.window_s))
