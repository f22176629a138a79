"""The namespace lab's topology as data: which namespaces, links, addresses, routes, sysctls.

`plan_lab` is pure: it turns a prefix and a hub count into a frozen `LabPlan` that the netlink
adapter (`gateway.lab.netns`) builds and that `status` compares the kernel against. Keeping the
plan separate from the side effects lets unit tests check every address and route without root.

Decisions recorded here:

- The hubs' switch is a bridge in its own namespace `<prefix>-hubsw`, not in `gw`: with
  `br_netfilter` loaded, bridged frames would otherwise traverse gw's firewall and the lab would
  test something the appliance never sees.
- IPv6 is disabled in every lab namespace. The lab is IPv4 per DESIGN §3; without this, link-local
  chatter (router solicitations, MLD, DAD) would show up as dropped-and-logged noise at the gateway.
- `ip_forward` is set explicitly on every host (1 on `gw` and `plant`, 0 elsewhere) because new
  namespaces inherit IPv4 settings from the machine's own namespace.
- The support tunnel's interfaces (`wg-support`, `wg-conc`) are not part of this plan: they are
  WireGuard's, made by plantgated in gw and by the lab's concentrator in upstream. A lab with a
  policy (`support=True`) does add the support staff's side: a `staff` host holding the staff
  addresses (198.18.201.0/24, those of policies/lab.yaml), linked to `upstream` by a veth
  (`staff0`, 198.18.201.1). Upstream, the concentrator, then forwards between its staff and the
  tunnel; the routes and rules that send staff traffic into `wg-conc` belong to the
  concentrator (`gateway.lab.support`), since `wg-conc` exists only while it runs.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

PREFIX_PATTERN = re.compile(r"^[a-z][a-z0-9]{0,11}$")
MAX_HUBS = 200
IFNAME_MAX = 15
FIXED_HOSTS = ("gw", "hubsw", "plant", "upstream")
STAFF_HOST = "staff"
SUPPORT_HOSTS = (STAFF_HOST,)  # only in labs with a policy (support=True)
BRIDGE = "br0"

GW_LAN = "198.18.10.1"
GW_WAN = "198.18.20.1"
PLANT_WORKSTATION = "198.18.20.10"
PLANT_ROUTER = "198.18.20.254"
PLANT_UPLINK = "198.18.255.1"
UPSTREAM_UPLINK = "198.18.255.2"
NTP_ADDR = "198.19.0.123"
DNS_ADDR = "198.19.0.53"
SUPPORT_ADDR = "198.19.0.51"
ACCOUNT_ADDR = "198.19.0.43"
HUB_NET = "198.18.10.0/24"

# The support side (DESIGN §3): the tunnel's inner network and the staff behind the concentrator.
TUNNEL_NET = "198.18.200.0/24"
GW_TUNNEL = "198.18.200.2"
CONC_TUNNEL = "198.18.200.1"
STAFF_NET = "198.18.201.0/24"
STAFF_GATEWAY = "198.18.201.1"  # upstream's leg toward the staff (`staff0`)
STAFF_ADDRESSES = ("198.18.201.5", "198.18.201.6", "198.18.201.66")  # alice, bob, mallory
STAFF_LINK = "staff0"

_HUB_NAME = re.compile(r"^hub([1-9][0-9]{0,2})$")
_IPV6_OFF = (("net.ipv6.conf.all.disable_ipv6", "1"), ("net.ipv6.conf.default.disable_ipv6", "1"))


@dataclass(frozen=True)
class Address:
    """One address on one interface, in CIDR form (`198.18.10.1/24`)."""

    ifname: str
    cidr: str

    @property
    def ip(self) -> str:
        return self.cidr.split("/", 1)[0]


@dataclass(frozen=True)
class Route:
    """A static route: `dst` is `default` or a CIDR, reached via gateway `via`."""

    dst: str
    via: str


@dataclass(frozen=True)
class Sysctl:
    """A sysctl in dotted form (`net.ipv4.ip_forward`) and the value to write."""

    key: str
    value: str


@dataclass(frozen=True)
class Host:
    """One lab host: a namespace with its interfaces' addresses, routes and sysctls."""

    name: str
    namespace: str
    role: str
    addresses: tuple[Address, ...]
    routes: tuple[Route, ...]
    sysctls: tuple[Sysctl, ...]

    @property
    def interfaces(self) -> tuple[str, ...]:
        """Interfaces that carry addresses, in plan order, without duplicates."""
        return tuple(dict.fromkeys(a.ifname for a in self.addresses))


