"""The traffic watcher as plantgated runs it: sources -> engine -> the alert pipeline.

    WatchService(state, bus, pipeline).run(stop)

* **Sources**, all in plantgated's own network namespace: the NFLOG groups the applied
  policy logs to (`defaults.log_group` drops, `defaults.watch_group` samples), conntrack
  flow starts and ends, link state, and the daemon's event bus (which also carries what
  other processes send to `events.sock`). The conntrack table's fill is sampled every
  `TABLE_EVERY_S`. Each source's losses (socket overruns, the kernel's drop counters, a full
  engine queue) go to `pipeline.report_lost`, which raises `PG-HEALTH-EVENTS-LOST`.
* **Policy**: detectors and the site view are built from the current revision's policy
  (its `detection` section, zones, endpoints, support staff) and rebuilt when the revision
  changes; the baseline survives a rebuild (it is on disk and in `Learned`).
* **Baseline**: saved every `SAVE_EVERY_S` when it changed, and on stop; a reset or freeze
  by the CLI (a newer generation on disk) is taken over within a second. The observer's
  mode on every alert follows it (learning/protecting).
* NFLOG groups are configured to flush every 0.1 s (not the kernel's 1 s), so a packet
  reaches a detector within about 0.1 s plus the engine's queue.
* Traffic from the appliance to itself (both ends its own or loopback addresses: the NTP
  monitor asking the relay, a health check of the MES) crosses no wire and is not shown to
  the detectors (`internal`): it is not a conversation of the plant's network, and the
  new-pair rule would report each such check that learning happened not to see.
* **Status**: `<state>/watch/status.json` (gateway/watch/status.py) says `waiting` for a
  policy, `running` once every source is open (rewritten every `STATUS_EVERY_S` with the
  counts), `stopped` at the end; `plantgate lab status` shows it.

The service's state lives in `<state>/watch/`. Nothing here touches the ruleset.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Set
from pathlib import Path
from typing import Any

from gateway.alerts.pipeline import AlertPipeline
from gateway.events import Bus, Event
from gateway.policy.model import Policy
from gateway.watch.baseline import Baseline, BaselineStore, Learned, adopt
from gateway.watch.detectors.base import (
    ComponentEvent,
    FlowEvent,
    PacketEvent,
    TableEvent,
    WatchEvent,
)
from gateway.watch.engine import Engine
from gateway.watch.registry import build_detectors
from gateway.watch.site import GateGrants, PolicySite
from gateway.watch.sources.conntrack import ConntrackReader, netlink_drops, table_fill
from gateway.watch.sources.links import LinkWatch
from gateway.watch.sources.nflog import NflogReader, estimate_lost_packets
from gateway.watch.sources.packets import Interfaces, to_event
from gateway.watch.status import write_status

log = logging.getLogger(__name__)
TABLE_EVERY_S = 5.0
SAVE_EVERY_S = 60.0
STATUS_EVERY_S = 5.0
UPKEEP_S = 1.0
NFLOG_FLUSH_S = 0.1
NFLOG_QTHRESHOLD = 64
LOOPBACK = frozenset({"::1"})


def _own(address: str | None, local: Set[str]) -> bool:
    return address is not None and (
        address in local or address in LOOPBACK or address.startswith("127.")
    )


def internal(event: WatchEvent, local: Set[str]) -> bool:
    """A packet or flow from the appliance to itself: both ends are addresses of its own
    (`local`) or loopback addresses, so only the loopback interface carried it."""
    if isinstance(event, PacketEvent):
        return _own(event.packet.dst, local) and _own(event.packet.src, local)
    if isinstance(event, FlowEvent):
        return _own(event.dst, local) and _own(event.src, local)
    return False


def current_policy(state: Path) -> Callable[[], Policy | None]:
    """The current revision's policy (with the VPN override), or None before any apply."""
    from gateway.vpn.gateservice import PolicyReader
    from gateway.vpn.targets import GateError

    reader = PolicyReader(state)

    def read() -> Policy | None:
        try:
            return reader()
        except GateError:
            return None

    return read


