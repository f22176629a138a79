"""The traffic watcher: events a second on one core, loss against rate, packet -> alert
latency, and memory after a flood of a million sources.

* **Replay** (in memory, no namespaces): `REPLAY` logged packets of a realistic mix
  (bench/nflogmix.py: drops, samples of new connections, DNS, NTP, TLS first packets, ARP)
  built as raw NFLOG datagrams, run through the real decoder (`parse_datagram`, `to_event`)
  and the engine with every detector of the registry, for the lab policy's site, in
  *protecting* mode with a baseline learnt from another `REPLAY` packets of the same mix
  (untimed). Events a second are events per CPU second of the thread (one core; other
  processes on the machine do not count against it), wall-clock figures beside them.
  Side by side in each repetition, in rotated order: decoding alone, and scapy dissecting
  the same packets' bytes (`SCAPY` of them), the usual Python alternative.
* **Loss against rate** (namespaces `<prefix>-wgw` and `<prefix>-wsrc`, a veth between):
  plantgated's `WatchService` runs in a thread inside `wgw` as the daemon runs it there
  (NFLOG readers, conntrack, links, the engine, the alert pipeline with its spool), and a
  table logs every SYN arriving on `wan0` to the drop group. A child process in `wsrc`
  sends bursts of `BURST_S` seconds at each rate of `RATES`; per rate: sent, what the
  kernel logged (the rule's counter), what the watcher decoded, what it lost
  (logged - decoded) and what it *reported* lost (`PG-HEALTH-EVENTS-LOST`), the kernel's
  drop counter of the netlink sockets, and the watcher thread's CPU time.
* **Latency** (same namespaces, the lab policy's compiled ruleset in `wgw`): `PROBES` SYNs
  at `PROBE_RATE` a second, each from its own address, each dropped and logged by the
  ruleset's first-drop tier; time from the probe's send to its trigger (the engine hands
  it to the pipeline) and to its alert being durable (spooled and fsynced), p50 and p99.
  The lab policy's `detection.denied.max_new_alerts_per_minute` is raised for this run so
  that every probe opens its own alert (the default, 30, folds a flood of new sources into
  one "many-sources" alert, by design).
* **Memory**: `python -m bench.watchflood` in a child process, under bench/peakrss.py:
  peak RSS after one packet from each of `FLOOD` distinct sources, against the same child
  with no packets at all. The detectors' bounded state is the point.

Goals (issue 7): >= 50,000 events/s, p99 <= 1 s, RSS <= 256 MiB.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from rich.table import Table

from bench import nflogmix as mix
from bench import spaces
from bench.report import spread
from bench.stats import Summary, ratio, rotated, summarize
from gateway.alerts.aggregate import AggregationPolicy
from gateway.alerts.pipeline import AlertPipeline
from gateway.alerts.record import Alert, Observer, Trigger
from gateway.alerts.sinks.spool import CursorStore, Spool
from gateway.events import Bus
from gateway.lab import netns
from gateway.policy.compile import compile_policy
from gateway.policy.load import load_file, load_text
from gateway.policy.model import Policy
from gateway.policy.nft import Nft
from gateway.watch.baseline import Baseline, Learned
from gateway.watch.engine import Engine
from gateway.watch.registry import build_detectors
from gateway.watch.service import WatchService
from gateway.watch.site import PolicySite
from gateway.watch.sources.nflog import parse_datagram
from gateway.watch.sources.packets import Interfaces, to_event

REPLAY = 100_000
QUICK_REPLAY = 30_000
SCAPY = 10_000
MIX_RATE = 50_000.0  # the replayed packets' timestamps advance at this rate
RATES = (5_000, 10_000, 20_000, 40_000, 80_000, 160_000)
BURST_S = 2.0
DRAIN_S = 10.0  # longest wait for the watcher to catch up after a burst
PROBES = 500
PROBE_RATE = 100.0
FLOOD = 1_000_000
GOAL_EVENTS = 50_000
GOAL_P99_S = 1.0
GOAL_RSS_MIB = 256
GW_WAN, SRC_ADDR = "198.18.20.1", "198.18.20.254"
LAUNCHER = Path(__file__).resolve().with_name("peakrss.py")
IPV6_OFF = (
    ("net.ipv6.conf.all.disable_ipv6", "1"),
    ("net.ipv6.conf.default.disable_ipv6", "1"),
    ("net.ipv4.conf.all.rp_filter", "0"),
    ("net.ipv4.conf.default.rp_filter", "0"),
)
LOG_TABLE = """table inet pgwatchbench
delete table inet pgwatchbench
table inet pgwatchbench {
\tchain input {
\t\ttype filter hook input priority filter - 10; policy accept;
\t\tiifname "wan0" tcp flags syn counter log prefix "pg drop input: " group 1 snaplen 128 drop
\t}
}
"""
DROP_LOG_TABLE = "delete table inet pgwatchbench\n"
RAISED_BUDGET = """
detection:
  denied:
    max_new_alerts_per_minute: 100000
