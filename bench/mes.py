"""MES access: what one PIN check costs, how many guesses the limits allow, and how the TLS
server holds up under 50 stations.

- **PIN verification**: median of 20 `verify` calls with the shipped argon2id parameters
  (the pepper's HMAC included), i.e. the floor of every login and PIN signature.
- **Guesses per minute**: for one badge and for one station, from the configured limits,
  checked by a fake-clock simulation that tries every 100 ms for ten minutes (one badge also
  meets the lockout: 5 wrong PINs in all until a lead unlocks it).
- **50 stations over TLS**: the MES server (`mes.server.prepare`: our SSLContext, uvicorn,
  one worker) in its own process on loopback; 50 simulated stations each sign in with badge
  and PIN, then call as fast as they can for `LOAD_SECONDS` over HTTPS (httpx, keep-alive).
  Until the application's action-recording route exists this measures the authenticated
  request path every action goes through (`GET /api/auth/session`: cookie -> session row ->
  person), and the table says so. Each station has its own address-limit budget raised for
  the run, since all 50 come from 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import ssl
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.table import Table

from bench.stats import Summary, summarize
from mes.auth.hashing import DEFAULT_PARAMS, PepperedHasher
from mes.auth.lockout import MAX_FAILURES
from mes.auth.ratelimit import Limit, LoginLimiter, LoginLimits, guesses_per_minute

STATIONS = 50
LOAD_SECONDS = 10.0
PIN = "839201"
SIM_MINUTES = 10
PATH = "/api/auth/session"


@dataclass(frozen=True)
class LoadResult:
    what: str
    stations: int
    seconds: float
    requests: int
    errors: int
    latencies: list[float]

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def quantile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass(frozen=True)
class MesRun:
    params: str
    pin_verify: Summary
    badge_config: int
    station_config: int
    badge_simulated: float
    station_simulated: float
    load: LoadResult | None

    def to_dict(self) -> dict[str, Any]:
        load = self.load
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
            "load": None
            if load is None
            else {
                "what": load.what,
                "stations": load.stations,
                "seconds": load.seconds,
                "requests": load.requests,
                "errors": load.errors,
                "per_second": load.per_second,
                "p50_s": load.quantile(0.5),
                "p99_s": load.quantile(0.99),
            },
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


async def _station(
    index: int, port: int, context: ssl.SSLContext, tokens: list[str], window: Window,
    latencies: list[float], errors: list[int],
) -> int:  # fmt: skip
    base = f"https://127.0.0.1:{port}"
    done = 0
    async with httpx.AsyncClient(verify=context, base_url=base, timeout=30) as client:
        login = await client.post(
            "/api/auth/operator/login",
            json={"station": f"ST-{index:02d}", "badge": tokens[index], "pin": PIN},
        )
        await window.signed_in(login.status_code == 200)
        if login.status_code != 200:
            errors.append(login.status_code)
            return 0
        until = await window.opened()
        while time.perf_counter() < until:
            start = time.perf_counter()
            response = await client.get(PATH)
            latencies.append(time.perf_counter() - start)
            if response.status_code != 200:
                errors.append(response.status_code)
            done += 1
    return done


class Window:
    """The measured window opens when every station has signed in (logins are argon2-bound
    and measured separately), and lasts `seconds`."""

    def __init__(self, stations: int, seconds: float) -> None:
        self._waiting = stations
        self._seconds = seconds
        self._open = asyncio.Event()
        self.start = 0.0

    async def signed_in(self, ok: bool) -> None:
        self._waiting -= 1
        if self._waiting == 0:
            self.start = time.perf_counter()
            self._open.set()

    async def opened(self) -> float:
        await self._open.wait()
        return self.start + self._seconds


async def _drive(port: int, ca: Path, tokens: list[str], seconds: float) -> LoadResult:
    context = ssl.create_default_context(cafile=str(ca))
    latencies: list[float] = []
    errors: list[int] = []
    window = Window(STATIONS, seconds)
    counts = await asyncio.gather(
        *(_station(i, port, context, tokens, window, latencies, errors) for i in range(STATIONS))
    )
    elapsed = time.perf_counter() - window.start
    return LoadResult(
        f"{PATH} (authenticated request path)", STATIONS, elapsed, sum(counts), len(errors),
        latencies,
    )  # fmt: skip


def load_run(seconds: float = LOAD_SECONDS) -> LoadResult:
    from bench.mes_app import seed
    from mes.tls import tls_paths

    with tempfile.TemporaryDirectory(prefix="plantgate-bench-mes-") as tmp:
        tokens = seed(Path(tmp), STATIONS, PIN)
        probe = __import__("socket").create_server(("127.0.0.1", 0))
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
            return asyncio.run(_drive(port, tls_paths(Path(tmp)).ca_cert, tokens, seconds))
        finally:
            proc.terminate()
            proc.join(15)


def _wait_port(port: int, timeout: float = 20.0) -> None:
    import socket

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
    progress(f"mes: {STATIONS} stations over TLS for {load_seconds:g} s")
    load = load_run(load_seconds)
    return MesRun(
        DEFAULT_PARAMS.describe(),
        summarize(samples),
        guesses_per_minute(limits.identity),
        guesses_per_minute(limits.station),
        badge,
        station,
        load,
    )


def table(result: MesRun) -> Table:
    t = Table(title="8. MES access: PIN checks, guess limits, 50 stations over TLS",
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
    load = result.load
    if load is not None:
        t.add_row(f"{load.stations} stations: {load.what}",
                  f"{load.per_second:,.0f} req/s, {load.errors} errors")  # fmt: skip
        p50, p99 = load.quantile(0.5) * 1000, load.quantile(0.99) * 1000
        t.add_row("latency p50 / p99", f"{p50:.1f} / {p99:.1f} ms")
    return t


def bench_limits() -> LoginLimits:
    """The shipped limits, with the per-address one raised: all 50 stations are 127.0.0.1."""
    return LoginLimits(address=Limit(10 * STATIONS, 60.0))
