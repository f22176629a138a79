"""The support tunnel as plantgated runs it: follow the policy, keep WireGuard right, watch it.

Every round (2 s, and at once when a `policy.*` event arrives, such as the one
`plantgate vpn enable|disable` sends) the service

1. follows the loaded revision's *effective* policy (the policy with the `vpn disable`
   override that revision was applied with): `gated` and `always-on` want a tunnel,
   `disabled` or no `support_vpn` section want none;
2. makes the appliance's key on first start (`keys.py`: `<state>/vpn/private.key`, 0600);
3. brings the interface up: a kernel `wireguard` link where the module exists, else
   wireguard-go in the foreground as this process's child; then `wg set` (private key, the
   concentrator as the one peer, inner networks as allowed IPs, keepalive), the address, and
   routes for the inner networks through the tunnel;
4. chooses the concentrator's endpoint address from what the firewall allows (the
   endpoint's nftables set, filled by the policy's resolver) and keeps it pinned there while
   in use, as the NTP relay does with its upstreams, so DNS moving the name does not cut the
   tunnel in the middle of a session;
5. supervises: a wireguard-go that exits, or an interface that disappears, is recreated
   after a backoff (1 s, doubling to 60 s, reset after a minute up);
6. samples `wg show IFACE dump` and feeds the health machine (`health.py`); each change of
   state is published as `vpn.tunnel_state` and written to `<state>/vpn/tunnel.json` for
   `plantgate vpn status`.

`disabled` removes the interface (stopping wireguard-go). An interface of that name that is
not WireGuard is someone else's: it is never configured or removed, only reported as the
reason of a `down` state. The firewall's kill switch does the
rest and does not depend on this process: with `disabled` nothing reaches the concentrator,
and whatever the tunnel does, support traffic never leaves another way. When plantgated
stops, it takes the tunnel down with it; when it is killed, wireguard-go lives on and the
next plantgated adopts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import ipaddress
import json
import logging
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.dns.lookup import install
from gateway.events import Bus, Event
from gateway.ntp.keeper import set_members
from gateway.policy.compile import set_name
from gateway.policy.errors import PolicyError
from gateway.policy.load import load_text
from gateway.policy.model import Policy
from gateway.policy.nft import Element, Nft, NftError
from gateway.policy.revisions import RevisionStore
from gateway.state import write_atomic
from gateway.vpn import keys, link, wg
from gateway.vpn.health import Sample, Transition, TunnelHealth, next_backoff

log = logging.getLogger("plantgated.vpn")
SOURCE = "plantgated.vpn"
ROUND_S = 2.0
READY_TIMEOUT_S = 5.0
STOP_GRACE_S = 3.0
PIN_TIMEOUT_S = 3600
PIN_EVERY_S = 600.0
STATUS_FILE = Path("vpn") / "tunnel.json"
WG_LOG = Path("vpn") / "wireguard-go.log"


def status_path(state: Path) -> Path:
    return state / STATUS_FILE


# ---------------------------------------------------------------- pure: what the policy wants


@dataclass(frozen=True)
class Desired:
    """What the effective policy asks of the tunnel (`mode` "none": no support_vpn section)."""

    mode: str
    ifname: str | None = None
    address: str | None = None
    peer_key: str | None = None
    port: int = 0
    allowed_ips: tuple[str, ...] = ()
    routes: tuple[str, ...] = ()
    keepalive: int = 0
    concentrator: str | None = None
    static_endpoints: tuple[str, ...] = ()  # the concentrator's fixed addresses, if any

    @property
    def active(self) -> bool:
        return self.mode in ("gated", "always-on")


def desired_tunnel(policy: Policy) -> Desired:
    """The tunnel the policy describes (pure)."""
    support = policy.support_vpn
    if support is None:
        return Desired("none")
    return Desired(
        mode=support.mode,
        ifname=policy.interfaces[support.interface],
        address=support.address,
        peer_key=support.public_key,
        port=support.port,
        allowed_ips=tuple(support.inner_networks),
        routes=tunnel_routes(support.address, support.inner_networks),
        keepalive=support.keepalive,
        concentrator=support.concentrator,
        static_endpoints=tuple(host_addresses(policy.endpoints[support.concentrator].addresses)),
    )


def tunnel_routes(address: str, inner_networks: Iterable[str]) -> tuple[str, ...]:
    """Inner networks that need a route through the tunnel: all but those inside the
    network the interface's own address already connects (pure)."""
    connected = ipaddress.ip_interface(address).network
    routes = []
    for text in inner_networks:
        net = ipaddress.ip_network(text, strict=False)
        if net.version == connected.version and net.subnet_of(connected):  # type: ignore[arg-type]
            continue
        routes.append(str(net))
    return tuple(routes)


