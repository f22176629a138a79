"""The NTP relay as plantgated runs it: follow the policy, keep chronyd right, watch it.

Every round (2 s) the service

1. follows the loaded revision (a `policy apply` from a shell changes it): a revision with
   a `time` section is served, one without stops chronyd;
2. reads the appliance's addresses on the serving interfaces (netlink, in plantgated's own
   namespace) and renders chrony.conf; when the text differs from what chronyd runs, the
   file is rewritten and chronyd restarted (chrony has no reload of server settings);
3. supervises chronyd: if it exits by itself, that is logged with its last words,
   published as `ntp.relay_exited`, and chronyd is started again after a backoff (1 s,
   doubling to 60 s; reset once it has stayed up for a minute);
4. keeps chronyd's upstream servers inside what the firewall allows: addresses are chosen
   from the upstream endpoints' resolved sets, written to chronyd's `sourcedir` and pinned
   in the sets while chronyd uses them (upstreams.py).

The monitor (`watch.ntp_watch`) runs beside it on the same bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import time
from pathlib import Path

from gateway.events import Bus, Event
from gateway.ntp.chronyd import Chronyd, ChronyError
from gateway.ntp.config import (
    APPLIANCE_TIMING,
    LEAPSECTZ_FILE,
    ChronyPaths,
    Timing,
    relay_address,
    render_chrony_conf,
    serving_interfaces,
)
from gateway.ntp.keeper import UpstreamKeeper
from gateway.ntp.monitor import SOURCE
from gateway.ntp.watch import WatchSetup, ntp_watch
from gateway.policy.errors import PolicyError
from gateway.policy.load import LoadedPolicy, load_text
from gateway.policy.nft import NftError
from gateway.policy.revisions import RevisionStore
from gateway.state import write_atomic

log = logging.getLogger("plantgated.ntp")
ROUND_S = 2.0
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0
STABLE_AFTER = 60.0


def interface_addresses() -> dict[str, list[str]]:
    """Addresses (with prefix) of every interface in this network namespace, via netlink."""
    from pyroute2 import IPRoute

    found: dict[str, list[str]] = {}
    with IPRoute() as ipr:
        names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
        for msg in ipr.get_addr():
            address = msg.get_attr("IFA_LOCAL") or msg.get_attr("IFA_ADDRESS")
            ifname = names.get(msg["index"])
            if address and ifname:
                found.setdefault(str(ifname), []).append(f"{address}/{msg['prefixlen']}")
    return found


def describe_exit(status: int) -> str:
    """asyncio's returncode in words: negative means killed by that signal (pure)."""
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"


def next_backoff(previous: float, uptime: float) -> float:
    """Seconds to wait before restarting a chronyd that ran for `uptime` seconds (pure)."""
    if uptime >= STABLE_AFTER or previous <= 0:
        return BACKOFF_FIRST
    return min(BACKOFF_MAX, previous * 2)


