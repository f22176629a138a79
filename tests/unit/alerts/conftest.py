"""Shared pieces for the alert tests: a fake clock, a sample alert, a local TLS PKI."""

from __future__ import annotations

import datetime
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from gateway.alerts import attack
from gateway.alerts.record import (
    Alert,
    Endpoint,
    Evidence,
    Observer,
    Rule,
    Severity,
    Trigger,
    flow_network,
)
from gateway.lab.collector import CollectorPaths, write_pki

T0 = datetime.datetime(2025, 3, 1, 12, 0, 0, 250000, tzinfo=datetime.UTC)
OBSERVER = Observer(site="lab-plant", appliance="gw", version="0.1.0", mode="protecting")
SCAN = Rule("PG-SCAN-VERTICAL", "Vertical port scan", "2")
HUB = Endpoint("198.18.10.11", 40123, zone="hubs", role="hub", mac="02:00:5E:10:00:0B")
GW = Endpoint("198.18.10.1", 22, zone="self", role="appliance")


class FakeClock:
    def __init__(self, start: datetime.datetime = T0) -> None:
        self.now = start

    def __call__(self) -> datetime.datetime:
        return self.now

    def advance(self, seconds: float) -> datetime.datetime:
        self.now += datetime.timedelta(seconds=seconds)
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def sample_alert(**changes: Any) -> Alert:
    alert = Alert(
        id="01956a3c-0000-7000-8000-000000000001",
        rule=SCAN,
        severity=Severity.HIGH,
        status="new",
        summary="hub1 probed 120 ports on the appliance",
        first_seen=T0,
        last_seen=T0 + datetime.timedelta(seconds=9, microseconds=500000),
        count=120,
        observer=OBSERVER,
        revision=0,
        emitted=T0 + datetime.timedelta(seconds=10),
        technique=attack.REMOTE_SYSTEM_DISCOVERY,
        source=HUB,
        destination=GW,
        network=flow_network(HUB, GW, "tcp", "ssh", bytes=7200, packets=120),
        action="denied",
        evidence=Evidence(threshold=100, window_s=10, observed=120, baseline=0.5),
        key="198.18.10.11",
        labels={"policy_rule": "default-deny"},
    )
    return replace(alert, **changes)


def trigger(key: str = "198.18.10.11", ts: datetime.datetime = T0, **changes: Any) -> Trigger:
    base = Trigger(
        rule=SCAN,
        key=key,
        severity=Severity.MEDIUM,
        summary=f"{key} probed ports",
        ts=ts,
        technique=attack.REMOTE_SYSTEM_DISCOVERY,
        source=HUB,
        destination=GW,
        action="denied",
        evidence=Evidence(threshold=100, window_s=10, observed=101),
    )
    return replace(base, **changes)


@dataclass(frozen=True)
class Pki:
    paths: CollectorPaths

    @property
    def ca(self) -> Path:
        return self.paths.ca_cert


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A CA with a server certificate for 127.0.0.1/localhost and a client certificate."""
    paths = CollectorPaths(tmp_path_factory.mktemp("pki"))
    write_pki(paths, server_names=["localhost", "127.0.0.1"])
    return Pki(paths)