def choose_endpoint(candidates: Iterable[str], current: str | None) -> str | None:
    """Keep the address in use while the firewall allows it; else the first, IPv4 first."""
    allowed = set(candidates)
    if current in allowed:
        return current
    ordered = sorted(allowed, key=lambda a: (6 if ":" in a else 4, a))
    return ordered[0] if ordered else None


def host_addresses(networks: Iterable[str]) -> list[str]:
    """Single addresses among an endpoint's `addresses` (networks cannot be an endpoint)."""
    found = []
    for text in networks:
        net = ipaddress.ip_network(text, strict=False)
        if net.num_addresses == 1:
            found.append(str(net.network_address))
    return found


def describe_exit(status: int) -> str:
    if status < 0:
        try:
            return f"was killed by {signal.Signals(-status).name}"
        except ValueError:
            return f"was killed by signal {-status}"
    return f"exited with status {status}"


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return datetime.datetime.fromtimestamp(stamp, datetime.UTC).isoformat(timespec="seconds")


def _remove_wireguard(ifname: str) -> bool:
    """Delete `ifname` if it exists and is WireGuard (answers `wg show`); True if deleted."""
    if not link.link_exists(ifname):
        return False
    try:
        wg.show_dump(ifname)
    except wg.WgError:
        return False  # not WireGuard: someone else's interface
    return link.delete_link(ifname)


# ---------------------------------------------------------------- the service


