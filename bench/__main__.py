"""`python -m bench` (what `make bench` runs): measure, print the tables, write the JSON record.

    python -m bench                     everything: 10 / 1,000 / 10,000 / 50,000 hubs, 5 repetitions
    python -m bench --quick             up to 10,000 hubs, 1 repetition (for development)
    python -m bench --only apply        or throughput, memory, plan, policytest, ntp, gate, mes,
                                        vpn, alerts, leaks, watch (repeatable)
    python -m bench --only leaks --leak-transitions 500 --leak-seed 7
                                        the support tunnel's chaos loop, longer or replayed
    python -m bench --profile           also cProfile one load + compile + apply of the largest site

Needs root (network namespaces). Results: the printed tables and bench/results/latest.json.
The machine's own ruleset is listed before and after the run; a difference is reported as a
failure (exit 1), since nothing here may touch it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console

from bench import alerts as alerts_bench
from bench import (
    apply,
    gate,
    hotspots,
    memory,
    ntp,
    plan,
    policytest,
    reference,
    report,
    spaces,
    throughput,
    vpn,
)
from bench import leaks as leaks_bench
from bench import mes as mes_bench
from bench import watch as watch_bench
from bench.workdir import Sites
from gateway.lab import netns

REPO = Path(__file__).resolve().parents[1]
BASE_POLICY = REPO / "policies" / "lab.yaml"
RESULTS = REPO / "bench" / "results" / "latest.json"
SIZES = (10, 1_000, 10_000, 50_000)
QUICK_MAX = 10_000
SECTIONS = (
    "apply",
    "throughput",
    "memory",
    "plan",
    "policytest",
    "ntp",
    "gate",
    "mes",
    "vpn",
    "alerts",
    "leaks",
    "watch",
)


@dataclass
class Outcome:
    apply: list[apply.ApplyResult] = field(default_factory=list)
    traffic: throughput.TrafficRun | None = None
    memory: list[memory.MemoryResult] = field(default_factory=list)
    plans: list[plan.PlanResult] = field(default_factory=list)
    policytests: list[policytest.PolicyTestResult] = field(default_factory=list)
    ntp: ntp.NtpRun | None = None
    gate: gate.GateRun | None = None
    profile: hotspots.Profiled | None = None
    mes: mes_bench.MesRun | None = None
    vpn: vpn.VpnRun | None = None
    alerts: alerts_bench.AlertsRun | None = None
    leaks: leaks_bench.LeaksRun | None = None
    watch: watch_bench.WatchRun | None = None


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="up to 10,000 hubs, 1 repetition")
    parser.add_argument("--only", action="append", choices=SECTIONS, help="run only this part")
    parser.add_argument("--reps", type=int, help="repetitions (default 5; 1 with --quick)")
    parser.add_argument("--profile", action="store_true", help="cProfile the largest site")
    parser.add_argument("--output", type=Path, default=RESULTS, help="JSON results file")
    parser.add_argument(
        "--leak-transitions",
        type=int,
        help=f"chaos-loop transitions for `leaks` (default {leaks_bench.TRANSITIONS}; "
        f"{leaks_bench.QUICK_TRANSITIONS} with --quick)",
    )
    parser.add_argument(
        "--leak-seed", type=int, default=leaks_bench.SEED, help="the chaos loop's random seed"
    )
    args = parser.parse_args(argv)
    if args.reps is not None and not 1 <= args.reps <= 50:
        parser.error("--reps must be between 1 and 50")
    if args.leak_transitions is not None and not 1 <= args.leak_transitions <= 10_000:
        parser.error("--leak-transitions must be between 1 and 10000")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if os.geteuid() != 0:
        print("python -m bench: needs root (it builds network namespaces)", file=sys.stderr)
        return 1
    nft = shutil.which("nft") or "/usr/sbin/nft"
    sizes = tuple(n for n in SIZES if not args.quick or n <= QUICK_MAX)
    reps = args.reps or (1 if args.quick else 5)
    sections = tuple(args.only or SECTIONS)
    prefix = spaces.run_prefix()
    signal.signal(signal.SIGTERM, _interrupt)  # so that `finally` blocks clean up
    console = Console(width=None if sys.stdout.isatty() else 160)
    clock = time.perf_counter()

    def progress(message: str) -> None:
        print(f"[{time.perf_counter() - clock:6.1f} s] {message}", file=sys.stderr, flush=True)

    before = root_ruleset(nft)
    outcome = Outcome()
    interrupted = False
    try:
        with tempfile.TemporaryDirectory(prefix=f"plantgate-bench-{prefix}-") as tmp:
            sites = Sites(Path(tmp), BASE_POLICY)
            _measure(outcome, sites, sections, sizes, reps, prefix, nft, args.profile, progress)
            if "leaks" in sections:
                transitions = args.leak_transitions or (
                    leaks_bench.QUICK_TRANSITIONS if args.quick else leaks_bench.TRANSITIONS
                )
                outcome.leaks = leaks_bench.run(REPO, prefix, progress, transitions, args.leak_seed)
            if "watch" in sections:
                outcome.watch = watch_bench.run(
                    REPO, sites.directory, prefix, reps, args.quick, progress
                )
    except KeyboardInterrupt:
        interrupted = True
    finally:
        leftovers = _remove_leftovers(prefix)
        after = root_ruleset(nft)
    if interrupted:
        print("python -m bench: interrupted; namespaces removed, no results", file=sys.stderr)
        return 130 if before == after else 1
    runtime = time.perf_counter() - clock
    _print(console, outcome, runtime, args.output)
    untouched = before == after
    record = to_record(outcome, sizes, reps, prefix, runtime, untouched, leftovers, args)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(record, indent=2) + "\n")
    if leftovers:
        console.print(f"[red]removed namespaces left behind: {', '.join(leftovers)}[/]")
    if not untouched:
        console.print("[red bold]the machine's own ruleset changed during the run![/]")
        return 1
    return 0


def _measure(
    outcome: Outcome,
    sites: Sites,
    sections: tuple[str, ...],
    sizes: tuple[int, ...],
    reps: int,
    prefix: str,
    nft: str,
    profile: bool,
    progress: Callable[[str], None],
) -> None:
    largest = max(sizes)
    if "apply" in sections:
        outcome.apply = apply.run(sites, sizes, reps, f"{prefix}-apply", REPO, nft, progress)
    if "throughput" in sections:
        outcome.traffic = throughput.run(sites, largest, reps, prefix, REPO, progress)
    if "memory" in sections:
        outcome.memory = memory.run(sites, largest, reps, f"{prefix}-mem", REPO, nft, progress)
    if "plan" in sections:
        outcome.plans = plan.run(sites, reps, f"{prefix}-plan", REPO, progress)
    if "policytest" in sections:
        outcome.policytests = policytest.run(sites, REPO, f"{prefix}-ptest", progress)
    if "ntp" in sections:
        outcome.ntp = ntp.run(sites.directory, reps, prefix, REPO, progress)
    if "gate" in sections:
        outcome.gate = gate.run(REPO, prefix, max(reps, 5), progress)
    if "vpn" in sections:
        outcome.vpn = vpn.run(REPO, prefix, max(reps, 5), progress)
    if "mes" in sections:
        outcome.mes = mes_bench.run(progress)
    if "alerts" in sections:
        outcome.alerts = alerts_bench.run(sites.directory, reps, progress)
    if profile:
        progress(f"profile: load + compile + apply of the {largest:,}-hub site")
        outcome.profile = hotspots.profile(sites.site(largest), f"{prefix}-prof")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def root_ruleset(nft: str) -> str:
    """The machine's own ruleset, listed (read only) to prove the run left it alone."""
    done = subprocess.run([nft, "list", "ruleset"], capture_output=True, text=True, timeout=30)
    return done.stdout if done.returncode == 0 else f"(nft failed: {done.stderr.strip()})"


