"""Thin adapter over pyroute2 for named network namespaces: the lab's only netlink code.

What it does: create/list/delete namespaces under /run/netns, build links *inside* them (a veth
is created in one namespace with its peer placed directly in the other, so no lab interface
ever appears in the machine's own namespace), set addresses, routes and sysctls, find the
processes living in a namespace, and run code or create sockets in a namespace.

Why threads: `setns(CLONE_NEWNET)` is per thread on Linux. A short-lived thread that enters
the namespace can write `/proc/sys/net/...` (resolved against the *calling thread's*
namespace) or create a socket, which keeps its namespace after the thread ends. The process's
main thread never leaves its own namespace.
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, ParamSpec, TypeVar

from pyroute2 import IPRoute, NetlinkError
from pyroute2 import netns as pr_netns

from gateway.lab.topology import parse_namespace
from gateway.netns import (
    NETNS_DIR,
    NamespaceMissingError,
    in_netns,
    namespace_path,
    socket_in_netns,
)

__all__ = [
    "NETNS_DIR",
    "NamespaceMissingError",
    "in_netns",
    "namespace_path",
    "socket_in_netns",
]

MAIN_TABLE = 254
NETLINK_ROUTE = 0
NETLINK_BUFFER = 1 << 20

P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class LinkInfo:
    """One interface as the kernel reports it."""

    ifname: str
    kind: str
    admin_up: bool
    operstate: str
    master: str | None
    addresses: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class RouteInfo:
    """One IPv4 route of the main table: `dst` is `default` or a CIDR; `via` may be None."""

    dst: str
    via: str | None
    dev: str | None


def namespace_exists(name: str) -> bool:
    return namespace_path(name).exists()


def list_all_namespaces() -> list[str]:
    try:
        return sorted(p.name for p in NETNS_DIR.iterdir())
    except FileNotFoundError:
        return []


def list_namespaces(prefix: str) -> list[str]:
    """Namespaces of lab `prefix` (`<prefix>-<known host>`), sorted."""
    return [n for n in list_all_namespaces() if parse_namespace(prefix, n) is not None]


def create_namespace(name: str) -> None:
    """Create the named namespace; FileExistsError if it exists already."""
    if namespace_exists(name):
        raise FileExistsError(errno.EEXIST, "network namespace exists", name)
    pr_netns.create(name)


def delete_namespace(name: str) -> bool:
    """Unmount and remove the namespace's name; False if it did not exist.

    The kernel frees the namespace (and the veths in it, with their peers) once no process
    or socket holds it any more.
    """
    if not namespace_exists(name):
        return False
    pr_netns.remove(name)
    return True


def namespace_inode(name: str) -> tuple[int, int]:
    """(device, inode) identifying the namespace, as /proc/PID/ns/net reports it."""
    try:
        st = namespace_path(name).stat()
    except FileNotFoundError as exc:
        raise NamespaceMissingError(errno.ENOENT, "no such network namespace", name) from exc
    return st.st_dev, st.st_ino


def pids_in_namespace(name: str) -> list[int]:
    """Pids whose network namespace is `name` (works without pidfiles, e.g. after a crash)."""
    target = namespace_inode(name)
    found: list[int] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry.name}/ns/net")
        except OSError:
            continue  # gone meanwhile, a zombie, or a kernel thread
        if (st.st_dev, st.st_ino) == target:
            found.append(int(entry.name))
    return sorted(found)


def pid_namespace_inode(pid: int) -> tuple[int, int] | None:
    try:
        st = os.stat(f"/proc/{pid}/ns/net")
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _write_sysctl(key: str, value: str) -> None:
    path = Path("/proc/sys") / key.replace(".", "/")
    path.write_text(f"{value}\n")


def _read_sysctl(key: str) -> str:
    path = Path("/proc/sys") / key.replace(".", "/")
    return path.read_text().strip()


def set_sysctl(name: str, key: str, value: str) -> None:
    """Write sysctl `key` (dotted form) inside namespace `name`."""
    in_netns(name, _write_sysctl, key, value)


def get_sysctl(name: str, key: str) -> str:
    return in_netns(name, _read_sysctl, key)


def _rtnl_socket(name: str) -> socket.socket:
    """A NETLINK_ROUTE socket living in namespace `name`.

    Made by a thread that entered the namespace, which costs far less than the child process
    pyroute2 forks for `IPRoute(netns=...)` (it adds up with 200 hubs). IPRoute closes it.
    """
    sock = socket_in_netns(name, socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_ROUTE)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, NETLINK_BUFFER)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, NETLINK_BUFFER)
    return sock


class NamespaceNet:
    """A netlink (RTNL) handle bound to one namespace; use as a context manager."""

    def __init__(self, name: str) -> None:
        if not namespace_exists(name):
            raise NamespaceMissingError(errno.ENOENT, "no such network namespace", name)
        self.name = name
        self._ipr: Any = IPRoute(use_socket=_rtnl_socket(name))

    def __enter__(self) -> NamespaceNet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._ipr.close()

    def index(self, ifname: str) -> int:
        """Interface index by name: one RTM_GETLINK, not a dump (the switch has 200 ports)."""
        try:
            found = self._ipr.link("get", ifname=ifname)
        except NetlinkError as exc:
            raise LookupError(f"no interface {ifname!r} in namespace {self.name}") from exc
        return int(found[0]["index"])

    def add_veth(self, ifname: str, peer_ifname: str, peer_namespace: str) -> None:
        """Create veth `ifname` here with its peer `peer_ifname` created in `peer_namespace`."""
        peer = {"ifname": peer_ifname, "net_ns_fd": str(namespace_path(peer_namespace))}
        self._ipr.link("add", ifname=ifname, kind="veth", peer=peer)

    def add_bridge(self, ifname: str) -> None:
        """A plain learning bridge; STP stays off so ports forward as soon as they are up."""
        self._ipr.link("add", ifname=ifname, kind="bridge")

    def set_master(self, ifname: str, master: str) -> None:
        self._ipr.link("set", index=self.index(ifname), master=self.index(master))

    def set_up(self, ifname: str) -> None:
        self._ipr.link("set", index=self.index(ifname), state="up")

    def add_address(self, ifname: str, cidr: str) -> None:
        iface = ipaddress.ip_interface(cidr)
        self._ipr.addr(
            "add",
            index=self.index(ifname),
            address=str(iface.ip),
            prefixlen=iface.network.prefixlen,
        )

    def add_route(self, dst: str, via: str) -> None:
        target = "0.0.0.0/0" if dst == "default" else dst
        self._ipr.route("add", dst=target, gateway=via)

    def replace_device_route(self, dst: str, ifname: str, table: int = MAIN_TABLE) -> None:
        """`dst` (or `default`) straight out of `ifname`, in routing table `table`."""
        target = "0.0.0.0/0" if dst == "default" else dst
        self._ipr.route("replace", dst=target, oif=self.index(ifname), table=table)

    def ensure_rule(self, src: str, iifname: str, table: int, priority: int) -> None:
        """Policy routing: packets from `src` arriving on `iifname` look up `table`."""
        net = ipaddress.ip_network(src)
        try:
            self._ipr.rule(
                "add",
                table=table,
                priority=priority,
                src=str(net.network_address),
                src_len=net.prefixlen,
                iifname=iifname,
            )
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise

    def ensure_address(self, ifname: str, cidr: str) -> None:
        try:
            self.add_address(ifname, cidr)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise

    def links(self) -> list[LinkInfo]:
        """Interfaces with their state, bridge master and IPv4 addresses."""
        raw = list(self._ipr.link("dump"))
        names = {int(m["index"]): str(m.get("ifname")) for m in raw}
        addrs = self._addresses()
        result: list[LinkInfo] = []
        for msg in raw:
            linkinfo = msg.get("IFLA_LINKINFO")
            kind = linkinfo.get("IFLA_INFO_KIND") if linkinfo is not None else None
            master = msg.get("IFLA_MASTER")
            result.append(
                LinkInfo(
                    ifname=str(msg.get("ifname")),
                    kind=str(kind or ("loopback" if msg.get("ifname") == "lo" else "")),
                    admin_up=bool(msg["flags"] & 1),
                    operstate=str(msg.get("IFLA_OPERSTATE") or "UNKNOWN"),
                    master=names.get(int(master)) if master else None,
                    addresses=tuple(addrs.get(int(msg["index"]), ())),
                )
            )
        return result

    def _addresses(self) -> dict[int, list[str]]:
        found: dict[int, list[str]] = {}
        for msg in self._ipr.addr("dump", family=socket.AF_INET):
            cidr = f"{msg.get('IFA_ADDRESS')}/{msg['prefixlen']}"
            found.setdefault(int(msg["index"]), []).append(cidr)
        return found

    def routes(self) -> list[RouteInfo]:
        """IPv4 routes of the main table."""
        names = {int(m["index"]): str(m.get("ifname")) for m in self._ipr.link("dump")}
        result: list[RouteInfo] = []
        for msg in self._ipr.route("dump", family=socket.AF_INET, table=MAIN_TABLE):
            dst = msg.get("RTA_DST")
            oif = msg.get("RTA_OIF")
            result.append(
                RouteInfo(
                    dst=f"{dst}/{msg['dst_len']}" if dst else "default",
                    via=msg.get("RTA_GATEWAY"),
                    dev=names.get(int(oif)) if oif else None,
                )
            )
        return result


def _write_sysctls(items: tuple[tuple[str, str], ...]) -> None:
    for key, value in items:
        _write_sysctl(key, value)


def set_sysctls(name: str, items: tuple[tuple[str, str], ...]) -> None:
    """Write several sysctls inside namespace `name` from one thread."""
    in_netns(name, _write_sysctls, items)
