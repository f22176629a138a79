"""Measurement 5: what `plantgate policy test --kernel` costs on the shipped lab tests.

The same test file (policies/tests/lab.yaml, every expectation) against two policies:

* lab  — policies/lab.yaml;
* site — the 10,000-hub site (the lab policy with 10,000 hub addresses added to the hubs
         zone), so loading, compiling and the DUT's zone set carry a large site.

Per policy, side by side, always 3 runs each (a kernel run takes seconds):

* model  — `plantgate policy test POLICY TESTS` as a child process: interpreter start,
           imports, load, and every expectation explained;
* kernel — the same with `--kernel`: also the throwaway DUT and peers, the apply, one real
           exchange per expectation (gate groups and spoofed sources in their own phases),
           and the teardown.

The CLI runs inside a throwaway namespace of the benchmark (so even its own process never sits
in the machine's namespace) and builds its testbed under its own prefix, `<run prefix>p<N>`;
anything left under that prefix is removed afterwards. A run that fails or disagrees with the
model is an error, not a figure.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import spaces
from bench.stats import Summary, summarize
from bench.workdir import Sites
from gateway.lab import netns

REPS = 3
SITE_HUBS = 10_000
CLI_TIMEOUT = 180.0


@dataclass(frozen=True)
class PolicyTestResult:
    key: str
    label: str
    hubs: int  # hub addresses added to the lab policy (0 for the lab itself)
    expectations: int
    probed: int  # expectations the kernel answered
    model: Summary
    kernel: Summary

    def to_dict(self) -> dict[str, object]:
        return {
            "policy": self.key,
            "extra_hubs": self.hubs,
            "expectations": self.expectations,
            "probed_in_kernel": self.probed,
            "model_s": self.model.to_dict(),
            "kernel_s": self.kernel.to_dict(),
        }


def cli_argv(policy: Path, tests: Path, kernel_prefix: str | None) -> list[str]:
    """`plantgate policy test` as this interpreter runs it, JSON out, with --kernel if asked."""
    argv = [sys.executable, "-m", "gateway.cli", "policy", "test", str(policy), str(tests)]
    argv.append("--json")
    if kernel_prefix is not None:
        argv += ["--kernel", "--prefix", kernel_prefix]
    return argv


def run(
    sites: Sites,
    repo: Path,
    namespace: str,
    progress: Callable[[str], None],
) -> list[PolicyTestResult]:
    """Both policies, in one throwaway namespace (created and removed here)."""
    tests = repo / "policies" / "tests" / "lab.yaml"
    cases = [("lab", "lab policy", 0, repo / "policies" / "lab.yaml")]
    progress(f"policytest: generating the {SITE_HUBS:,}-hub site")
    cases.append(("site", f"{SITE_HUBS:,}-hub site", SITE_HUBS, sites.site(SITE_HUBS).yaml_path))
    results = []
    with spaces.throwaway_namespace(namespace):
        for turn, (key, label, hubs, policy) in enumerate(cases):
            progress(f"policytest: {label}, model and --kernel x {REPS}")
            prefix = f"{namespace.split('-')[0]}p{turn}"
            try:
                results.append(_measure(key, label, hubs, policy, tests, namespace, prefix, repo))
            finally:
                _remove_left(prefix)
    return results


def _measure(
    key: str,
    label: str,
    hubs: int,
    policy: Path,
    tests: Path,
    namespace: str,
    prefix: str,
    repo: Path,
) -> PolicyTestResult:
    model, kernel = [], []
    counts: dict[str, Any] = {}
    for _ in range(REPS):
        seconds, _ = _cli(cli_argv(policy, tests, None), namespace, repo)
        model.append(seconds)
        seconds, counts = _cli(cli_argv(policy, tests, prefix), namespace, repo)
        kernel.append(seconds)
    return PolicyTestResult(
        key,
        label,
        hubs,
        int(counts["expectations"]),
        int(counts["kernel_agrees"]),
        summarize(model),
        summarize(kernel),
    )


def _cli(argv: list[str], namespace: str, repo: Path) -> tuple[float, dict[str, Any]]:
    """Run one `policy test`; its wall time and counts. Any failure stops the benchmark."""
    done = spaces.run_timed(
        namespace, argv, timeout=CLI_TIMEOUT, env=spaces.child_env(repo), cwd=str(repo)
    ).check()
    counts: dict[str, Any] = json.loads(done.stdout)["counts"]
    if counts["failed"]:
        raise RuntimeError(f"policy test failed {counts['failed']} expectations: {argv}")
    return done.seconds, counts


def _remove_left(prefix: str) -> None:
    """Safety net: the CLI removes its testbed itself; a killed CLI may not have."""
    for name in netns.list_all_namespaces():
        if name.startswith(f"{prefix}-"):
            spaces.kill_inside(name)
            netns.delete_namespace(name)
