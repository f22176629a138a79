"""MES access: what one PIN check costs, how many guesses the limits allow, and how the TLS
server holds up under 50 stations.

- **PIN verification**: median of 20 `verify` calls with the shipped argon2id parameters
  (the pepper's HMAC included), i.e. the floor of every login and PIN signature.
- **Guesses per minute**: for one badge and for one station, from the configured limits,
  checked by a fake-clock simulation that tries every 100 ms for ten minutes (one badge also
  meets the lockout: 5 wrong PINs in all until a lead unlocks it).
- **50 stations recording actions over TLS**: the MES server (`mes.server.prepare`: our
  SSLContext, uvicorn, one worker, the real application) in its own process on loopback,
  seeded through the services (`bench.mes_app`): a released three-step process (scan the
  unit's serial against a pattern, measure, confirm) and a work order per station. 50
  simulated stations sign their operators in with badge and PIN (argon2: outside the
  measured window, which opens when all are in), then for `LOAD_SECONDS` build units as
  fast as they can over HTTPS (httpx, keep-alive): start a unit, record its three steps
  (one action each), complete it. Twice, on the same server (`bench.mes_load`): through
  the station screens' forms, then through the JSON API (`POST /api/v1/units/{id}/
  executions`). Reported for each: actions recorded per second, the latency of recording
  one (p50, p99), requests per second in all, units completed, and errors (with the first
  few answers that were errors). The per-address login limit is raised for the run, since
  all 50 stations come from 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.table import Table

from bench.mes_load import PIN, LoadResult, Mode, drive
from bench.stats import Summary, summarize
from mes.auth.hashing import DEFAULT_PARAMS, PepperedHasher
from mes.auth.lockout import MAX_FAILURES
from mes.auth.ratelimit import Limit, LoginLimiter, LoginLimits, guesses_per_minute

STATIONS = 50
LOAD_SECONDS = 10.0
SIM_MINUTES = 10
MODES: tuple[Mode, ...] = ("screens", "api")
SCREENS_FIRST_SERIAL = 500_000  # the two runs share the work orders: serials never meet


@dataclass(frozen=True)
class MesRun:
    params: str
    pin_verify: Summary
    badge_config: int
    station_config: int
    badge_simulated: float
    station_simulated: float
    loads: list[LoadResult]

    def to_dict(self) -> dict[str, Any]:
        return {
            "argon2": self.params,
            "pin_verify_s": self.pin_verify.median,
            "pin_verify_min_max_s": [self.pin_verify.low, self.pin_verify.high],
            "guesses_per_minute": {
                "badge_config": self.badge_config,
                "badge_simulated": self.badge_simulated,
                "badge_before_lockout": MAX_FAILURES,
                "station_config": self.station_config,
                "station_simulated": self.station_simulated,
            },
            "load": {mode: load.to_dict() for mode, load in zip(MODES, self.loads, strict=False)},
        }


# ---------------------------------------------------------------- pure parts


def time_pin_verification(samples: int = 20) -> list[float]:
    hasher = PepperedHasher(b"\x01" * 32, DEFAULT_PARAMS)
    stored = hasher.hash(PIN)
    times: list[float] = []
    for _ in range(samples):
        start = time.perf_counter()
        hasher.verify(stored, PIN)
        times.append(time.perf_counter() - start)
    return times


def simulate(
    limits: LoginLimits, identity: Callable[[int], str], station: Callable[[int], str]
) -> float:
    """Attempts every 100 ms for SIM_MINUTES on a fake clock: allowed attempts per minute."""
    now = [0.0]
    limiter = LoginLimiter(limits, clock=lambda: now[0])
    allowed = 0
    for i in range(SIM_MINUTES * 600):
        now[0] = i * 0.1
        if limiter.attempt(identity(i), station(i), None).allowed:
            allowed += 1
    return allowed / SIM_MINUTES


# ---------------------------------------------------------------- the load run


def _serve(state: str, port: int, ready: Any) -> None:
    """Server process: a database of 50 stations and people, the real backend, TLS."""
    from bench.mes_app import bench_app
    from mes import server
    from mes.config import load_settings

    settings = load_settings(Path(state))
    uv, sockets = server.prepare(
        settings,
        [server.Bind("127.0.0.1", port)],
        ["localhost"],
        app_factory=bench_app,
        access_log=False,
    )
    ready.set()
    uv.run(sockets=sockets)


def load_run(seconds: float = LOAD_SECONDS) -> list[LoadResult]:
    """One server, seeded once; the screens run, then the API run, each `seconds` long."""
    from bench.mes_app import seed
    from mes.tls import tls_paths

    with tempfile.TemporaryDirectory(prefix="plantgate-bench-mes-") as tmp:
        plan = seed(Path(tmp), STATIONS, PIN)
        probe = socket.create_server(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        context = multiprocessing.get_context("spawn")
        ready = context.Event()
        proc = context.Process(target=_serve, args=(tmp, port, ready), daemon=True)
        proc.start()
        try:
            if not ready.wait(60):
                raise RuntimeError("the MES bench server did not start")
            _wait_port(port)
            ca = tls_paths(Path(tmp)).ca_cert
            return [
                asyncio.run(drive(port, ca, plan, seconds, mode, STATIONS,
                                  SCREENS_FIRST_SERIAL if mode == "screens" else 0))
                for mode in MODES
            ]  # fmt: skip
        finally:
            proc.terminate()
            proc.join(15)


def _wait_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)


def run(progress: Callable[[str], None], load_seconds: float = LOAD_SECONDS) -> MesRun:
    progress("mes: argon2id PIN verification, 20 samples")
    samples = time_pin_verification()
    limits = LoginLimits()
    progress("mes: rate limits on a fake clock")
    badge = simulate(limits, lambda i: "badge:one", lambda i: f"ST-{i}")
    station = simulate(limits, lambda i: f"emp:{i}", lambda i: "ST-1")
    progress(f"mes: {STATIONS} stations recording actions over TLS for {load_seconds:g} s")
    loads = load_run(load_seconds)
    return MesRun(
        DEFAULT_PARAMS.describe(),
        summarize(samples),
        guesses_per_minute(limits.identity),
        guesses_per_minute(limits.station),
        badge,
        station,
        loads,
    )


def table(result: MesRun) -> Table:
    t = Table(title="8. MES: PIN checks, guess limits, 50 stations recording actions over TLS",
              title_justify="left")  # fmt: skip
    t.add_column("measure")
    t.add_column("value", justify="right")
    v = result.pin_verify
    t.add_row(f"one PIN verification ({result.params})",
              f"{v.median * 1000:.0f} ms ({v.low * 1000:.0f}–{v.high * 1000:.0f})")  # fmt: skip
    t.add_row("guesses/min for one badge (config; simulated)",
              f"{result.badge_config}; {result.badge_simulated:.1f}")  # fmt: skip
    t.add_row("guesses for one badge before lockout", f"{MAX_FAILURES}")
    t.add_row("guesses/min at one station (config; simulated)",
              f"{result.station_config}; {result.station_simulated:.1f}")  # fmt: skip
    for load in result.loads:
        t.add_row(f"{load.stations} stations, {load.what}: actions/s",
                  f"{load.per_second:,.0f} ({load.actions:,} in {load.seconds:.1f} s)")  # fmt: skip
        p50, p99 = load.quantile(0.5) * 1000, load.quantile(0.99) * 1000
        t.add_row("  latency of recording one action, p50 / p99", f"{p50:.1f} / {p99:.1f} ms")
        t.add_row("  all requests/s; units completed; errors",
                  f"{load.requests_per_second:,.0f}; {load.units:,}; {load.errors}")  # fmt: skip
        for sample in load.error_samples:
            t.add_row("  an error", escape(sample))
    return t


def bench_limits() -> LoginLimits:
    """The shipped limits, with the per-address one raised: all 50 stations are 127.0.0.1."""
    return LoginLimits(address=Limit(10 * STATIONS, 60.0))
