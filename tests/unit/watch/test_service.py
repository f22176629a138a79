"""The watcher service's wiring without a kernel: a new policy revision rebuilds the
detectors and keeps the baseline; traffic from the appliance to itself is not shown to the
detectors; the status report says what runs."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.alerts.record import Observer, Trigger
from gateway.events import Bus
from gateway.policy.detection import Detection
from gateway.policy.model import Policy
from gateway.watch import service as service_mod
from gateway.watch.baseline import Baseline, Learned
from gateway.watch.detectors.base import ArpEvent
from gateway.watch.detectors.scan import VerticalScanDetector, VerticalScanSettings
from gateway.watch.service import WatchService, internal, nflog_settings
from gateway.watch.sources.packets import Interfaces
from gateway.watch.status import read_status
from tests.unit.watch.netkit import _LAB, GW_LAN, GW_WAN, HUB1, T0, flow, packet, udp


class Pipeline:
    """What the service uses of the alert pipeline."""

    def __init__(self) -> None:
        self.observer = Observer("lab-plant", "gw", "0", mode="learning")
        self.submitted: list[Trigger] = []
        self.lost: list[tuple[str, int]] = []

    def submit(self, trigger: Trigger) -> bool:
        self.submitted.append(trigger)
        return True

    def count_event(self, source: str, n: int = 1) -> None:
        pass

    def report_lost(self, source: str, count: int) -> None:
        self.lost.append((source, count))

    def set_observer(self, observer: Observer) -> None:
        self.observer = observer


class Conntrack:
    resync_due = False

    def lost(self) -> int:
        return 0


def with_detection(**settings: Any) -> Policy:
    return _LAB.policy.model_copy(update={"detection": Detection(**settings)})


def service(tmp_path: Path, current: list[Policy]) -> tuple[WatchService, Pipeline]:
    pipeline = Pipeline()
    watch = WatchService(tmp_path, Bus(), pipeline, policy=lambda: current[0])
    return watch, pipeline


def vertical(watch: WatchService) -> VerticalScanDetector:
    assert watch.engine is not None
    found = [d for d in watch.engine.detectors if isinstance(d, VerticalScanDetector)]
    assert len(found) == 1
    return found[0]


def test_a_new_policy_revision_rebuilds_the_detectors_and_keeps_the_baseline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def fill(_netns: str | None) -> tuple[int, int]:
        return 10, 1000

    monkeypatch.setattr(service_mod, "table_fill", fill)
    monkeypatch.setattr(service_mod, "UPKEEP_S", 0.01)
    first = with_detection(scan_vertical=VerticalScanSettings(threshold=20))
    current = [first]
    watch, pipeline = service(tmp_path, current)
    baseline = Baseline(started=T0)
    baseline.learn_pair("tcp 198.18.10.11 > 198.18.10.1:443", T0)
    watch.learned = Learned(baseline, "learning", 3600.0)
    engine = watch._build(first)
    engine.offer("conntrack", flow(HUB1, GW_LAN, 443))
    assert vertical(watch).settings.threshold == 20

    async def scenario() -> None:
        stop = asyncio.Event()
        upkeep = asyncio.create_task(watch._upkeep(stop, first, {}, Conntrack(), Interfaces()))
        await asyncio.sleep(0.05)
        assert watch.engine is engine  # the same revision: nothing rebuilt
        current[0] = with_detection(mode="protecting", scan_vertical={"threshold": 5})
        for _ in range(200):
            if watch.engine is not engine:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(upkeep, 5)

    asyncio.run(scenario())
    rebuilt = watch.engine
    assert rebuilt is not None and rebuilt is not engine
    assert vertical(watch).settings.threshold == 5  # the new revision's settings
    assert watch.learned is not None and watch.learned.baseline is baseline  # kept
    assert baseline.has_pair("tcp 198.18.10.11 > 198.18.10.1:443")
    assert watch.learned.configured == "protecting"
    assert pipeline.observer.mode == "protecting"  # alerts say so from now on
    assert rebuilt.stats is engine.stats and rebuilt.stats.events["conntrack"] == 1
    assert rebuilt.site.zone_of(HUB1) == "hubs"


def test_a_revision_that_moves_the_nflog_groups_ends_the_run_to_reopen_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sockets are bound to the old groups: upkeep stops the run, and plantgated's
    supervisor starts the watcher again on the new groups."""

    async def fill(_netns: str | None) -> tuple[int, int]:
        return 10, 1000

    monkeypatch.setattr(service_mod, "table_fill", fill)
    monkeypatch.setattr(service_mod, "UPKEEP_S", 0.01)
    first = with_detection()
    current = [first]
    watch, _ = service(tmp_path, current)
    watch.learned = Learned(Baseline(started=T0), "learning", 3600.0)
    watch._build(first)
    moved = first.model_copy(
        update={"defaults": first.defaults.model_copy(update={"watch_group": 7})}
    )
    assert nflog_settings(moved) != nflog_settings(first)

    async def scenario() -> bool:
        stop = asyncio.Event()
        upkeep = asyncio.create_task(watch._upkeep(stop, first, {}, Conntrack(), Interfaces()))
        await asyncio.sleep(0.05)
        assert not upkeep.done()  # the same revision: it keeps going
        current[0] = moved
        await asyncio.wait_for(upkeep, 5)
        return stop.is_set()

    assert asyncio.run(scenario())


