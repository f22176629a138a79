"""The benchmark's files: generated sites, their rendered rulesets and naive renderings.

Each site is generated once per run and shared by all measurements; files live in the run's
temporary directory and disappear with it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.sites import hub_addresses, naive_table, site_yaml
from gateway.policy.compile import Compiled, compile_policy
from gateway.policy.load import LoadedPolicy, load_text
from gateway.policy.ruleset import render


@dataclass(frozen=True)
class Site:
    """A synthetic site with `hubs` extra hub addresses, ready to load every way we compare."""

    hubs: int
    yaml_path: Path
    loaded: LoadedPolicy
    compiled: Compiled
    nft_path: Path  # exactly the text our apply loads
    naive_path: Path  # one rule per extra hub instead of the set

    @property
    def yaml_text(self) -> str:
        return self.loaded.source.text


class Sites:
    """Generates sites on demand from the base (lab) policy and keeps them for the run."""

    def __init__(self, directory: Path, base_file: Path) -> None:
        self.directory = directory
        self.base_file = base_file
        self.base_text = base_file.read_text(encoding="utf-8")
        self.base = compile_policy(load_text(self.base_text, str(base_file)))
        self.base_nft = directory / "base.nft"
        self.base_nft.write_text(self.base.text)
        self._sites: dict[int, Site] = {}

    def site(self, hubs: int) -> Site:
        if hubs not in self._sites:
            self._sites[hubs] = self._make(hubs)
        return self._sites[hubs]

    def _make(self, hubs: int) -> Site:
        addresses = hub_addresses(hubs)
        yaml_path = self.directory / f"site-{hubs}.yaml"
        yaml_path.write_text(site_yaml(self.base_text, addresses), encoding="utf-8")
        loaded = load_text(yaml_path.read_text(encoding="utf-8"), str(yaml_path))
        compiled = compile_policy(loaded)
        nft_path = self.directory / f"site-{hubs}.nft"
        nft_path.write_text(compiled.text)
        naive_path = self.directory / f"site-{hubs}-naive.nft"
        naive_path.write_text(render(naive_table(self.base.table, addresses)))
        return Site(hubs, yaml_path, loaded, compiled, nft_path, naive_path)
