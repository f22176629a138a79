"""Peer figures quoted from /work/shared/REFERENCE.md — NOT measured by this benchmark.

They were measured on a machine like ours (2 vCPU, nft 1.0.6): replacing the whole policy with
N hub addresses in a set, medians of 5. They are printed next to our own figures for scale
only; a ratio between a quoted figure and one measured here would mix two machines and days.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCE = "REFERENCE.md (peers on a machine like ours; not measured here)"


@dataclass(frozen=True)
class QuotedRow:
    label: str
    seconds: dict[int, float]  # N hub addresses -> median seconds


QUOTED: tuple[QuotedRow, ...] = (
    QuotedRow("raw nft -f", {10: 0.016, 10_000: 0.071, 50_000: 0.264}),
    QuotedRow("foomuuri reload", {10: 0.48, 10_000: 1.11, 50_000: 3.31}),
    QuotedRow("firewalld --reload", {10: 0.54, 10_000: 1.36, 50_000: 9.99}),
)

# Other quoted facts the report repeats next to our measurements.
QUOTED_NOTES: tuple[str, ...] = (
    "loading 10k linear rules ≈ 0.30 s; a 50k-element ip . port set ≈ 0.32 s",
    "loopback TCP ≈ 22–26 Gbit/s unfiltered, ~2 Gbit/s with 10k linear rules, ~0.4 Gbit/s "
    "with 50k (rules walked by every packet), baseline with any set size",
)


def to_dict() -> dict[str, object]:
    return {
        "source": SOURCE,
        "rows": [{"label": r.label, "seconds": r.seconds} for r in QUOTED],
        "notes": list(QUOTED_NOTES),
    }
