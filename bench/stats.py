"""Summaries of repeated measurements: median with min and max, and ratios of medians."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Summary:
    """Median of the samples, with the spread (min-max) so that machine noise stays visible."""

    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def low(self) -> float:
        return min(self.samples)

    @property
    def high(self) -> float:
        return max(self.samples)

    def to_dict(self) -> dict[str, object]:
        return {
            "median": self.median,
            "min": self.low,
            "max": self.high,
            "samples": list(self.samples),
        }


def summarize(samples: Sequence[float]) -> Summary:
    if not samples:
        raise ValueError("no samples to summarize")
    return Summary(tuple(samples))


def ratio(numerator: Summary | None, denominator: Summary | None) -> float | None:
    """Ratio of medians, or None when either side is missing or the denominator is zero."""
    if numerator is None or denominator is None or denominator.median == 0:
        return None
    return numerator.median / denominator.median


def rotated(items: Sequence[str], turn: int) -> list[str]:
    """`items` starting at position `turn`: each repetition runs the contenders in another
    order, so slow drift of the machine (caches, frequency, deferred kernel frees) does not
    always land on the same one."""
    if not items:
        return []
    shift = turn % len(items)
    return [*items[shift:], *items[:shift]]
