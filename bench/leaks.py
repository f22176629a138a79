"""Measurement: a bounded chaos loop over the support tunnel's states, counting leaks.

A lab with one hub comes up as `make run` brings it (plantgated in gw, the tunnel up in gated
mode, the gate closed, the concentrator in upstream, staff behind it). The leak test's
captures (`gateway.lab.leaks`) run for the whole loop on the physical side (gw's `wan0`, the
plant's `eth0` and `up0`) and inside the tunnel at the concentrator (`wg-conc`). First the
positive control (marked packets every capture must see); then N transitions (default 200),
planned up front from the seed alone (`bench/leakplan.py`: one seed, one sequence of
transitions, whatever the lab's timing; weighted so that a broken tunnel is healed often and
the tunnel is up with the gate open for a good share of the bursts). A planned transition
that does not apply to the lab as the loop finds it is a no-op, recorded as such:

    concentrator stop / start         the tunnel down; back, with the handshake to come
    wireguard-go SIGKILL              plantgated restarts it after its backoff, if it runs
    plantgated SIGKILL / start        the kill switch alone; the daemon adopting what it finds
    vpn disable / enable              `operations.set_vpn_enabled` in gw (in-process)
    gate open / close                 alice -> hub1 tcp/22, by the gate's nftables element
    IPv6 on / off                     in gw, hub1, the plant and on the tunnel, WireGuard
                                      allowing it at both ends (only the kill switch stops it)
    endpoint expiry                   the concentrator's address leaves the firewall's set
    WireGuard rekey                   gw's WireGuard shakes hands anew now, as it does after
                                      two minutes (a restarted concentrator waits for it)
    heal                              the tunnel up again, gate and IPv6 as they are
                                      (`LeakLab.heal`: processes back, VPN on, endpoint
                                      renewed, a fresh handshake)

and after each, at once, a burst of probes (TCP, UDP, ICMP; IPv6 too while it is on) from
gw and hub1 toward the staff and the concentrator's inner address, and from alice and
mallory toward gw and hub1, then the positive control again. Counted: leaked packets on
any capture (goal 0), forbidden probes answered (goal 0), positive-control packets seen per
capture point (must be > 0), granted connections (alice -> hub1 ssh while the gate is open:
how often the tunnel under test was usable), how many bursts found the tunnel up (a live
handshake at both ends) and the gate open, and the time each transition took.
"""

from __future__ import annotations

import bisect
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import leakplan
from bench.stats import Summary, summarize
from gateway.lab import lab
from gateway.lab.leaks import ALICE, HUB1, Captures, LeakLab, LeakLabError, LeakRun
from gateway.vpn.leakcheck import Tally

TRANSITIONS = 200
QUICK_TRANSITIONS = 50
SEED = 20_251_202
PROBE_TIMEOUT = 0.3
PHYSICAL = ("gw:wan0", "plant:eth0", "plant:up0")
TUNNEL = "upstream:wg-conc"
EXAMPLES = 20


@dataclass(frozen=True)
class Observed:
    """The lab's state as the loop sees it before choosing a transition."""

    daemon: bool
    concentrator: bool
    wireguard: bool
    vpn: bool
    gate: bool
    ipv6: bool
    endpoint: bool  # the concentrator's address is in the firewall's endpoint set
    tunnel: bool  # a live handshake at both ends

    def text(self) -> str:
        flags = [
            "tunnel up" if self.tunnel else "tunnel not up",
            "plantgated" if self.daemon else "no plantgated",
            "concentrator" if self.concentrator else "no concentrator",
            "wireguard-go" if self.wireguard else "no wireguard-go",
            "vpn on" if self.vpn else "vpn off",
            "gate open" if self.gate else "gate closed",
            "IPv6" if self.ipv6 else "IPv4 only",
            "endpoint known" if self.endpoint else "endpoint expired",
        ]
        return ", ".join(flags)