"""


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReplayRun:
    events: int
    kinds: dict[str, int]
    full_per_s: Summary  # decode + every detector, per CPU second
    full_wall_per_s: Summary
    decode_per_s: Summary  # parse_datagram + to_event only
    scapy_per_s: Summary  # scapy dissecting the same packets' bytes
    triggers: int  # in one pass
    state: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "kinds": self.kinds,
            "full_events_per_cpu_s": self.full_per_s.to_dict(),
            "full_events_per_wall_s": self.full_wall_per_s.to_dict(),
            "decode_only_per_cpu_s": self.decode_per_s.to_dict(),
            "scapy_per_cpu_s": self.scapy_per_s.to_dict(),
            "full_vs_decode": ratio(self.full_per_s, self.decode_per_s),
            "full_vs_scapy": ratio(self.full_per_s, self.scapy_per_s),
            "triggers_per_pass": self.triggers,
            "state_after_pass": self.state,
        }


@dataclass(frozen=True)
class LossPoint:
    offered: int  # packets a second asked of the sender
    achieved: float  # what it reached
    sent: int
    logged: int  # the log rule's counter: what the kernel handed to NFLOG
    decoded: int  # events the watcher took in from the drop group
    reported: int  # what the watcher reported lost (PG-HEALTH-EVENTS-LOST counts)
    socket_drops: int  # the netlink sockets' kernel drop counter (datagrams, not packets)
    cpu_s: float  # the watcher thread's CPU time over the burst and its drain
    drain_s: float  # time after the burst until the watcher had caught up

    @property
    def lost(self) -> int:
        return max(0, self.logged - self.decoded)

    def to_dict(self) -> dict[str, Any]:
        return {
            "offered_per_s": self.offered,
            "achieved_per_s": round(self.achieved),
            "sent": self.sent,
            "logged": self.logged,
            "decoded": self.decoded,
            "lost": self.lost,
            "reported_lost": self.reported,
            "socket_drops": self.socket_drops,
            "watcher_cpu_s": round(self.cpu_s, 3),
            "drain_s": round(self.drain_s, 2),
        }


@dataclass(frozen=True)
class LatencyRun:
    probes: int
    to_trigger: list[float]  # seconds, probe sent -> trigger submitted
    to_alert: list[float]  # seconds, probe sent -> alert durable

    def to_dict(self) -> dict[str, Any]:
        return {
            "probes": self.probes,
            "rate_per_s": PROBE_RATE,
            "triggers_seen": len(self.to_trigger),
            "alerts_seen": len(self.to_alert),
            "to_trigger_p50_s": percentile(self.to_trigger, 0.5),
            "to_trigger_p99_s": percentile(self.to_trigger, 0.99),
            "to_alert_p50_s": percentile(self.to_alert, 0.5),
            "to_alert_p99_s": percentile(self.to_alert, 0.99),
            "to_alert_max_s": max(self.to_alert) if self.to_alert else None,
        }


@dataclass(frozen=True)
class FloodRun:
    sources: int
    peak_kib: int  # the flood child's own peak RSS (launcher)
    idle_peak_kib: int  # the same child with no packets
    floor_kib: int  # the launcher's own floor (/bin/true)
    detail: dict[str, Any]  # what the child printed

    def to_dict(self) -> dict[str, Any]:
        return {
            "sources": self.sources,
            "peak_mib": round(self.peak_kib / 1024, 1),
            "idle_peak_mib": round(self.idle_peak_kib / 1024, 1),
            "method_floor_mib": round(self.floor_kib / 1024, 1),
            **self.detail,
        }


@dataclass
class WatchRun:
    replay: ReplayRun | None = None
    losses: list[LossPoint] = field(default_factory=list)
    latency: LatencyRun | None = None
    flood: FloodRun | None = None
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "replay": self.replay.to_dict() if self.replay else None,
            "loss": [p.to_dict() for p in self.losses],
            "latency": self.latency.to_dict() if self.latency else None,
            "flood": self.flood.to_dict() if self.flood else None,
            "problems": self.problems,
            "goals": goal_lines(self),
        }


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# --- the section ----------------------------------------------------------------------------


def run(
    repo: Path,
    workdir: Path,
    prefix: str,
    reps: int,
    quick: bool,
    progress: Callable[[str], None],
) -> WatchRun:
    out = WatchRun()
    policy = load_file(repo / "policies" / "lab.yaml").policy
    out.replay = replay(policy, QUICK_REPLAY if quick else REPLAY, reps, progress)
    try:
        kernel(out, repo, workdir, f"{prefix}-w", progress)
    except Exception as exc:  # the namespaces part failed: say so, keep the rest
        logging.getLogger(__name__).exception("watch: namespaces")
        out.problems.append(f"namespaces: {type(exc).__name__}: {exc}")
    progress(f"watch: memory after a flood from {FLOOD:,} sources (child process)")
    out.flood = flood(repo, workdir, FLOOD)
    return out


# --- replay ---------------------------------------------------------------------------------


def _names() -> Callable[[int | None], str | None]:
    def lookup(index: int) -> str:
        if index not in mix.NAMES:
            raise OSError(f"no interface {index}")
        return mix.NAMES[index]

    return Interfaces(lookup).name


def _engine(policy: Policy, learned: Learned, submit: Callable[[Trigger], object]) -> Engine:
    site = PolicySite(policy, [mix.GW_LAN, mix.GW_WAN])
    return Engine(build_detectors(policy.detection, learned), site, submit, queue_size=1 << 20)


def _feed(
    engine: Engine, datagrams: Sequence[bytes], names: Callable[[int | None], str | None]
) -> int:
    """The service's path: decode, offer, process after each datagram, tick each second."""
    events = 0
    next_tick = 0.0
    offer, process = engine.offer, engine.process
    for datagram in datagrams:
        ts = 0.0
        for packet in parse_datagram(datagram).packets:
            event = to_event(packet, names, 0.0)
            if event is not None:
                offer("nflog", event)
                ts = event.ts
                events += 1
        process(1 << 20)
        if ts >= next_tick:
            engine.tick(ts)
            next_tick = ts + 1.0
    return events


