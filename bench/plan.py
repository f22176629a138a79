"""Measurement 4: what `policy plan` costs, for the lab policy and a 10,000-hub site.

Two cases, each a baseline (applied and recorded as the current revision) and a candidate:

* lab  — policies/lab.yaml against itself with one rule changed (manage-page also allows ssh);
* site — a 10,000-hub site against the same site with 100 more hubs.

Per case, side by side:

* load — both policies, YAML -> validated model (`load_text`), in this process;
* plan — `plan(old, new)` in this process on the loaded policies: the diff and every risk
         check, nothing else;
* cli  — `plantgate policy plan FILE` as a child process in a throwaway namespace that holds
         the baseline's table: what a user waits for (interpreter start, imports, loading the
         candidate and the stored revision, the live drift check, which lists the table and
         compiles the stored policy for its run-time sets, then the plan and its output).
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import spaces
from bench.sites import hub_addresses, site_yaml
from bench.stats import Summary, summarize
from bench.workdir import Sites
from gateway.policy.load import LoadedPolicy, load_text
from gateway.policy.plan import Plan, plan

SITE_HUBS = 10_000
ADDED_HUBS = 100
CLI_TIMEOUT = 180.0
MANAGE_PAGE = "    allow: [https]\n    comment: The Manage Page"


@dataclass(frozen=True)
class PlanCase:
    """A baseline and a candidate policy, as files and as text."""

    key: str
    label: str
    old_path: Path
    new_path: Path

    def texts(self) -> tuple[str, str]:
        return self.old_path.read_text(encoding="utf-8"), self.new_path.read_text(encoding="utf-8")


@dataclass(frozen=True)
class PlanResult:
    key: str
    label: str
    load: Summary
    plan: Summary
    cli: Summary
    shows: str  # what the plan found, to show it did the work

    def to_dict(self) -> dict[str, object]:
        return {
            "case": self.key,
            "label": self.label,
            "load_both_s": self.load.to_dict(),
            "plan_s": self.plan.to_dict(),
            "cli_s": self.cli.to_dict(),
            "plan_shows": self.shows,
        }


def lab_case(sites: Sites) -> PlanCase:
    old = sites.base_text
    if old.count(MANAGE_PAGE) != 1:
        raise ValueError("the lab policy no longer has the manage-page rule this case edits")
    new = old.replace(MANAGE_PAGE, MANAGE_PAGE.replace("[https]", "[https, ssh]"))
    return _write(sites.directory, "lab", "lab policy, one rule changed", old, new)


def site_case(sites: Sites, hubs: int = SITE_HUBS, added: int = ADDED_HUBS) -> PlanCase:
    """`hubs` hubs against the same site with `added` more (every n-th address held back)."""
    every = sorted(hub_addresses(hubs + added))
    step = (hubs + added) // added
    held = set(every[step - 1 :: step][:added])
    old = site_yaml(sites.base_text, [a for a in every if a not in held])
    new = site_yaml(sites.base_text, every).replace(f"-{hubs + added}-hubs", f"-{hubs}-hubs")
    label = f"{hubs:,}-hub site, {added} hubs added"
    return _write(sites.directory, f"site-{hubs}", label, old, new)


def _write(directory: Path, key: str, label: str, old: str, new: str) -> PlanCase:
    old_path, new_path = directory / f"plan-{key}-old.yaml", directory / f"plan-{key}-new.yaml"
    old_path.write_text(old, encoding="utf-8")
    new_path.write_text(new, encoding="utf-8")
    return PlanCase(key, label, old_path, new_path)


def run(
    sites: Sites,
    reps: int,
    namespace: str,
    repo: Path,
    progress: Callable[[str], None],
    site_hubs: int = SITE_HUBS,
) -> list[PlanResult]:
    """Both cases, each in its own throwaway namespace (created and removed here)."""
    progress(f"plan: generating the lab case and the {site_hubs:,}-hub case")
    cases = [lab_case(sites), site_case(sites, site_hubs)]
    results = []
    for index, case in enumerate(cases):
        progress(f"plan: measuring {case.label} x {reps} repetitions")
        results.append(measure(case, reps, f"{namespace}{index}", repo))
    return results


def measure(case: PlanCase, reps: int, namespace: str, repo: Path) -> PlanResult:
    old_text, new_text = case.texts()
    loads, plans, clis = [], [], []
    shown: Plan | None = None
    for _ in range(reps):
        start = time.perf_counter()
        old = load_text(old_text, case.old_path.name)
        new = load_text(new_text, str(case.new_path))
        loads.append(time.perf_counter() - start)
        seconds, shown = time_plan(old, new)
        plans.append(seconds)
    with (
        spaces.throwaway_namespace(namespace),
        tempfile.TemporaryDirectory(prefix="plan-state-", dir=case.old_path.parent) as state,
    ):
        _cli(namespace, repo, "apply", case.old_path, Path(state), "--no-resolve")
        for _ in range(reps):
            clis.append(_cli(namespace, repo, "plan", case.new_path, Path(state)))
    assert shown is not None
    return PlanResult(
        case.key, case.label, summarize(loads), summarize(plans), summarize(clis), _shows(shown)
    )


def time_plan(old: LoadedPolicy, new: LoadedPolicy) -> tuple[float, Plan]:
    start = time.perf_counter()
    result = plan(old, new)
    return time.perf_counter() - start, result


def _shows(result: Plan) -> str:
    elements = sum(len(e.added) + len(e.removed) for c in result.definitions for e in c.elements)
    return (
        f"{len(result.rules)} rule changes, {len(result.definitions)} definition changes "
        f"({elements:,} elements), {len(result.flags)} flags"
    )


def cli_argv(command: str, policy: Path, state: Path, *extra: str) -> list[str]:
    """`plantgate policy COMMAND` as this interpreter runs it (the console script does the same)."""
    return [
        sys.executable,
        "-m",
        "gateway.cli",
        "policy",
        command,
        str(policy),
        "--state-dir",
        str(state),
        *extra,
    ]


def _cli(namespace: str, repo: Path, command: str, policy: Path, state: Path, *extra: str) -> float:
    done = spaces.run_timed(
        namespace,
        cli_argv(command, policy, state, *extra),
        timeout=CLI_TIMEOUT,
        env=spaces.child_env(repo),
        cwd=str(repo),
    )
    return done.check().seconds
