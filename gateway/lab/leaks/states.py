"""The tunnel's states in the lab, entered and left the way they happen, and the way back.

The concentrator stopped and started, wireguard-go or plantgated killed with SIGKILL,
`plantgate vpn disable|enable`, the gate opened and closed by its nftables element, the
concentrator's address expiring from the firewall's endpoint set, IPv6 switched on in gw,
the hub and the plant (and on the tunnel, with IPv6 allowed in WireGuard on both ends, so
that only the kill switch stands in the way); `heal()` brings the tunnel back up with the
gate and IPv6 as they are, and `baseline()` back to the tunnel up in gated mode with the
gate closed.

One arrangement is made in the lab for the test (`prepare`): a blackhole default route in
the concentrator's staff table (`upstream`, table 201, behind the `wg-conc` route). Without
it, staff traffic falls back to the internet's own routing while the concentrator is
stopped, and the lab's internet would carry staff addresses to the plant: a path the
vendor's real concentrator does not have, and not the appliance's doing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from gateway.lab import netns, services, support, topology
from gateway.lab.leaks.findings import kill_switch_counts
from gateway.lab.leaks.probes import (
    TUNNEL_IF,
    V6_GW_TUNNEL,
    V6_HUB1,
    V6_INNER_LIKE,
    V6_LAN,
    V6_PLANT,
    V6_STAFF_NET,
    V6_WAN,
)
from gateway.lab.services import LabPaths
from gateway.policy.load import load_file
from gateway.policy.operations import vpn_override
from gateway.vpn import keys, wg
from gateway.vpn.leakcheck import Facts, Markers, facts_for
from gateway.vpn.tunnel import PIN_TIMEOUT_S, desired_tunnel

STAFF_TABLE_BLACKHOLE_METRIC = 4000
ENDPOINT_SET = "ep_support-concentrator_v4"
WIREGUARD_RESTART_WAIT_S = 3.0


class LeakLabError(RuntimeError):
    """The lab could not be brought into (or back from) a state."""


@dataclass
class LeakLab:
    """The tunnel states of one lab (with plantgated and the concentrator), and the way back.

    `vpn_via`: `cli` runs `plantgate vpn disable|enable` in gw (as a person does), `inprocess`
    calls `operations.set_vpn_enabled` in a thread inside gw (the same transaction, faster).
    """

    paths: LabPaths
    policy: Path
    vpn_via: Literal["cli", "inprocess"] = "cli"
    vpn_off: list[tuple[float, float]] = field(default_factory=list)
    ipv6: bool = False
    gate: set[tuple[str, str, int]] = field(default_factory=set)
    _off_since: float | None = None

    # ------------------------------------------------------------ facts

    def facts(self, markers: Markers) -> Facts:
        """The site's facts, with the IPv6 state's addresses and look-alike networks."""
        return facts_for(
            load_file(self.policy).policy,
            appliance=(topology.GW_WAN, V6_WAN),
            concentrator=(topology.SUPPORT_ADDR,),
            markers=markers,
            extra_inner=V6_INNER_LIKE,
        )

    def off_intervals(self) -> list[tuple[float, float]]:
        """When the VPN was off (the one in progress ends now)."""
        current = [(self._off_since, time.time())] if self._off_since is not None else []
        return [*self.vpn_off, *current]

    # ------------------------------------------------------------ looking

    def _wg(self, host: str, *args: str) -> str:
        done = services.run_on(self.paths, host, [services.find_binary("wg"), *args], 10)
        if done.returncode != 0:
            raise LeakLabError(f"wg {' '.join(args)} on {host}: {done.stderr.strip()}")
        return done.stdout

    def _run(self, host: str, *argv: str) -> None:
        done = services.run_on(self.paths, host, list(argv), 30)
        if done.returncode != 0:
            raise LeakLabError(f"{' '.join(argv)} on {host}: {done.stderr.strip()}")

    def kill_switch_counts(self) -> dict[str, int]:
        done = services.run_on(self.paths, "gw", ["nft", "list", "table", "inet", "plantgate"])
        return kill_switch_counts(done.stdout) if done.returncode == 0 else {}

    def daemon_pid(self) -> int | None:
        return services.running_pid(self.paths, "plantgated", [self.paths.namespace("gw")])

    def concentrator_pid(self) -> int | None:
        namespace = self.paths.namespace("upstream")
        return services.running_pid(self.paths, support.CONC_SERVICE, [namespace])

    def wireguard_pids(self) -> list[int]:
        """wireguard-go processes of the tunnel in gw (found by namespace and command line)."""
        found = []
        for pid in netns.pids_in_namespace(self.paths.namespace("gw")):
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"wireguard-go") and TUNNEL_IF.encode() in argv:
                found.append(pid)
        return found

    def tunnel_exists(self) -> bool:
        with netns.NamespaceNet(self.paths.namespace("gw")) as net:
            try:
                net.index(TUNNEL_IF)
            except LookupError:
                return False
        return True

    def gw_peer(self) -> wg.WgPeer | None:
        try:
            _, peers = wg.parse_dump(self._wg("gw", "show", TUNNEL_IF, "dump"))
        except (LeakLabError, ValueError):
            return None
        return peers[0] if peers else None

    def tunnel_up(self) -> bool:
        """A live handshake on both ends."""
        now = time.time()
        mine, theirs = self.gw_peer(), support.concentrator_peer(self.paths)
        return all(
            peer is not None and peer.latest_handshake > 0 and now - peer.latest_handshake < 180
            for peer in (mine, theirs)
        )

    # ------------------------------------------------------------ the test's arrangement

    def prepare(self) -> None:
        """The concentrator drops staff traffic it cannot tunnel (see the module's doc)."""
        self._run(
            "upstream", "ip", "route", "replace", "blackhole", "default", "table",
            str(support.STAFF_TABLE), "metric", str(STAFF_TABLE_BLACKHOLE_METRIC),
        )  # fmt: skip

    # ------------------------------------------------------------ transitions

    def stop_concentrator(self) -> None:
        services.stop_service(self.paths, support.CONC_SERVICE)

    def start_concentrator(self) -> None:
        support.start_concentrator(self.paths)
        if self.ipv6:
            self._concentrator_ipv6(True)

    def kill_wireguard(self) -> list[int]:
        """SIGKILL gw's wireguard-go; returns the pids killed."""
        pids = self.wireguard_pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _wait(lambda: not any(services.is_alive(p) for p in pids), 5.0, "wireguard-go to die")
        return pids

    def kill_daemon(self) -> int | None:
        pid = self.daemon_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait(lambda: not services.is_alive(pid), 5.0, "plantgated to die")
        return pid

    def start_daemon(self) -> None:
        services.start_service(self.paths, services.daemon_spec(self.paths, self.policy))

    def set_vpn(self, enabled: bool) -> None:
        if enabled and self._off_since is not None:
            self.vpn_off.append((self._off_since, time.time()))
            self._off_since = None
        if self.vpn_via == "cli":
            verb = "enable" if enabled else "disable"
            argv = [sys.executable, "-m", "gateway.cli", "vpn", verb]
            self._run("gw", *argv, "--state-dir", str(self.paths.gw_state))
        else:
            from gateway.policy.operations import set_vpn_enabled

            gw = self.paths.namespace("gw")
            netns.in_netns(gw, set_vpn_enabled, self.paths.gw_state, enabled, user="leaktest")
        if not enabled:
            self._off_since = time.time()

    def vpn_enabled(self) -> bool:
        return vpn_override(self.paths.gw_state) is None

    def nft(self, *args: str) -> None:
        """`nft ARGS` in gw."""
        self._run("gw", "nft", *args)

    def open_gate(self, staff: str, target: str, port: int = 22, seconds: int = 300) -> None:
        """What the gate does on open: one element, expiring in the kernel."""
        element = f"{{ {staff} . {target} . tcp . {port} timeout {seconds}s }}"
        self.nft("add", "element", "inet", "plantgate", "gate_support_v4", element)
        self.gate.add((staff, target, port))

    def close_gate(self) -> None:
        self.nft("flush", "set", "inet", "plantgate", "gate_support_v4")
        self.gate.clear()

    def endpoint_present(self) -> bool:
        """Whether the firewall's endpoint set holds an address for the concentrator."""
        argv = ["nft", "-j", "list", "set", "inet", "plantgate", ENDPOINT_SET]
        done = services.run_on(self.paths, "gw", argv, 10)
        return done.returncode == 0 and '"elem"' in done.stdout

    def expire_endpoint(self) -> None:
        """The concentrator's address leaves the firewall's endpoint set, as when its pin
        and DNS TTL run out with nobody to renew them."""
        self.nft("flush", "set", "inet", "plantgate", ENDPOINT_SET)

    def renew_endpoint(self) -> None:
        """The concentrator's address back in the endpoint set for as long as plantgated
        pins it, as when the name resolves again (a running plantgated only re-resolves on
        its schedule, which the loop does not wait for)."""
        element = f"{{ {topology.SUPPORT_ADDR} timeout {PIN_TIMEOUT_S}s }}"
        self.nft("add", "element", "inet", "plantgate", ENDPOINT_SET, element)

    def kick(self) -> None:
        """Make gw's WireGuard shake hands now: its peer removed and added again as it was.

        After the concentrator restarts, gw still holds a session the concentrator forgot
        and would wait up to two minutes (REKEY_AFTER_TIME) before a new handshake.
        """
        peer = self.gw_peer()
        if peer is None or peer.endpoint is None:
            return
        self._wg(
            "gw", "set", TUNNEL_IF, "peer", peer.public_key, "remove",
            "peer", peer.public_key, "endpoint", peer.endpoint,
            "allowed-ips", ",".join(peer.allowed_ips),
            "persistent-keepalive", str(peer.keepalive or 0),
        )  # fmt: skip

    def wait_up(self, timeout: float = 30.0) -> float:
        """Until both ends have a live handshake; kicks gw once if it would wait long."""
        started = time.monotonic()
        kicked = False
        while time.monotonic() - started < timeout:
            if self.tunnel_up():
                return time.monotonic() - started
            mine = self.gw_peer()
            if (
                not kicked
                and time.monotonic() - started > 1.0
                and mine is not None
                and mine.latest_handshake > 0
            ):
                self.kick()  # gw believes in a session the other end no longer has
                kicked = True
            time.sleep(0.05)
        raise LeakLabError(f"the tunnel did not come up within {timeout:.0f} s")

    # ------------------------------------------------------------ IPv6

    def ipv6_on(self) -> None:
        """IPv6 in gw, hub1 and the plant (addresses from the benchmarking range), on the
        tunnel (a ULA look-alike of its networks) and allowed by WireGuard at both ends."""
        sysctls = (
            ("net.ipv6.conf.all.disable_ipv6", "0"),
            ("net.ipv6.conf.default.disable_ipv6", "0"),
        )
        for host in ("gw", "hub1", "plant"):
            netns.set_sysctls(self.paths.namespace(host), sysctls)
        netns.set_sysctl(self.paths.namespace("gw"), "net.ipv6.conf.all.forwarding", "1")
        self._address("gw", "wan0", f"{V6_WAN}/64")
        self._address("gw", "lan0", f"{V6_LAN}/64")
        self._address("hub1", "eth0", f"{V6_HUB1}/64")
        self._address("plant", "eth0", f"{V6_PLANT}/64")
        self._run("gw", "ip", "-6", "route", "replace", "default", "via", V6_PLANT, "dev", "wan0")
        self._run("hub1", "ip", "-6", "route", "replace", "default", "via", V6_LAN, "dev", "eth0")
        self.ipv6 = True
        self.ensure_tunnel_ipv6()
        self._concentrator_ipv6(True)

    def ensure_tunnel_ipv6(self) -> bool:
        """IPv6 on gw's tunnel interface as `ipv6_on` left it (a new interface has none);
        False when there is no tunnel to set, or plantgated has not finished bringing it
        up (the interface is down, or went away meanwhile): try again later."""
        if not self.ipv6 or not self.tunnel_exists():
            return False
        gw = self.paths.namespace("gw")
        try:
            netns.set_sysctl(gw, f"net.ipv6.conf.{TUNNEL_IF}.disable_ipv6", "0")
            self._address("gw", TUNNEL_IF, f"{V6_GW_TUNNEL}/64")
            self._run("gw", "ip", "-6", "route", "replace", V6_STAFF_NET, "dev", TUNNEL_IF)
            peer = self.gw_peer()
            if peer is None:
                return False
            if "::/0" not in peer.allowed_ips:
                allowed = ",".join([*peer.allowed_ips, "::/0"])
                self._wg("gw", "set", TUNNEL_IF, "peer", peer.public_key, "allowed-ips", allowed)
        except (OSError, LeakLabError):
            return False
        return True

    def _concentrator_ipv6(self, on: bool) -> None:
        if self.concentrator_pid() is None:
            return
        allowed = [*support.APPLIANCE_ALLOWED, *(["::/0"] if on else [])]
        public = keys.public_key(self.paths.gw_state)
        if public is not None:
            self._wg(
                "upstream", "set", support.CONC_IFNAME, "peer", public, "allowed-ips",
                ",".join(allowed),
            )  # fmt: skip

    def _address(self, host: str, ifname: str, cidr: str) -> None:
        done = services.run_on(
            self.paths, host, ["ip", "-6", "addr", "replace", cidr, "dev", ifname, "nodad"], 10
        )
        if done.returncode != 0:
            raise LeakLabError(f"cannot add {cidr} to {host}:{ifname}: {done.stderr.strip()}")

    def ipv6_off(self) -> None:
        """Back to the lab's IPv4 only (disabling IPv6 removes the addresses and routes);
        WireGuard's allowed IPs as the policy and the lab have them."""
        sysctls = (
            ("net.ipv6.conf.all.disable_ipv6", "1"),
            ("net.ipv6.conf.default.disable_ipv6", "1"),
        )
        netns.set_sysctl(self.paths.namespace("gw"), "net.ipv6.conf.all.forwarding", "0")
        for host in ("gw", "hub1", "plant"):
            netns.set_sysctls(self.paths.namespace(host), sysctls)
        self.ipv6 = False
        peer = self.gw_peer()
        if peer is not None and "::/0" in peer.allowed_ips:
            wanted = desired_tunnel(load_file(self.policy).policy).allowed_ips
            self._wg(
                "gw", "set", TUNNEL_IF, "peer", peer.public_key, "allowed-ips", ",".join(wanted)
            )
        self._concentrator_ipv6(False)

    # ------------------------------------------------------------ the way back

    def heal(self, timeout: float = 30.0) -> list[str]:
        """The tunnel up again, the gate and IPv6 left as they are: the VPN enabled, the
        concentrator and plantgated running, the endpoint known, a live handshake at both
        ends. Returns what it did (nothing when there was nothing to heal).

        A plantgated whose wireguard-go is gone restarts it after a backoff that doubles up
        to a minute; if it has not within `WIREGUARD_RESTART_WAIT_S`, plantgated is
        restarted (as someone would). A restarted concentrator forgot gw's session: gw's
        WireGuard is made to shake hands anew at once rather than after two minutes.
        """
        did: list[str] = []
        if not self.vpn_enabled() or self._off_since is not None:
            self.set_vpn(True)
            did.append("vpn enable")
        if self.concentrator_pid() is None:
            self.start_concentrator()
            did.append("concentrator start")
        if not self.endpoint_present():
            self.renew_endpoint()
            did.append("endpoint renewed")
        if self.daemon_pid() is None:
            self.start_daemon()
            did.append("plantgated start")
        elif not self.wireguard_pids() and not self.tunnel_exists():
            try:
                _wait(self.tunnel_exists, WIREGUARD_RESTART_WAIT_S, "wireguard-go's restart")
            except LeakLabError:
                self.kill_daemon()
                self.start_daemon()
                did.append("plantgated restart")
        _wait(self.tunnel_exists, 15.0, "plantgated to bring the tunnel interface up")
        if self.tunnel_up():
            return did
        if "concentrator start" in did:
            self.kick()
            did.append("rekey")
        self.wait_up(timeout)
        return did or ["waited"]

    def baseline(self) -> float:
        """Tunnel up in gated mode, gate closed, IPv4 only, every process running; returns
        the seconds it took."""
        started = time.monotonic()
        if self.ipv6:
            self.ipv6_off()
        if self.gate:
            self.close_gate()
        self.heal()
        return time.monotonic() - started


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise LeakLabError(f"timed out after {timeout:.0f} s waiting for {what}")