Action = tuple[Callable[[Observed], bool], Callable[[LeakLab], object]]

ACTIONS: dict[str, Action] = {
    "concentrator stop": (lambda s: s.concentrator, lambda lab: lab.stop_concentrator()),
    "concentrator start": (lambda s: not s.concentrator, lambda lab: lab.start_concentrator()),
    "wireguard-go SIGKILL": (lambda s: s.wireguard, lambda lab: lab.kill_wireguard()),
    "plantgated SIGKILL": (lambda s: s.daemon, lambda lab: lab.kill_daemon()),
    "plantgated start": (lambda s: not s.daemon, lambda lab: lab.start_daemon()),
    "vpn disable": (lambda s: s.vpn, lambda lab: lab.set_vpn(False)),
    "vpn enable": (lambda s: not s.vpn, lambda lab: lab.set_vpn(True)),
    "gate open": (lambda s: not s.gate, lambda lab: lab.open_gate(ALICE, HUB1, 22, 3600)),
    "gate close": (lambda s: s.gate, lambda lab: lab.close_gate()),
    "IPv6 on": (lambda s: not s.ipv6, lambda lab: lab.ipv6_on()),
    "IPv6 off": (lambda s: s.ipv6, lambda lab: lab.ipv6_off()),
    "endpoint expiry": (lambda s: s.endpoint, lambda lab: lab.expire_endpoint()),
    "WireGuard rekey": (lambda s: s.wireguard, lambda lab: lab.kick()),
    leakplan.HEAL: (lambda s: True, lambda lab: lab.heal()),  # a no-op when nothing to heal
}


@dataclass(frozen=True)
class Step:
    number: int
    action: str
    outcome: str  # "done", "no-op" (it did not apply to the lab as found), "failed"
    detail: str  # what a heal did, why a transition failed
    before: str
    tunnel_before: bool  # the tunnel was up when the transition came
    tunnel_at_burst: bool  # ... and when the probe burst after it began
    gate_at_burst: bool
    started: float  # wall clock
    seconds: float  # the transition's own duration
    probes: int
    forbidden_answered: int
    granted: int
    granted_answered: int


@dataclass(frozen=True)
class ActionTimes:
    action: str
    count: int
    seconds: Summary


@dataclass(frozen=True)
class LeaksRun:
    seed: int
    transitions: int
    steps: tuple[Step, ...]
    leaked_packets: int
    leaks_by_reason: dict[str, int]
    leak_examples: tuple[str, ...]  # the first few, each with its step
    forbidden_answered: int
    breach_examples: tuple[str, ...]
    control_first: dict[str, int]  # the positive control before the loop, per capture point
    control_hits: dict[str, int]  # positive-control packets over the whole run
    granted: int
    granted_answered: int
    tunnel_up_steps: int  # transitions that came while the tunnel was up
    tunnel_up_bursts: int  # bursts that began with the tunnel up
    open_up_bursts: int  # ... up, with the gate open
    open_bursts: int  # bursts with the gate open
    noops: int  # planned transitions that did not apply to the lab as found
    failures: tuple[str, ...]  # transitions that failed (a heal that did not bring it up)
    packets: dict[str, int]  # packets captured per capture point
    drops: dict[str, int]  # the kernel's capture drops per namespace
    actions: tuple[ActionTimes, ...]
    per_transition: Summary  # transition + probe burst + control, wall clock
    loop_seconds: float

    def to_dict(self) -> dict[str, object]:
        return {
            "seed": self.seed,
            "transitions": self.transitions,
            "leaked_packets": self.leaked_packets,
            "leaks_by_reason": self.leaks_by_reason,
            "leak_examples": list(self.leak_examples),
            "forbidden_answered": self.forbidden_answered,
            "breach_examples": list(self.breach_examples),
            "positive_control_first": self.control_first,
            "positive_control_hits": self.control_hits,
            "granted_attempts": self.granted,
            "granted_answered": self.granted_answered,
            "tunnel_up_steps": self.tunnel_up_steps,
            "tunnel_up_bursts": self.tunnel_up_bursts,
            "gate_open_tunnel_up_bursts": self.open_up_bursts,
            "gate_open_bursts": self.open_bursts,
            "noops": self.noops,
            "failures": list(self.failures),
            "packets_captured": self.packets,
            "capture_drops": self.drops,
            "per_transition_s": self.per_transition.to_dict(),
            "loop_s": self.loop_seconds,
            "actions": [
                {"action": a.action, "count": a.count, "seconds": a.seconds.to_dict()}
                for a in self.actions
            ],
            "steps": [
                {
                    "n": s.number,
                    "action": s.action,
                    "outcome": s.outcome,
                    "detail": s.detail,
                    "before": s.before,
                    "tunnel_before": s.tunnel_before,
                    "tunnel_at_burst": s.tunnel_at_burst,
                    "gate_at_burst": s.gate_at_burst,
                    "seconds": s.seconds,
                    "probes": s.probes,
                    "forbidden_answered": s.forbidden_answered,
                    "granted_answered": s.granted_answered,
                }
                for s in self.steps
            ],
        }


