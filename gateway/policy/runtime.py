"""The policy's life inside plantgated: load at start, then keep it whole.

Every round it follows the revision that is loaded now (a `plantgate policy apply` made
from a shell changes it), refreshes FQDN sets before their addresses expire, and reverts a
pending revision whose confirm deadline passed (the watchdog process does that too; this is
the second line).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from pathlib import Path

from gateway.dns.lookup import DnsLookup, install, resolve_due, resolver_addresses
from gateway.dns.schedule import Schedule
from gateway.events import Bus, utc_now
from gateway.policy.nft import Nft
from gateway.policy.operations import (
    apply_file,
    compile_revision,
    restore,
    revert_if_unconfirmed,
)
from gateway.policy.revisions import RevisionStore

log = logging.getLogger("plantgated.policy")
IDLE_ROUND_S = 2.0


class PolicyRuntime:
    def __init__(self, state: Path, nft: Nft, bus: Bus) -> None:
        self.state = state
        self.nft = nft
        self.bus = bus
        self.store = RevisionStore(state)
        self._following: int | None = None
        self._schedule = Schedule()
        self._lookup: DnsLookup | None = None

    async def start(self, policy: Path | None) -> None:
        """Apply `policy` if it differs from what is loaded; otherwise reload the confirmed one.

        Names are resolved right after, by the first round; until then the previous table's
        resolved addresses are carried over, so nothing that worked stops working.
        """
        current = self.store.current()
        if policy is not None and (current is None or _sha256(policy) != current.sha256):
            applied = await asyncio.to_thread(
                apply_file,
                policy,
                self.state,
                user="plantgated",
                message="applied by plantgated at start",
                resolve=False,
                nft=self.nft,
            )
            log.info(
                "applied %s as revision %d in %.0f ms",
                policy,
                applied.revision.number,
                applied.report.seconds * 1000,
            )
        elif current is not None and current.status == "pending":
            log.info(
                "revision %d is pending confirmation until %s; leaving it loaded",
                current.number,
                current.deadline,
            )
        else:
            revision = await asyncio.to_thread(restore, self.state, nft=self.nft)
            log.info("restored revision %d (%s)", revision.number, revision.file)

    async def round(self) -> float:
        """One round of upkeep; returns how long to wait before the next."""
        await self._revert_overdue()
        self._follow_current()
        await self._refresh_names()
        wake = self._schedule.next_wakeup()
        if wake is None:
            return IDLE_ROUND_S
        return max(0.2, min(IDLE_ROUND_S, wake - time.monotonic()))

    def _follow_current(self) -> None:
        current = self.store.current()
        if current is None or current.number == self._following:
            return
        loaded, compiled = compile_revision(self.store, current)
        self._following = current.number
        self._schedule = Schedule.for_bindings(compiled.fqdn)
        servers = resolver_addresses(loaded.policy)
        self._lookup = DnsLookup(servers) if servers else None
        log.info(
            "following revision %d (%s): %d names to keep resolved",
            current.number,
            current.file,
            len(self._schedule.entries),
        )

    async def _refresh_names(self) -> None:
        if self._lookup is None or not self._schedule.due(time.monotonic()):
            return
        elements = await asyncio.to_thread(
            resolve_due, self._schedule, self._lookup, time.monotonic()
        )
        if elements:
            await asyncio.to_thread(install, self.nft, elements)
            log.info(
                "refreshed %d addresses in %d sets",
                sum(len(v) for v in elements.values()),
                len(elements),
            )

    async def _revert_overdue(self) -> None:
        pending = self.store.pending()
        deadline = pending.deadline_at() if pending else None
        if pending is None or deadline is None or utc_now() < deadline:
            return
        reverted = await asyncio.to_thread(
            revert_if_unconfirmed, self.state, pending.number, nft=self.nft
        )
        if reverted is not None:
            log.warning(
                "revision %d was not confirmed in time: reverted (revision %d)",
                pending.number,
                reverted.number,
            )
            # revert_if_unconfirmed announces it (policy.reverted), as the watchdog's does.


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()