@dataclass(frozen=True)
class Endpoint:
    """One end of a veth pair: interface `ifname` inside host `host`'s namespace."""

    host: str
    ifname: str


@dataclass(frozen=True)
class VethPair:
    """A veth pair; `a` is created first, with `b` placed directly in the other namespace."""

    a: Endpoint
    b: Endpoint


@dataclass(frozen=True)
class Bridge:
    """A bridge `ifname` in host `host` with the listed port interfaces enslaved."""

    host: str
    ifname: str
    ports: tuple[str, ...]


@dataclass(frozen=True)
class LabPlan:
    """Everything `lab up` builds, in build order."""

    prefix: str
    hubs: int
    hosts: tuple[Host, ...]
    bridge: Bridge
    veths: tuple[VethPair, ...]
    support: bool = False  # the staff host and its link to upstream (labs with a policy)

    @property
    def namespaces(self) -> tuple[str, ...]:
        return tuple(h.namespace for h in self.hosts)

    @property
    def host_names(self) -> tuple[str, ...]:
        return tuple(h.name for h in self.hosts)

    def host(self, name: str) -> Host:
        for h in self.hosts:
            if h.name == name:
                return h
        raise ValueError(f"unknown lab host {name!r}; hosts are: {', '.join(self.host_names)}")

    def namespace(self, host: str) -> str:
        return self.host(host).namespace


def validate_prefix(prefix: str) -> str:
    """Return `prefix` if it is a valid lab prefix, else raise ValueError saying why."""
    if not PREFIX_PATTERN.match(prefix):
        raise ValueError(
            f"invalid lab prefix {prefix!r}: expected 1-12 characters, a lowercase letter "
            "followed by lowercase letters or digits (for example 'pg' or 't3x9k')"
        )
    return prefix


def validate_hubs(hubs: int) -> int:
    """Return `hubs` if it is a valid hub count (1..200), else raise ValueError."""
    if isinstance(hubs, bool) or not isinstance(hubs, int) or not 1 <= hubs <= MAX_HUBS:
        raise ValueError(
            f"invalid hub count {hubs!r}: expected a whole number from 1 to {MAX_HUBS}"
        )
    return hubs


def namespace_name(prefix: str, host: str) -> str:
    return f"{prefix}-{host}"


def is_lab_host(host: str) -> bool:
    """True for the host names a lab can have: gw, hubsw, plant, upstream, staff, hub1..hub200."""
    if host in FIXED_HOSTS or host in SUPPORT_HOSTS:
        return True
    match = _HUB_NAME.match(host)
    return match is not None and 1 <= int(match.group(1)) <= MAX_HUBS


def parse_namespace(prefix: str, namespace: str) -> str | None:
    """The host name if `namespace` belongs to the lab `prefix`, else None.

    `pg` must not claim `pgx-gw` (another lab) nor `pg-foo` (not ours): only `<prefix>-<host>`
    with a known host name matches.
    """
    head, sep, host = namespace.partition("-")
    if not sep or head != prefix or not is_lab_host(host):
        return None
    return host


def hub_name(index: int) -> str:
    return f"hub{index}"


def hub_address(index: int) -> str:
    return f"198.18.10.{10 + index}"


def hub_index(host: str) -> int | None:
    match = _HUB_NAME.match(host)
    return int(match.group(1)) if match else None


def switch_port(host: str) -> str:
    """Name of the bridge port in hubsw that leads to `host` (gw or a hub)."""
    return f"to-{host}"


def _sysctls(forward: bool, *extra: tuple[str, str]) -> tuple[Sysctl, ...]:
    items = (*_IPV6_OFF, ("net.ipv4.ip_forward", "1" if forward else "0"), *extra)
    return tuple(Sysctl(k, v) for k, v in items)


def _gw(prefix: str) -> Host:
    return Host(
        name="gw",
        namespace=namespace_name(prefix, "gw"),
        role="the appliance",
        addresses=(Address("lan0", f"{GW_LAN}/24"), Address("wan0", f"{GW_WAN}/24")),
        routes=(Route("default", PLANT_ROUTER),),
        sysctls=_sysctls(forward=True),
    )


def _hub(prefix: str, index: int) -> Host:
    name = hub_name(index)
    return Host(
        name=name,
        namespace=namespace_name(prefix, name),
        role="hub",
        addresses=(Address("eth0", f"{hub_address(index)}/24"),),
        routes=(Route("default", GW_LAN),),
        sysctls=_sysctls(forward=False),
    )


def _switch(prefix: str) -> Host:
    return Host(
        name="hubsw",
        namespace=namespace_name(prefix, "hubsw"),
        role="hub segment switch",
        addresses=(),
        routes=(),
        sysctls=_sysctls(forward=False),
    )


