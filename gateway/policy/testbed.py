"""Throwaway namespaces for `plantgate policy test --kernel`: a DUT and one peer per interface.

`plan_bed` (pure) decides what to build from the test cases and their explanations;
`Testbed` (the adapter) builds it with pyroute2, loads rulesets and gate elements into the
DUT with libnftables from a thread that entered the DUT's namespace, and removes every
namespace it made in `finally`, whatever happened.

Layout: namespace `<prefix>-gw` is the appliance under test, holding the policy's interfaces
as veths with the test file's `appliance:` addresses, `ip_forward=1`. Each interface's other
end is namespace `<prefix>-on-<ifname>`, holding the test hosts that live behind it (inside
the connected network with its prefix, elsewhere as /32) and a default route via the DUT
(onlink, so hosts outside the connected network need no router). The DUT gets a /32 route
through the right interface for every host outside its connected networks. No namespace links
to the machine's own, IPv6 is off everywhere (the probes speak IPv4), and `rp_filter` is 0:
the kernel's own source check must not stand in for the ruleset's.

Spoofed sources (a host sent from an interface it does not live behind) get no route and are
added to their peer only while their lone probe runs: a reply could never come back, so their
kernel verdict is read from an observer table in the DUT (`inet plantgate_observer`), whose
counters say whether the packet arrived (prerouting, before the ruleset) and whether it got
past the ruleset (input/forward, after it).
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, ParamSpec, TypeVar

import nftables
from pyroute2 import IPRoute

from gateway.lab import netns
from gateway.policy.apply import apply_compiled
from gateway.policy.compile import Compiled
from gateway.policy.nft import Element, Nft

P = ParamSpec("P")
T = TypeVar("T")
DUT = "gw"
PEER_IFNAME = "eth0"
OBSERVER = "plantgate_observer"
SCOPE_LINK = 253
RTNH_F_ONLINK = 4
SYSCTLS_OFF = (
    ("net.ipv6.conf.all.disable_ipv6", "1"),
    ("net.ipv6.conf.default.disable_ipv6", "1"),
    ("net.ipv4.conf.all.rp_filter", "0"),
    ("net.ipv4.conf.default.rp_filter", "0"),
)


class OutsideNamespaceError(RuntimeError):
    """A worker thread is not in the DUT namespace; nothing was loaded."""


def peer_host(ifname: str) -> str:
    """The probe host name (namespace suffix) of the peer behind DUT interface `ifname`."""
    return f"on-{ifname}"


@dataclass(frozen=True)
class BedPlan:
    """What the testbed holds: DUT interfaces and addresses, peers' hosts, DUT routes."""

    prefix: str
    appliance: dict[str, tuple[str, ...]]  # DUT interface -> IPv4 address/prefix
    peers: dict[str, tuple[str, ...]]  # DUT interface -> host address/prefix in its peer
    routes: tuple[tuple[str, str], ...]  # (host address, DUT interface) for /32 routes
    gateways: dict[str, str] = field(default_factory=dict)  # DUT interface -> address

    @property
    def dut(self) -> str:
        return f"{self.prefix}-{DUT}"

    def peer(self, ifname: str) -> str:
        return f"{self.prefix}-{peer_host(ifname)}"

    @property
    def namespaces(self) -> tuple[str, ...]:
        return (self.dut, *(self.peer(i) for i in self.appliance))


def host_cidr(address: str, connected: list[ipaddress.IPv4Network]) -> str:
    """`address` with the prefix of the connected network holding it, else /32."""
    ip = ipaddress.IPv4Address(address)
    for net in connected:
        if ip in net:
            return f"{ip}/{net.prefixlen}"
    return f"{ip}/32"


