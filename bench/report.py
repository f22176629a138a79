"""Printed tables and the JSON record of one run: absolute figures, spread, and ratios.

Formatting only: every function takes results and returns text or a rich Table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.table import Table

from bench import reference
from bench.apply import ApplyResult
from bench.gate import GateRun
from bench.leaks import LeaksRun
from bench.memory import MemoryResult
from bench.ntp import Burst, NtpRun
from bench.plan import PlanResult
from bench.policytest import PolicyTestResult
from bench.stats import Summary, ratio, summarize
from bench.throughput import TrafficRun
from bench.vpn import VpnRun

APPLY_GOAL_HUBS = 10_000
APPLY_GOAL_RATIO = 1.5
APPLY_GOAL_SECONDS = 0.250
THROUGHPUT_GOAL = 0.9


def seconds(value: float) -> str:
    if value >= 1:
        return f"{value:.2f} s"
    if value >= 0.1:
        return f"{value * 1000:.0f} ms"
    return f"{value * 1000:.1f} ms"


def number(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def spread(summary: Summary | None, fmt: Callable[[float], str] = seconds) -> str:
    """'median' on one line, '(min–max)' below it when there is more than one sample."""
    if summary is None:
        return "—"
    if len(summary.samples) == 1:
        return fmt(summary.median)
    return f"{fmt(summary.median)}\n({fmt(summary.low)}–{fmt(summary.high)})"


def times(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}×"


def apply_table(results: Sequence[ApplyResult]) -> Table:
    table = Table(
        title="1. Re-apply cost: replace the loaded table with the same policy "
        "(median, min–max below)",
        title_justify="left",
    )
    for header in (
        "hubs",
        "load\nYAML→model",
        "ours\ncompile+apply",
        "raw\nnft -f",
        "naive\nnft -f",
        "CLI\npolicy apply",
        "ours/raw",
        "naive/ours",
        "CLI/raw",
    ):
        table.add_column(header, justify="right")
    for r in results:
        t, q = r.timings, r.ratios()
        table.add_row(
            f"{r.hubs:,}",
            spread(r.load),
            spread(t["ours"]),
            spread(t["raw"]),
            spread(t["naive"]),
            spread(t["cli"]),
            times(q["ours/raw"]),
            times(q["naive/ours"]),
            times(q["cli/raw"]),
        )
    return table


def peers_table(results: Sequence[ApplyResult]) -> Table:
    """Measured medians next to the peers' quoted figures, one row per tool."""
    sizes = sorted({r.hubs for r in results} | {n for q in reference.QUOTED for n in q.seconds})
    table = Table(
        title="Whole re-apply as users wait for it, against peers (medians)", title_justify="left"
    )
    table.add_column("tool")
    for n in sizes:
        table.add_column(f"{n:,} hubs", justify="right")
    measured = {r.hubs: r for r in results}

    def row(label: str, pick: Callable[[ApplyResult], float]) -> None:
        table.add_row(label, *(seconds(pick(measured[n])) if n in measured else "—" for n in sizes))

    row("plantgate policy apply, CLI (measured here)", lambda r: r.timings["cli"].median)
    row("ours compile+apply, in-process (measured here)", lambda r: r.timings["ours"].median)
    row("raw nft -f (measured here)", lambda r: r.timings["raw"].median)
    for quoted in reference.QUOTED:
        table.add_row(
            f"{quoted.label} [italic](quoted, NOT measured here)[/]",
            *(seconds(quoted.seconds[n]) if n in quoted.seconds else "—" for n in sizes),
        )
    return table


