"""`plantgated`: the gateway daemon, one asyncio process supervising the components.

On start it loads the policy (the kernel then enforces it whether or not this process
lives: DESIGN §5 "fail closed"), then keeps it whole (`gateway.policy.runtime`) and takes
events from other processes on its Unix socket. The NTP relay (`gateway.ntp.service`) runs
beside the policy: chronyd for the loaded revision's `time` section, and its monitor. The
support tunnel (`gateway.vpn.tunnel`) follows the revision's `support_vpn` section the same
way; the support gate's upkeep, its local admin API and the record of support connections
run beside it (`gateway.vpn`), and so does the alert pipeline with its spool, sinks and feed
(`gateway.alerts`), fed by the traffic watcher (`gateway.watch`: NFLOG, conntrack, links
and this bus through the detectors). Each of those is supervised: if one fails it is logged
and started again, and it never takes plantgated down with it.

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
from collections.abc import Awaitable, Callable
from pathlib import Path

from gateway.alerts.service import AlertService, default_observer
from gateway.events import Bus, Event, EventIntake
from gateway.ntp.config import APPLIANCE_TIMING, LAB_TIMING, Timing
from gateway.ntp.service import NtpService
from gateway.policy.apply import ApplyError
from gateway.policy.drift import drift_watch
from gateway.policy.errors import PolicyError
from gateway.policy.nft import Nft, NftError
from gateway.policy.operations import OperationError, compile_revision
from gateway.policy.runtime import PolicyRuntime
from gateway.state import ready_path, state_dir, write_atomic
from gateway.vpn.api import serve_admin_api
from gateway.vpn.connections import (
    enable_accounting,
    record_connection,
    state_directory,
    watch_support_connections,
)
from gateway.vpn.gateservice import GateService, bus_publisher, gate_upkeep
from gateway.vpn.tunnel import TunnelService
from gateway.watch.service import WatchService

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
        self.vpn = TunnelService(state, self.bus)
        self.components: list[asyncio.Task[None]] = []

    def _start_components(self) -> None:
        """The gate, the alert pipeline and the traffic watcher, each under `_supervise`."""
        publish = bus_publisher(self.bus, asyncio.get_running_loop())
        gates = GateService(self.state, publish=publish, source="plantgated")
        with contextlib.suppress(OSError):  # byte counts for support.connection records
            enable_accounting()
        alerts = AlertService(self.state, default_observer(self._site()))
        watch = WatchService(self.state, self.bus, alerts.pipeline)
        runners: dict[str, Callable[[asyncio.Event], Awaitable[None]]] = {
            "gate admin API": lambda stop: serve_admin_api(self.state, stop, publish=publish),
            "gate upkeep": lambda stop: gate_upkeep(gates, stop),
            "support connections": lambda stop: watch_support_connections(
                state_directory(self.state), record_connection(self.state, publish), stop
            ),
            "alert pipeline": alerts.run,
            "traffic watcher": watch.run,
        }
        for name, run in runners.items():
            self.components.append(asyncio.create_task(self._supervise(name, run)))

    def _site(self) -> str:
        current = self.policy.store.current()
        if current is None:
            return "plantgate"
        return compile_revision(self.policy.store, current)[0].policy.site.name

    async def _supervise(self, name: str, run: Callable[[asyncio.Event], Awaitable[None]]) -> None:
        """Run a component until plantgated stops; restart it (with backoff) if it fails."""
        backoff = 1.0
        while not self.stopping.is_set():
            stop = asyncio.Event()
            mirror = asyncio.create_task(_mirror(self.stopping, stop))
            try:
                await run(stop)
            except Exception:  # a component must never take plantgated down
                log.exception("%s failed; starting it again in %.0f s", name, backoff)
            finally:
                mirror.cancel()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), backoff)
            backoff = min(60.0, backoff * 2)

    async def run(self) -> None:
        self.intake.open()
        # Its own libnftables context: a context must not be used by two threads at once.
        drift = asyncio.create_task(
            drift_watch(self.state, Nft(), self.bus, self.stopping, self.drift_interval)
        )
        ntp: asyncio.Task[None] | None = None
        vpn: asyncio.Task[None] | None = None
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
                    await self.vpn.start()  # the tunnel's interface exists before we say ready
                    vpn = asyncio.create_task(self.vpn.run(self.stopping))
                    self._start_components()
                    write_atomic(ready_path(self.state), f"{os.getpid()}\n")
                    first = False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), delay)
        finally:
            self.stopping.set()
            await drift
            if ntp is not None:
                await ntp
            if vpn is not None:
                await vpn
            await asyncio.gather(*self.components, return_exceptions=True)
            self.intake.close()
            ready_path(self.state).unlink(missing_ok=True)


async def _mirror(source: asyncio.Event, target: asyncio.Event) -> None:
    await source.wait()
    target.set()


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
