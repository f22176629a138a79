"""Bounded state for the network detectors: an LRU table with idle expiry, a reporter that
turns a flood of occurrences into a few counted triggers, and a budget for new alert keys.

All three are pure (times are passed in) and hold at most a stated number of entries, so a
flood of distinct sources costs a fixed amount of memory:

* `Recent` — key -> value, least recently touched first; `put` evicts the oldest beyond
  `max_entries` (counted in `evicted`), `expire` drops entries idle longer than `ttl_s`.
* `Reporter` — per key, the first occurrence is reported at once and later ones are summed
  and reported at most every `every_s` (by `add` when one is due, or by `flush` from the
  detector's tick). The aggregator adds the counts up, so an alert's count stays the number
  of occurrences while a port scan makes a handful of triggers instead of a thousand.
* `KeyBudget` — at most `per_minute` *new* alert keys a minute; a key already admitted keeps
  reporting. Beyond the budget the detector reports under one overflow key instead, so a
  flood of spoofed sources opens one alert ("many sources"), not a million.
"""

from __future__ import annotations

import dataclasses
import socket
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Annotated, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from gateway.alerts.record import Endpoint, Network, Trigger, flow_network
from gateway.watch.detectors.base import SiteView, trigger_time

K = TypeVar("K")
V = TypeVar("V")
OVERFLOW_KEY = "many-sources"
PortNumber = Annotated[int, Field(ge=1, le=65535, description="A port (1-65535).")]
# Two throttles the DNS, NTP, SSH and support detectors share (their own defaults alongside).
ReportEvery = Annotated[
    float,
    Field(
        gt=0,
        le=3600,
        description="Repeats of one finding are reported at most this often, as one trigger "
        "with their count.",
    ),
]
NewSourcesPerMinute = Annotated[
    int,
    Field(
        ge=1,
        le=1_000_000,
        description="At most this many new sources a minute get an alert of their own per "
        "rule; beyond it, occurrences are counted under one 'many-sources' alert.",
    ),
]


class Recent(Generic[K, V]):
    """key -> value with the time each was last touched; LRU-bounded, idle entries expire."""

    __slots__ = ("_items", "evicted", "max_entries", "ttl_s")

    def __init__(self, max_entries: int, ttl_s: float) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self.ttl_s = ttl_s
        self._items: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self.evicted = 0

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def get(self, key: K) -> V | None:
        """The value, without touching it."""
        item = self._items.get(key)
        return item[1] if item is not None else None

    def last_seen(self, key: K) -> float | None:
        item = self._items.get(key)
        return item[0] if item is not None else None

    def put(self, key: K, value: V, ts: float) -> None:
        """Set (and touch) `key`; the least recently touched entry goes beyond the bound."""
        items = self._items
        if key in items:
            items.move_to_end(key)
        items[key] = (ts, value)
        if len(items) > self.max_entries:
            items.popitem(last=False)
            self.evicted += 1

    def touch(self, key: K, ts: float) -> V | None:
        """Mark `key` seen at `ts`; its value (None when absent)."""
        item = self._items.get(key)
        if item is None:
            return None
        self._items.move_to_end(key)
        self._items[key] = (ts, item[1])
        return item[1]

    def pop(self, key: K) -> V | None:
        item = self._items.pop(key, None)
        return item[1] if item is not None else None

    def expire(self, ts: float) -> list[tuple[K, V]]:
        """Remove and return the entries not touched for `ttl_s` (oldest first)."""
        out: list[tuple[K, V]] = []
        items = self._items
        horizon = ts - self.ttl_s
        while items:
            key, (seen, value) = next(iter(items.items()))
            if seen > horizon:
                break
            del items[key]
            out.append((key, value))
        return out

    def items(self) -> Iterator[tuple[K, V]]:
        return ((k, v) for k, (_, v) in self._items.items())


@dataclasses.dataclass(slots=True)
class _Pending:
    make: Callable[[], Trigger]  # builds the latest context when a report is due
    count: int
    last_emit: float
    last_seen: float


