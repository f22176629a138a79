"""50 simulated stations building units against the MES over TLS, two ways.

- `api`: the JSON API a station client would call: sign in (`/api/auth/operator/login`),
  then per unit `POST /api/v1/work-orders/{id}/units`, one `POST /api/v1/units/{id}/
  executions` per step, `POST /api/v1/units/{id}/complete`.
- `screens`: the operator station's own forms (`mes.web`): sign in with the badge form, then
  per unit the serial form, one step form per step, the complete button; each post answers
  303 (post/redirect/get), and the redirect is not followed (a browser's GET of the next
  page is not part of recording).

Every step has one action, so one step execution is one action recorded. The window opens
when every station has signed in (argon2 logins are measured apart) and lasts `seconds`;
requests in flight at its end finish and count, and the rate divides by the real elapsed
time. An error is counted with what the server said (`error_samples`: the first few
distinct answers, status and body), so that a failing run says why.
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import httpx

from bench.mes_app import Plan, StepPlan
from mes.auth import csrf, sessions

Mode = Literal["api", "screens"]
LOGIN_TOKEN = re.compile(r'name="login_token" value="([^"]+)"')
UNIT_PATH = re.compile(r"/units/(\d+)$")
UNIT_ID = re.compile(r"/\d+")
PIN = "839201"


@dataclass(frozen=True)
class LoadResult:
    what: str
    stations: int
    seconds: float
    requests: int
    actions: int
    units: int
    errors: int
    latencies: list[float]  # recording one step execution (its one action)
    error_samples: list[str] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        """Actions recorded per second."""
        return self.actions / self.seconds if self.seconds else 0.0

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def quantile(self, q: float) -> float:
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def to_dict(self) -> dict[str, Any]:
        return {
            "what": self.what,
            "stations": self.stations,
            "seconds": self.seconds,
            "actions": self.actions,
            "actions_per_second": self.per_second,
            "requests": self.requests,
            "requests_per_second": self.requests_per_second,
            "units_completed": self.units,
            "errors": self.errors,
            "p50_s": self.quantile(0.5),
            "p99_s": self.quantile(0.99),
            "error_samples": self.error_samples,
        }


MAX_SAMPLES = 5


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    errors: list[int] = field(default_factory=list)
    samples: list[str] = field(default_factory=list)
    requests: int = 0
    actions: int = 0
    units: int = 0

    def error(self, path: str, status: int, said: str) -> None:
        self.errors.append(status)
        sample = f"{status} {UNIT_ID.sub('/{id}', path)}: {said[:200]}"
        if len(self.samples) < MAX_SAMPLES and sample not in self.samples:
            self.samples.append(sample)


class Window:
    """Opens when every station has signed in; closes `seconds` later."""

    def __init__(self, stations: int, seconds: float) -> None:
        self._waiting = stations
        self._seconds = seconds
        self._open = asyncio.Event()
        self.start = 0.0

    async def signed_in(self) -> None:
        self._waiting -= 1
        if self._waiting == 0:
            self.start = time.perf_counter()
            self._open.set()

    async def opened(self) -> float:
        await self._open.wait()
        return self.start + self._seconds


def answer(step: StepPlan, serial: str) -> object:
    return {"scan_serial": serial, "measure": 12.4}.get(step.kind, True)


class Station:
    """One simulated station: `sign_in`, then `build_unit` until the window closes."""

    def __init__(self, client: httpx.AsyncClient, plan: Plan, index: int, tally: Tally):
        self.client, self.plan, self.index, self.tally = client, plan, index, tally
        self.code = f"ST-{index:02d}"
        self.order = plan.work_orders[index]

    async def post(self, path: str, ok: int, **kwargs: Any) -> httpx.Response | None:
        self.tally.requests += 1
        try:
            response = await self.client.post(path, **kwargs)
        except httpx.HTTPError as exc:
            self.tally.error(path, 0, repr(exc))
            return None
        if response.status_code != ok:
            self.tally.error(path, response.status_code, response.text)
            return None
        return response

    async def record(self, path: str, ok: int, **kwargs: Any) -> bool:
        start = time.perf_counter()
        done = await self.post(path, ok, **kwargs)
        self.tally.latencies.append(time.perf_counter() - start)
        if done is not None:
            self.tally.actions += 1
        return done is not None

    async def sign_in(self) -> bool:
        raise NotImplementedError

    async def build_unit(self, serial: str) -> None:
        raise NotImplementedError


class ApiStation(Station):
    async def sign_in(self) -> bool:
        body = {"station": self.code, "badge": self.plan.tokens[self.index], "pin": PIN}
        login = await self.post("/api/auth/operator/login", 200, json=body)
        if login is None:
            return False
        self.client.headers["x-csrf-token"] = login.json()["csrf_token"]
        return True

    async def build_unit(self, serial: str) -> None:
        path = f"/api/v1/work-orders/{self.order}/units"
        started = await self.post(path, 201, json={"serial": serial})
        if started is None:
            return
        unit = started.json()["id"]
        for step in self.plan.steps:
            body = {
                "step_id": step.step_id,
                "answers": [{"action_id": step.action_id, "value": answer(step, serial)}],
            }
            if not await self.record(f"/api/v1/units/{unit}/executions", 201, json=body):
                return
        if await self.post(f"/api/v1/units/{unit}/complete", 200, json={}) is not None:
            self.tally.units += 1


class ScreenStation(Station):
    token = ""

    async def sign_in(self) -> bool:
        self.tally.requests += 1
        path = f"/station/{self.code}"
        try:
            form = await self.client.get(path)
        except httpx.HTTPError as exc:
            self.tally.error(path, 0, repr(exc))
            return False
        found = LOGIN_TOKEN.search(form.text)
        if found is None:
            self.tally.error(path, form.status_code, form.text)
            return False
        data = {"login_token": found.group(1), "badge": self.plan.tokens[self.index], "pin": PIN}
        if await self.post(f"/station/{self.code}/login", 303, data=data) is None:
            return False
        self.token = csrf.token_for(self.client.cookies.get(sessions.COOKIE_NAME) or "")
        return True

    async def build_unit(self, serial: str) -> None:
        path = f"/station/{self.code}/work-orders/{self.order}/units"
        started = await self.post(path, 303, data={"csrf_token": self.token, "serial": serial})
        found = UNIT_PATH.search(started.headers["location"]) if started is not None else None
        if found is None:
            return
        unit = f"/station/{self.code}/units/{found.group(1)}"
        for step in self.plan.steps:
            value = answer(step, serial)
            data = {"csrf_token": self.token, f"a{step.action_id}": "yes" if value is True
                    else str(value)}  # fmt: skip
            if not await self.record(f"{unit}/steps/{step.step_id}", 303, data=data):
                return
        if await self.post(f"{unit}/complete", 303, data={"csrf_token": self.token}):
            self.tally.units += 1


KINDS: dict[Mode, type[Station]] = {"api": ApiStation, "screens": ScreenStation}
WHAT: dict[Mode, str] = {
    "api": "API: POST /api/v1/units/{id}/executions",
    "screens": "station screens: POST /station/{code}/units/{id}/steps/{step}",
}


async def _run_station(
    kind: type[Station], base: str, context: ssl.SSLContext, plan: Plan, index: int,
    window: Window, tally: Tally, first: int,
) -> None:  # fmt: skip
    async with httpx.AsyncClient(verify=context, base_url=base, timeout=30) as client:
        station = kind(client, plan, index, tally)
        ok = await station.sign_in()
        await window.signed_in()
        if not ok:
            return
        until = await window.opened()
        made = first
        while time.perf_counter() < until:
            made += 1
            await station.build_unit(f"S{index:02d}-{made:06d}")


async def drive(
    port: int, ca: Path, plan: Plan, seconds: float, mode: Mode, stations: int, first: int = 0
) -> LoadResult:
    """Run `stations` stations of `mode` for `seconds`; unit serials count on from `first`."""
    context = ssl.create_default_context(cafile=str(ca))
    window = Window(stations, seconds)
    tallies = [Tally() for _ in range(stations)]
    kind = KINDS[mode]
    base = f"https://127.0.0.1:{port}"
    await asyncio.gather(
        *(
            _run_station(kind, base, context, plan, i, window, tallies[i], first)
            for i in range(stations)
        )
    )
    elapsed = time.perf_counter() - window.start
    return LoadResult(
        WHAT[mode],
        stations,
        elapsed,
        requests=sum(t.requests for t in tallies),
        actions=sum(t.actions for t in tallies),
        units=sum(t.units for t in tallies),
        errors=sum(len(t.errors) for t in tallies),
        latencies=[x for t in tallies for x in t.latencies],
        error_samples=list(dict.fromkeys(x for t in tallies for x in t.samples))[:MAX_SAMPLES],
    )