def observe(leaklab: LeakLab) -> Observed:
    return Observed(
        daemon=leaklab.daemon_pid() is not None,
        concentrator=leaklab.concentrator_pid() is not None,
        wireguard=bool(leaklab.wireguard_pids()),
        vpn=leaklab.vpn_enabled(),
        gate=bool(leaklab.gate),
        ipv6=leaklab.ipv6,
        endpoint=leaklab.endpoint_present(),
        tunnel=leaklab.tunnel_up(),
    )


def apply(lab: LeakLab, action: str, state: Observed) -> tuple[str, str]:
    """Runs a planned transition on the lab as found: (outcome, detail)."""
    allowed, perform = ACTIONS[action]
    if not allowed(state):
        return "no-op", ""
    try:
        did = perform(lab)
    except LeakLabError as exc:
        return "failed", str(exc)
    if action == leakplan.HEAL and isinstance(did, list):
        return ("done", ", ".join(did)) if did else ("no-op", "the tunnel was up")
    return "done", ""


def loop(
    run: LeakRun, transitions: int, seed: int, progress: Callable[[str], None]
) -> tuple[list[Step], list[str]]:
    """The chaos loop; returns its steps and the text of every forbidden probe answered."""
    steps: list[Step] = []
    breaches: list[str] = []
    for number, action in enumerate(leakplan.plan(seed, transitions), start=1):
        state = observe(run.lab)
        started, clock = time.time(), time.perf_counter()
        outcome, detail = apply(run.lab, action, state)
        seconds = time.perf_counter() - clock
        if run.lab.ipv6:
            run.lab.ensure_tunnel_ipv6()
        up, gate = run.lab.tunnel_up(), bool(run.lab.gate)
        results = run.burst(ipv6=run.lab.ipv6)
        run.control(tunnel=run.lab.concentrator_pid() is not None)
        granted = [r for r in results if r.probe.granted]
        breached = [r for r in results if r.breach]
        breaches += [f"step {number} ({action}): {r.text()}" for r in breached]
        steps.append(
            Step(
                number,
                action,
                outcome,
                detail,
                state.text(),
                state.tunnel,
                up,
                gate,
                started,
                seconds,
                len(results),
                len(breached),
                len(granted),
                sum(1 for r in granted if r.outcome == "answered"),
            )
        )
        if number % 25 == 0:
            progress(f"leaks: {number} of {transitions} transitions")
    return steps, breaches


def step_of(steps: list[Step], at: float) -> int:
    """The step during which a packet was captured (0: before the loop)."""
    index = bisect.bisect_right([s.started for s in steps], at)
    return steps[index - 1].number if index else 0