class Reporter:
    """First occurrence of a key at once, then counted follow-ups at most every `every_s`."""

    __slots__ = ("_keys", "every_s")

    def __init__(self, every_s: float, max_keys: int, ttl_s: float) -> None:
        self.every_s = every_s
        self._keys: Recent[str, _Pending] = Recent(max_keys, max(ttl_s, every_s))

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    @property
    def evicted(self) -> int:
        return self._keys.evicted

    def add(
        self, key: str, ts: float, make: Callable[[], Trigger], count: int = 1
    ) -> Trigger | None:
        """Count `count` occurrences of `key`; the trigger to submit now, if one is due.

        `make` builds the trigger from the latest context; it is called only when a report
        is due (the first occurrence, or a later one once the key's quiet period is over,
        or `flush`), so a flood costs a counter increment per occurrence.
        """
        pending = self._keys.touch(key, ts)
        if pending is None:
            self._keys.put(key, _Pending(make, count, ts, ts), ts)
            return self._emit(self._keys.get(key), ts)
        pending.make = make
        pending.count += count
        pending.last_seen = ts
        if ts - pending.last_emit < self.every_s:
            return None
        return self._emit(pending, ts)

    def flush(self, ts: float) -> list[Trigger]:
        """Report what is due; forget keys idle for longer than the ttl."""
        out: list[Trigger] = []
        for _key, pending in self._keys.items():
            if pending.count and ts - pending.last_emit >= self.every_s:
                out.append(self._emit(pending, ts))
        for _key, pending in self._keys.expire(ts):
            if pending.count:  # idle and unreported: report the rest before forgetting
                out.append(self._emit(pending, ts))
        return out

    @staticmethod
    def _emit(pending: _Pending | None, ts: float) -> Trigger:
        assert pending is not None
        trigger = dataclasses.replace(
            pending.make(), count=pending.count, ts=trigger_time(pending.last_seen)
        )
        pending.count, pending.last_emit = 0, ts
        return trigger


class KeyBudget:
    """At most `per_minute` new keys admitted a minute; known keys stay admitted while seen.

    `admit` answers the key to report under: the key itself, or `OVERFLOW_KEY` when the
    minute's budget of new keys is spent (`overflowed` counts those occurrences).
    """

    __slots__ = ("_known", "_minute", "_used", "overflowed", "per_minute")

    def __init__(self, per_minute: int, max_keys: int, ttl_s: float) -> None:
        self.per_minute = per_minute
        self._known: Recent[str, None] = Recent(max_keys, ttl_s)
        self._minute = -1
        self._used = 0
        self.overflowed = 0

    def __len__(self) -> int:
        return len(self._known)

    def admit(self, key: str, ts: float) -> str:
        if key in self._known:
            self._known.touch(key, ts)
            return key
        minute = int(ts // 60)
        if minute != self._minute:
            self._minute, self._used = minute, 0
        if self._used >= self.per_minute:
            self.overflowed += 1
            return OVERFLOW_KEY
        self._used += 1
        self._known.put(key, None, ts)
        return key

    def expire(self, ts: float) -> None:
        self._known.expire(ts)


class DetectorSettings(BaseModel):
    """Base of the network detectors' settings: unknown keys are errors, values are not
    coerced, and every field has a default for a small plant LAN."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def site_endpoint(
    site: SiteView, address: str, port: int | None = None, mac: str | None = None
) -> Endpoint:
    """An alert endpoint with the zone and asset role the site gives the address."""
    return Endpoint(address, port, site.zone_of(address), site.role_of(address), mac)


def flow_of(
    site: SiteView,
    src: str,
    dst: str,
    proto: str | None,
    sport: int | None,
    dport: int | None,
    mac: str | None = None,
) -> tuple[Endpoint, Endpoint, Network | None]:
    """Both endpoints of a flow and its network record (with a Community ID for TCP/UDP)."""
    source = site_endpoint(site, src, sport, mac)
    destination = site_endpoint(site, dst, dport)
    network = flow_network(source, destination, proto) if proto else None
    return source, destination, network


def host_bit(target: object) -> int:
    """A stable index (0..65535) for a host in a 65,536-bit map of distinct hosts: the low 16
    bits of an IPv4 address (exact within one /16, as a plant's segments are), else CRC-32.
    Never Python's `hash`, which changes with every process: the same traffic would count
    differently from run to run."""
    text = str(target)
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET, text)[2:], "big")
    except OSError:
        return zlib.crc32(text.encode()) & 0xFFFF