def _plant(prefix: str) -> Host:
    return Host(
        name="plant",
        namespace=namespace_name(prefix, "plant"),
        role="plant network (workstation and router)",
        addresses=(
            Address("eth0", f"{PLANT_WORKSTATION}/24"),
            Address("eth0", f"{PLANT_ROUTER}/24"),
            Address("up0", f"{PLANT_UPLINK}/30"),
        ),
        routes=(Route("default", UPSTREAM_UPLINK), Route(HUB_NET, GW_WAN)),
        sysctls=_sysctls(forward=True),
    )


def _upstream(prefix: str, support: bool = False) -> Host:
    """The internet; with `support` also the concentrator's router toward its staff.

    The concentrator forwards between `staff0` and `wg-conc`, and its policy routing sends
    staff packets in by `wg-conc` while replies leave by `staff0`: loose reverse-path checks
    (rp_filter 0) keep the kernel from second-guessing that asymmetry.
    """
    extras = (NTP_ADDR, DNS_ADDR, SUPPORT_ADDR, ACCOUNT_ADDR)
    staff = (Address(STAFF_LINK, f"{STAFF_GATEWAY}/24"),) if support else ()
    rp_off = (("net.ipv4.conf.all.rp_filter", "0"), ("net.ipv4.conf.default.rp_filter", "0"))
    return Host(
        name="upstream",
        namespace=namespace_name(prefix, "upstream"),
        role="the internet (NTP, DNS, support concentrator, account server)",
        addresses=(
            Address("eth0", f"{UPSTREAM_UPLINK}/30"),
            *(Address("eth0", f"{ip}/32") for ip in extras),
            *staff,
        ),
        routes=(Route("default", PLANT_UPLINK),),
        sysctls=_sysctls(True, *rp_off) if support else _sysctls(forward=False),
    )


def _staff(prefix: str) -> Host:
    """Support staff behind the concentrator: their addresses, and the concentrator as router."""
    return Host(
        name=STAFF_HOST,
        namespace=namespace_name(prefix, STAFF_HOST),
        role="support staff (behind the concentrator)",
        addresses=tuple(Address("eth0", f"{ip}/24") for ip in STAFF_ADDRESSES),
        routes=(Route("default", STAFF_GATEWAY),),
        sysctls=_sysctls(forward=False),
    )


def plan_lab(prefix: str, hubs: int, support: bool = False) -> LabPlan:
    """The complete lab for `prefix` with `hubs` hubs (DESIGN §3, without the tunnel's own
    interfaces); `support` adds the staff host behind the concentrator."""
    validate_prefix(prefix)
    validate_hubs(hubs)
    hub_hosts = tuple(_hub(prefix, i) for i in range(1, hubs + 1))
    staff = (_staff(prefix),) if support else ()
    hosts = (
        _gw(prefix),
        _switch(prefix),
        *hub_hosts,
        _plant(prefix),
        _upstream(prefix, support),
        *staff,
    )
    segment = ("gw", *(h.name for h in hub_hosts))
    veths = (
        *(VethPair(Endpoint("hubsw", switch_port("gw")), Endpoint("gw", "lan0")),),
        *(
            VethPair(Endpoint("hubsw", switch_port(h.name)), Endpoint(h.name, "eth0"))
            for h in hub_hosts
        ),
        VethPair(Endpoint("gw", "wan0"), Endpoint("plant", "eth0")),
        VethPair(Endpoint("plant", "up0"), Endpoint("upstream", "eth0")),
        *(
            (VethPair(Endpoint("upstream", STAFF_LINK), Endpoint(STAFF_HOST, "eth0")),)
            if support
            else ()
        ),
    )
    bridge = Bridge("hubsw", BRIDGE, tuple(switch_port(h) for h in segment))
    plan = LabPlan(
        prefix=prefix, hubs=hubs, hosts=hosts, bridge=bridge, veths=veths, support=support
    )
    _check(plan)
    return plan


def _check(plan: LabPlan) -> None:
    """Internal consistency: interface names fit the kernel, addresses parse, routes resolve."""
    names = {plan.bridge.ifname, *(e.ifname for v in plan.veths for e in (v.a, v.b))}
    too_long = sorted(n for n in names if len(n) > IFNAME_MAX)
    if too_long:
        raise AssertionError(f"interface names longer than {IFNAME_MAX}: {too_long}")
    for host in plan.hosts:
        for addr in host.addresses:
            ipaddress.ip_interface(addr.cidr)
        for route in host.routes:
            ipaddress.ip_address(route.via)
