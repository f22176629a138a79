"""Measurement 3: peak resident memory of `plantgate policy apply`, against bare Python.

Each command runs in a throwaway namespace under the `peakrss.py` launcher, which reports the
command's own `ru_maxrss` (see there why a command forked straight from this process would
report this process's RSS instead). Rows, in a rotated order per repetition:

* `/bin/true` — the floor of the method (the launcher's RSS at fork);
* `python -c pass` in the same interpreter — the baseline;
* `python -c 'import gateway.cli'` — what the imports alone cost;
* `plantgate policy apply` of the lab policy, and of the N-hub site, each replacing a table of
  the same policy (loaded untimed just before): apply reads the live table, so what is loaded
  before it changes what it holds in memory.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import spaces
from bench.apply import cli_argv
from bench.stats import Summary, ratio, rotated, summarize
from bench.workdir import Sites

TIMEOUT = 180.0
LAUNCHER = Path(__file__).resolve().with_name("peakrss.py")


@dataclass(frozen=True)
class Command:
    label: str
    argv: list[str]
    prime: Path | None = None  # ruleset to load (untimed) before the command runs


@dataclass(frozen=True)
class MemoryResult:
    key: str
    label: str
    mib: Summary
    seconds: Summary

    def to_dict(self, baseline: MemoryResult | None) -> dict[str, object]:
        return {
            "command": self.key,
            "label": self.label,
            "peak_rss_mib": self.mib.to_dict(),
            "seconds": self.seconds.to_dict(),
            "ratio_vs_python": ratio(self.mib, baseline.mib) if baseline else None,
        }


def commands(sites: Sites, hubs: int, state: Path) -> dict[str, Command]:
    python = sys.executable
    true = shutil.which("true") or "/bin/true"
    site = sites.site(hubs)
    return {
        "floor": Command("/bin/true (floor of the method)", [true]),
        "python": Command("python -c pass (baseline)", [python, "-c", "pass"]),
        "imports": Command("python -c 'import gateway.cli'", [python, "-c", "import gateway.cli"]),
        "apply-lab": Command(
            "plantgate policy apply lab.yaml", cli_argv(sites.base_file, state), sites.base_nft
        ),
        "apply-site": Command(
            f"plantgate policy apply {hubs:,}-hub site",
            cli_argv(site.yaml_path, state),
            site.nft_path,
        ),
    }


def run(
    sites: Sites,
    hubs: int,
    reps: int,
    namespace: str,
    repo: Path,
    nft: str,
    progress: Callable[[str], None],
) -> list[MemoryResult]:
    progress(f"memory: peak RSS, {reps} repetitions")
    with (
        spaces.throwaway_namespace(namespace),
        tempfile.TemporaryDirectory(prefix="state-", dir=sites.directory) as state,
    ):
        todo = commands(sites, hubs, Path(state))
        mib: dict[str, list[float]] = {key: [] for key in todo}
        took: dict[str, list[float]] = {key: [] for key in todo}
        for turn in range(reps):
            for key in rotated(list(todo), turn):
                command = todo[key]
                if command.prime is not None:
                    argv = [nft, "-f", str(command.prime)]
                    spaces.run_timed(namespace, argv, timeout=TIMEOUT).check()
                kib, seconds = peak_rss(namespace, command.argv, repo, Path(state))
                mib[key].append(kib / 1024)
                took[key].append(seconds)
    return [
        MemoryResult(key, command.label, summarize(mib[key]), summarize(took[key]))
        for key, command in todo.items()
    ]


def peak_rss(namespace: str, argv: Sequence[str], repo: Path, scratch: Path) -> tuple[int, float]:
    """(peak RSS in KiB, wall seconds) of `argv` run to its end in `namespace`."""
    report = scratch / "peakrss.json"
    launcher = [sys.executable, "-S", "-I", str(LAUNCHER), str(report), *argv]
    spaces.run_timed(
        namespace, launcher, timeout=TIMEOUT, env=spaces.child_env(repo), cwd=str(repo)
    ).check()
    data = json.loads(report.read_text())
    return int(data["maxrss_kib"]), float(data["seconds"])