def _decode(datagrams: Sequence[bytes], names: Callable[[int | None], str | None]) -> int:
    events = 0
    for datagram in datagrams:
        for packet in parse_datagram(datagram).packets:
            if to_event(packet, names, 0.0) is not None:
                events += 1
    return events


def _scapy(payloads: Sequence[tuple[bool, bytes]]) -> int:
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.l2 import ARP

    done = 0
    for is_arp, payload in payloads:
        if is_arp:
            arp = ARP(payload)
            _ = (arp.op, arp.hwsrc, arp.psrc, arp.pdst)
        else:
            ip = IP(payload)
            _ = (ip.src, ip.dst, ip.proto, ip.ttl)
            if TCP in ip:
                _ = (ip[TCP].sport, ip[TCP].dport, ip[TCP].flags)
            elif UDP in ip:
                _ = (ip[UDP].sport, ip[UDP].dport)
        done += 1
    return done


def _timed(fn: Callable[[], int]) -> tuple[int, float, float]:
    wall, cpu = time.perf_counter(), time.thread_time()
    count = fn()
    return count, time.thread_time() - cpu, time.perf_counter() - wall


def replay(policy: Policy, count: int, reps: int, progress: Callable[[str], None]) -> ReplayRun:
    logging.getLogger("scapy.runtime").setLevel(logging.ERROR)
    progress(f"watch: building {2 * count:,} NFLOG messages of the mix")
    learn = list(mix.datagrams(mix.packets(count, 1), MIX_RATE))
    start = mix.T0 + count / MIX_RATE + 1
    measured = list(mix.datagrams(mix.packets(count, 2), MIX_RATE, start=start))
    names = _names()
    parsed = [p for d in measured for p in parse_datagram(d).packets]
    kinds = collections.Counter(p.prefix.split(":")[0] for p in parsed)
    payloads = [(p.hw_protocol == 0x0806, p.payload) for p in parsed[:SCAPY]]
    del parsed
    learned = Learned(Baseline(started=mix.T0), "learning", policy.detection.learning_s)
    _feed(_engine(policy, learned, lambda _t: None), learn, names)  # learn the site, untimed
    learned.baseline.frozen_at = start  # then protect, as `plantgate baseline freeze`
    samples: dict[str, list[tuple[float, float]]] = {"full": [], "decode": [], "scapy": []}
    triggers: list[Trigger] = []
    state: dict[str, int] = {}
    for rep in range(reps):
        progress(
            f"watch: replay, decode + all detectors vs decode only vs scapy ({rep + 1}/{reps})"
        )
        for name in rotated(list(samples), rep):
            if name == "full":
                triggers.clear()
                engine = _engine(policy, learned, triggers.append)
                events, cpu, wall = _timed(partial(_feed, engine, measured, names))
                state = engine.state_size()
            elif name == "decode":
                events, cpu, wall = _timed(partial(_decode, measured, names))
            else:
                events, cpu, wall = _timed(partial(_scapy, payloads))
            samples[name].append((events / cpu, events / wall))
    return ReplayRun(
        events=count,
        kinds=dict(kinds.most_common()),
        full_per_s=summarize([c for c, _ in samples["full"]]),
        full_wall_per_s=summarize([w for _, w in samples["full"]]),
        decode_per_s=summarize([c for c, _ in samples["decode"]]),
        scapy_per_s=summarize([c for c, _ in samples["scapy"]]),
        triggers=len(triggers),
        state=state,
    )