def throughput_table(run: TrafficRun) -> Table:
    table = Table(
        title=f"2. Traffic hub1 → gw ({run.topology}): iperf3 TCP {run.seconds:g} s; "
        f"new connections for {run.connect_seconds:g} s (median, min–max below)",
        title_justify="left",
    )
    table.add_column("ruleset in gw")
    for header in (
        "per-host\nrules",
        "TCP Gbit/s",
        "vs none",
        "vs ct only",
        "new conn/s",
        "vs none",
        "vs ct only",
        "failed\nconnects",
    ):
        table.add_column(header, justify="right")
    by_key = {r.key: r for r in run.results}
    none, ct = by_key.get("none"), by_key.get("ct")
    for r in run.results:
        table.add_row(
            r.label,
            f"{r.per_host_rules:,}",
            spread(r.gbits, number),
            times(ratio(r.gbits, none.gbits) if none else None),
            times(ratio(r.gbits, ct.gbits) if ct else None),
            spread(r.connects, number),
            times(ratio(r.connects, none.connects) if none else None),
            times(ratio(r.connects, ct.connects) if ct else None),
            f"{r.failures:,}",
        )
    return table


def memory_table(results: Sequence[MemoryResult]) -> Table:
    table = Table(
        title="3. Peak resident memory of one process (ru_maxrss; median, min–max below)",
        title_justify="left",
    )
    for header in ("command", "peak RSS MiB", "vs python", "wall time"):
        table.add_column(header, justify="left" if header == "command" else "right")
    base = next((r for r in results if r.key == "python"), None)
    for r in results:
        table.add_row(
            r.label,
            spread(r.mib, lambda v: f"{v:.1f}"),
            times(ratio(r.mib, base.mib) if base else None),
            spread(r.seconds),
        )
    return table


def plan_table(results: Sequence[PlanResult]) -> Table:
    table = Table(
        title="4. Plan: `policy plan` against the current revision (median, min–max below)",
        title_justify="left",
    )
    for header in ("case", "load both\nYAML→model", "plan()\nin-process", "CLI\npolicy plan"):
        table.add_column(header, justify="left" if header == "case" else "right")
    table.add_column("the plan shows")
    for r in results:
        table.add_row(r.label, spread(r.load), spread(r.plan), spread(r.cli), r.shows)
    return table


def policytest_table(results: Sequence[PolicyTestResult]) -> Table:
    table = Table(
        title="5. Policy tests: `policy test` on policies/tests/lab.yaml, whole file "
        "(median of 3, min–max below)",
        title_justify="left",
    )
    for header in ("policy", "expectations", "model only\nCLI", "--kernel\nCLI", "probed"):
        table.add_column(header, justify="left" if header == "policy" else "right")
    for r in results:
        table.add_row(
            r.label, f"{r.expectations:,}", spread(r.model), spread(r.kernel), f"{r.probed:,}"
        )
    return table


def ntp_table(run: NtpRun) -> Table:
    table = Table(
        title=f"6. NTP relay: one hub's burst of {run.relay[0].sent if run.relay else 0} "
        "requests as fast as it can send them (median, min–max below)",
        title_justify="left",
    )
    for header in ("server", "answered", "rate-limited", "answers/s", "largest answer"):
        table.add_column(header, justify="left" if header == "server" else "right")

    def row(label: str, bursts: Sequence[Burst]) -> None:
        if not bursts:
            return
        table.add_row(
            label,
            spread(summarize([b.answered for b in bursts]), lambda v: f"{v:.0f}"),
            spread(summarize([b.limited_share for b in bursts]), share),
            spread(summarize([b.answered_per_second for b in bursts]), number),
            f"{max(b.largest_answer for b in bursts)} B (request 48 B)",
        )

    row("relay in gw, hub → 198.18.10.1 (ratelimit 3/8/2)", run.relay)
    row("internet chronyd, plant → 198.19.0.123 (no limit)", run.unlimited)
    return table


def ntp_offset_lines(run: NtpRun) -> list[str]:
    if not run.offsets:
        return [f"NTP offset: no answers ({run.failed_queries} queries failed)"]
    o = run.offset_summary()
    return [
        f"NTP offset of a hub's reading from the relay's clock over {len(run.offsets)} "
        f"spaced queries ({run.failed_queries} unanswered): median {o['median_s'] * 1e6:+.1f} "
        f"µs, median |offset| {o['median_abs_s'] * 1e6:.1f} µs, p99 |offset| "
        f"{o['p99_abs_s'] * 1e6:.1f} µs, max {o['max_abs_s'] * 1e6:.1f} µs; median round "
        f"trip {o['median_delay_s'] * 1e6:.0f} µs"
    ]