class NtpService:
    """chronyd for the current revision's `time` section, supervised, plus its monitor."""

    def __init__(
        self,
        state: Path,
        bus: Bus,
        *,
        discipline_clock: bool = False,
        timing: Timing = APPLIANCE_TIMING,
    ) -> None:
        self.state = state
        self.bus = bus
        self.timing = timing
        self.discipline_clock = discipline_clock
        self.paths = ChronyPaths.under(state)
        self.store = RevisionStore(state)
        self.chronyd = Chronyd(self.paths, discipline_clock=discipline_clock)
        self.upstreams = UpstreamKeeper(self.paths, timing)
        self.setup: WatchSetup | None = None
        self._following: int | None = None
        self._loaded: LoadedPolicy | None = None
        self._running_text: str | None = None
        self._started_once = False
        self._backoff = 0.0
        self._restart_at = 0.0

    async def start(self) -> None:
        """The first round, waiting until chronyd answers (so its NTP port is bound).

        Failures are logged, never raised: the relay must not keep plantgated from running.
        """
        try:
            await self.round()
            if self.chronyd.running and not await self.chronyd.wait_ready():
                log.warning("chronyd did not answer on %s yet", self.paths.socket)
        except (ChronyError, OSError) as exc:
            log.error("NTP relay start failed: %s", exc)

    async def run(self, stopping: asyncio.Event) -> None:
        watch = asyncio.create_task(ntp_watch(lambda: self.setup, self.bus, stopping))
        try:
            while not stopping.is_set():
                try:
                    await self.round()
                except (ChronyError, OSError) as exc:
                    log.error("NTP relay upkeep failed: %s", exc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stopping.wait(), ROUND_S)
        finally:
            await watch
            await self.chronyd.stop()

    async def round(self) -> None:
        await asyncio.to_thread(self._follow_current)
        await self._supervise()
        await self._reconcile()
        if self.chronyd.running and self._loaded is not None:
            try:
                await asyncio.to_thread(self.upstreams.update, self._loaded, time.monotonic())
            except (NftError, ChronyError, OSError) as exc:
                log.warning("keeping the relay's upstreams failed: %s", exc)

    # ------------------------------------------------------------ policy

    def _follow_current(self) -> None:
        current = self.store.current()
        if current is None or current.number == self._following:
            return
        self._following = current.number
        try:
            self._loaded = load_text(self.store.policy_text(current.number), current.file)
        except (PolicyError, OSError) as exc:  # an applied revision loads; be safe anyway
            log.error("cannot read revision %d for the NTP relay: %s", current.number, exc)
            self._loaded = None

    # ------------------------------------------------------------ chronyd

    async def _supervise(self) -> None:
        status = await self.chronyd.reap()
        if status is None:
            return
        uptime = time.monotonic() - self.chronyd.started_at
        self._backoff = next_backoff(self._backoff, uptime)
        self._restart_at = time.monotonic() + self._backoff
        last = self.chronyd.tail[-1] if self.chronyd.tail else ""
        how = describe_exit(status)
        log.warning(
            "chronyd %s after %.0f s (last said: %s); restarting in %.0f s",
            how,
            uptime,
            last or "nothing",
            self._backoff,
        )
        fields: dict[str, object] = {"status": status, "exit": how, "last_message": last}
        fields.update(uptime_s=round(uptime, 1), restart_in_s=self._backoff)
        await self.bus.publish(Event("ntp.relay_exited", SOURCE, fields))

    async def _reconcile(self) -> None:
        loaded = self._loaded
        if loaded is None or loaded.policy.time is None:
            await self._stop("the loaded policy has no time section")
            return
        addresses = await asyncio.to_thread(interface_addresses)
        policy, time_ = loaded.policy, loaded.policy.time
        text = render_chrony_conf(
            policy,
            serve_addresses=addresses,
            state=self.state,
            discipline_clock=self.discipline_clock,
            leapsectz=LEAPSECTZ_FILE.exists(),
            timing=self.timing,
            source=os.path.basename(loaded.file),
        )
        relay = relay_address(policy, time_, addresses)
        if self.setup is None or self.setup.policy is not policy or self.setup.relay != relay:
            self.setup = WatchSetup(policy, time_, relay)
        if text == self._running_text and self.chronyd.running:
            return
        if not self.chronyd.running and time.monotonic() < self._restart_at:
            return  # backing off after a crash
        await self._restart(text, serving_interfaces(policy, time_), relay, time_.orphan_stratum)

    async def _restart(
        self, text: str, interfaces: list[str], relay: str | None, orphan_stratum: int
    ) -> None:
        self._prepare_directory()
        write_atomic(self.paths.conf, text, mode=0o600)
        summary = {
            "orphan_stratum": orphan_stratum,
            "interfaces": interfaces,
            "relay_address": relay,
            "discipline_clock": self.discipline_clock,
            "revision": self._following,
        }
        write_atomic(self.paths.relay_file, json.dumps(summary, indent=2) + "\n")
        if self.chronyd.running:
            log.info("chrony.conf changed: restarting chronyd")
            await self.chronyd.stop()
        try:
            await self.chronyd.start(restart=self._started_once)
        except (ChronyError, OSError) as exc:
            self._backoff = next_backoff(self._backoff, 0.0)
            self._restart_at = time.monotonic() + self._backoff
            log.error("cannot start chronyd: %s; trying again in %.0f s", exc, self._backoff)
            return
        self._started_once = True
        self._running_text = text

    def _prepare_directory(self) -> None:
        """chronyd refuses a command socket in a directory others can enter."""
        for directory in (self.paths.directory, self.paths.logdir):
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.chmod(directory, 0o700)

    async def _stop(self, why: str) -> None:
        self.setup = None
        if self.chronyd.running:
            log.info("stopping chronyd: %s", why)
            await self.chronyd.stop()
        self._running_text = None
        self.paths.relay_file.unlink(missing_ok=True)
