"""`--profile`: where the time of one load + compile + apply goes, by cProfile.

Runs once, outside the timed measurements (cProfile slows Python code down, so these figures
say *where* time goes, not how much a re-apply costs). The apply replaces a table of the same
policy in a throwaway namespace, like measurement 1.
"""

from __future__ import annotations

import cProfile
import io
import pstats
from dataclasses import dataclass

from bench import spaces
from bench.workdir import Site
from gateway.policy.apply import apply_compiled
from gateway.policy.compile import compile_policy
from gateway.policy.load import load_text
from gateway.policy.nft import Nft


@dataclass(frozen=True)
class Profiled:
    hubs: int
    cumulative: str  # pstats text, sorted by cumulative time
    internal: str  # pstats text, sorted by time spent in the function itself


def profile(site: Site, namespace: str, lines: int = 18) -> Profiled:
    with spaces.throwaway_namespace(namespace):
        spaces.run_in(namespace, _pipeline, site)  # the table the profiled apply replaces
        profiler = cProfile.Profile()
        spaces.run_in(namespace, _profiled, profiler, site)
    return Profiled(
        site.hubs, _stats(profiler, "cumulative", lines), _stats(profiler, "tottime", lines)
    )


def _pipeline(site: Site) -> None:
    loaded = load_text(site.yaml_text, str(site.yaml_path))
    apply_compiled(compile_policy(loaded), Nft(), loaded.file)


def _profiled(profiler: cProfile.Profile, site: Site) -> None:
    profiler.enable()
    try:
        _pipeline(site)
    finally:
        profiler.disable()


def _stats(profiler: cProfile.Profile, key: str, lines: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats(key).print_stats(lines)
    text = out.getvalue()
    start = text.find("   ncalls")
    return text[start:].rstrip() if start >= 0 else text.rstrip()
