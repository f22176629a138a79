"""Keeps chronyd's upstream servers inside what the firewall allows (adapter).

Each round it reads the upstream endpoints' resolved sets, chooses up to four addresses
(upstreams.choose), writes them to chronyd's sourcedir and asks chronyd to reload its
sources, and re-adds the chosen addresses to their sets with a long timeout so that DNS
rotating a pool away from them does not cut chronyd off mid-use.
"""

from __future__ import annotations

import logging

from gateway.dns.lookup import install
from gateway.ntp.chronyd import chronyc, read_report
from gateway.ntp.config import ChronyPaths, Timing, upstream_options
from gateway.ntp.upstreams import (
    PIN_EVERY_S,
    PIN_TIMEOUT_S,
    UNREACHABLE_AFTER_S,
    choose,
    render_sources,
)
from gateway.policy.compile import set_name
from gateway.policy.load import LoadedPolicy
from gateway.policy.model import Policy, TimeService
from gateway.policy.nft import Element, Nft
from gateway.state import write_atomic

log = logging.getLogger("plantgated.ntp")


class UpstreamKeeper:
    """Chooses chronyd's upstream addresses from the firewall's sets and keeps them pinned."""

    def __init__(self, paths: ChronyPaths, timing: Timing) -> None:
        self.paths = paths
        self.timing = timing
        self.nft = Nft()  # its own libnftables context: used from worker threads only
        self.chosen: list[str] = []
        self.since: dict[str, float] = {}
        self.pinned_at = 0.0

    def update(self, loaded: LoadedPolicy, now: float) -> None:
        time_ = loaded.policy.time
        if time_ is None or time_.nts:
            return  # with NTS chronyd uses the names itself (see config.py)
        sets = self._sets(loaded.policy, time_)
        if not sets:
            return
        members = set_members(self.nft.sets_json(sorted(sets)))
        owner = {address: name for name, values in members.items() for address in values}
        dead = self._unreachable(now)
        chosen = choose(owner, self.chosen, dead)
        if chosen != self.chosen:
            self._write(chosen, upstream_options(time_, self.timing))
            self.since = {a: self.since.get(a, now) for a in chosen}
            self.chosen = chosen
            self.pinned_at = 0.0
        if chosen and now - self.pinned_at >= PIN_EVERY_S:
            install(self.nft, _pins(chosen, owner, sets))
            self.pinned_at = now

    @staticmethod
    def _sets(policy: Policy, time_: TimeService) -> dict[str, int]:
        """Set name -> IP version, for the upstream endpoints that have names."""
        return {
            set_name("ep", name, version): version
            for name in time_.upstreams
            if policy.endpoints[name].fqdn
            for version in (4, 6)
        }

    def _unreachable(self, now: float) -> list[str]:
        if not self.chosen:
            return []
        sources = {s.address: s for s in read_report(self.paths.socket).sources}
        return [
            address
            for address in self.chosen
            if now - self.since.get(address, now) >= UNREACHABLE_AFTER_S
            and (address not in sources or sources[address].reach == 0)
        ]

    def _write(self, chosen: list[str], options: str) -> None:
        self.paths.sources_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_atomic(
            self.paths.sources_dir / "upstreams.sources",
            render_sources(chosen, options),
            mode=0o600,
        )
        chronyc(self.paths.socket, "reload sources")
        log.info("relay upstreams now %s", ", ".join(chosen) or "none (nothing resolved yet)")


def set_members(table: dict[str, object]) -> dict[str, list[str]]:
    """Set name -> its single-address elements, from `nft -j list set` output (pure)."""
    found: dict[str, list[str]] = {}
    for item in table.get("nftables", []):  # type: ignore[attr-defined]
        nft_set = item.get("set") if isinstance(item, dict) else None
        if not nft_set:
            continue
        values = found.setdefault(nft_set["name"], [])
        for element in nft_set.get("elem", []):
            inner = element.get("elem", {}).get("val") if isinstance(element, dict) else element
            if isinstance(inner, str):
                values.append(inner)
    return found


def _pins(
    chosen: list[str], owner: dict[str, str], sets: dict[str, int]
) -> dict[str, list[Element]]:
    """Each chosen address re-added to its set with the long pin timeout."""
    pins: dict[str, list[Element]] = {}
    for address in chosen:
        name = owner.get(address) or next(
            n for n, v in sorted(sets.items()) if v == (6 if ":" in address else 4)
        )
        pins.setdefault(name, []).append(Element(address, PIN_TIMEOUT_S))
    return pins
