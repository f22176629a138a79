"""chronyc's CSV reports (`chronyc -c tracking|sources|sourcestats`) as dataclasses (pure).

Field order, from chronyc(1) and checked against chrony 4.3's output (recorded in
tests/unit/test_ntp_chronyc.py):

- tracking: reference ID (hex), reference name or address, stratum, reference time (epoch),
  system time correction (s; positive = the system clock is behind NTP time), last offset,
  RMS offset, frequency (ppm), residual frequency, skew, root delay, root dispersion,
  update interval (s), leap status.
- sources: mode (^ server, = peer, # reference clock), state (* + - x ~ ?), name or address,
  stratum, poll (log2 s), reach (the 8-bit register, printed in octal), seconds since the
  last good sample (4294967295 = never), adjusted offset, measured offset, error bound.
- sourcestats: name or address, samples kept, runs of residuals, span (s), frequency (ppm),
  frequency skew (ppm), offset (s), standard deviation (s).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass

LOCAL_REFID = "7F7F0101"  # 127.127.1.1: chrony's local reference (orphan mode)
NEVER = 4294967295  # LastRx of a source that never answered
UNSYNCHRONISED = "Not synchronised"
MODES = {"^": "server", "=": "peer", "#": "refclock"}
STATES = {
    "*": "selected",
    "+": "combined",
    "-": "not combined",
    "x": "falseticker",
    "~": "too variable",
    "?": "unusable",
}
TRACKING_FIELDS = 14
SOURCES_FIELDS = 10
SOURCESTATS_FIELDS = 8


class ChronycParseError(ValueError):
    """chronyc printed something that is not the report we asked for."""


@dataclass(frozen=True)
class Tracking:
    ref_id: str
    reference: str  # name or address of the source in use; "" for the local reference
    stratum: int
    ref_time: float  # epoch seconds of the last update
    correction: float  # NTP time minus system time
    last_offset: float
    rms_offset: float
    frequency_ppm: float
    residual_ppm: float
    skew_ppm: float
    root_delay: float
    root_dispersion: float
    update_interval: float
    leap: str

    @property
    def synchronised(self) -> bool:
        return self.leap != UNSYNCHRONISED and self.stratum > 0

    @property
    def local(self) -> bool:
        """Serving from the local reference: no upstream in use."""
        return self.ref_id.upper() == LOCAL_REFID


@dataclass(frozen=True)
class Source:
    mode: str
    state: str
    address: str
    stratum: int
    poll: int
    reach: int
    last_rx: int | None  # seconds since the last good sample; None = never
    offset: float  # of the last sample, adjusted for slews since
    measured_offset: float
    error: float

    @property
    def reach_octal(self) -> str:
        return f"{self.reach:o}"

    @property
    def answered(self) -> int:
        """How many of the last 8 requests were answered."""
        return bin(self.reach & 0xFF).count("1")


@dataclass(frozen=True)
class SourceStats:
    address: str
    samples: int
    runs: int
    span: int
    frequency_ppm: float
    skew_ppm: float
    offset: float
    std_dev: float


def _rows(text: str, width: int, report: str) -> list[list[str]]:
    rows = [row for row in csv.reader(text.splitlines()) if row]
    for row in rows:
        if len(row) != width:
            raise ChronycParseError(
                f"chronyc {report}: expected {width} comma-separated fields, got {len(row)}: "
                f"{','.join(row)[:120]!r}"
            )
    return rows


def _number(text: str, what: str, report: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ChronycParseError(f"chronyc {report}: {what} {text!r} is not a number") from None


def _integer(text: str, what: str, report: str, base: int = 10) -> int:
    try:
        return int(text, base)
    except ValueError:
        raise ChronycParseError(
            f"chronyc {report}: {what} {text!r} is not a whole number"
        ) from None


def parse_tracking(text: str) -> Tracking:
    rows = _rows(text, TRACKING_FIELDS, "tracking")
    if len(rows) != 1:
        raise ChronycParseError(f"chronyc tracking: expected one line, got {len(rows)}")
    row = rows[0]

    def num(index: int, what: str) -> float:
        return _number(row[index], what, "tracking")

    return Tracking(
        ref_id=row[0],
        reference=row[1],
        stratum=_integer(row[2], "stratum", "tracking"),
        ref_time=num(3, "reference time"),
        correction=num(4, "system time"),
        last_offset=num(5, "last offset"),
        rms_offset=num(6, "RMS offset"),
        frequency_ppm=num(7, "frequency"),
        residual_ppm=num(8, "residual frequency"),
        skew_ppm=num(9, "skew"),
        root_delay=num(10, "root delay"),
        root_dispersion=num(11, "root dispersion"),
        update_interval=num(12, "update interval"),
        leap=row[13],
    )


def parse_sources(text: str) -> list[Source]:
    return [_source(row) for row in _rows(text, SOURCES_FIELDS, "sources")]


def _source(row: Sequence[str]) -> Source:
    report = "sources"
    last_rx = _integer(row[6], "LastRx", report)
    return Source(
        mode=MODES.get(row[0], row[0]),
        state=STATES.get(row[1], row[1]),
        address=row[2],
        stratum=_integer(row[3], "stratum", report),
        poll=_integer(row[4], "poll", report),
        reach=_integer(row[5], "reach", report, base=8),
        last_rx=None if last_rx == NEVER else last_rx,
        offset=_number(row[7], "offset", report),
        measured_offset=_number(row[8], "measured offset", report),
        error=_number(row[9], "error", report),
    )


def parse_sourcestats(text: str) -> list[SourceStats]:
    report = "sourcestats"
    return [
        SourceStats(
            address=row[0],
            samples=_integer(row[1], "NP", report),
            runs=_integer(row[2], "NR", report),
            span=_integer(row[3], "span", report),
            frequency_ppm=_number(row[4], "frequency", report),
            skew_ppm=_number(row[5], "frequency skew", report),
            offset=_number(row[6], "offset", report),
            std_dev=_number(row[7], "standard deviation", report),
        )
        for row in _rows(text, SOURCESTATS_FIELDS, report)
    ]


def is_orphan(tracking: Tracking, orphan_stratum: int | None) -> bool:
    """Serving without upstream: the local reference is in use (or, with it hidden, the
    stratum is the policy's orphan stratum)."""
    if tracking.local:
        return True
    return orphan_stratum is not None and tracking.stratum == orphan_stratum