def plan_bed(
    prefix: str,
    appliance: Mapping[str, tuple[str, ...]],
    interfaces: tuple[str, ...],
    homes: Mapping[str, str],
) -> BedPlan:
    """The bed for hosts living at `homes` (IPv4 address -> DUT interface).

    `interfaces` are every interface the DUT needs (the policy's and the test file's).
    """
    v4 = {
        i: tuple(a for a in appliance.get(i, ()) if ipaddress.ip_interface(a).version == 4)
        for i in interfaces
    }
    connected = {i: [ipaddress.IPv4Interface(a).network for a in v4[i]] for i in interfaces}
    peers: dict[str, list[str]] = {i: [] for i in interfaces}
    routes: list[tuple[str, str]] = []
    for address, ifname in homes.items():
        cidr = host_cidr(address, connected[ifname])
        peers[ifname].append(cidr)
        if cidr.endswith("/32"):
            routes.append((address, ifname))
    gateways = {i: v4[i][0].partition("/")[0] for i in interfaces if v4[i]}
    return BedPlan(
        prefix,
        v4,
        {i: tuple(hosts) for i, hosts in peers.items()},
        tuple(routes),
        gateways,
    )


# ---------------------------------------------------------------- the adapter


def _rtnl(name: str) -> Any:
    """A pyroute2 IPRoute bound to namespace `name` (its socket was made inside it)."""
    return IPRoute(use_socket=netns.socket_in_netns(name, socket.AF_NETLINK, socket.SOCK_DGRAM, 0))


def _index(ipr: Any, ifname: str) -> int:
    return int(ipr.link_lookup(ifname=ifname)[0])


def _add_address(ipr: Any, ifname: str, cidr: str) -> None:
    iface = ipaddress.ip_interface(cidr)
    ipr.addr(
        "add", index=_index(ipr, ifname), address=str(iface.ip), prefixlen=iface.network.prefixlen
    )


def _assert_inside(name: str) -> None:
    here = os.stat("/proc/thread-self/ns/net")
    there = netns.namespace_path(name).stat()
    if (here.st_dev, here.st_ino) != (there.st_dev, there.st_ino):
        raise OutsideNamespaceError(f"thread is not in network namespace {name}; refusing")


