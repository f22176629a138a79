"""What the leak test sends, and to whom (pure): the lab's addresses as the test uses them,
the probes, and what a probe's result means.

A probe is *answered* when it reached its target (connected, reset, echoed, port
unreachable); for a probe the policy forbids, that is a breach. Site probes (from gw and a
hub) are never allowed into the tunnel; staff probes are allowed only for what the gate
grants at the moment; control probes are the positive control the captures must see.

The IPv6 addresses come from the benchmarking range 2001:2::/48 (RFC 5180) on the lab's
links and the ULA fd00::/8 for look-alikes of the tunnel's networks: all inside the lab.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from gateway.lab import support, topology
from gateway.vpn.leakcheck import Origin

ECHO_PORT = 24900  # UDP echo responders on the probes' targets (outside the probe ranges)
CONTROL_PORT = 24901
TUNNEL_IF = "wg-support"

ALICE, BOB, MALLORY = topology.STAFF_ADDRESSES
HUB1 = topology.hub_address(1)

# The IPv6 state: benchmarking range on the lab's links, ULA look-alikes of the tunnel.
V6_WAN, V6_PLANT = "2001:2:0:20::1", "2001:2:0:20::fe"
V6_LAN, V6_HUB1 = "2001:2:0:10::1", "2001:2:0:10::11"
V6_TUNNEL_NET, V6_STAFF_NET = "fd00:200::/64", "fd00:201::/64"
V6_GW_TUNNEL, V6_CONC, V6_STAFF = "fd00:200::2", "fd00:200::1", "fd00:201::5"
V6_INNER_LIKE = (V6_TUNNEL_NET, V6_STAFF_NET)

Proto = Literal["tcp", "udp", "icmp"]
Outcome = Literal["answered", "silent", "blocked", "unreachable", "error"]


@dataclass(frozen=True)
class LeakProbe:
    """One probe: `proto` from lab host `src` to `dst` (port for TCP/UDP)."""

    origin: Origin
    src: str
    dst: str
    proto: Proto
    label: str
    port: int = 0
    bind: str | None = None  # source address
    device: str | None = None  # SO_BINDTODEVICE, and the scope of a link-local `dst`
    spoof: bool = False  # IP_TRANSPARENT: the source need not be the host's (any more)
    granted: bool = False  # the gate allows it: an answer is expected, not a breach

    @property
    def family(self) -> int:
        return socket.AF_INET6 if ":" in self.dst else socket.AF_INET

    def text(self) -> str:
        where = f" from {self.bind}" if self.bind else ""
        via = f" via {self.device}" if self.device else ""
        port = f":{self.port}" if self.proto != "icmp" else ""
        return f"{self.src}{where} -> {self.dst}{port} {self.proto}{via} ({self.label})"


@dataclass(frozen=True)
class ProbeResult:
    probe: LeakProbe
    outcome: Outcome
    detail: str
    at: float

    @property
    def breach(self) -> bool:
        """A forbidden probe that reached its target."""
        return (
            self.outcome == "answered" and not self.probe.granted and self.probe.origin != "control"
        )

    def text(self) -> str:
        return f"{self.probe.text()}: {self.outcome} ({self.detail})"


def site_probes(gate_open: bool = False) -> list[LeakProbe]:
    """From gw and hub1 toward the staff and the concentrator's inner address, and the
    ways a packet could try to leave with a tunnel address on the physical side."""
    del gate_open  # nothing from the site side is ever allowed into the tunnel
    targets = ((ALICE, "alice"), (MALLORY, "mallory"), (topology.CONC_TUNNEL, "concentrator"))
    probes: list[LeakProbe] = []
    for host in ("gw", "hub1"):
        for address, name in targets:
            probes += [
                LeakProbe("site", host, address, "tcp", f"{host} to {name}", 22),
                LeakProbe("site", host, address, "udp", f"{host} to {name}", ECHO_PORT),
                LeakProbe("site", host, address, "icmp", f"{host} to {name}"),
            ]
    probes += [
        # forced out of the physical interface, whatever the routes say
        LeakProbe("site", "gw", ALICE, "tcp", "gw to alice bound to wan0", 22, device="wan0"),
        LeakProbe(
            "site", "gw", ALICE, "udp", "gw to alice bound to wan0", ECHO_PORT, device="wan0"
        ),
        LeakProbe("site", "gw", ALICE, "icmp", "gw to alice bound to wan0", device="wan0"),
        # the appliance's tunnel address as source, toward services the policy allows
        LeakProbe(
            "site", "gw", topology.DNS_ADDR, "udp", "gw from its tunnel address to the resolver",
            53, bind=topology.GW_TUNNEL, spoof=True,
        ),
        LeakProbe(
            "site", "gw", topology.PLANT_WORKSTATION, "tcp",
            "gw from its tunnel address to the alert collector", 6514,
            bind=topology.GW_TUNNEL, spoof=True,
        ),
        LeakProbe(
            "site", "gw", topology.ACCOUNT_ADDR, "tcp",
            "gw from its tunnel address to the account server", 443,
            bind=topology.GW_TUNNEL, spoof=True,
        ),
        # a hub toward the concentrator's public address, and a hub pretending to be staff
        LeakProbe(
            "site", "hub1", topology.SUPPORT_ADDR, "udp", "hub1 to the concentrator",
            support.CONC_PORT,
        ),
        LeakProbe(
            "site", "hub1", topology.DNS_ADDR, "udp", "hub1 with alice's address", 53,
            bind=ALICE, spoof=True,
        ),
    ]  # fmt: skip
    return probes


def staff_probes(granted: Sequence[tuple[str, str, int]] = ()) -> list[LeakProbe]:
    """From alice and mallory toward the appliance's tunnel address and hub1; `granted`
    lists the (staff, target, port) the gate allows at the moment."""
    probes: list[LeakProbe] = []
    for staff, name in ((ALICE, "alice"), (MALLORY, "mallory")):
        for target, tname in ((topology.GW_TUNNEL, "gw"), (HUB1, "hub1")):
            label = f"{name} to {tname}"
            probes += [
                LeakProbe(
                    "staff", "staff", target, "tcp", label, 22, bind=staff,
                    granted=(staff, target, 22) in granted,
                ),
                LeakProbe("staff", "staff", target, "udp", label, ECHO_PORT, bind=staff),
                LeakProbe("staff", "staff", target, "icmp", label, bind=staff),
            ]  # fmt: skip
    return probes


def ipv6_probes() -> list[LeakProbe]:
    """IPv6 toward the tunnel: look-alike inner addresses, link-local and multicast on the
    tunnel interface, and IPv4-mapped staff addresses on IPv6 sockets."""
    mapped = f"::ffff:{ALICE}"
    probes: list[LeakProbe] = []
    for host in ("gw", "hub1"):
        probes += [
            LeakProbe("site", host, V6_STAFF, "tcp", f"{host} to staff over IPv6", 22),
            LeakProbe("site", host, V6_STAFF, "udp", f"{host} to staff over IPv6", ECHO_PORT),
            LeakProbe("site", host, V6_STAFF, "icmp", f"{host} to staff over IPv6"),
            LeakProbe("site", host, mapped, "udp", f"{host} to IPv4-mapped alice", ECHO_PORT),
            LeakProbe("site", host, mapped, "tcp", f"{host} to IPv4-mapped alice", 22),
        ]
    probes += [
        LeakProbe("site", "gw", V6_CONC, "icmp", "gw to the concentrator over IPv6"),
        LeakProbe("site", "gw", "fe80::1", "udp", "link-local on the tunnel", ECHO_PORT,
                  device=TUNNEL_IF),
        LeakProbe("site", "gw", "fe80::1", "icmp", "link-local on the tunnel", device=TUNNEL_IF),
        LeakProbe("site", "gw", "ff02::1", "icmp", "all-nodes on the tunnel", device=TUNNEL_IF),
        LeakProbe("site", "gw", V6_STAFF, "udp", "gw to staff over IPv6 bound to wan0",
                  ECHO_PORT, device="wan0"),
    ]  # fmt: skip
    return probes


def control_probes(tunnel: bool = True) -> list[LeakProbe]:
    """The positive control: marked packets the captures must see. From the plant
    workstation to gw's wan0 (seen leaving the plant's eth0 and arriving on wan0), from the
    plant router to the internet (up0), and (with `tunnel`) from alice to gw through the
    tunnel (seen where the concentrator sends it in, on wg-conc)."""
    probes = [
        LeakProbe(
            "control", "plant", topology.GW_WAN, "udp", "plant to gw's wan0", CONTROL_PORT,
            bind=topology.PLANT_WORKSTATION,
        ),
        LeakProbe("control", "plant", topology.UPSTREAM_UPLINK, "icmp", "plant to upstream"),
    ]  # fmt: skip
    if tunnel:
        probes.append(
            LeakProbe(
                "control", "staff", topology.GW_TUNNEL, "icmp", "alice into the tunnel", bind=ALICE
            )
        )
    return probes
