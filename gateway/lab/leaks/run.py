"""One leak run: the captures and the prober around a lab, and the verdicts on what they saw."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator

from gateway.lab.leaks.capture import Captures
from gateway.lab.leaks.findings import Window, counts_since
from gateway.lab.leaks.prober import Prober
from gateway.lab.leaks.probes import (
    LeakProbe,
    ProbeResult,
    control_probes,
    ipv6_probes,
    site_probes,
    staff_probes,
)
from gateway.lab.leaks.states import LeakLab
from gateway.vpn.leakcheck import Markers, Tally, tally


class LeakRun:
    """Captures and probes around one lab for a whole run; use as a context manager."""

    def __init__(self, lab: LeakLab, *, timeout: float = 0.5, token: str | None = None) -> None:
        self.lab = lab
        self.markers = Markers(token or secrets.token_hex(4))
        self.facts = lab.facts(self.markers)
        self.captures = Captures(lab.paths)
        self.prober = Prober(lab.paths, self.markers, timeout)
        self.started = time.time()
        self.last: Window | None = None

    def __enter__(self) -> LeakRun:
        self.lab.prepare()
        self.prober.__enter__()
        try:
            self.captures.__enter__()
        except BaseException:
            self.prober.__exit__(None, None, None)
            raise
        self.started = time.time()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.captures.close()
        finally:
            self.prober.__exit__(None, None, None)

    def probes(self, *, ipv6: bool = False) -> list[LeakProbe]:
        """One burst: site and staff probes (and IPv6 ones), with the gate as it is."""
        burst = [*site_probes(), *staff_probes(sorted(self.lab.gate))]
        return [*burst, *ipv6_probes()] if ipv6 else burst

    def burst(self, *, ipv6: bool = False, timeout: float | None = None) -> list[ProbeResult]:
        return self.prober.run(self.probes(ipv6=ipv6), timeout)

    def control(self, tunnel: bool = True) -> list[ProbeResult]:
        return self.prober.run(control_probes(tunnel))

    def verdicts(self, start: float, end: float | None = None, settle: float = 0.2) -> Tally:
        """Verdicts on the packets captured between `start` and `end` (default: now, after
        `settle` seconds for the last packets to be read)."""
        if end is None:
            time.sleep(settle)
            end = time.time()
        return tally(self.captures.between(start, end), self.facts, self.lab.off_intervals())

    def everything(self) -> Tally:
        return tally(self.captures.all(), self.facts, self.lab.off_intervals())

    @contextlib.contextmanager
    def window(self, name: str, counters: bool = True) -> Iterator[list[ProbeResult]]:
        """Collects the probe results of a stretch; `self.last` is its `Window` afterwards,
        with (`counters`) the packets each kill-switch rule dropped meanwhile."""
        before = self.lab.kill_switch_counts() if counters else {}
        start = time.time()
        results: list[ProbeResult] = []
        yield results
        time.sleep(0.2)
        end = time.time()
        stopped = counts_since(before, self.lab.kill_switch_counts()) if counters else {}
        verdicts = self.verdicts(start, end)
        self.last = Window(name, start, end, tuple(results), verdicts, stopped)
