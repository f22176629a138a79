"""Netlink adapter for the tunnel interface (pyroute2), in the calling process's namespace.

Creating the interface: with the kernel module, a link of kind `wireguard`; without it
(EOPNOTSUPP, as in the lab's kernel), `add_kernel_link` says so and the caller starts
wireguard-go, which creates a TUN device of that name itself. Either way addresses, link
state and routes are set here, never with `ip` commands; WireGuard settings go through `wg`.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Iterable
from typing import Any

from pyroute2 import IPRoute, NetlinkError

NO_MODULE = (errno.EOPNOTSUPP, errno.ENODEV, errno.EAFNOSUPPORT)
MAIN_TABLE = 254


def _index(ipr: Any, ifname: str) -> int | None:
    found = ipr.link_lookup(ifname=ifname)
    return int(found[0]) if found else None


def link_exists(ifname: str) -> bool:
    with IPRoute() as ipr:
        return _index(ipr, ifname) is not None


def add_kernel_link(ifname: str) -> bool:
    """Create `ifname` with the kernel module; False when the kernel has no WireGuard."""
    with IPRoute() as ipr:
        try:
            ipr.link("add", ifname=ifname, kind="wireguard")
        except NetlinkError as exc:
            if exc.code in NO_MODULE:
                return False
            raise OSError(exc.code, f"cannot create {ifname}: {exc}") from exc
    return True


def delete_link(ifname: str) -> bool:
    """Remove the interface if it exists (wireguard-go exits when its TUN device goes)."""
    with IPRoute() as ipr:
        index = _index(ipr, ifname)
        if index is None:
            return False
        try:
            ipr.link("del", index=index)
        except NetlinkError as exc:
            if exc.code != errno.ENODEV:
                raise OSError(exc.code, f"cannot remove {ifname}: {exc}") from exc
    return True


def bring_up(ifname: str, address: str, routes: Iterable[str]) -> list[str]:
    """Give `ifname` its address, set it up and route `routes` through it (idempotent).

    Returns what it changed, for the log ("address 198.18.200.2/24", "route ...").
    """
    iface = ipaddress.ip_interface(address)
    family = socket.AF_INET6 if iface.version == 6 else socket.AF_INET
    changed: list[str] = []
    with IPRoute() as ipr:
        index = _index(ipr, ifname)
        if index is None:
            raise OSError(errno.ENODEV, f"no interface {ifname}")
        present = {
            (msg.get_attr("IFA_ADDRESS"), msg["prefixlen"])
            for msg in ipr.get_addr(index=index, family=family)
        }
        if (str(iface.ip), iface.network.prefixlen) not in present:
            ipr.addr("add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen)
            changed.append(f"address {address}")
        link = ipr.get_links(index)[0]
        if not link["flags"] & 1:
            ipr.link("set", index=index, state="up")
            changed.append("link up")
        for network in routes:
            if _route_missing(ipr, index, network):
                ipr.route("replace", dst=network, oif=index)
                changed.append(f"route {network}")
    return changed


def _route_missing(ipr: Any, index: int, network: str) -> bool:
    net = ipaddress.ip_network(network)
    family = socket.AF_INET6 if net.version == 6 else socket.AF_INET
    for msg in ipr.get_routes(family=family):
        if (
            msg.get_attr("RTA_DST") == str(net.network_address)
            and msg["dst_len"] == net.prefixlen
            and msg.get_attr("RTA_OIF") == index
            and msg.get_attr("RTA_TABLE") == MAIN_TABLE
        ):
            return False
    return True
