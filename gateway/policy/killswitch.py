"""The support tunnel's kill switch, compiled into the base chains of `inet plantgate`.

It lives in the kernel, so it holds whether or not any PlantGate process runs, whether the
tunnel is up, down, or its WireGuard process was killed:

* tunnel addresses (`support_vpn.inner_networks`) are accepted only when they arrive on the
  tunnel interface (prerouting: no spoofing them from the plant or a hub);
* nothing addressed to them leaves by any other interface, not even an established reply
  (output and forward, before conntrack): when the tunnel drops, its routes go and the
  default route would otherwise carry support traffic out to the plant network;
* the appliance sends nothing *from* them by any other interface (output, before
  conntrack): a process bound to the appliance's tunnel address and talking to a service
  the policy allows (the resolver, say) would otherwise put that address on the plant
  network and the internet, whose replies the concentrator routes back into the tunnel.
  One exception, which the grant guard needs: the TCP reset the kernel sends to a target
  on behalf of a staff address whose grant is gone goes through output with that staff
  address as its source. A TCP reset from a staff address may therefore leave by the
  interfaces support traffic is forwarded to (the zones the policy has forward rules for
  from the tunnel's zone: the hubs), and nothing else from a tunnel address may;
* nothing is forwarded into the tunnel or toward the concentrator (new flows);
* no IPv6 on the support path unless `support_vpn.ipv6`;
* `mode: disabled`: no traffic on the tunnel interface at all, and nothing to the
  concentrator, established or not: nothing to its addresses in the endpoint set, and
  (since the set may lose the address while the tunnel's flow lives on) nothing from the
  appliance to its WireGuard port, nor into the appliance from that port, anywhere;
* `mode: gated`: a TCP or UDP flow of a staff address on the tunnel lives only as long as
  the gate holds a grant for it (`grant_guard`), so a gate that expires in the kernel ends
  its open sessions too, with no PlantGate process alive.

Gate-granted access itself is an ordinary derived rule (derive.py); this module only drops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gateway.policy.addresses import parse_net
from gateway.policy.derive import SUPPORT_STAFF
from gateway.policy.model import SupportVpn
from gateway.policy.ruleset import NftChain, NftSet, Origin

if TYPE_CHECKING:
    from gateway.policy.compile import _Builder

IP = {4: "ip", 6: "ip6"}
ADDR_TYPE = {4: "ipv4_addr", 6: "ipv6_addr"}
NOTE = "kill switch:"


def _names(interfaces: list[str]) -> str:
    """An anonymous set of interface names: `{ "wg-support", "lo" }`."""
    return "{ " + ", ".join(f'"{name}"' for name in interfaces) + " }"


def inner_set(version: int) -> str:
    return f"support_inner_v{version}"


class KillSwitch:
    """Adds the kill-switch rules for a builder's policy (nothing when it has no VPN)."""

    def __init__(self, builder: _Builder) -> None:
        self.builder = builder
        self.support: SupportVpn | None = builder.policy.support_vpn
        self.tunnel = ""
        self.versions: list[int] = []
        if self.support is not None:
            self.tunnel = builder.policy.interfaces[self.support.interface]
            self._inner_sets(self.support)

    def _inner_sets(self, support: SupportVpn) -> None:
        origin = self.builder.origin("support_vpn inner_networks", ("support_vpn",))
        nets = sorted((parse_net(n) for n in support.inner_networks), key=lambda n: n[:3])
        for version in (4, 6):
            elements = [str(n) for n in nets if n.version == version]
            if elements:
                self.versions.append(version)
                self.builder.table.add_set(
                    NftSet(inner_set(version), ADDR_TYPE[version], ("interval",), elements, origin)
                )

    def _origin(self) -> Origin:
        return self.builder.origin("support_vpn", ("support_vpn",))

    def _concentrator_sets(self) -> list[tuple[int, str]]:
        assert self.support is not None
        name = self.support.concentrator
        return [
            (v, f"ep_{name}_v{v}") for v in (4, 6) if f"ep_{name}_v{v}" in self.builder.table.sets
        ]

    def prerouting(self, chain: NftChain) -> None:
        if self.support is None:
            return
        for version in self.versions:
            match = f"{IP[version]} saddr @{inner_set(version)}"
            chain.add(f'{match} iifname != "{self.tunnel}" counter drop', self._origin())

    def before_conntrack(self, chain: NftChain, hook: str) -> None:
        """Drops that must hold even for established flows (the tunnel may have dropped)."""
        support = self.support
        if support is None:
            return
        origin = self._origin()
        tunnel = self.tunnel
        if support.mode == "disabled":
            if hook in ("input", "forward"):
                chain.add(f'iifname "{tunnel}" counter drop', origin)
            if hook in ("output", "forward"):
                chain.add(f'oifname "{tunnel}" counter drop', origin)
                for version, name in self._concentrator_sets():
                    chain.add(f"{IP[version]} daddr @{name} counter drop", origin)
            # The endpoint set may have lost the concentrator's address (its pin and TTL ran
            # out, DNS moved) while the tunnel's flow is still established: a WireGuard left
            # running (plantgated killed) keeps sending, and the concentrator keeps sending to
            # a closed port, which the appliance would answer with ICMP errors. The port says
            # it is the tunnel either way. Found by the leak test (tests/kernel/test_vpn_leaks.py,
            # bench/leaks.py).
            if hook == "output":
                chain.add(f"udp dport {support.port} counter drop", origin)
            if hook == "input":
                chain.add(f"udp sport {support.port} counter drop", origin)
        if hook in ("output", "forward"):
            for version in self.versions:
                # `lo`: the appliance may still reach its own tunnel address
                others = f'{{ "{tunnel}", "lo" }}'
                match = f"{IP[version]} daddr @{inner_set(version)}"
                chain.add(f"{match} oifname != {others} counter drop", origin)
                if hook == "output":  # found by the leak test (tests/kernel/test_vpn_leaks.py)
                    self._no_tunnel_source(chain, version)
        if not support.ipv6:
            if hook in ("input", "forward"):
                chain.add(f'iifname "{tunnel}" meta nfproto ipv6 counter drop', origin)
            if hook in ("output", "forward"):
                chain.add(f'oifname "{tunnel}" meta nfproto ipv6 counter drop', origin)
        if support.mode == "gated":
            self.grant_guard(chain, hook)

    def _no_tunnel_source(self, chain: NftChain, version: int) -> None:
        """Output: nothing from a tunnel address leaves by another interface, except the
        grant guard's TCP resets from a staff address toward the targets' interfaces.

        The guard's `reject with tcp reset` in forward sends the target's end its reset
        from the staff address, through output: dropping that too (as a plain "no tunnel
        source off the tunnel" rule does) leaves the target's end of a closed or expired
        session open (tests/kernel/test_gate.py). The exception is carved out by drops
        only, so the reset still goes on to the base chain's `ct state established` accept
        like any reply of the flow it ends.
        """
        origin, ip = self._origin(), IP[version]
        source = f"{ip} saddr @{inner_set(version)}"
        assert self.support is not None
        gated = self.support.mode == "gated"  # only the grant guard sends such resets
        targets = self._target_interfaces() if gated else []
        staff = f"ep_{SUPPORT_STAFF}_v{version}"
        if not targets or staff not in self.builder.table.sets:
            chain.add(f"{source} oifname != {_names([self.tunnel, 'lo'])} counter drop", origin)
            return
        chain.add(
            f"{source} oifname != {_names([self.tunnel, 'lo', *targets])} counter drop", origin
        )
        to_targets = f"{source} oifname {_names(targets)}"
        chain.add(f"{to_targets} {ip} saddr != @{staff} counter drop", origin)
        chain.add(f"{to_targets} meta l4proto != tcp counter drop", origin)
        chain.add(f"{to_targets} tcp flags & rst == 0 counter drop", origin)

    def _target_interfaces(self) -> list[str]:
        """Kernel names of the interfaces support traffic is forwarded to: those of the
        zones with a forward chain from a zone on the tunnel. A zone without interfaces
        (on every interface) gives none: its targets' ends then learn of a closed session
        only by their own timeouts, which is safe."""
        assert self.support is not None
        policy, chains = self.builder.policy, self.builder.table.chains
        role = self.support.interface
        sources = [z for z, zone in policy.zones.items() if role in zone.interfaces]
        names: set[str] = set()
        for target, zone in policy.zones.items():
            if any(f"fwd_{source}_{target}" in chains for source in sources):
                names.update(policy.interfaces[r] for r in zone.interfaces if r != role)
        return sorted(names)

    def grant_guard(self, chain: NftChain, hook: str) -> None:
        """End support flows whose gate grant is gone (closed or expired in the kernel).

        A grant is the gate set element `staff . target . proto . port`. Conntrack keeps an
        accepted flow alive after its element leaves the set, so before the base chain's
        `ct state established` accept, a packet between a staff address and the tunnel is
        checked against the set: from staff (input, forward) by `saddr . daddr . l4proto .
        dport`, to staff (output, forward) by `daddr . saddr . l4proto . sport`. Without a
        grant:

        * TCP segments other than SYN and RST get a reset, so each end learns at its next
          packet that the session is over, whether conntrack still knows the flow (kernel
          expiry) or the gate deleted its entry (`plantgate gate close`). A SYN goes on to
          the access rules, which drop and log it; resets pass (the one generated for the
          other end leaves through here);
        * established UDP is dropped (a new datagram goes on to the access rules).

        New connections are decided by the gated access rules, which `policy explain` models;
        this guard only ends flows, and established traffic is outside explain's scope.
        """
        assert self.support is not None
        gate, tunnel, origin = self.support.gate, self.tunnel, self._origin()
        for version in self._staff_versions():
            ip, staff = IP[version], f"@ep_{SUPPORT_STAFF}_v{version}"
            grants = f"@gate_{gate}_v{version}"
            sides = []
            if hook in ("input", "forward"):
                key = f"{ip} saddr . {ip} daddr . meta l4proto . th dport"
                sides.append((f'iifname "{tunnel}" {ip} saddr {staff}', key))
            if hook in ("output", "forward"):
                key = f"{ip} daddr . {ip} saddr . meta l4proto . th sport"
                sides.append((f'oifname "{tunnel}" {ip} daddr {staff}', key))
            for where, key in sides:
                chain.add(
                    f"{where} tcp flags & (syn | rst) == 0 {key} != {grants} counter "
                    "reject with tcp reset",
                    origin,
                )
                chain.add(
                    f"{where} ct state established meta l4proto udp {key} != {grants} counter drop",
                    origin,
                )

    def _staff_versions(self) -> list[int]:
        return [v for v in (4, 6) if f"ep_{SUPPORT_STAFF}_v{v}" in self.builder.table.sets]

    def after_conntrack(self, chain: NftChain, hook: str) -> None:
        """New flows: nothing is forwarded into the tunnel or toward the concentrator."""
        if self.support is None or hook != "forward":
            return
        origin = self._origin()
        chain.add(f'oifname "{self.tunnel}" counter drop', origin)
        for version in self.versions:
            chain.add(f"{IP[version]} daddr @{inner_set(version)} counter drop", origin)
        for version, name in self._concentrator_sets():
            chain.add(f"{IP[version]} daddr @{name} counter drop", origin)