class TunnelService:
    """The support tunnel for the current revision, supervised, with its health."""

    def __init__(self, state: Path, bus: Bus) -> None:
        self.state = state
        self.bus = bus
        self.store = RevisionStore(state)
        self.health = TunnelHealth()
        self.nft = Nft()  # its own libnftables context, used from worker threads only
        self.desired = Desired("none")
        self.backend: str | None = None  # "kernel" or "wireguard-go", once known
        self.restarts = 0
        self._following: int | None = None
        self._managed: str | None = None  # the interface name we brought up
        self._process: asyncio.subprocess.Process | None = None
        self._exit: asyncio.Task[int] | None = None
        self._started_at = 0.0
        self._backoff = 0.0
        self._retry_at = 0.0
        self._why_down = ""
        self._configured: tuple[Desired, str | None] | None = None
        self._endpoint: str | None = None
        self._pinned: tuple[str, float] | None = None
        self._public_key: str | None = None
        self._last_peer: wg.WgPeer | None = None
        self._key_checked = False
        self._last_error = ""
        self._wake = asyncio.Event()
        bus.subscribe(self._on_event)

    def _on_event(self, event: Event) -> None:
        if event.kind.startswith("policy."):
            self._wake.set()  # `vpn enable|disable` and applies: act now, not next round

    # ------------------------------------------------------------ life

    async def start(self) -> None:
        """The first round; failures are logged, never raised (the daemon must run)."""
        try:
            await self.round()
        except (wg.WgError, OSError, NftError, PolicyError) as exc:
            log.error("support tunnel start failed: %s", exc)

    async def run(self, stopping: asyncio.Event) -> None:
        try:
            while not stopping.is_set():
                try:
                    await self.round()
                except (wg.WgError, OSError, NftError, PolicyError) as exc:
                    log.error("support tunnel upkeep failed: %s", exc)
                await self._pause(stopping)
        finally:
            await self._take_down("plantgated is stopping")

    async def _pause(self, stopping: asyncio.Event) -> None:
        """Until the next round: ROUND_S, a policy event, a wireguard-go exit, or the end of
        a restart backoff, whichever comes first."""
        timeout = ROUND_S
        if self.desired.active and self._process is None and self._retry_at > time.monotonic():
            timeout = min(ROUND_S, max(0.05, self._retry_at - time.monotonic()))
        waits = [asyncio.ensure_future(stopping.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in waits:
                task.cancel()
            await asyncio.gather(*waits, return_exceptions=True)

    async def round(self) -> None:
        self._wake.clear()
        await asyncio.to_thread(self._follow_current)
        self._reap()
        try:
            if self.desired.active:
                await self._ensure(self.desired)
            else:
                await self._take_down(f"mode {self.desired.mode}")
        except (wg.WgError, OSError, NftError) as exc:
            # e.g. an interface of that name that is not WireGuard: report it as the reason
            # of a `down` state, log it once, and keep observing
            self._why_down = str(exc)
            if str(exc) != self._last_error:
                log.error("support tunnel: %s", exc)
            self._last_error = str(exc)
        else:
            self._last_error = ""
        await self._observe()

    # ------------------------------------------------------------ policy

    def _follow_current(self) -> None:
        current = self.store.current()
        if current is None or current.number == self._following:
            return
        try:
            loaded = load_text(self.store.policy_text(current.number), current.file)
        except (PolicyError, OSError) as exc:  # an applied revision loads; be safe anyway
            log.error("cannot read revision %d for the support tunnel: %s", current.number, exc)
            return
        if current.vpn_mode is not None:  # as compile_revision does: the override in force
            loaded = loaded.with_vpn_mode(current.vpn_mode)
        self._following = current.number
        desired = desired_tunnel(loaded.policy)
        if desired != self.desired:
            log.info("support tunnel: revision %d wants mode %s", current.number, desired.mode)
        self.desired = desired

    # ------------------------------------------------------------ bringing it up

    async def _ensure(self, want: Desired) -> None:
        assert want.ifname is not None and want.address is not None
        if self._managed not in (None, want.ifname):
            await self._take_down(f"the tunnel interface is now {want.ifname}")
        if not self._key_checked:
            if await asyncio.to_thread(keys.ensure_private_key, self.state):
                self._public_key = await asyncio.to_thread(keys.public_key, self.state)
                log.info("created the appliance's WireGuard key (public key %s)", self._public_key)
            self._key_checked = True
        if not await asyncio.to_thread(link.link_exists, want.ifname):
            if self._process is not None or time.monotonic() < self._retry_at:
                return  # starting, or backing off after a failure
            if not await self._create(want.ifname):
                return
        self._managed = want.ifname
        endpoint = await asyncio.to_thread(self._choose_endpoint, want)
        if (want, endpoint) != self._configured:
            await asyncio.to_thread(self._configure, want, endpoint)
            self._configured = (want, endpoint)
        changed = await asyncio.to_thread(link.bring_up, want.ifname, want.address, want.routes)
        if changed:
            log.info("%s: %s", want.ifname, ", ".join(changed))

    async def _create(self, ifname: str) -> bool:
        """Create the interface; False (and a backoff) when that failed."""
        self._configured = None
        if self.backend != "wireguard-go" and await asyncio.to_thread(link.add_kernel_link, ifname):
            self.backend = "kernel"
            self._started_at = time.monotonic()
            log.info("%s: created (kernel WireGuard)", ifname)
            return True
        self.backend = "wireguard-go"
        process = await wg.start_wireguard_go(ifname, self.state / WG_LOG)
        self._process, self._started_at = process, time.monotonic()
        self._exit = asyncio.create_task(process.wait())
        self._exit.add_done_callback(lambda _: self._wake.set())
        if await self._wait_answering(ifname):
            log.info("%s: wireguard-go started (pid %d)", ifname, process.pid)
            return True
        self._reap()
        if self._process is not None:  # alive but mute: stop it and try again later
            await self._stop_process()
            self._fail(f"wireguard-go did not answer within {READY_TIMEOUT_S:.0f} s")
        return False

    async def _wait_answering(self, ifname: str) -> bool:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._exit is not None and self._exit.done():
                return False
            try:
                await asyncio.to_thread(wg.show_dump, ifname)
                return True
            except wg.WgError:
                await asyncio.sleep(0.01)
        return False

    def _choose_endpoint(self, want: Desired) -> str | None:
        """The concentrator's address: one the firewall allows, pinned while in use."""
        static = list(want.static_endpoints)
        sets = [set_name("ep", want.concentrator or "", v) for v in (4, 6)]
        members = set_members(self.nft.sets_json(sets))
        owner = {address: name for name, values in members.items() for address in values}
        chosen = choose_endpoint([*static, *owner], self._endpoint)
        if chosen != self._endpoint:
            log.info("concentrator endpoint: %s", chosen or "none allowed yet")
            self._endpoint, self._pinned = chosen, None
        if chosen is not None and chosen not in static and chosen in owner:
            self._pin(owner[chosen], chosen)
        return wg.endpoint_text(chosen, want.port) if chosen else None

    def _pin(self, set_name_: str, address: str) -> None:
        now = time.monotonic()
        if self._pinned is not None and now - self._pinned[1] < PIN_EVERY_S:
            return
        install(self.nft, {set_name_: [Element(address, PIN_TIMEOUT_S)]})
        self._pinned = (address, now)

    def _configure(self, want: Desired, endpoint: str | None) -> None:
        assert want.ifname is not None and want.peer_key is not None
        _, peers = wg.show_dump(want.ifname)
        stale = [p.public_key for p in peers if p.public_key != want.peer_key]
        peer = wg.PeerConfig(want.peer_key, endpoint, want.allowed_ips, want.keepalive)
        wg.configure(want.ifname, keys.private_key_path(self.state), peer, stale)
        log.info(
            "%s: peer %s at %s, allowed %s, keepalive %s",
            want.ifname,
            want.peer_key,
            endpoint or "(no endpoint yet)",
            ",".join(want.allowed_ips),
            want.keepalive or "off",
        )

    # ------------------------------------------------------------ supervision

    def _reap(self) -> None:
        """Notice a wireguard-go that exited by itself, and schedule its restart."""
        if self._process is None or self._exit is None or not self._exit.done():
            return
        status = self._exit.result()
        uptime = time.monotonic() - self._started_at
        said = wg.log_tail(self.state / WG_LOG)
        self._process, self._exit, self._configured = None, None, None
        self.restarts += 1
        self._fail(f"wireguard-go {describe_exit(status)} after {uptime:.0f} s", uptime, said)

    def _fail(self, why: str, uptime: float = 0.0, said: str = "") -> None:
        self._backoff = next_backoff(self._backoff, uptime)
        self._retry_at = time.monotonic() + self._backoff
        self._why_down = f"{why}; restarting in {self._backoff:.0f} s"
        log.warning("support tunnel: %s (it said: %s)", self._why_down, said or "nothing")

    async def _stop_process(self) -> None:
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), STOP_GRACE_S)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    async def _take_down(self, why: str) -> None:
        """No tunnel: stop our wireguard-go and remove the interface if it is WireGuard.

        An interface of that name that is not WireGuard is someone else's: it is left alone
        (the kill switch keeps it from carrying support traffic).
        """
        ifname = self._managed or self.desired.ifname
        had_process = self._process is not None
        await self._stop_process()
        self._exit, self._configured, self._endpoint = None, None, None
        removed = ifname is not None and await asyncio.to_thread(_remove_wireguard, ifname)
        if had_process or removed:
            log.info("support tunnel %s removed: %s", ifname, why)
        self._managed = None
        self._why_down = ""

    # ------------------------------------------------------------ health

    async def _observe(self) -> None:
        want = self.desired
        interface, peer, public = False, None, None
        why = self._why_down
        if want.active and want.ifname is not None:
            try:
                info, peers = await asyncio.to_thread(wg.show_dump, want.ifname)
                interface, public = True, info.public_key
                peer = next((p for p in peers if p.public_key == want.peer_key), None)
            except wg.NoInterfaceError as exc:
                why = why or str(exc)
            except wg.WgError as exc:
                why = str(exc)
        if interface:
            self._why_down = ""
        self._public_key = public or self._public_key
        self._last_peer = peer
        sample = Sample(
            mode=want.mode,
            interface=interface,
            handshake=peer.latest_handshake if peer else 0,
            rx=peer.rx_bytes if peer else 0,
            tx=peer.tx_bytes if peer else 0,
            now=time.time(),
            why_down=why,
        )
        change = self.health.feed(sample)
        if change is not None:
            await self._announce(change, peer)
        await asyncio.to_thread(self._write_status, sample)

    async def _announce(self, change: Transition, peer: wg.WgPeer | None) -> None:
        level = (
            logging.INFO if change.state in ("up", "connecting", "disabled") else logging.WARNING
        )
        log.log(level, "support tunnel %s: %s", change.state, change.reason)
        fields: dict[str, Any] = {
            "state": change.state,
            "previous": change.previous,
            "reason": change.reason,
            "mode": self.desired.mode,
            "interface": self.desired.ifname,
            "endpoint": peer.endpoint if peer else None,
            "handshake_age_s": None
            if change.handshake_age is None
            else round(change.handshake_age, 1),
            "rx_bytes": peer.rx_bytes if peer else None,
            "tx_bytes": peer.tx_bytes if peer else None,
        }
        await self.bus.publish(Event("vpn.tunnel_state", SOURCE, fields))

    def _write_status(self, sample: Sample) -> None:
        write_atomic(status_path(self.state), json.dumps(self.status(sample), indent=2) + "\n")

    def status(self, sample: Sample) -> dict[str, Any]:
        """What `plantgate vpn status` shows of the daemon's view (no secret in it)."""
        last, peer = self.health.last, self._last_peer
        return {
            "updated": _iso(sample.now),
            "state": self.health.state,
            "since": _iso(self.health.since),
            "reason": last.reason if last else "",
            "mode": self.desired.mode,
            "interface": self.desired.ifname,
            "backend": self.backend,
            "pid": self._process.pid if self._process is not None else None,
            "restarts": self.restarts,
            "public_key": self._public_key,
            "revision": self._following,
            "peer": None
            if peer is None
            else {
                "public_key": peer.public_key,
                "endpoint": peer.endpoint,
                "allowed_ips": list(peer.allowed_ips),
                "latest_handshake": _iso(peer.latest_handshake or None),
                "handshake_age_s": None if last is None else last.handshake_age,
                "rx_bytes": peer.rx_bytes,
                "tx_bytes": peer.tx_bytes,
                "keepalive_s": peer.keepalive,
            },
        }
