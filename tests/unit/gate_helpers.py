"""Helpers for gate unit tests: a state directory holding a policy revision, a fake kernel,
a settable clock."""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gateway.events import Event
from gateway.policy.revisions import Revision, RevisionStore
from gateway.vpn.gate import Grant
from gateway.vpn.gateservice import GateService
from tests.unit.conftest import POLICIES

LAB_TEXT = (POLICIES / "lab.yaml").read_text()
T0 = datetime.datetime(2025, 3, 1, 12, 0, tzinfo=datetime.UTC)


def store_policy(state: Path, text: str = LAB_TEXT) -> Revision:
    """Record `text` as the current revision, as `policy apply` would (no kernel)."""
    draft = Revision(
        number=0,
        created=T0.isoformat(),
        user="test",
        message="",
        sha256=hashlib.sha256(text.encode()).hexdigest(),
        file="lab.yaml",
    )
    return RevisionStore(state).add(draft, text, "", None)


@dataclass
class FakeKernel:
    calls: list[tuple[str, dict[Grant, float], list[Grant]]] = field(default_factory=list)
    flows: int = 0
    fail: Exception | None = None

    def sync(self, gate: str, keep: Mapping[Grant, float], drop: Iterable[Grant]) -> int:
        if self.fail is not None:
            raise self.fail
        self.calls.append((gate, dict(keep), list(drop)))
        return self.flows


@dataclass
class Clock:
    now: datetime.datetime = T0

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += datetime.timedelta(**delta)


@dataclass
class Rig:
    state: Path
    kernel: FakeKernel
    clock: Clock
    events: list[Event]
    service: GateService


def rig(state: Path, text: str = LAB_TEXT) -> Rig:
    store_policy(state, text)
    kernel, clock, events = FakeKernel(), Clock(), []
    service = GateService(state, kernel=kernel, publish=events.append, clock=clock)
    return Rig(state, kernel, clock, events, service)
