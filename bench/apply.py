"""Measurement 1: what a policy re-apply costs, ours against raw `nft -f` and a naive rule list.

For each site size, in one throwaway namespace, side by side:

* load  — YAML text -> validated model (`load_text`), in this process;
* ours  — `compile_policy` + `apply_compiled` (a fresh libnftables context, as a new process
          would have), replacing the table of the same policy that is already loaded;
* raw   — `nft -f` of exactly the text `ours` loads, as a child process (start-up included,
          nothing subtracted): the floor any tool that drives nft must stand on;
* naive — `nft -f` of the naive rendering (one rule per hub), replacing a naive table;
* cli   — `plantgate policy apply FILE --no-resolve` as a child process: what a user waits for
          (interpreter start, imports, load, compile, apply, state files).

Each repetition runs the four contenders in a rotated order; before a contender runs, the
namespace holds the table of its own kind (set-based or naive), loaded untimed if needed, so
every figure is a *replacement* of a same-shaped table, as a real re-apply is.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import spaces
from bench.stats import Summary, ratio, rotated, summarize
from bench.workdir import Site, Sites
from gateway.policy.apply import apply_compiled
from gateway.policy.compile import compile_policy
from gateway.policy.load import LoadedPolicy, load_text
from gateway.policy.nft import Nft

CONTENDERS = ("ours", "raw", "naive", "cli")
KIND = {"ours": "sets", "raw": "sets", "cli": "sets", "naive": "naive"}
NFT_TIMEOUT = 120.0
CLI_TIMEOUT = 180.0


@dataclass(frozen=True)
class ApplyResult:
    hubs: int
    load: Summary
    timings: dict[str, Summary]  # contender -> seconds
    script_bytes: int
    naive_bytes: int

    def ratios(self) -> dict[str, float | None]:
        t = self.timings
        return {
            "ours/raw": ratio(t["ours"], t["raw"]),
            "naive/ours": ratio(t["naive"], t["ours"]),
            "naive/raw": ratio(t["naive"], t["raw"]),
            "cli/raw": ratio(t["cli"], t["raw"]),
        }

    def to_dict(self) -> dict[str, object]:
        return {
            "hubs": self.hubs,
            "load_s": self.load.to_dict(),
            "seconds": {name: s.to_dict() for name, s in self.timings.items()},
            "ratios": self.ratios(),
            "script_bytes": self.script_bytes,
            "naive_bytes": self.naive_bytes,
        }


@dataclass(frozen=True)
class Context:
    namespace: str
    repo: Path
    nft: str  # path of the nft binary
    state_dir: Path


def run(
    sites: Sites,
    sizes: Sequence[int],
    reps: int,
    namespace: str,
    repo: Path,
    nft: str,
    progress: Callable[[str], None],
) -> list[ApplyResult]:
    """All sizes, in one throwaway namespace (created and removed here)."""
    results = []
    with (
        spaces.throwaway_namespace(namespace),
        tempfile.TemporaryDirectory(prefix="state-", dir=sites.directory) as state,
    ):
        ctx = Context(namespace, repo, nft, Path(state))
        for hubs in sizes:
            progress(f"apply: generating the {hubs:,}-hub site")
            site = sites.site(hubs)
            progress(f"apply: measuring {hubs:,} hubs x {reps} repetitions")
            results.append(measure(site, reps, ctx))
    return results


def measure(site: Site, reps: int, ctx: Context) -> ApplyResult:
    load = summarize([time_load(site.yaml_text, str(site.yaml_path)) for _ in range(reps)])
    runners: dict[str, Callable[[], float]] = {
        "ours": lambda: spaces.run_in(ctx.namespace, time_ours, site.loaded),
        "raw": lambda: _nft_file(ctx, site.nft_path),
        "naive": lambda: _nft_file(ctx, site.naive_path),
        "cli": lambda: _cli(ctx, site.yaml_path),
    }
    primes = {"sets": runners["raw"], "naive": runners["naive"]}
    samples: dict[str, list[float]] = {name: [] for name in CONTENDERS}
    present: str | None = None
    for turn in range(reps):
        for name in rotated(CONTENDERS, turn):
            if present != KIND[name]:
                primes[KIND[name]]()  # untimed: the table this contender replaces
                present = KIND[name]
            samples[name].append(runners[name]())
    return ApplyResult(
        hubs=site.hubs,
        load=load,
        timings={name: summarize(values) for name, values in samples.items()},
        script_bytes=len(site.compiled.text.encode()),
        naive_bytes=site.naive_path.stat().st_size,
    )


def time_load(text: str, file: str) -> float:
    start = time.perf_counter()
    load_text(text, file)
    return time.perf_counter() - start


def time_ours(loaded: LoadedPolicy) -> float:
    """Compile and apply in the calling thread's namespace; seconds."""
    start = time.perf_counter()
    compiled = compile_policy(loaded)
    apply_compiled(compiled, Nft(), loaded.file)
    return time.perf_counter() - start


def _nft_file(ctx: Context, path: Path) -> float:
    done = spaces.run_timed(ctx.namespace, [ctx.nft, "-f", str(path)], timeout=NFT_TIMEOUT)
    return done.check().seconds


def cli_argv(site_file: Path, state_dir: Path) -> list[str]:
    """`plantgate policy apply` as this interpreter runs it (the console script does the same)."""
    return [
        sys.executable,
        "-m",
        "gateway.cli",
        "policy",
        "apply",
        str(site_file),
        "--state-dir",
        str(state_dir),
        "--no-resolve",
    ]


def _cli(ctx: Context, site_file: Path) -> float:
    done = spaces.run_timed(
        ctx.namespace,
        cli_argv(site_file, ctx.state_dir),
        timeout=CLI_TIMEOUT,
        env=spaces.child_env(ctx.repo),
        cwd=str(ctx.repo),
    )
    return done.check().seconds
