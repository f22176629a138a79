"""NTP relay: how much of a hub's burst the relay answers, and how close a hub's reading is.

The lab comes up with policies/lab.yaml (plantgated runs the relay in gw, the internet's
chronyd runs on 198.19.0.123; every chronyd with -x, the clock is never touched). Then:

- **Burst**: one hub sends `BURST` NTP requests to the relay as fast as it can and counts
  the answers that arrive within a second and a half. Each repetition uses a fresh hub, so
  every burst meets a full rate-limit bucket. Side by side, the same burst from the plant
  to the internet's chronyd, which has no rate limit: what chronyd answers unhindered.
- **Offset**: `OFFSET_QUERIES` ntplib queries, spread round-robin over other hubs (five per
  hub, inside the relay's burst allowance, so none is rate-limited), 50 ms apart. In the
  lab every namespace shares one kernel clock, so the offset a hub reads is the error the
  relay serves plus the measurement's own asymmetry.
"""

from __future__ import annotations

import math
import os
import select
import socket
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ntplib

from gateway.lab import lab, topology
from gateway.lab.netns import in_netns, socket_in_netns
from gateway.ntp.chronyc import parse_tracking
from gateway.ntp.chronyd import ChronyError, chronyc
from gateway.ntp.config import ChronyPaths

BURST = 200
OFFSET_QUERIES = 100
PER_HUB = 5
SPACING = 0.05
ANSWER_WAIT = 1.5
NTP_REQUEST = bytes([0x23]) + bytes(39)


@dataclass(frozen=True)
class Burst:
    """One burst: requests sent, answers received, and when."""

    sent: int
    answered: int
    send_seconds: float  # first to last send
    answer_seconds: float  # first send to last answer (0 when none came)
    largest_answer: int  # bytes; the request is 48

    @property
    def answered_per_second(self) -> float:
        return self.answered / self.answer_seconds if self.answer_seconds > 0 else 0.0

    @property
    def limited_share(self) -> float:
        return 1 - self.answered / self.sent

    def to_dict(self) -> dict[str, Any]:
        return {
            "sent": self.sent,
            "answered": self.answered,
            "send_seconds": self.send_seconds,
            "answer_seconds": self.answer_seconds,
            "answered_per_second": self.answered_per_second,
            "limited_share": self.limited_share,
            "largest_answer_bytes": self.largest_answer,
        }


@dataclass(frozen=True)
class NtpRun:
    relay: list[Burst]
    unlimited: list[Burst]
    offsets: list[float]
    delays: list[float]
    failed_queries: int

    def offset_summary(self) -> dict[str, float]:
        magnitudes = [abs(v) for v in self.offsets]
        return {
            "median_s": statistics.median(self.offsets),
            "median_abs_s": statistics.median(magnitudes),
            "p99_abs_s": percentile(magnitudes, 0.99),
            "max_abs_s": max(magnitudes),
            "median_delay_s": statistics.median(self.delays),
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "burst_size": BURST,
            "relay_bursts": [b.to_dict() for b in self.relay],
            "unlimited_bursts": [b.to_dict() for b in self.unlimited],
            "offset_queries": len(self.offsets),
            "failed_queries": self.failed_queries,
            "offset": self.offset_summary() if self.offsets else None,
        }


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (pure)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def burst(namespace: str, address: str, count: int = BURST, source: str | None = None) -> Burst:
    """`count` requests from `namespace` as fast as possible, then collect the answers."""
    sock = socket_in_netns(namespace, socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        if source:
            sock.bind((source, 0))
        sock.connect((address, 123))
        stamps = [os.urandom(8) for _ in range(count)]
        started = time.perf_counter()
        for stamp in stamps:
            sock.send(NTP_REQUEST + stamp)
        sent_at = time.perf_counter()
        wanted, sizes, last = set(stamps), [], started
        deadline = sent_at + ANSWER_WAIT
        while (left := deadline - time.perf_counter()) > 0:
            ready, _, _ = select.select([sock], [], [], left)
            if not ready:
                break
            data = sock.recv(4096)
            if data[24:32] in wanted:
                sizes.append(len(data))
                last = time.perf_counter()
    return Burst(count, len(sizes), sent_at - started, last - started, max(sizes, default=0))


def offsets(prefix: str, hubs: Sequence[int]) -> tuple[list[float], list[float], int]:
    """ntplib readings of the relay from `hubs`, round-robin, PER_HUB each."""
    client = ntplib.NTPClient()
    found, delays, failed = [], [], 0
    for _ in range(PER_HUB):
        for index in hubs:
            namespace = topology.namespace_name(prefix, topology.hub_name(index))
            try:
                stats = in_netns(namespace, client.request, topology.GW_LAN, 4, "ntp", 1.0)
            except (ntplib.NTPException, OSError):
                failed += 1
                continue
            found.append(float(stats.offset))
            delays.append(float(stats.delay))
            time.sleep(SPACING)
    return found, delays, failed


def _wait_synced(gw_state: Path, timeout: float = 30.0) -> None:
    socket_path = ChronyPaths.under(gw_state).socket
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if parse_tracking(chronyc(socket_path, "tracking")).stratum == 2:
                return
        except (ChronyError, ValueError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the relay did not synchronise within {timeout:.0f} s")


def run(
    workdir: Path,
    reps: int,
    prefix: str,
    repo: Path,
    progress: Callable[[str], None],
) -> NtpRun:
    reps = max(1, min(reps, 5))
    offset_hubs = list(range(reps + 1, reps + 1 + OFFSET_QUERIES // PER_HUB))
    hubs = offset_hubs[-1]
    progress(f"ntp: lab with {hubs} hubs, plantgated and the relay")
    with tempfile.TemporaryDirectory(prefix="lab-", dir=workdir) as root:
        try:
            lab.up(prefix, hubs=hubs, policy=repo / "policies" / "lab.yaml", root=Path(root))
            _wait_synced(lab.lab_paths(prefix, Path(root)).gw_state)
            relay, unlimited = [], []
            for turn in range(reps):
                progress(f"ntp: burst {turn + 1} of {reps}")
                hub = topology.namespace_name(prefix, topology.hub_name(turn + 1))
                relay.append(burst(hub, topology.GW_LAN))
                plant = topology.namespace_name(prefix, "plant")
                unlimited.append(burst(plant, topology.NTP_ADDR, source=topology.PLANT_WORKSTATION))
            progress(f"ntp: {len(offset_hubs) * PER_HUB} spaced queries for the offset")
            found, delays, failed = offsets(prefix, offset_hubs)
        finally:
            lab.down(prefix, root=Path(root))
    return NtpRun(relay, unlimited, found, delays, failed)