def share(value: float) -> str:
    return f"{value * 100:.0f}%"


def gate_table(run: GateRun) -> Table:
    """Gate open and close, command to the first packet the kernel treats the new way."""
    table = Table(
        title="7. Support gate: command to kernel effect, alice → hub1 tcp/22 "
        "(median, min–max below)",
        title_justify="left",
    )
    for header in (
        "path",
        "open →\nfirst accept",
        "close →\nfirst drop",
        "open call\nreturns",
        "close call\nreturns",
        "alice's entries\nafter close",
    ):
        table.add_column(header, justify="left" if header == "path" else "right")
    for r in run.results:
        table.add_row(
            r.label,
            spread(r.open_effect),
            spread(r.close_effect),
            spread(r.open_call),
            spread(r.close_call),
            spread(r.flows, lambda v: f"{v:.0f}"),
        )
    late = run.expiry_lateness
    table.add_row(
        "expiry in the kernel, no process",
        "—",
        f"{late.median * 1000:+.1f} ms\n({late.low * 1000:+.1f}–{late.high * 1000:+.1f})",
        "—",
        "—",
        "—",
    )
    return table


def vpn_table(run: VpnRun) -> Table:
    """Tunnel start to first handshake and to the first staff connection through it."""
    table = Table(
        title="8. Support tunnel: start to first handshake and first staff ssh connection "
        "(open gate element; median, min–max below)",
        title_justify="left",
    )
    for header in ("start", "call\nreturns", "start →\nhandshake", "start →\nfirst connection"):
        table.add_column(header, justify="left" if header == "start" else "right")
    for r in run.results:
        table.add_row(r.label, spread(r.call), spread(r.handshake), spread(r.connection))
    return table


def leaks_table(run: LeaksRun) -> Table:
    """The chaos loop: each kind of transition, how often it came and what it took."""
    table = Table(
        title=f"Support tunnel leaks: chaos loop of {run.transitions} transitions planned "
        f"from seed {run.seed}, probes after each; transition times (median, min–max below; "
        "no-ops left out)",
        title_justify="left",
    )
    for header in ("transition", "count", "transition\ntakes"):
        table.add_column(header, justify="left" if header == "transition" else "right")
    for action in run.actions:
        table.add_row(action.action, str(action.count), spread(action.seconds))
    table.add_row(
        "a whole step (transition, probe burst, control)",
        str(run.transitions),
        spread(run.per_transition),
    )
    return table


def leaks_lines(run: LeaksRun) -> list[str]:
    """Absolute figures of the chaos loop: leaks and forbidden answers (goal 0 each), the
    positive control (must be > 0 everywhere), and what the captures saw."""

    def per_point(counts: dict[str, int]) -> str:
        return ", ".join(f"{point} {count:,}" for point, count in counts.items())

    control_ok = all(run.control_hits.values()) and all(run.control_first.values())
    lines = [
        f"leaked packets: {run.leaked_packets} (goal 0: "
        f"{'met' if run.leaked_packets == 0 else 'MISSED'})",
        f"forbidden connections answered: {run.forbidden_answered} (goal 0: "
        f"{'met' if run.forbidden_answered == 0 else 'MISSED'})",
        f"positive control seen: {per_point(run.control_hits)} "
        f"({'every capture' if control_ok else 'MISSING on a capture: the loop was blind there'})",
        f"granted ssh (alice -> hub1 while the gate was open): {run.granted_answered} of "
        f"{run.granted} connected; the tunnel was up (a live handshake at both ends) at "
        f"{run.tunnel_up_bursts} of {run.transitions} bursts, with the gate open at "
        f"{run.open_up_bursts} (before {run.tunnel_up_steps} transitions)",
        f"planned transitions that were no-ops on the lab as found: {run.noops}; "
        f"failed: {len(run.failures)}",
        f"packets captured: {per_point(run.packets)}; capture drops: {per_point(run.drops)}",
        f"loop: {seconds(run.loop_seconds)} for {run.transitions} transitions",
    ]
    lines += [f"leak: {reason} x{count}" for reason, count in run.leaks_by_reason.items()]
    lines += [f"  {example}" for example in run.leak_examples]
    lines += [f"forbidden answered: {example}" for example in run.breach_examples]
    lines += [f"failed: {failure}" for failure in run.failures[:20]]
    return lines