# --- namespaces: loss against rate, latency --------------------------------------------------


def _pair(gw: str, src: str) -> None:
    for name in (gw, src):
        netns.create_namespace(name)
        netns.set_sysctls(name, IPV6_OFF)
    with netns.NamespaceNet(gw) as gw_net, netns.NamespaceNet(src) as src_net:
        gw_net.add_veth("wan0", "eth0", src)
        gw_net.set_up("lo")
        gw_net.set_up("wan0")
        gw_net.add_address("wan0", f"{GW_WAN}/24")
        src_net.set_up("lo")
        src_net.set_up("eth0")
        src_net.add_address("eth0", f"{SRC_ADDR}/24")
        gw_net.add_route("default", SRC_ADDR)  # the whole range is "the internet" behind wsrc


def kernel(
    out: WatchRun, repo: Path, workdir: Path, prefix: str, progress: Callable[[str], None]
) -> None:
    gw, src = f"{prefix}gw", f"{prefix}src"
    base_text = (repo / "policies" / "lab.yaml").read_text(encoding="utf-8")
    policy = load_text(base_text, "lab.yaml").policy
    latency_loaded = load_text(base_text + RAISED_BUDGET, "lab.yaml + raised denied budget")
    ruleset = compile_policy(latency_loaded).text
    try:
        progress(f"watch: namespaces {gw} and {src}")
        _pair(gw, src)
        with tempfile.TemporaryDirectory(dir=workdir, prefix="watch-") as tmp:
            state = Path(tmp)
            spaces.run_in(gw, lambda: Nft().run_script(LOG_TABLE))
            out.losses = spaces.run_in(
                gw, _in_gw, _losses, policy, state / "loss", repo, src, progress
            )
            spaces.run_in(gw, lambda: Nft().run_script(DROP_LOG_TABLE + ruleset))
            out.latency = spaces.run_in(
                gw, _in_gw, _latency, latency_loaded.policy, state / "lat", repo, src, progress
            )
    finally:
        for name in (gw, src):
            spaces.kill_inside(name)
            netns.delete_namespace(name)