def nflog_settings(policy: Policy) -> tuple[tuple[tuple[str, int], ...], int]:
    """What the NFLOG readers are opened with: (source, group) pairs and the copy size.
    A revision that changes them needs the sockets opened again."""
    defaults = policy.defaults
    groups = (("nflog-drop", defaults.log_group), ("nflog-watch", defaults.watch_group))
    return groups, max(defaults.log_snaplen, defaults.watch_snaplen, 128)


class WatchService:
    """One watcher per plantgated; `run` may be called again after it returns or fails."""

    def __init__(
        self,
        state: Path,
        bus: Bus,
        pipeline: AlertPipeline,
        *,
        policy: Callable[[], Policy | None] | None = None,
        netns: str | None = None,
    ) -> None:
        self.state = state
        self.pipeline = pipeline
        self.policy = policy or current_policy(state)
        self.netns = netns
        self.store = BaselineStore(state)
        self.grants = GateGrants(state)
        self.engine: Engine | None = None
        self.learned: Learned | None = None
        self._stamp: int | None = None
        self._local: list[str] = []
        self._own: frozenset[str] = frozenset()
        self._groups: dict[str, int] = {}  # NFLOG source -> group
        self._lost: dict[str, int] = {}  # events lost by source, since this process started
        self._since = time.time()
        bus.subscribe(self._on_bus)  # once: run() may be restarted by the supervisor

    # -- the bus --

    def _on_bus(self, event: Event) -> None:
        if event.kind.startswith("gate."):
            self.grants.invalidate()
        engine = self.engine
        if engine is not None:
            engine.offer("bus", ComponentEvent(event.ts.timestamp(), event))

    # -- running --

    async def run(self, stop: asyncio.Event) -> None:
        self._status("waiting")
        policy = await self._wait_for_policy(stop)
        if policy is None:
            return
        with contextlib.suppress(OSError):
            _enable_accounting(self.netns)
        baseline = self.store.load()
        self._stamp = self.store.stamp()
        detection = policy.detection
        self.learned = Learned(baseline, detection.mode, detection.learning_s)
        loop = asyncio.get_running_loop()
        interfaces = Interfaces()
        tasks: list[asyncio.Task[None]] = []
        # Whatever fails on the way, every socket opened is closed (a leaked NFLOG socket
        # would keep its group, and the supervisor's next run could not bind it).
        with contextlib.ExitStack() as opened:
            opened.callback(self._stopped)
            engine = self._build(policy)
            readers = self._open_nflog(policy)
            for reader in readers.values():
                opened.callback(reader.close)
            conntrack = ConntrackReader(netns=self.netns)
            opened.callback(conntrack.close)
            for source, reader in readers.items():
                loop.add_reader(reader.fileno(), self._read_nflog, source, reader, interfaces)
                opened.callback(loop.remove_reader, reader.fileno())
                self._read_nflog(source, reader, interfaces)  # what came while binding
            loop.add_reader(conntrack.fileno(), self._read_conntrack, conntrack)
            opened.callback(loop.remove_reader, conntrack.fileno())
            links = LinkWatch(self._offer_link, self._set_local, time.time, netns=self.netns)
            self._groups = {source: reader.group for source, reader in readers.items()}
            tasks += [
                asyncio.create_task(self._engine_loop(stop)),
                asyncio.create_task(links.run(stop)),
                asyncio.create_task(self._upkeep(stop, policy, readers, conntrack, interfaces)),
            ]
            self._status("running")
            log.info(
                "traffic watcher running: %d detectors, mode %s",
                len(engine.detectors),
                self.learned.mode(time.time()),
            )
            try:
                await stop.wait()
            finally:
                stop.set()  # the tasks end with it (also when this task is cancelled)
                await asyncio.gather(*tasks, return_exceptions=True)

    def _report_lost(self, source: str, count: int) -> None:
        self._lost[source] = self._lost.get(source, 0) + count
        self.pipeline.report_lost(source, count)

    def report(self, state: str, now: float) -> dict[str, Any]:
        """The status report (gateway/watch/status.py) as of `now`."""
        engine, learned = self.engine, self.learned
        lost = dict(self._lost)
        report: dict[str, Any] = {
            "state": state,
            "pid": os.getpid(),
            "since": self._since,
            "updated": now,
            "mode": learned.mode(now) if learned is not None else None,
            "nflog_groups": dict(self._groups),
            "detectors": [],
            "events": {},
            "lost": lost,
            "queue": 0,
            "triggers": 0,
            "failures": {},
        }
        if engine is not None:
            stats = engine.stats
            for source, dropped in stats.dropped.items():
                key = f"{source} (watcher queue full)"
                lost[key] = lost.get(key, 0) + dropped
            report.update(
                detectors=[d.name for d in engine.detectors],
                events=dict(stats.events),
                queue=engine.depth(),
                triggers=stats.triggers,
                failures=dict(stats.failures),
            )
        return report

    def _status(self, state: str) -> None:
        try:
            write_status(self.state, self.report(state, time.time()))
        except OSError as exc:
            log.warning("cannot write the watcher's status report: %s", exc)

    def _stopped(self) -> None:
        """The last of `run`: the baseline saved, the engine gone, the report says so."""
        self._save()
        self._status("stopped")
        self.engine = None

    async def _wait_for_policy(self, stop: asyncio.Event) -> Policy | None:
        while not stop.is_set():
            policy = self.policy()
            if policy is not None:
                return policy
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 2.0)
        return None

    def _set_local(self, addresses: list[str]) -> None:
        self._local = addresses
        self._own = frozenset(addresses)
        engine = self.engine
        if engine is not None and isinstance(engine.site, PolicySite):
            engine.site.set_local(addresses)

    def _build(self, policy: Policy) -> Engine:
        assert self.learned is not None
        site = PolicySite(policy, self._local, grants=self.grants)
        detection = policy.detection
        self.learned.configured = detection.mode
        self.learned.learning_s = detection.learning_s
        previous = self.engine
        engine = Engine(
            build_detectors(detection, self.learned),
            site,
            self.pipeline.submit,
            count=self.pipeline.count_event,
            lost=self.pipeline.report_lost,
        )
        if previous is not None:
            engine.carry_over(previous)  # counts stay continuous across a policy change
        self.engine = engine
        self._set_mode()
        return engine

    async def _engine_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():  # the engine is swapped on a policy change
            engine = self.engine
            if engine is None:
                return
            inner = asyncio.Event()
            runner = asyncio.create_task(engine.run(inner))
            while not stop.is_set() and self.engine is engine:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 0.5)
            inner.set()
            await runner

    def _open_nflog(self, policy: Policy) -> dict[str, NflogReader]:
        groups, snaplen = nflog_settings(policy)
        readers: dict[str, NflogReader] = {}
        try:
            for source, group in dict(groups).items():
                if group in (r.group for r in readers.values()):
                    continue
                readers[source] = NflogReader(
                    group,
                    snaplen=snaplen,
                    rcvbuf=16 * 1024 * 1024,
                    netns=self.netns,
                    qthreshold=NFLOG_QTHRESHOLD,
                    flush_timeout=NFLOG_FLUSH_S,
                )
        except BaseException:
            for reader in readers.values():
                reader.close()
            raise
        return readers

    def _read_nflog(self, source: str, reader: NflogReader, interfaces: Interfaces) -> None:
        engine = self.engine
        now = time.time()
        own = self._own
        for packet in reader.read(0):
            event = to_event(packet, interfaces.name, now)
            if event is not None and engine is not None and not internal(event, own):
                engine.offer(source, event)

    def _read_conntrack(self, reader: ConntrackReader) -> None:
        engine = self.engine
        own = self._own
        for event in reader.read(time.time()):
            if engine is not None and not internal(event, own):
                engine.offer("conntrack", event)

    def _offer_link(self, event: WatchEvent) -> None:
        if self.engine is not None:
            self.engine.offer("links", event)

    # -- upkeep: losses, table fill, policy changes, the baseline --

    async def _upkeep(
        self,
        stop: asyncio.Event,
        policy: Policy,
        readers: dict[str, NflogReader],
        conntrack: ConntrackReader,
        interfaces: Interfaces,
    ) -> None:
        seen_overruns = {source: 0 for source in readers}
        seen_drops: dict[str, int] = {}
        last_table = last_save = last_status = 0.0
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), UPKEEP_S)
            now = time.time()
            for source, reader in readers.items():
                lost = reader.stats.overruns - seen_overruns[source]
                seen_overruns[source] = reader.stats.overruns
                drops = netlink_drops(reader.fileno())
                if drops is not None:
                    lost = max(lost, drops - seen_drops.get(source, drops))
                    seen_drops[source] = drops
                if lost > 0:  # datagrams: each carried a batch of logged packets
                    self._report_lost(source, estimate_lost_packets(lost, reader.stats))
            lost = conntrack.lost()
            if lost:
                self._report_lost("conntrack", lost)
            if conntrack.resync_due:
                await self._resync(conntrack)
            if now - last_table >= TABLE_EVERY_S:
                last_table = now
                await self._sample_table(now)
            current = self.policy()
            if current is not None and current is not policy:
                if nflog_settings(current) != nflog_settings(policy):
                    # The sockets were bound to the old groups: end this run, and the
                    # daemon's supervisor starts the watcher again on the new ones.
                    log.info("traffic watcher: NFLOG groups or snaplen changed, reopening")
                    stop.set()
                    return
                policy = current
                interfaces.forget()
                self._build(policy)
                log.info("traffic watcher: new policy revision, detectors rebuilt")
            self._take_over_cli_changes()
            self._set_mode()
            if now - last_save >= SAVE_EVERY_S:
                last_save = now
                self._save()
            if now - last_status >= STATUS_EVERY_S:
                last_status = now
                self._status("running")

    async def _resync(self, conntrack: ConntrackReader) -> None:
        try:
            events = await conntrack.resync(time.time())
        except OSError as exc:
            log.warning("conntrack resync failed: %s", exc)
            return
        log.warning("conntrack events overflowed: %d flows recovered from a dump", len(events))
        for event in events:
            if self.engine is not None and not internal(event, self._own):
                self.engine.offer("conntrack", event)

    async def _sample_table(self, now: float) -> None:
        try:
            count, maximum = await table_fill(self.netns)
        except OSError as exc:
            log.debug("conntrack table fill: %s", exc)
            return
        if self.engine is not None and maximum > 0:
            self.engine.offer("table", TableEvent(now, count, maximum))

    def _take_over_cli_changes(self) -> None:
        stamp = self.store.stamp()
        if stamp == self._stamp or self.learned is None:
            return
        self._stamp = stamp
        with self.store.locked():
            stored = self.store.read()
        if stored is not None and stored.generation > self.learned.baseline.generation:
            log.info("baseline %s by the CLI: taken over", stored.last_action)
            self.learned.baseline = adopt(self.learned.baseline, stored)
            self._save()

    def _set_mode(self) -> None:
        if self.learned is None:
            return
        mode = self.learned.mode(time.time())
        if self.pipeline.observer.mode != mode:
            log.info("traffic watcher mode: %s", mode)
            self.pipeline.set_observer(dataclasses.replace(self.pipeline.observer, mode=mode))

    def _save(self) -> None:
        learned = self.learned
        if learned is None or not learned.baseline.dirty:
            return
        try:
            if self.store.save(learned.baseline):
                self._stamp = self.store.stamp()
        except OSError as exc:
            log.error("cannot save the baseline: %s", exc)

    @property
    def baseline(self) -> Baseline | None:
        return self.learned.baseline if self.learned is not None else None


def _enable_accounting(netns: str | None) -> None:
    """Byte and packet counts on conntrack entries, in the watcher's namespace."""
    from gateway.netns import in_netns
    from gateway.vpn.connections import enable_accounting

    if netns is None:
        enable_accounting()
    else:
        in_netns(netns, enable_accounting)
