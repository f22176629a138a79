"""The relay's monitor as a pure state machine: NTP samples in, events out.

Each round the adapter (`watch.py`) asks every upstream address and the relay itself, and
feeds the answers here as a `Round`. The monitor remembers just enough to report each change
once (DESIGN §7: components publish events, the watcher decides what they mean):

- `ntp.upstream_lost` when every upstream has failed `lost_after` rounds in a row, and
  `ntp.upstream_restored` when one answers again. A failure is no answer, an error, a
  Kiss-o'-Death or an answer from an unsynchronised server.
- `ntp.offset` when the relay's offset from the upstreams' consensus (their median) crosses
  `offset_warn` or `offset_high`; `ntp.offset_cleared` when it falls back below
  `clear_ratio` times the threshold it had crossed (hysteresis: no flapping at the line).
- `ntp.falseticker` when one upstream is further than `falseticker_bound` from the median
  of the others. That takes three answers; with two, a gap larger than the bound is
  reported as a disagreement without naming either. `ntp.falseticker_cleared` when the
  finding goes away in a round that could judge it.
- `ntp.kod` for a Kiss-o'-Death (stratum 0, the reference ID an ASCII code such as RATE,
  DENY or RSTR), once per upstream and code until it answers normally again. INIT (a server
  that is not synchronised yet) is a failure, not a kiss of death.
- `ntp.orphan` when the relay serves from its local reference (stratum = the orphan
  stratum): clients get time, but not from any upstream. `ntp.orphan_cleared` when not.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway.events import Event

if TYPE_CHECKING:  # only for annotations: the watcher's NTP detector imports this module,
    from gateway.policy.model import TimeService  # and the policy model imports the detectors

SOURCE = "ntp"
LOCAL_REFID = 0x7F7F0101  # 127.127.1.1: chrony's local reference
LEAP_ALARM = 3  # leap indicator of a server that is not synchronised
NOT_A_KISS = frozenset({"INIT"})
LEVELS = ("ok", "warn", "high")


@dataclass(frozen=True)
class UpstreamSample:
    """One upstream address's answer this round, or why there was none."""

    label: str  # "endpoint name (address)": stable across rounds for one address
    address: str | None
    offset: float | None = None  # upstream time minus our clock, seconds
    delay: float | None = None
    stratum: int | None = None
    leap: int | None = None
    ref_id: int | None = None
    error: str | None = None

    @property
    def kiss(self) -> str | None:
        return kiss_code(self.stratum, self.ref_id)

    @property
    def usable(self) -> bool:
        return (
            self.error is None
            and self.offset is not None
            and self.stratum is not None
            and 1 <= self.stratum <= 15
            and self.leap != LEAP_ALARM
        )


@dataclass(frozen=True)
class RelaySample:
    """The relay's own answer this round (asked at its serving address)."""

    stratum: int | None = None
    ref_id: int | None = None
    offset: float | None = None  # relay time minus our clock, seconds
    leap: int | None = None
    error: str | None = None


@dataclass(frozen=True)
class Round:
    upstreams: tuple[UpstreamSample, ...]
    relay: RelaySample | None = None  # None: not asked this round


@dataclass(frozen=True)
class Thresholds:
    orphan_stratum: int = 10
    offset_warn: float = 0.1
    offset_high: float = 1.0
    falseticker_bound: float = 0.5
    lost_after: int = 2  # rounds in a row
    clear_ratio: float = 0.8

    @classmethod
    def from_time(cls, time: TimeService) -> Thresholds:
        return cls(
            orphan_stratum=time.orphan_stratum,
            offset_warn=time.offset_warn,
            offset_high=time.offset_high,
            falseticker_bound=time.falseticker_bound,
        )

    def limit(self, level: str) -> float:
        return self.offset_high if level == "high" else self.offset_warn


def kiss_code(stratum: int | None, ref_id: int | None) -> str | None:
    """The kiss code of a stratum-0 answer whose reference ID is ASCII (RFC 5905 §7.4)."""
    if stratum != 0 or ref_id is None or not 0 <= ref_id <= 0xFFFFFFFF:
        return None
    raw = ref_id.to_bytes(4, "big").rstrip(b"\0 ")
    if not raw or not all(0x41 <= b <= 0x5A or 0x30 <= b <= 0x39 for b in raw):
        return None
    return raw.decode("ascii")


def _seconds(value: float) -> float:
    return round(value, 6)


