"""Measurement 2: what the ruleset costs traffic — bulk throughput and new connections.

hub1 -> gw, with each ruleset loaded in gw in turn (rotated per repetition):

* none   — no `inet plantgate` table;
* ct     — a stateful minimum: input and output accept, after `ct state established,related
           accept` (what connection tracking alone costs, before any policy);
* lab    — the lab policy (sets, a handful of addresses);
* sets   — the N-hub site (N addresses in the hubs zone's interval set);
* naive  — the same site as N per-host rules walked before the set lookup.

Bulk: iperf3 from hub1 to an iperf3 server on gw port 8443 (hub device API, allowed hubs ->
appliance). Conntrack's established/related rule comes first in every base chain, so only a
connection's first packet walks the rules; bulk throughput therefore shows the per-packet cost
of the fast path, and the new-connection rate (connect + RST to port 8140, hub enrollment,
also allowed) shows what walking the rules costs.

On a machine with two or more CPUs, sender and receiver are pinned to different CPUs (iperf3
`-A 0,1`, connrate `--cpu`): unpinned runs on a 2-vCPU VM spread by a third between runs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench import spaces, topology
from bench.stats import Summary, ratio, rotated, summarize
from bench.workdir import Sites
from gateway.policy.nft import Nft

IPERF_PORT = 8443
CONNECT_PORT = 8140
NO_TABLE = "table inet plantgate\ndelete table inet plantgate\n"
CT_ONLY = (
    NO_TABLE
    + "table inet plantgate {\n"
    + "".join(
        f"\tchain {hook} {{\n"
        f"\t\ttype filter hook {hook} priority filter; policy accept;\n"
        "\t\tct state established,related accept\n"
        "\t}\n"
        for hook in ("input", "output")
    )
    + "}\n"
)
PINNED = (os.cpu_count() or 1) >= 2


@dataclass(frozen=True)
class Ruleset:
    key: str
    label: str
    script: str
    per_host_rules: int


@dataclass(frozen=True)
class TrafficResult:
    key: str
    label: str
    per_host_rules: int
    gbits: Summary
    connects: Summary  # new connections per second
    failures: int

    def to_dict(
        self, baseline: TrafficResult | None, stateful: TrafficResult | None
    ) -> dict[str, object]:
        return {
            "ruleset": self.key,
            "label": self.label,
            "per_host_rules": self.per_host_rules,
            "gbit_s": self.gbits.to_dict(),
            "connects_per_s": self.connects.to_dict(),
            "connect_failures": self.failures,
            "gbit_ratio_vs_none": ratio(self.gbits, baseline.gbits) if baseline else None,
            "connect_ratio_vs_none": ratio(self.connects, baseline.connects) if baseline else None,
            "gbit_ratio_vs_ct_only": ratio(self.gbits, stateful.gbits) if stateful else None,
            "connect_ratio_vs_ct_only": (
                ratio(self.connects, stateful.connects) if stateful else None
            ),
        }


@dataclass(frozen=True)
class TrafficRun:
    topology: str
    note: str
    seconds: float
    connect_seconds: float
    results: list[TrafficResult]


def rulesets(sites: Sites, hubs: int) -> list[Ruleset]:
    site = sites.site(hubs)
    return [
        Ruleset("none", "no table", NO_TABLE, 0),
        Ruleset("ct", "conntrack only (stateful minimum)", CT_ONLY, 0),
        Ruleset("lab", "lab policy (sets)", sites.base.text, 0),
        Ruleset("sets", f"{hubs:,}-hub site (sets)", site.compiled.text, 0),
        Ruleset("naive", f"{hubs:,}-hub site, naive", site.naive_path.read_text(), hubs),
    ]


@dataclass
class _Samples:
    gbits: list[float] = field(default_factory=list)
    connects: list[float] = field(default_factory=list)
    failures: int = 0

    def result(self, ruleset: Ruleset) -> TrafficResult:
        return TrafficResult(
            ruleset.key,
            ruleset.label,
            ruleset.per_host_rules,
            summarize(self.gbits),
            summarize(self.connects),
            self.failures,
        )


def run(
    sites: Sites,
    hubs: int,
    reps: int,
    prefix: str,
    repo: Path,
    progress: Callable[[str], None],
    seconds: float = 3.0,
    connect_seconds: float = 2.0,
) -> TrafficRun:
    by_key = {r.key: r for r in rulesets(sites, hubs)}
    samples = {key: _Samples() for key in by_key}
    progress("throughput: building hub1 -> gw")
    with (
        tempfile.TemporaryDirectory(prefix="lab-", dir=sites.directory) as root,
        topology.hosts(prefix, Path(root), repo) as where,
        _servers(where, repo, Path(root)),
    ):
        if where.note:
            progress(f"throughput: {where.note}; using a veth pair instead")
        for turn in range(reps):
            progress(f"throughput: repetition {turn + 1} of {reps}")
            for key in rotated(list(by_key), turn):
                load_ruleset(where.gw, by_key[key].script)
                gbits, per_s, failed = _one(where, repo, seconds, connect_seconds)
                samples[key].gbits.append(gbits)
                samples[key].connects.append(per_s)
                samples[key].failures += failed
        load_ruleset(where.gw, NO_TABLE)
    results = [samples[key].result(ruleset) for key, ruleset in by_key.items()]
    return TrafficRun(where.kind, where.note, seconds, connect_seconds, results)


def load_ruleset(namespace: str, script: str) -> None:
    spaces.run_in(namespace, lambda: Nft().run_script(script))


def _one(
    where: topology.Hosts, repo: Path, seconds: float, connect_seconds: float
) -> tuple[float, float, int]:
    bits = iperf(where, seconds)
    connects, failures, took = connect_rate(where, repo, connect_seconds)
    return bits / 1e9, connects / took, failures


def iperf(where: topology.Hosts, seconds: float) -> float:
    """Bits per second received by gw from one iperf3 TCP stream from hub1."""
    argv = [_binary("iperf3"), "-c", where.gw_addr, "-p", str(IPERF_PORT), "-t", f"{seconds:g}"]
    argv += ["-J", "--connect-timeout", "3000", *(["-A", "0,1"] if PINNED else [])]
    done = spaces.run_timed(where.hub, argv, timeout=seconds + 15).check()
    data = json.loads(done.stdout)
    return float(data["end"]["sum_received"]["bits_per_second"])


def connect_rate(where: topology.Hosts, repo: Path, seconds: float) -> tuple[int, int, float]:
    argv = [sys.executable, "-m", "bench.connrate", "connect", "--host", where.gw_addr]
    argv += ["--port", str(CONNECT_PORT), "--seconds", f"{seconds:g}"]
    argv += ["--cpu", "0"] if PINNED else []
    env = spaces.child_env(repo)
    done = spaces.run_timed(where.hub, argv, timeout=seconds + 15, env=env, cwd=str(repo))
    data = json.loads(done.check().stdout)
    return int(data["connects"]), int(data["failures"]), float(data["seconds"])


@contextmanager
def _servers(where: topology.Hosts, repo: Path, logs: Path) -> Iterator[None]:
    """iperf3 and the connect listener on gw, stopped afterwards."""
    with ExitStack() as stack:
        iperf_argv = [_binary("iperf3"), "-s", "-B", where.gw_addr, "-p", str(IPERF_PORT)]
        iperf_argv.append("--forceflush")
        stack.enter_context(_server(where.gw, iperf_argv, logs / "iperf3.log", "listening"))
        listen_argv = [sys.executable, "-m", "bench.connrate", "serve", "--bind", where.gw_addr]
        listen_argv += ["--port", str(CONNECT_PORT), *(["--cpu", "1"] if PINNED else [])]
        stack.enter_context(
            _server(where.gw, listen_argv, logs / "connrate.log", "ready", repo=repo)
        )
        yield


@contextmanager
def _server(
    namespace: str, argv: Sequence[str], log: Path, ready: str, repo: Path | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as out:
        env = spaces.child_env(repo) if repo else None
        proc = spaces.spawn_in(
            namespace, [*argv], stdout=out, env=env, cwd=str(repo) if repo else None
        )
    try:
        _wait_for(log, ready, proc)
        yield proc
    finally:
        spaces.stop(proc)


def _wait_for(log: Path, text: str, proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited at start: {log.read_text()[-500:]}")
        time.sleep(0.05)
    raise RuntimeError(f"{proc.args!r} not ready within {timeout:.0f} s")


def _binary(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/bin:/sbin:/bin")
    if found is None:
        raise RuntimeError(f"{name} is not installed (make bench installs it)")
    return found
