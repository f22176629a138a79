"""When to resolve each FQDN endpoint again, and how long its addresses stay allowed (pure).

A resolved address is allowed for its TTL plus a grace period: the kernel drops the element
when that runs out, so a name that stops resolving fails closed. We refresh well before
(at 75% of the TTL), so a healthy name never lapses. TTLs are clamped: a TTL of 0 would have
us query in a loop, a TTL of a week would keep a stale address allowed for a week.
Failures are retried with exponential backoff, never later than the addresses' expiry.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.policy.compile import FqdnBinding
from gateway.policy.nft import Element


@dataclass(frozen=True)
class TtlPolicy:
    min_ttl: int = 30
    max_ttl: int = 86_400
    grace: int = 30
    refresh_fraction: float = 0.75
    retry_first: float = 5.0
    retry_max: float = 60.0

    def clamp(self, ttl: int) -> int:
        return max(self.min_ttl, min(self.max_ttl, ttl))

    def element_timeout(self, ttl: int) -> int:
        return self.clamp(ttl) + self.grace


@dataclass(frozen=True)
class Answer:
    """What one lookup gave: addresses (possibly none) of one IP version, and their TTL."""

    name: str
    version: int
    addresses: tuple[str, ...]
    ttl: int


@dataclass
class _Entry:
    sets: list[str]
    refresh_at: float = 0.0  # 0 = never resolved: due at once
    expires_at: float = 0.0
    failures: int = 0


@dataclass
class Schedule:
    """The refresh plan for every (name, IP version) that some endpoint set needs."""

    policy: TtlPolicy = field(default_factory=TtlPolicy)
    entries: dict[tuple[str, int], _Entry] = field(default_factory=dict)

    @classmethod
    def for_bindings(
        cls, bindings: Iterable[FqdnBinding], policy: TtlPolicy | None = None
    ) -> Schedule:
        schedule = cls(policy or TtlPolicy())
        for binding in bindings:
            for name in binding.names:
                for version, set_name in binding.sets.items():
                    entry = schedule.entries.setdefault((name, version), _Entry(sets=[]))
                    entry.sets.append(set_name)
        return schedule

    def due(self, now: float) -> list[tuple[str, int]]:
        """Lookups to make now, in a stable order."""
        return sorted(key for key, entry in self.entries.items() if entry.refresh_at <= now)

    def next_wakeup(self) -> float | None:
        return min((e.refresh_at for e in self.entries.values()), default=None)

    def record(self, now: float, answer: Answer) -> dict[str, list[Element]]:
        """Note a successful lookup; return the elements to (re)install, per set."""
        entry = self.entries[(answer.name, answer.version)]
        ttl = self.policy.clamp(answer.ttl)
        entry.failures = 0
        entry.refresh_at = now + ttl * self.policy.refresh_fraction
        timeout = self.policy.element_timeout(answer.ttl)
        if answer.addresses:
            entry.expires_at = now + timeout
        elements = [Element(address, timeout) for address in sorted(set(answer.addresses))]
        return {set_name: list(elements) for set_name in entry.sets} if elements else {}

    def record_failure(self, now: float, name: str, version: int) -> float:
        """Note a failed lookup; return when to try again (backoff, before expiry if any)."""
        entry = self.entries[(name, version)]
        delay = min(self.policy.retry_max, self.policy.retry_first * 2.0**entry.failures)
        entry.failures += 1
        retry = now + delay
        if entry.expires_at > now:
            retry = min(retry, max(now + 1.0, entry.expires_at - self.policy.grace / 2))
        entry.refresh_at = retry
        return retry