class _Watcher:
    """plantgated's watcher and alert pipeline on this thread's loop, with counters."""

    def __init__(self, policy: Policy, state: Path) -> None:
        state.mkdir(parents=True, exist_ok=True)
        spool = Spool(state / "spool", max_bytes=1 << 30).open()
        self.pipeline = AlertPipeline(
            spool,
            Observer("bench", "gw", "0"),
            cursors=CursorStore(state / "cursors"),
            policy=AggregationPolicy(),
            intake_size=100_000,
        )
        self.reported: collections.Counter[str] = collections.Counter()
        report_lost = self.pipeline.report_lost

        def counted(source: str, count: int) -> None:
            self.reported[source] += count
            report_lost(source, count)

        self.pipeline.report_lost = counted  # type: ignore[method-assign]
        self.service = WatchService(state, Bus(), self.pipeline, policy=lambda: policy)
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> _Watcher:
        self.tasks = [
            asyncio.create_task(self.pipeline.run(self.stop)),
            asyncio.create_task(self.service.run(self.stop)),
        ]
        for _ in range(200):  # the readers are open once the engine exists
            if self.service.engine is not None:
                break
            await asyncio.sleep(0.05)
        if self.service.engine is None:
            raise RuntimeError("the watch service did not start within 10 s")
        await asyncio.sleep(1.0)  # links and local addresses reported
        return self

    async def __aexit__(self, *_exc: object) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.pipeline.spool.close()

    def decoded(self) -> int:
        engine = self.service.engine
        return engine.stats.events.get("nflog-drop", 0) if engine is not None else 0

    def lost(self) -> int:
        return sum(n for source, n in self.reported.items() if source.startswith("nflog"))


def _in_gw(coroutine: Callable[..., Any], *args: Any) -> Any:
    """Run `coroutine(*args)` on a fresh event loop in this (namespace) thread."""
    return asyncio.run(coroutine(*args))


def _sender(repo: Path, src: str, *argv: str) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "bench.watchsend", *argv]
    return spaces.run_in(
        src,
        subprocess.Popen,
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=spaces.child_env(repo),
        cwd=str(repo),
    )


async def _finish(proc: subprocess.Popen[bytes], limit: float) -> dict[str, Any]:
    deadline = time.monotonic() + limit
    while proc.poll() is None:
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise RuntimeError("the sender did not finish in time")
        await asyncio.sleep(0.05)
    stdout, stderr = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"sender exited {proc.returncode}: {stderr.decode()[-300:]}")
    result: dict[str, Any] = json.loads(stdout)
    return result


def _rule_counter() -> int:
    done = subprocess.run(
        ["nft", "-j", "list", "table", "inet", "pgwatchbench"],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    )
    for item in json.loads(done.stdout)["nftables"]:
        rule = item.get("rule")
        if rule:
            for expr in rule["expr"]:
                if "counter" in expr:
                    return int(expr["counter"]["packets"])
    return 0


def _socket_drops() -> int:
    """Drops of every NETLINK_NETFILTER socket in this thread's namespace (the watcher's)."""
    total = 0
    for line in Path("/proc/thread-self/net/netlink").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 10 and fields[1] == "12":
            total += int(fields[8])
    return total


async def _losses(
    policy: Policy, state: Path, repo: Path, src: str, progress: Callable[[str], None]
) -> list[LossPoint]:
    points: list[LossPoint] = []
    async with _Watcher(policy, state) as watcher:
        for rate in RATES:
            progress(f"watch: burst of {rate:,}/s for {BURST_S:g} s through NFLOG")
            logged0, decoded0, lost0 = _rule_counter(), watcher.decoded(), watcher.lost()
            drops0, cpu0 = _socket_drops(), time.thread_time()
            proc = _sender(repo, src, "burst", "--dst", GW_WAN, "--rate", str(rate),
                           "--seconds", str(BURST_S))  # fmt: skip
            sent = await _finish(proc, BURST_S * 5 + 10)
            finished = time.monotonic()
            last, still = watcher.decoded(), time.monotonic()
            while time.monotonic() - finished < DRAIN_S:  # caught up: nothing new for 0.5 s
                await asyncio.sleep(0.1)
                now = watcher.decoded()
                if now != last:
                    last, still = now, time.monotonic()
                elif time.monotonic() - still >= 0.5:
                    break
            drain = still - finished
            await asyncio.sleep(1.5)  # the service's upkeep reports losses once a second
            points.append(
                LossPoint(
                    offered=rate,
                    achieved=float(sent["rate"]),
                    sent=int(sent["sent"]),
                    logged=_rule_counter() - logged0,
                    decoded=watcher.decoded() - decoded0,
                    reported=watcher.lost() - lost0,
                    socket_drops=_socket_drops() - drops0,
                    cpu_s=time.thread_time() - cpu0,
                    drain_s=max(0.0, drain),
                )
            )
    return points


