"""`plantgated`: the gateway daemon, one asyncio process supervising the components.

On start it loads the policy (the kernel then enforces it whether or not this process
lives: DESIGN §5 "fail closed"), then keeps it whole (`gateway.policy.runtime`) and takes
events from other processes on its Unix socket. The NTP relay (`gateway.ntp.service`) runs
beside the policy: chronyd for the loaded revision's `time` section, and its monitor. Later
components (VPN, watcher) join the same loop.

Exit codes: 0 stopped by a signal, 1 the kernel refused the policy or nothing could be
loaded, 2 the policy is invalid. In the failure cases the ruleset already in the kernel
stays as it was.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

from gateway.events import Bus, Event, EventIntake
from gateway.ntp.config import APPLIANCE_TIMING, LAB_TIMING, Timing
from gateway.ntp.service import NtpService
from gateway.policy.apply import ApplyError
from gateway.policy.drift import drift_watch
from gateway.policy.errors import PolicyError
from gateway.policy.nft import Nft, NftError
from gateway.policy.operations import OperationError
from gateway.policy.runtime import PolicyRuntime
from gateway.state import ready_path, state_dir, write_atomic

log = logging.getLogger("plantgated")


class Daemon:
    """The supervised components and the rounds that keep them going."""

    def __init__(
        self,
        state: Path,
        drift_interval: float = 30.0,
        *,
        ntp_discipline_clock: bool = False,
        ntp_timing: Timing = APPLIANCE_TIMING,
    ) -> None:
        self.state = state
        self.drift_interval = drift_interval
        self.bus = Bus()
        self.bus.subscribe(_log_event)
        self.stopping = asyncio.Event()
        self.policy = PolicyRuntime(state, Nft(), self.bus)
        self.intake = EventIntake(state, self.bus)
        self.ntp = NtpService(
            state, self.bus, discipline_clock=ntp_discipline_clock, timing=ntp_timing
        )

    async def run(self) -> None:
        self.intake.open()
        # Its own libnftables context: a context must not be used by two threads at once.
        drift = asyncio.create_task(
            drift_watch(self.state, Nft(), self.bus, self.stopping, self.drift_interval)
        )
        ntp: asyncio.Task[None] | None = None
        try:
            first = True
            while not self.stopping.is_set():
                try:
                    delay = await self.policy.round()
                except (PolicyError, ApplyError, OperationError, NftError, OSError) as exc:
                    log.error("policy upkeep failed: %s", exc)
                    delay = 5.0
                if first:
                    await self.ntp.start()  # the relay holds its port before we say ready
                    ntp = asyncio.create_task(self.ntp.run(self.stopping))
                    write_atomic(ready_path(self.state), f"{os.getpid()}\n")
                    first = False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)
        finally:
            self.stopping.set()
            await drift
            if ntp is not None:
                await ntp
            self.intake.close()
            ready_path(self.state).unlink(missing_ok=True)


def _log_event(event: Event) -> None:
    log.info("event %s from %s: %s", event.kind, event.source, event.fields)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="plantgated", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--policy",
        type=Path,
        default=os.environ.get("PLANTGATE_POLICY"),
        help="policy YAML to load at start (default: the last confirmed)",
    )
    parser.add_argument("--state-dir", type=Path, default=None, help="state directory")
    parser.add_argument(
        "--drift-interval",
        type=float,
        default=30.0,
        help="seconds between checks of the live table against the revision",
    )
    parser.add_argument(
        "--ntp-discipline-clock",
        action="store_true",
        help="let chronyd set the system clock (the appliance image; never in the lab)",
    )
    parser.add_argument(
        "--ntp-lab-timing",
        action="store_true",
        help="poll upstreams every 2 s and give up holdover within a minute (the lab only)",
    )
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


async def _main(args: argparse.Namespace) -> int:
    daemon = Daemon(
        state_dir(args.state_dir),
        args.drift_interval,
        ntp_discipline_clock=args.ntp_discipline_clock,
        ntp_timing=LAB_TIMING if args.ntp_lab_timing else APPLIANCE_TIMING,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.stopping.set)
    try:
        await daemon.policy.start(args.policy)
    except PolicyError as exc:
        for problem in exc.problems:
            log.error("%s", problem.render())
        return 2
    except ApplyError as exc:
        for problem in exc.problems:
            log.error("%s", problem.render())
        return 1
    except (OperationError, NftError, OSError) as exc:
        log.error("cannot load a policy: %s", exc)
        return 1
    await daemon.run()
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
