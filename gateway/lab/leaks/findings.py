"""What a stretch of a leak run saw (pure): its probes' results, the verdicts on its packets,
and the packets each kill-switch rule dropped meanwhile, read from `nft list table` text."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from gateway.lab.leaks.probes import ProbeResult
from gateway.vpn.leakcheck import Tally

COUNTER = re.compile(r"counter packets (\d+) bytes \d+ ")
KILL_SWITCH = 'comment "support_vpn @'


def kill_switch_counts(listing: str) -> dict[str, int]:
    """Packets each kill-switch rule has matched, from `nft list table` text (pure):
    `{"output: oifname "wg-support" meta nfproto ipv6 drop": 12, ...}`."""
    counts: dict[str, int] = {}
    chain = ""
    for line in listing.splitlines():
        text = line.strip()
        if text.startswith("chain "):
            chain = text.split()[1]
        found = COUNTER.search(text)
        if KILL_SWITCH not in text or found is None:
            continue
        rule = COUNTER.sub("", text.split(" comment ")[0]).strip()
        key = f"{chain}: {rule}"
        counts[key] = counts.get(key, 0) + int(found.group(1))
    return counts


def counts_since(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """What each rule matched in between (pure); a reloaded table restarts its counters."""
    delta = {}
    for rule, now in after.items():
        then = before.get(rule, 0)
        moved = now - then if now >= then else now
        if moved:
            delta[rule] = moved
    return delta


@dataclass(frozen=True)
class Window:
    """What one stretch of a run saw: its probes' results and the verdicts on its packets."""

    name: str
    start: float
    end: float
    results: tuple[ProbeResult, ...]
    tally: Tally
    stopped: dict[str, int] = field(default_factory=dict)  # kill-switch rule -> packets

    @property
    def breaches(self) -> list[ProbeResult]:
        return [r for r in self.results if r.breach]

    @property
    def leaks(self) -> int:
        return len(self.tally.leaks)

    def stopped_text(self) -> str:
        rules = sorted(self.stopped.items(), key=lambda item: -item[1])
        return "; ".join(f"{rule} x{count}" for rule, count in rules) or "none"

    def line(self) -> str:
        answered = sum(1 for r in self.results if r.outcome == "answered" and r.probe.granted)
        return (
            f"{self.name}: {len(self.results)} probes, {len(self.breaches)} forbidden answered, "
            f"{answered} granted answered; packets {self.tally.summary()}; leaks {self.leaks}"
        )