def _remove_leftovers(prefix: str) -> list[str]:
    """Safety net: any `<prefix>-*` namespace still present is emptied and removed."""
    left = [n for n in netns.list_all_namespaces() if n.startswith(f"{prefix}-")]
    for name in left:
        spaces.kill_inside(name)
        netns.delete_namespace(name)
    return left


def _print(console: Console, outcome: Outcome, runtime: float, output: Path) -> None:
    if outcome.apply:
        console.print(report.apply_table(outcome.apply))
        console.print(report.peers_table(outcome.apply))
    if outcome.traffic is not None:
        console.print(report.throughput_table(outcome.traffic))
    if outcome.memory:
        console.print(report.memory_table(outcome.memory))
    if outcome.plans:
        console.print(report.plan_table(outcome.plans))
    if outcome.policytests:
        console.print(report.policytest_table(outcome.policytests))
    if outcome.ntp is not None:
        console.print(report.ntp_table(outcome.ntp))
        for line in report.ntp_offset_lines(outcome.ntp):
            console.print(f"  {line}", highlight=False)
    if outcome.gate is not None:
        console.print(report.gate_table(outcome.gate))
    if outcome.vpn is not None:
        console.print(report.vpn_table(outcome.vpn))
    if outcome.mes is not None:
        console.print(mes_bench.table(outcome.mes))
    if outcome.alerts is not None:
        console.print(alerts_bench.table(outcome.alerts))
    if outcome.leaks is not None:
        console.print(report.leaks_table(outcome.leaks))
        for line in report.leaks_lines(outcome.leaks):
            console.print(f"  {line}", highlight=False, markup=False)
    if outcome.watch is not None:
        for table in watch_bench.tables(outcome.watch):
            console.print(table)
    goals = report.goal_lines(outcome.apply, outcome.traffic)
    if outcome.watch is not None:
        goals += watch_bench.goal_lines(outcome.watch)
    if goals:
        console.print("[bold]Goals (DESIGN targets vs. this run's medians)[/]")
        for line in goals:
            console.print(f"  {line}", highlight=False)
    console.print("[bold]Notes[/]")
    for line in report.notes(outcome.traffic, outcome.memory, outcome.plans, outcome.policytests):
        console.print(f"  - {line}", highlight=False, markup=False)
    if outcome.watch is not None:
        for line in watch_bench.note_lines(outcome.watch):
            console.print(f"  - {line}", highlight=False, markup=False)
    if outcome.profile is not None:
        console.print(f"[bold]cProfile, {outcome.profile.hubs:,} hubs, by cumulative time[/]")
        console.print(outcome.profile.cumulative, highlight=False, markup=False)
        console.print("[bold]by own time[/]")
        console.print(outcome.profile.internal, highlight=False, markup=False)
    console.print(f"total runtime {runtime:.1f} s; results in {output}", highlight=False)