async def _latency(
    policy: Policy, state: Path, repo: Path, src: str, progress: Callable[[str], None]
) -> LatencyRun:
    progress(f"watch: latency, {PROBES} probes at {PROBE_RATE:g}/s, each its own alert")
    triggered: dict[str, float] = {}
    durable: dict[str, float] = {}
    async with _Watcher(policy, state) as watcher:
        submit = watcher.pipeline.submit

        def stamped(trigger: Trigger) -> bool:
            if trigger.rule.id == "PG-POLICY-DENIED":
                triggered.setdefault(trigger.key.split(">")[0], time.time())
            return submit(trigger)

        def committed(alerts: Sequence[Alert], _seqs: Sequence[int]) -> None:
            now = time.time()
            for alert in alerts:
                if alert.rule.id == "PG-POLICY-DENIED" and alert.status == "new":
                    durable.setdefault((alert.key or "").split(">")[0], now)

        watcher.pipeline.submit = stamped  # type: ignore[method-assign]
        watcher.pipeline.on_commit.append(committed)
        engine = watcher.service.engine
        assert engine is not None
        engine.submit = stamped
        proc = _sender(repo, src, "probes", "--dst", GW_WAN, "--count", str(PROBES),
                       "--rate", str(PROBE_RATE))  # fmt: skip
        sent = await _finish(proc, PROBES / PROBE_RATE * 3 + 10)
        await asyncio.sleep(3.0)
    probes = {source: at for source, at in sent["probes"]}
    return LatencyRun(
        probes=len(probes),
        to_trigger=[triggered[s] - at for s, at in probes.items() if s in triggered],
        to_alert=[durable[s] - at for s, at in probes.items() if s in durable],
    )


# --- memory ----------------------------------------------------------------------------------


def _peak(repo: Path, workdir: Path, argv: list[str]) -> tuple[int, dict[str, Any]]:
    with tempfile.TemporaryDirectory(dir=workdir, prefix="rss-") as tmp:
        report = Path(tmp) / "peak.json"
        done = subprocess.run(
            [sys.executable, "-S", "-I", str(LAUNCHER), str(report), *argv],
            capture_output=True,
            text=True,
            env=spaces.child_env(repo),
            cwd=str(repo),
            timeout=900,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{' '.join(argv[:3])} exited {done.returncode}: {done.stderr[-500:]}"
            )
        peak = json.loads(report.read_text())["maxrss_kib"]
    detail = json.loads(done.stdout) if done.stdout.strip() else {}
    return int(peak), detail


def flood(repo: Path, workdir: Path, sources: int) -> FloodRun:
    child = [sys.executable, "-m", "bench.watchflood"]
    floor, _ = _peak(repo, workdir, ["/bin/true"])
    idle, _ = _peak(repo, workdir, [*child, "0"])
    peak, detail = _peak(repo, workdir, [*child, str(sources)])
    return FloodRun(sources, peak, idle, floor, detail)


# --- report ----------------------------------------------------------------------------------


def goal_lines(run: WatchRun) -> list[str]:
    lines = []
    if run.replay is not None:
        rate = run.replay.full_per_s.median
        met = "met" if rate >= GOAL_EVENTS else "MISSED"
        lines.append(
            f"watcher events/s, decode + all detectors, one core: {rate:,.0f} "
            f"(goal >= {GOAL_EVENTS:,}): {met}"
        )
    if run.latency is not None:
        p99 = percentile(run.latency.to_alert, 0.99)
        if p99 is not None:
            met = "met" if p99 <= GOAL_P99_S else "MISSED"
            lines.append(
                f"packet -> durable alert p99: {p99:.3f} s (goal <= {GOAL_P99_S:g} s): {met}"
            )
    if run.flood is not None:
        mib = run.flood.peak_kib / 1024
        met = "met" if mib <= GOAL_RSS_MIB else "MISSED"
        lines.append(
            f"peak RSS after {run.flood.sources:,} sources: {mib:.0f} MiB "
            f"(goal <= {GOAL_RSS_MIB} MiB): {met}"
        )
    return lines