def test_traffic_from_the_appliance_to_itself_is_internal() -> None:
    own = frozenset({GW_LAN, GW_WAN, "127.0.0.1", "::1"})
    assert internal(flow(GW_LAN, GW_LAN, 123, proto="udp"), own)  # the NTP monitor's check
    assert internal(flow(GW_WAN, GW_LAN, 443), own)
    assert internal(flow("127.0.0.1", "127.0.0.53", 53, proto="udp"), frozenset())
    assert internal(dataclasses.replace(flow(GW_LAN, GW_LAN, 1), src="::1", dst="::1"), own)
    assert internal(packet(udp(GW_LAN, GW_LAN, 40000, 123), "ntp"), own)
    assert not internal(flow(HUB1, GW_LAN, 443), own)
    assert not internal(flow(GW_LAN, HUB1, 9100), own)
    assert not internal(packet(udp(GW_WAN, "198.19.0.123", 40000, 123), "ntp"), own)
    arp = ArpEvent(T0, "lan0", "request", "02:00:00:00:00:01", GW_LAN, GW_LAN)
    assert not internal(arp, own)  # ARP is judged by the asset rules, whoever sends it


def test_the_status_report_says_what_runs(tmp_path: Path) -> None:
    current = [with_detection()]
    watch, pipeline = service(tmp_path, current)
    watch._status("waiting")
    assert read_status(tmp_path) is not None
    assert read_status(tmp_path)["state"] == "waiting"
    watch.learned = Learned(Baseline(started=time.time()), "learning", 3600.0)
    engine = watch._build(current[0])
    watch._groups = {"nflog-drop": 1, "nflog-watch": 2}
    engine.offer("nflog-drop", flow(HUB1, GW_LAN, 22))
    watch._report_lost("nflog-watch", 3)
    watch._status("running")
    report = read_status(tmp_path)
    assert report is not None
    assert report["state"] == "running" and report["mode"] == "learning"
    assert len(report["detectors"]) == 14 and report["nflog_groups"]["nflog-watch"] == 2
    assert report["events"] == {"nflog-drop": 1} and report["queue"] == 1
    assert report["lost"] == {"nflog-watch": 3}
    assert pipeline.lost == [("nflog-watch", 3)]  # and the pipeline raised it as an alert
    watch._stopped()
    assert read_status(tmp_path)["state"] == "stopped"
    assert watch.engine is None