def control_counts(verdicts: Tally, points: list[str]) -> dict[str, int]:
    return {point: verdicts.count("control", point) for point in points}


def summarise(
    run: LeakRun,
    steps: list[Step],
    breaches: list[str],
    control_first: dict[str, int],
    seed: int,
    loop_seconds: float,
) -> LeaksRun:
    verdicts = run.everything()
    reasons = Counter(leak.finding.reason for leak in verdicts.leaks)
    examples = tuple(
        f"step {step_of(steps, leak.seen.at)}: {leak.text()}" for leak in verdicts.leaks[:EXAMPLES]
    )
    by_action: dict[str, list[float]] = {}
    for step in steps:
        if step.outcome == "done":  # a no-op's time is the look, not the transition
            by_action.setdefault(step.action, []).append(step.seconds)
    ends = [s.started for s in steps[1:]]
    per_transition = [b - a.started for a, b in zip(steps, ends, strict=False)]
    points = [*PHYSICAL, TUNNEL]
    captures: Captures = run.captures
    return LeaksRun(
        seed=seed,
        transitions=len(steps),
        steps=tuple(steps),
        leaked_packets=len(verdicts.leaks),
        leaks_by_reason=dict(reasons),
        leak_examples=examples,
        forbidden_answered=len(breaches),
        breach_examples=tuple(breaches[:EXAMPLES]),
        control_first=control_first,
        control_hits=control_counts(verdicts, points),
        granted=sum(s.granted for s in steps),
        granted_answered=sum(s.granted_answered for s in steps),
        tunnel_up_steps=sum(1 for s in steps if s.tunnel_before),
        tunnel_up_bursts=sum(1 for s in steps if s.tunnel_at_burst),
        open_up_bursts=sum(1 for s in steps if s.tunnel_at_burst and s.gate_at_burst),
        open_bursts=sum(1 for s in steps if s.gate_at_burst),
        noops=sum(1 for s in steps if s.outcome == "no-op"),
        failures=tuple(
            f"step {s.number} ({s.action}): {s.detail}" for s in steps if s.outcome == "failed"
        ),
        packets={point: verdicts.packets(point) for point in points},
        drops=captures.drops(),
        actions=tuple(
            ActionTimes(name, len(values), summarize(values))
            for name, values in sorted(by_action.items())
        ),
        per_transition=summarize(per_transition or [loop_seconds]),
        loop_seconds=loop_seconds,
    )


def run(
    repo: Path,
    prefix: str,
    progress: Callable[[str], None],
    transitions: int = TRANSITIONS,
    seed: int = SEED,
) -> LeaksRun:
    policy = repo / "policies" / "lab.yaml"
    progress(f"leaks: lab with plantgated, the concentrator and staff; seed {seed}")
    with tempfile.TemporaryDirectory(prefix="leaklab-") as root:
        paths = lab.lab_paths(prefix, Path(root))
        try:
            lab.up(prefix, hubs=1, policy=policy, root=Path(root))
            leaklab = LeakLab(paths, policy, vpn_via="inprocess")
            with LeakRun(leaklab, timeout=PROBE_TIMEOUT) as leak_run:
                start = time.time()
                leak_run.control(tunnel=True)
                first = control_counts(leak_run.verdicts(start), [*PHYSICAL, TUNNEL])
                if not all(first.values()):
                    raise RuntimeError(
                        f"the positive control was not seen on every capture ({first}): "
                        "the loop could not see a leak there"
                    )
                progress(f"leaks: positive control seen ({first}); {transitions} transitions")
                clock = time.perf_counter()
                steps, breaches = loop(leak_run, transitions, seed, progress)
                loop_seconds = time.perf_counter() - clock
                time.sleep(0.3)  # the last packets reach the captures
                return summarise(leak_run, steps, breaches, first, seed, loop_seconds)
        finally:
            lab.down(prefix, root=Path(root))