@dataclass
class Monitor:
    """Feed it one `Round` at a time; it returns the events that round caused."""

    thresholds: Thresholds = field(default_factory=Thresholds)
    failures: dict[str, int] = field(default_factory=dict)
    lost: bool = False
    offset_level: str = "ok"
    findings: dict[str, dict[str, Any]] = field(default_factory=dict)
    kisses: dict[str, str] = field(default_factory=dict)
    orphan: bool | None = None

    def feed(self, round_: Round) -> list[Event]:
        usable = [s for s in round_.upstreams if s.usable]
        events = [
            *self._kisses(round_.upstreams),
            *self._reachability(round_.upstreams, usable),
            *self._falsetickers(usable),
        ]
        relay = round_.relay
        if relay is not None and relay.error is None:
            events += self._orphan(relay)
            events += self._offset(relay, usable)
        return events

    # ------------------------------------------------------------ kiss-o'-death

    def _kisses(self, samples: Sequence[UpstreamSample]) -> list[Event]:
        events = []
        for sample in samples:
            code = sample.kiss
            if code is None or code in NOT_A_KISS:
                if sample.error is None and sample.stratum not in (None, 0):
                    self.kisses.pop(sample.label, None)
                continue
            if self.kisses.get(sample.label) == code:
                continue
            self.kisses[sample.label] = code
            fields = {"upstream": sample.label, "address": sample.address, "code": code}
            events.append(Event("ntp.kod", SOURCE, fields))
        return events

    # ------------------------------------------------------------ lost / restored

    def _reachability(
        self, samples: Sequence[UpstreamSample], usable: Sequence[UpstreamSample]
    ) -> list[Event]:
        if not samples:
            return []  # nothing was asked: no news
        self.failures = {
            s.label: 0 if s.usable else self.failures.get(s.label, 0) + 1 for s in samples
        }
        if self.lost and usable:
            self.lost = False
            labels = [s.label for s in usable]
            return [Event("ntp.upstream_restored", SOURCE, {"upstreams": labels})]
        if self.lost or min(self.failures.values()) < self.thresholds.lost_after:
            return []
        self.lost = True
        fields = {
            "upstreams": [s.label for s in samples],
            "rounds": self.thresholds.lost_after,
            "errors": {s.label: _failure(s) for s in samples},
        }
        return [Event("ntp.upstream_lost", SOURCE, fields)]

    # ------------------------------------------------------------ falsetickers

    def _falsetickers(self, usable: Sequence[UpstreamSample]) -> list[Event]:
        if len(usable) < 2:
            return []  # nothing to compare: keep what we knew
        found = self._judge(usable)
        events = [
            Event("ntp.falseticker", SOURCE, fields)
            for key, fields in found.items()
            if key not in self.findings
        ]
        events += [
            Event("ntp.falseticker_cleared", SOURCE, {"finding": key})
            for key in self.findings
            if key not in found
        ]
        self.findings = found
        return events

    def _judge(self, usable: Sequence[UpstreamSample]) -> dict[str, dict[str, Any]]:
        bound = self.thresholds.falseticker_bound
        if len(usable) == 2:
            a, b = sorted(usable, key=lambda s: s.label)
            gap = _offset(a) - _offset(b)
            if abs(gap) <= bound:
                return {}
            key = f"{a.label} / {b.label}"
            return {
                key: {
                    "falseticker": None,
                    "disagreeing": [a.label, b.label],
                    "difference": _seconds(gap),
                    "bound": bound,
                    "answers": 2,
                }
            }
        found = {}
        for sample in usable:
            others = statistics.median(_offset(o) for o in usable if o is not sample)
            deviation = _offset(sample) - others
            if abs(deviation) > bound:
                found[sample.label] = {
                    "falseticker": sample.label,
                    "address": sample.address,
                    "offset": _seconds(_offset(sample)),
                    "median_of_others": _seconds(others),
                    "deviation": _seconds(deviation),
                    "bound": bound,
                    "answers": len(usable),
                }
        return found

    # ------------------------------------------------------------ orphan

    def _orphan(self, relay: RelaySample) -> list[Event]:
        orphan = relay.ref_id == LOCAL_REFID or relay.stratum == self.thresholds.orphan_stratum
        before, self.orphan = self.orphan, orphan
        if orphan == bool(before):
            return []
        fields = {"stratum": relay.stratum, "reference": _refid_text(relay.ref_id)}
        return [Event("ntp.orphan" if orphan else "ntp.orphan_cleared", SOURCE, fields)]

    # ------------------------------------------------------------ offset

    def _offset(self, relay: RelaySample, usable: Sequence[UpstreamSample]) -> list[Event]:
        if relay.offset is None or not usable:
            return []
        consensus = statistics.median(_offset(s) for s in usable)
        offset = relay.offset - consensus
        level = self._next_level(abs(offset))
        if level == self.offset_level:
            return []
        self.offset_level = level
        fields: dict[str, Any] = {
            "offset": _seconds(offset),
            "consensus_of": len(usable),
            "level": level,
        }
        if level == "ok":
            return [Event("ntp.offset_cleared", SOURCE, fields)]
        fields["threshold"] = self.thresholds.limit(level)
        return [Event("ntp.offset", SOURCE, fields)]

    def _next_level(self, magnitude: float) -> str:
        limits = self.thresholds
        raw = (
            "high"
            if magnitude > limits.offset_high
            else "warn"
            if magnitude > limits.offset_warn
            else "ok"
        )
        current = self.offset_level
        if LEVELS.index(raw) >= LEVELS.index(current):
            return raw
        if magnitude < limits.limit(current) * limits.clear_ratio:
            return raw
        return current


def _offset(sample: UpstreamSample) -> float:
    assert sample.offset is not None  # only usable samples are compared
    return sample.offset


def _failure(sample: UpstreamSample) -> str:
    if sample.error is not None:
        return sample.error
    if sample.kiss is not None:
        return f"kiss-o'-death {sample.kiss}"
    if sample.leap == LEAP_ALARM or sample.stratum in (0, 16):
        return "server not synchronised"
    return f"unusable answer (stratum {sample.stratum})"


def _refid_text(ref_id: int | None) -> str:
    if ref_id is None:
        return ""
    if ref_id == LOCAL_REFID:
        return "LOCAL"
    return f"{ref_id:08X}"
