"""The watcher's baseline: the communication pairs and hub-segment assets it has learned.

OT monitors (Nozomi, Claroty, Dragos) learn a site before they judge it; so does PlantGate.
While *learning*, the new-pair and new-asset detectors add what they see here without
alerting; once *protecting*, anything not in the baseline is an alert. The mode is:

* `protecting` when the policy's `detection.mode` says so, or the baseline was frozen
  (`plantgate baseline freeze`);
* otherwise `learning` until `detection.learning_window` after the baseline started, then
  `protecting` on its own.

`plantgate baseline reset` starts learning afresh. The baseline lives in
`<state>/watch/baseline.json`. plantgated is its only writer of learned content; the CLI
only resets or freezes it, under `<state>/watch/.lock`, and bumps `generation`; plantgated
notices the new generation (it looks once a second), takes the change over, and never
overwrites a generation it has not seen. Both tables are bounded (`max_pairs`,
`max_assets`): what no longer fits is counted in `overflow`, not learned.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from gateway.state import exclusive, write_atomic

log = logging.getLogger(__name__)
Mode = Literal["learning", "protecting"]
FORMAT = 1
MAX_ALERTED = 10_000  # pairs alerted on while protecting, so that each alerts once


def watch_dir(state: Path) -> Path:
    return state / "watch"


def baseline_path(state: Path) -> Path:
    return watch_dir(state) / "baseline.json"


def pair_key(proto: str, src: str, dst: str, dport: int | None) -> str:
    """'tcp 198.18.10.11 > 198.18.10.1:443' (IPv6 in brackets; no port for ICMP)."""
    target = f"[{dst}]" if ":" in dst else dst
    return f"{proto} {src} > {target}" + (f":{dport}" if dport is not None else "")


@dataclass
class PairRecord:
    first: float
    last: float
    count: int = 1


@dataclass
class AssetRecord:
    """A hardware address seen on the hub segment and the IPv4 addresses it claimed."""

    first: float
    last: float
    ips: list[str] = field(default_factory=list)
    learned: bool = True  # False: first seen while protecting (and alerted on)


@dataclass
class Baseline:
    started: float
    generation: int = 0
    frozen_at: float | None = None
    last_action: str = "start"
    pairs: dict[str, PairRecord] = field(default_factory=dict)
    alerted: dict[str, float] = field(default_factory=dict)
    assets: dict[str, AssetRecord] = field(default_factory=dict)
    bindings: dict[str, str] = field(default_factory=dict)  # IPv4 -> MAC, the latest claim
    overflow: int = 0
    max_pairs: int = 50_000
    max_assets: int = 4_096
    dirty: bool = False

    def mode(self, configured: Mode, learning_s: float, ts: float) -> Mode:
        if configured == "protecting" or self.frozen_at is not None:
            return "protecting"
        return "learning" if ts < self.started + learning_s else "protecting"

    def learning_ends(self, configured: Mode, learning_s: float) -> float | None:
        """When learning ends on its own (None: it does not, or already did by decision)."""
        if configured == "protecting" or self.frozen_at is not None:
            return None
        return self.started + learning_s

    # -- pairs --

    def has_pair(self, key: str) -> bool:
        return key in self.pairs

    def learn_pair(self, key: str, ts: float) -> bool:
        """Add or refresh a pair; False when the table is full (counted in `overflow`)."""
        record = self.pairs.get(key)
        if record is not None:
            record.last, record.count = ts, record.count + 1
            return True  # refreshes are not worth a write on their own
        if len(self.pairs) >= self.max_pairs:
            self.overflow += 1
            return False
        self.pairs[key] = PairRecord(ts, ts)
        self.dirty = True
        return True

    def mark_alerted(self, key: str, ts: float) -> bool:
        """Remember a pair alerted on; False when it already was."""
        if key in self.alerted:
            return False
        self.alerted[key] = ts
        while len(self.alerted) > MAX_ALERTED:
            del self.alerted[next(iter(self.alerted))]
        self.dirty = True
        return True

    # -- assets --

    def asset(self, mac: str) -> AssetRecord | None:
        return self.assets.get(mac)

    def add_asset(self, mac: str, ts: float, learned: bool) -> AssetRecord | None:
        if len(self.assets) >= self.max_assets:
            self.overflow += 1
            return None
        record = self.assets[mac] = AssetRecord(ts, ts, [], learned)
        self.dirty = True
        return record

    def bind(self, ip: str, mac: str, ts: float) -> None:
        record = self.assets.get(mac)
        if record is not None:
            record.last = ts
            if ip not in record.ips and len(record.ips) < 16:
                record.ips.append(ip)
                self.dirty = True
        if self.bindings.get(ip) != mac:
            if ip not in self.bindings and len(self.bindings) >= self.max_assets * 4:
                self.overflow += 1
                return
            self.bindings[ip] = mac
            self.dirty = True

    # -- persistence --

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "started": self.started,
            "generation": self.generation,
            "frozen_at": self.frozen_at,
            "last_action": self.last_action,
            "overflow": self.overflow,
            "pairs": {k: asdict(v) for k, v in self.pairs.items()},
            "alerted": dict(self.alerted),
            "assets": {k: asdict(v) for k, v in self.assets.items()},
            "bindings": dict(self.bindings),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Baseline:
        """Inverse of `to_dict`; ValueError/KeyError/TypeError for a file that is not one."""
        if data.get("format") != FORMAT:
            raise ValueError(f"unknown baseline format {data.get('format')!r}")
        frozen = data.get("frozen_at")
        return cls(
            started=float(data["started"]),
            generation=int(data.get("generation", 0)),
            frozen_at=float(frozen) if frozen is not None else None,
            last_action=str(data.get("last_action", "start")),
            overflow=int(data.get("overflow", 0)),
            pairs={str(k): PairRecord(**v) for k, v in dict(data.get("pairs", {})).items()},
            alerted={str(k): float(v) for k, v in dict(data.get("alerted", {})).items()},
            assets={str(k): AssetRecord(**v) for k, v in dict(data.get("assets", {})).items()},
            bindings={str(k): str(v) for k, v in dict(data.get("bindings", {})).items()},
        )


class BaselineStore:
    """`<state>/watch/baseline.json`, changed under `<state>/watch/.lock`."""

    def __init__(self, state: Path) -> None:
        self.path = baseline_path(state)
        self._lock = watch_dir(state) / ".lock"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with exclusive(self._lock):
            yield

    def stamp(self) -> int | None:
        """The file's modification time (ns), to notice a change cheaply; None if absent."""
        try:
            return os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            return None

    def read(self) -> Baseline | None:
        """The stored baseline; None when there is none. A file that does not parse is set
        aside as `baseline.json.corrupt` (and logged) rather than trusted or lost."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        try:
            return Baseline.from_dict(json.loads(text))
        except (ValueError, KeyError, TypeError) as exc:
            aside = self.path.with_name(self.path.name + ".corrupt")
            os.replace(self.path, aside)
            log.error("baseline %s does not parse (%s); set aside as %s", self.path, exc, aside)
            return None

    def load(self, now: float | None = None) -> Baseline:
        """The stored baseline, or a new one starting `now`."""
        with self.locked():
            return self.read() or Baseline(started=time.time() if now is None else now)

    def save(self, baseline: Baseline) -> bool:
        """Write it, unless the file holds a newer generation (a reset or freeze this
        process has not taken over yet): then False, and nothing is written."""
        with self.locked():
            stored = self.read()
            if stored is not None and stored.generation > baseline.generation:
                return False
            self._write(baseline)
        baseline.dirty = False
        return True

    def reset(self, now: float | None = None) -> Baseline:
        """Forget everything learned and start learning again (`plantgate baseline reset`)."""
        with self.locked():
            stored = self.read()
            fresh = Baseline(
                started=time.time() if now is None else now,
                generation=(stored.generation if stored else 0) + 1,
                last_action="reset",
            )
            self._write(fresh)
        return fresh

    def freeze(self, now: float | None = None) -> Baseline:
        """Stop learning now: protect with what was learned (`plantgate baseline freeze`)."""
        with self.locked():
            stored = self.read() or Baseline(started=time.time() if now is None else now)
            stored.generation += 1
            stored.frozen_at = time.time() if now is None else now
            stored.last_action = "freeze"
            self._write(stored)
        return stored

    def _write(self, baseline: Baseline) -> None:
        write_atomic(self.path, json.dumps(baseline.to_dict(), sort_keys=True) + "\n")


def adopt(current: Baseline, stored: Baseline) -> Baseline:
    """`current` (in memory) after a CLI change to `stored` with a newer generation.

    A reset replaces everything; a freeze keeps what this process learned since it last
    saved (the file may lag behind) and takes the freeze time.
    """
    if stored.generation <= current.generation:
        return current
    if stored.last_action == "freeze":
        current.frozen_at = stored.frozen_at
        current.generation = stored.generation
        current.last_action = "freeze"
        current.dirty = True
        return current
    stored.max_pairs, stored.max_assets = current.max_pairs, current.max_assets
    return stored


class Learned:
    """What the new-pair and new-asset detectors share: the baseline and the mode.

    The watcher swaps `baseline` when the CLI resets or freezes it; detectors always read
    it through here, never keep their own reference.
    """

    def __init__(self, baseline: Baseline, configured: Mode, learning_s: float) -> None:
        self.baseline = baseline
        self.configured = configured
        self.learning_s = learning_s

    def mode(self, ts: float) -> Mode:
        return self.baseline.mode(self.configured, self.learning_s, ts)