def tables(run: WatchRun) -> list[Table]:
    out = []
    if run.replay is not None:
        r = run.replay
        t = Table(
            title=f"Watcher: {r.events:,} replayed NFLOG packets, one core (events per CPU "
            "second; median, min–max)",
            title_justify="left",
        )
        t.add_column("what", justify="left")
        t.add_column("events/s", justify="right")
        t.add_column("× scapy", justify="right")

        def rate(s: Summary) -> str:
            return spread(s, lambda v: f"{v:,.0f}")

        def x(s: Summary) -> str:
            value = ratio(s, r.scapy_per_s)
            return f"{value:.1f}×" if value is not None else "-"

        t.add_row("decode (struct) + all 14 detectors", rate(r.full_per_s), x(r.full_per_s))
        t.add_row("  same, per wall-clock second", rate(r.full_wall_per_s), "")
        t.add_row(
            "decode only (parse_datagram + to_event)", rate(r.decode_per_s), x(r.decode_per_s)
        )
        t.add_row(f"scapy dissecting the same packets ({SCAPY:,})", rate(r.scapy_per_s), "1.0×")
        full_vs_decode = ratio(r.full_per_s, r.decode_per_s)
        if full_vs_decode is not None:
            t.add_row("full / decode only", f"{full_vs_decode:.2f}", "")
        out.append(t)
    if run.losses:
        t = Table(
            title=f"Watcher: real packets through NFLOG, bursts of {BURST_S:g} s (namespaces)",
            title_justify="left",
        )
        for name in ("offered/s", "sent/s", "sent", "logged", "decoded", "lost", "reported lost",
                     "socket drops", "watcher CPU", "drain"):  # fmt: skip
            t.add_column(name, justify="right")
        for p in run.losses:
            t.add_row(
                f"{p.offered:,}",
                f"{p.achieved:,.0f}",
                f"{p.sent:,}",
                f"{p.logged:,}",
                f"{p.decoded:,}",
                f"{p.lost:,}",
                f"{p.reported:,}",
                f"{p.socket_drops:,}",
                f"{p.cpu_s:.2f} s",
                f"{p.drain_s:.1f} s",
            )
        out.append(t)
    if run.latency is not None or run.flood is not None:
        t = Table(title="Watcher: latency and memory", title_justify="left")
        t.add_column("what", justify="left")
        t.add_column("figure", justify="right")
        lat = run.latency
        if lat is not None:

            def pp(values: list[float]) -> str:
                p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
                if p50 is None or p99 is None:
                    return "none seen"
                return f"{p50 * 1000:.0f} / {p99 * 1000:.0f} ms"

            t.add_row(
                f"packet → trigger p50 / p99 ({len(lat.to_trigger)} of {lat.probes})",
                pp(lat.to_trigger),
            )
            t.add_row(
                f"packet → durable alert p50 / p99 ({len(lat.to_alert)} of {lat.probes})",
                pp(lat.to_alert),
            )
        f = run.flood
        if f is not None:
            t.add_row(f"peak RSS, flood from {f.sources:,} sources", f"{f.peak_kib / 1024:.0f} MiB")
            t.add_row("peak RSS, same child without packets", f"{f.idle_peak_kib / 1024:.0f} MiB")
            seconds = f.detail.get("seconds")
            if seconds:
                t.add_row(
                    "flood events/s (every event a new source)", f"{f.sources / seconds:,.0f}"
                )
            state = f.detail.get("state", {})
            if state:
                t.add_row("detector state after the flood (entries)", f"{sum(state.values()):,}")
        out.append(t)
    return out


def note_lines(run: WatchRun) -> list[str]:
    lines = [*run.problems]
    for p in run.losses:
        if p.lost and p.reported:
            lines.append(
                f"watch loss at {p.offered:,}/s: {p.lost:,} packets lost, {p.reported:,} "
                f"reported (PG-HEALTH-EVENTS-LOST counts the kernel's dropped datagrams, "
                f"{p.lost / p.reported:.0f} packets each here: never silent, but understated)"
            )
        elif p.lost:
            lines.append(f"watch loss at {p.offered:,}/s: {p.lost:,} packets lost, none reported")
    if run.replay is not None:
        kinds = ", ".join(f"{k} {v:,}" for k, v in run.replay.kinds.items())
        lines.append(f"watch replay mix: {kinds}")
    return lines
