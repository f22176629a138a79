"""`plantgated`: the gateway daemon, one asyncio process supervising the components.

On start it applies the configured policy (the kernel then enforces it whether or not this
process lives: DESIGN §5 "fail closed"), then keeps the policy's FQDN sets filled as TTLs
run out, and follows re-applies made with `plantgate policy apply` by watching the state
directory's record. Later components (NTP relay, VPN, watcher) join the same loop.

Exit codes: 0 stopped by a signal, 1 the kernel refused the policy, 2 the policy is invalid.
In both failure cases the ruleset already in the kernel stays as it was.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from pathlib import Path

from gateway.dns.lookup import DnsLookup, install, resolve_due, resolver_addresses
from gateway.dns.schedule import Schedule
from gateway.events import Bus, Event
from gateway.policy.apply import ApplyError
from gateway.policy.compile import compile_policy
from gateway.policy.errors import PolicyError
from gateway.policy.load import load_text
from gateway.policy.nft import Nft, NftError
from gateway.policy.service import AppliedRecord, applied_policy_path, applied_record, apply_file
from gateway.state import ready_path, state_dir, write_atomic

log = logging.getLogger("plantgated")
RECORD_POLL_S = 2.0


class Daemon:
    """The supervised components; today the policy and its name resolution."""

    def __init__(self, state: Path, bus: Bus | None = None) -> None:
        self.state = state
        self.bus = bus or Bus()
        self.nft = Nft()
        self.stopping = asyncio.Event()
        self._record: AppliedRecord | None = None
        self._schedule = Schedule()
        self._lookup: DnsLookup | None = None

    async def start(self, policy: Path) -> None:
        # Names are resolved right after, by the refresher; until then the previous table's
        # resolved addresses are carried over, so nothing that worked stops working.
        applied = await asyncio.to_thread(
            apply_file, policy, self.state, user="plantgated", resolve=False, nft=self.nft
        )
        log.info(
            "applied %s (%d rules) in %.0f ms",
            policy,
            applied.record.rules,
            applied.report.seconds * 1000,
        )
        await self.bus.publish(
            Event(
                "policy.applied",
                "plantgated",
                {
                    "file": applied.record.file,
                    "sha256": applied.record.sha256,
                    "user": applied.record.user,
                },
            )
        )
        self._follow_record()

    def _follow_record(self) -> None:
        """(Re)build the resolution schedule from what is loaded now."""
        record = applied_record(self.state)
        if record is None or record == self._record:
            return
        self._record = record
        text = applied_policy_path(self.state).read_text(encoding="utf-8")
        loaded = load_text(text, record.file)
        compiled = compile_policy(loaded)
        self._schedule = Schedule.for_bindings(compiled.fqdn)
        servers = resolver_addresses(loaded.policy)
        self._lookup = DnsLookup(servers) if servers else None
        log.info(
            "following %s: %d names to keep resolved", record.file, len(self._schedule.entries)
        )

    async def run(self) -> None:
        first = True
        while not self.stopping.is_set():
            try:
                self._follow_record()
                await self._refresh_names()
            except (PolicyError, OSError, NftError) as exc:
                log.error("policy follow-up failed: %s", exc)
            if first:
                write_atomic(ready_path(self.state), f"{os.getpid()}\n")
                first = False
            wake = self._schedule.next_wakeup()
            delay = (
                RECORD_POLL_S
                if wake is None
                else max(0.2, min(RECORD_POLL_S, wake - time.monotonic()))
            )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)

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


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="plantgated", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--policy",
        type=Path,
        default=os.environ.get("PLANTGATE_POLICY"),
        help="policy YAML to apply at start (default: the last applied one)",
    )
    parser.add_argument("--state-dir", type=Path, default=None, help="state directory")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


async def _main(args: argparse.Namespace) -> int:
    state = state_dir(args.state_dir)
    daemon = Daemon(state)
    policy = args.policy or applied_policy_path(state)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.stopping.set)
    try:
        await daemon.start(Path(policy))
    except PolicyError as exc:
        for problem in exc.problems:
            log.error("%s", problem.render())
        return 2
    except ApplyError as exc:
        for problem in exc.problems:
            log.error("%s", problem.render())
        return 1
    except (NftError, OSError) as exc:
        log.error("cannot apply %s: %s", policy, exc)
        return 1
    try:
        await daemon.run()
    finally:
        ready_path(state).unlink(missing_ok=True)
    log.info("stopping; the ruleset stays in force")
    return 0


def main(argv: list[str] | None = None) -> None:
    args = _parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    sys.exit(asyncio.run(_main(args)))


if __name__ == "__main__":
    main()