class Testbed:
    """The built bed. Use `build` as a context manager: everything goes in `finally`."""

    def __init__(self, plan: BedPlan) -> None:
        self.plan = plan
        self.created: list[str] = []  # only these are ever removed

    def in_dut(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """`fn` in a thread inside the DUT namespace, checked before it runs."""
        dut = self.plan.dut

        def guarded() -> T:
            _assert_inside(dut)
            return fn(*args, **kwargs)

        return netns.in_netns(dut, guarded)

    # -- building --------------------------------------------------------------------

    def _create(self) -> None:
        for name in self.plan.namespaces:
            netns.create_namespace(name)  # FileExistsError if someone else's: never touched
            self.created.append(name)
            forward = "1" if name == self.plan.dut else "0"
            netns.set_sysctls(name, (*SYSCTLS_OFF, ("net.ipv4.ip_forward", forward)))

    def _wire(self) -> None:
        plan = self.plan
        ipr = _rtnl(plan.dut)
        try:
            ipr.link("set", index=_index(ipr, "lo"), state="up")
            for ifname, addresses in plan.appliance.items():
                peer = {
                    "ifname": PEER_IFNAME,
                    "net_ns_fd": str(netns.namespace_path(plan.peer(ifname))),
                }
                ipr.link("add", ifname=ifname, kind="veth", peer=peer)
                for cidr in addresses:
                    _add_address(ipr, ifname, cidr)
                ipr.link("set", index=_index(ipr, ifname), state="up")
            for address, ifname in plan.routes:
                ipr.route("add", dst=f"{address}/32", oif=_index(ipr, ifname), scope=SCOPE_LINK)
        finally:
            ipr.close()
        for ifname in plan.appliance:
            self._wire_peer(ifname)

    def _wire_peer(self, ifname: str) -> None:
        ipr = _rtnl(self.plan.peer(ifname))
        try:
            ipr.link("set", index=_index(ipr, "lo"), state="up")
            for cidr in self.plan.peers[ifname]:
                _add_address(ipr, PEER_IFNAME, cidr)
            index = _index(ipr, PEER_IFNAME)
            ipr.link("set", index=index, state="up")
            gateway = self.plan.gateways.get(ifname)
            if gateway is not None:
                ipr.route("add", dst="0.0.0.0/0", gateway=gateway, oif=index, flags=RTNH_F_ONLINK)
        finally:
            ipr.close()

    def remove(self) -> list[str]:
        """Delete every namespace this bed created; returns the ones deleted."""
        removed = []
        for name in reversed(self.created):
            if netns.delete_namespace(name):
                removed.append(name)
        return removed

    # -- rulesets, gates, spoofed hosts ------------------------------------------------

    def apply(
        self, compiled: Compiled, policy_file: str, names: Mapping[str, list[Element]]
    ) -> None:
        """Load the compiled policy into the DUT, with FQDN sets filled from `names`."""
        self.in_dut(lambda: apply_compiled(compiled, Nft(), policy_file, names))

    def script(self, text: str) -> None:
        """Run an nft script in the DUT (one transaction)."""
        self.in_dut(lambda: Nft().run_script(text))

    def set_gates(self, grants: Mapping[str, list[str]]) -> None:
        """Exactly these gate grants (set name -> 'src . dst' elements); all others closed."""
        lines = [f"flush set inet plantgate {name}" for name in sorted(grants)]
        lines += [
            f"add element inet plantgate {name} {{ {', '.join(items)} }}"
            for name, items in sorted(grants.items())
            if items
        ]
        if lines:
            self.script("\n".join(lines) + "\n")

    @contextmanager
    def spoofed(self, addresses: Iterable[tuple[str, str]]) -> Iterator[None]:
        """Each (interface, address) held by the peer behind it for the duration of the block."""
        added: list[tuple[str, str]] = []
        try:
            for ifname, address in dict.fromkeys(addresses):
                with _closing(_rtnl(self.plan.peer(ifname))) as ipr:
                    _add_address(ipr, PEER_IFNAME, f"{address}/32")
                added.append((ifname, address))
            yield
        finally:
            for ifname, address in added:
                with _closing(_rtnl(self.plan.peer(ifname))) as ipr:
                    ipr.addr("del", index=_index(ipr, PEER_IFNAME), address=address, prefixlen=32)

    def observe(self, matches: Mapping[str, str]) -> None:
        """(Re)create the observer table: per key, count packets matching its expression."""
        chains = (
            ("seen", "prerouting", -400),
            ("passed_in", "input", 100),
            ("passed_fwd", "forward", 100),
        )
        body = ""
        for name, hook, priority in chains:
            body += f"\tchain {name} {{\n\t\ttype filter hook {hook} priority {priority}; "
            body += "policy accept;\n"
            body += "".join(f'\t\t{m} counter comment "{k}"\n' for k, m in matches.items())
            body += "\t}\n"
        self.script(
            f"table inet {OBSERVER}\ndelete table inet {OBSERVER}\n"
            f"table inet {OBSERVER} {{\n{body}}}\n"
        )

    def observed(self) -> dict[str, dict[str, int]]:
        """Per observer key, packets counted per chain since `observe`."""
        return self.in_dut(_read_observer)


@contextmanager
def _closing(ipr: Any) -> Iterator[Any]:
    try:
        yield ipr
    finally:
        ipr.close()


def _read_observer() -> dict[str, dict[str, int]]:
    binding = nftables.Nftables()
    binding.set_json_output(True)
    rc, out, err = binding.cmd(f"list table inet {OBSERVER}")
    if rc != 0:
        raise RuntimeError(f"cannot read the observer table: {err.strip()}")
    counts: dict[str, dict[str, int]] = {}
    for item in json.loads(out).get("nftables", []):
        rule = item.get("rule")
        if rule is None or "comment" not in rule:
            continue
        packets = sum(
            int(e["counter"]["packets"])
            for e in rule.get("expr", [])
            if isinstance(e, dict) and "counter" in e
        )
        counts.setdefault(rule["comment"], {})[rule["chain"]] = packets
    return counts


@contextmanager
def testbed(plan: BedPlan) -> Iterator[Testbed]:
    """Build the bed; it is removed on the way out, even after errors or interrupts."""
    bed = Testbed(plan)
    try:
        bed._create()
        bed._wire()
        yield bed
    finally:
        bed.remove()