def to_record(
    outcome: Outcome,
    sizes: tuple[int, ...],
    reps: int,
    prefix: str,
    runtime: float,
    untouched: bool,
    leftovers: list[str],
    args: argparse.Namespace,
) -> dict[str, Any]:
    traffic = outcome.traffic
    by_key = {r.key: r for r in traffic.results} if traffic else {}
    base_memory = next((r for r in outcome.memory if r.key == "python"), None)
    return {
        "meta": {
            "finished": datetime.now(UTC).isoformat(timespec="seconds"),
            "kernel": platform.release(),
            "nft": _nft_version(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "sizes": list(sizes),
            "repetitions": reps,
            "quick": bool(args.quick),
            "prefix": prefix,
            "runtime_s": round(runtime, 2),
            "root_ruleset_unchanged": untouched,
            "leftover_namespaces": leftovers,
        },
        "apply": [r.to_dict() for r in outcome.apply],
        "throughput": None
        if traffic is None
        else {
            "topology": traffic.topology,
            "note": traffic.note,
            "iperf_seconds": traffic.seconds,
            "connect_seconds": traffic.connect_seconds,
            "rulesets": [r.to_dict(by_key.get("none"), by_key.get("ct")) for r in traffic.results],
        },
        "memory": [r.to_dict(base_memory) for r in outcome.memory],
        "plan": [r.to_dict() for r in outcome.plans],
        "policytest": [r.to_dict() for r in outcome.policytests],
        "ntp": outcome.ntp.to_dict() if outcome.ntp is not None else None,
        "gate": outcome.gate.to_dict() if outcome.gate is not None else None,
        "vpn": outcome.vpn.to_dict() if outcome.vpn is not None else None,
        "mes": outcome.mes.to_dict() if outcome.mes is not None else None,
        "alerts": outcome.alerts.to_dict() if outcome.alerts is not None else None,
        "leaks": outcome.leaks.to_dict() if outcome.leaks is not None else None,
        "watch": outcome.watch.to_dict() if outcome.watch is not None else None,
        "goals": report.goal_lines(outcome.apply, traffic),
        "reference_not_measured_here": reference.to_dict(),
    }


def _nft_version() -> str:
    try:
        done = subprocess.run(["nft", "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return done.stdout.strip()


if __name__ == "__main__":
    sys.exit(main())