def goal_lines(apply: Sequence[ApplyResult], traffic: TrafficRun | None) -> list[str]:
    """The design's targets, set against this run's medians (reported, never asserted)."""
    lines = []
    at = next((r for r in apply if r.hubs == APPLY_GOAL_HUBS), None)
    if at is not None:
        over, took = at.ratios()["ours/raw"], at.timings["ours"].median
        met = over is not None and over <= APPLY_GOAL_RATIO and took < APPLY_GOAL_SECONDS
        lines.append(
            f"apply at {APPLY_GOAL_HUBS:,} hubs: ours/raw {times(over)} (goal ≤ "
            f"{APPLY_GOAL_RATIO}×), ours {seconds(took)} (goal < "
            f"{seconds(APPLY_GOAL_SECONDS)}): {'met' if met else 'MISSED'}"
        )
    if traffic is not None:
        by_key = {r.key: r for r in traffic.results}
        if "sets" in by_key and "none" in by_key:
            sets = by_key["sets"]
            kept = ratio(sets.gbits, by_key["none"].gbits)
            met = kept is not None and kept >= THROUGHPUT_GOAL
            line = (
                f"throughput with the {sets.label}: {times(kept)} of no table "
                f"(goal ≥ {THROUGHPUT_GOAL}): {'met' if met else 'MISSED'}"
            )
            line += "".join(
                f"; {times(ratio(sets.gbits, by_key[key].gbits))} of {name}"
                for key, name in (("ct", "conntrack only"), ("lab", "the lab policy"))
                if key in by_key
            )
            lines.append(line)
    return lines


def notes(
    traffic: TrafficRun | None,
    memory: Sequence[MemoryResult] = (),
    plans: Sequence[PlanResult] = (),
    policytests: Sequence[PolicyTestResult] = (),
) -> list[str]:
    lines = [
        "naive = the lab table plus one `ip saddr H meta l4proto . th dport @svc accept` rule "
        "per hub in the input chain (input path only, so it understates a full rule-list "
        "firewall).",
        "raw and naive include nft's process start; ours runs in-process with a fresh "
        "libnftables context and, like every apply, first lists the live run-time sets to "
        "carry their elements over; the CLI adds interpreter start, imports, load and "
        "writing the state files.",
    ]
    if traffic is not None:
        lines.append(
            "Established/related packets are accepted by the first rule of every base chain "
            "(conntrack fast path): only a connection's first packet walks the rules, so bulk "
            "TCP barely moves while the new-connection rate shows the cost of rule lists."
        )
        if traffic.note:
            lines.append(f"Traffic topology: {traffic.note}; measured on a veth pair instead.")
    if plans:
        lines.append(
            "plan() is the diff and the risk checks on two loaded policies; the CLI adds "
            "interpreter start, imports, loading both policies, and the live drift check "
            "(listing the table, compiling the stored policy once for its run-time sets)."
        )
    if policytests:
        lines.append(
            "policy test --kernel: the CLI builds a DUT namespace and one peer per interface, "
            "loads the ruleset, sends one real exchange per expectation (concurrently; gate "
            "groups and spoofed sources in phases of their own, each about one probe timeout, "
            "0.5 s), then removes it all; 'probed' counts the expectations the kernel answered "
            "in agreement with the model."
        )
    floor = next((r for r in memory if r.key == "floor"), None)
    if floor is not None:
        lines.append(
            f"Peak RSS is each command's own ru_maxrss via a small launcher (bench/peakrss.py); "
            f"its floor, {floor.mib.median:.1f} MiB, is what /bin/true reports."
        )
    lines += [f"Quoted from REFERENCE.md, not measured here: {n}" for n in reference.QUOTED_NOTES]
    return lines
