"""The support tunnel's leak test in the lab: captures, marked probes, and the tunnel's states.

In the manner of Mullvad's leak tests: captures run for the whole test on the physical side
(gw's `wan0`, the plant's `eth0` and `up0`) and inside the tunnel where it comes out at the
concentrator (`wg-conc` in `upstream`); a **positive control** proves first that they see
marked packets; then, in every state the tunnel can be in, **probes** of every kind (TCP
connect, UDP datagram, ICMP echo; IPv4 and, in the IPv6 state, IPv6) go from the appliance
and from a hub toward the staff and the concentrator's inner address, and from the staff
toward the appliance and a hub. The verdicts are `gateway.vpn.leakcheck`'s (pure); this
module only does the side effects:

* `Captures`: one AF_PACKET socket per namespace (cooked, every interface, filtered by name,
  so a capture survives its interface being deleted and made again), kernel timestamps, a
  reader thread each; the kernel's drop counter is kept, since a capture that drops could
  miss a leak;
* `Prober`: probes with this run's marker in every payload that can hold one and a source
  port from the origin's range; UDP echo responders on the probes' targets make "the
  datagram got there" visible. A probe *answered* (connected, reset, echoed, port
  unreachable) reached its target: for a probe the policy forbids, that is a breach;
* `LeakLab`: the tunnel's states, entered and left the way they happen: the concentrator
  stopped and started, wireguard-go or plantgated killed with SIGKILL, `plantgate vpn
  disable|enable`, the gate opened and closed by its nftables element, IPv6 switched on in
  gw, the hub and the plant (and on the tunnel, with IPv6 allowed in WireGuard on both ends,
  so that only the kill switch stands in the way), and `baseline()` back to the tunnel up
  in gated mode with the gate closed.

One arrangement is made in the lab for the test: a blackhole default route in the
concentrator's staff table (`upstream`, table 201, behind the `wg-conc` route). Without it,
staff traffic falls back to the internet's own routing while the concentrator is stopped,
and the lab's internet would carry staff addresses to the plant: a path the vendor's real
concentrator does not have, and not the appliance's doing.

Everything stays inside the lab's namespaces and 198.18.0.0/15; the IPv6 addresses come from
the benchmarking range 2001:2::/48 (RFC 5180) and the ULA fd00::/8, also inside the lab.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import re
import secrets
import select
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from gateway.lab import netns, services, support, topology
from gateway.lab.probe import icmp_answer, icmp_echo
from gateway.lab.services import LabPaths
from gateway.policy.load import load_file
from gateway.policy.operations import vpn_override
from gateway.vpn import keys, wg
from gateway.vpn.leakcheck import (
    MARK,
    Facts,
    Markers,
    Origin,
    Seen,
    Side,
    Tally,
    facts_for,
    tally,
)
from gateway.vpn.tunnel import desired_tunnel

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
SO_BINDTODEVICE = 25
IP_TRANSPARENT = 19  # send from an address the host does not have (root only)
CAPTURE_BUFFER = 16 << 20
SNAPLEN = 2048
MAX_PACKETS = 400_000

ECHO_PORT = 24900  # UDP echo responders on the probes' targets (outside the probe ranges)
CONTROL_PORT = 24901
ECHO_HOSTS = ("staff", "upstream", "gw", "hub1")
CAPTURE_POINTS: dict[str, tuple[Side, tuple[str, ...]]] = {
    "gw": ("physical", ("wan0",)),
    "plant": ("physical", ("eth0", "up0")),
    "upstream": ("tunnel", (support.CONC_IFNAME,)),
}
TUNNEL_IF = "wg-support"
STAFF_TABLE_BLACKHOLE_METRIC = 4000

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


class LeakLabError(RuntimeError):
    """The lab could not be brought into (or back from) a state."""


COUNTER = re.compile(r"counter packets (\d+) bytes \d+ ")
KILL_SWITCH = 'comment "support_vpn @'


def kill_switch_counts(listing: str) -> dict[str, int]:
    """Packets each kill-switch rule has matched, from `nft list table` text (pure):
    `{"output: oifname "wg-support" meta nfproto ipv6 drop": 12, ...}`."""
    counts: dict[str, int] = {}
    chain = ""
    for line in listing.splitlines():
        text = line.strip()
        if text.startswith("chain "):
            chain = text.split()[1]
        found = COUNTER.search(text)
        if KILL_SWITCH not in text or found is None:
            continue
        rule = COUNTER.sub("", text.split(" comment ")[0]).strip()
        key = f"{chain}: {rule}"
        counts[key] = counts.get(key, 0) + int(found.group(1))
    return counts


def counts_since(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """What each rule matched in between (pure); a reloaded table restarts its counters."""
    delta = {}
    for rule, now in after.items():
        then = before.get(rule, 0)
        moved = now - then if now >= then else now
        if moved:
            delta[rule] = moved
    return delta


# ---------------------------------------------------------------- captures


class Capture:
    """Every packet on some interfaces of one namespace, with the kernel's timestamps."""

    def __init__(self, namespace: str, where: str, side: Side, ifnames: Iterable[str]) -> None:
        self.namespace, self.host, self.side = namespace, where, side
        self.ifnames = frozenset(ifnames)
        self.packets: list[Seen] = []
        self.dropped = 0
        self.overflow = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sock = netns.socket_in_netns(
            namespace, socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL)
        )
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, CAPTURE_BUFFER)
        except OSError:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, CAPTURE_BUFFER)
        self._sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self._sock.setblocking(False)
        self._statistics()  # reading the counters resets them: start from zero
        self._thread = threading.Thread(target=self._run, name=f"capture:{where}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        ancillary = socket.CMSG_SPACE(16)
        while not self._stop.is_set():
            ready, _, _ = select.select([self._sock], [], [], 0.05)
            if not ready:
                continue
            while True:
                try:
                    data, cmsgs, _, address = self._sock.recvmsg(SNAPLEN, ancillary)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break  # e.g. ENETDOWN while an interface goes; keep reading
                self._keep(data, cmsgs, address)

    def _keep(self, data: bytes, cmsgs: list[tuple[int, int, bytes]], address: object) -> None:
        if not isinstance(address, tuple) or address[0] not in self.ifnames:
            return
        at = time.time()
        for level, kind, value in cmsgs:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                seconds, nanoseconds = struct.unpack_from("qq", value)
                at = seconds + nanoseconds / 1e9
        seen = Seen(
            where=f"{self.host}:{address[0]}",
            side=self.side,
            at=at,
            outgoing=address[2] == PACKET_OUTGOING,
            data=bytes(data),
        )
        with self._lock:
            if len(self.packets) >= MAX_PACKETS:
                self.overflow = True
                return
            self.packets.append(seen)

    def _statistics(self) -> None:
        raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8)
        _, drops = struct.unpack("II", raw)
        self.dropped += drops

    def between(self, start: float, end: float) -> list[Seen]:
        with self._lock:
            return [p for p in self.packets if start <= p.at <= end]

    def all(self) -> list[Seen]:
        with self._lock:
            return list(self.packets)

    def drops(self) -> int:
        self._statistics()
        return self.dropped

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2.0)
        with contextlib.suppress(OSError):
            self._statistics()
        self._sock.close()


class Captures:
    """The leak test's capture points: gw's wan0, the plant's eth0 and up0, the concentrator's
    wg-conc. Use as a context manager; they run until it ends."""

    def __init__(self, paths: LabPaths) -> None:
        self.paths = paths
        self.captures: list[Capture] = []

    def __enter__(self) -> Captures:
        try:
            for host, (side, ifnames) in CAPTURE_POINTS.items():
                self.captures.append(Capture(self.paths.namespace(host), host, side, ifnames))
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for capture in self.captures:
            capture.close()
        self.captures = []

    def between(self, start: float, end: float) -> list[Seen]:
        return sorted((p for c in self.captures for p in c.between(start, end)), key=lambda p: p.at)

    def all(self) -> list[Seen]:
        return sorted((p for c in self.captures for p in c.all()), key=lambda p: p.at)

    def points(self) -> list[str]:
        return [f"{c.host}:{i}" for c in self.captures for i in sorted(c.ifnames)]

    def drops(self) -> dict[str, int]:
        return {c.host: c.drops() for c in self.captures}

    def overflowed(self) -> bool:
        return any(c.overflow for c in self.captures)


# ---------------------------------------------------------------- probes


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


class Prober:
    """Sends probes with this run's markers; UDP echo responders run on their targets."""

    def __init__(self, paths: LabPaths, markers: Markers, timeout: float = 0.5) -> None:
        self.paths, self.markers, self.timeout = paths, markers, timeout
        self._serial = itertools.count(1)
        self._ports = {
            "site": itertools.cycle(markers.ports("site")),
            "staff": itertools.cycle(markers.ports("staff")),
        }
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._responders: list[socket.socket] = []
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Prober:
        for host in ECHO_HOSTS:
            namespace = self.paths.namespace(host)
            for family, anywhere in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
                sock = netns.socket_in_netns(namespace, family, socket.SOCK_DGRAM)
                try:
                    if family == socket.AF_INET6:
                        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    sock.bind((anywhere, ECHO_PORT))
                except OSError:
                    sock.close()
                    continue
                sock.setblocking(False)
                self._responders.append(sock)
        self._thread = threading.Thread(target=self._echo, name="leak-echo", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        for sock in self._responders:
            sock.close()
        self._responders = []

    def _echo(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select(self._responders, [], [], 0.05)
            for sock in ready:
                with contextlib.suppress(OSError):
                    data, peer = sock.recvfrom(4096)
                    if data.startswith(MARK):
                        sock.sendto(data, peer)

    def _next(self, origin: Origin) -> tuple[int, int]:
        with self._lock:
            serial = next(self._serial)
            port = next(self._ports[origin]) if origin in self._ports else 0
        return serial, port

    def run(self, probes: Sequence[LeakProbe], timeout: float | None = None) -> list[ProbeResult]:
        """All `probes` at once; results in their order."""
        if not probes:
            return []
        wait = self.timeout if timeout is None else timeout
        with ThreadPoolExecutor(max_workers=min(64, len(probes))) as pool:
            futures = [pool.submit(self._one, probe, wait) for probe in probes]
            return [f.result() for f in futures]

    def _one(self, probe: LeakProbe, timeout: float) -> ProbeResult:
        serial, port = self._next(probe.origin)
        payload = self.markers.payload(probe.origin, serial)
        started = time.time()
        try:
            sock = self._socket(probe, port)
        except OSError as exc:
            return ProbeResult(probe, _os_outcome(exc), f"socket: {_describe(exc)}", started)
        with sock:
            try:
                outcome, detail = self._send(sock, probe, payload, timeout)
            except OSError as exc:
                outcome, detail = _os_outcome(exc), _describe(exc)
        return ProbeResult(probe, outcome, detail, started)

    def _socket(self, probe: LeakProbe, port: int) -> socket.socket:
        namespace = self.paths.namespace(probe.src)
        family = probe.family
        if probe.proto == "icmp":
            proto = socket.IPPROTO_ICMP if family == socket.AF_INET else socket.IPPROTO_ICMPV6
            sock = netns.socket_in_netns(namespace, family, socket.SOCK_RAW, proto)
        else:
            kind = socket.SOCK_STREAM if probe.proto == "tcp" else socket.SOCK_DGRAM
            sock = netns.socket_in_netns(namespace, family, kind)
        try:
            if probe.device:
                sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, probe.device.encode())
            if probe.spoof:
                sock.setsockopt(socket.IPPROTO_IP, IP_TRANSPARENT, 1)
            if probe.proto == "tcp":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if probe.proto == "icmp" and family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 0)
            anywhere = "::" if family == socket.AF_INET6 else "0.0.0.0"
            if probe.bind or port:
                sock.bind((probe.bind or anywhere, port if probe.proto != "icmp" else 0))
        except OSError:
            sock.close()
            raise
        return sock

    def _address(self, probe: LeakProbe) -> tuple[str, int] | tuple[str, int, int, int]:
        port = probe.port if probe.proto != "icmp" else 0
        if probe.family == socket.AF_INET:
            return (probe.dst, port)
        scope = 0
        if probe.device and probe.dst.startswith(("fe80:", "ff02:")):
            namespace = self.paths.namespace(probe.src)
            scope = netns.in_netns(namespace, socket.if_nametoindex, probe.device)
        return (probe.dst, port, 0, scope)

    def _send(
        self, sock: socket.socket, probe: LeakProbe, payload: bytes, timeout: float
    ) -> tuple[Outcome, str]:
        address = self._address(probe)
        if probe.proto == "tcp":
            return _tcp(sock, address, timeout)
        if probe.proto == "udp":
            return _udp(sock, address, payload, timeout)
        if probe.family == socket.AF_INET:
            return _icmp4(sock, probe.dst, payload, timeout)
        return _icmp6(sock, address, payload, timeout)


def _tcp(sock: socket.socket, address: tuple[object, ...], timeout: float) -> tuple[Outcome, str]:
    sock.settimeout(timeout)
    try:
        sock.connect(address)
    except TimeoutError:
        return "silent", f"no answer within {timeout:g} s"
    except ConnectionRefusedError:
        return "answered", "connection refused (a reset came back)"
    return "answered", "connected"


def _udp(
    sock: socket.socket, address: tuple[object, ...], payload: bytes, timeout: float
) -> tuple[Outcome, str]:
    deadline = time.monotonic() + timeout
    sock.connect(address)
    sock.send(payload)
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if sock.recv(4096) == payload:
                return "answered", "echoed"
        except TimeoutError:
            break
        except ConnectionRefusedError:
            return "answered", "port unreachable came back"
    return "silent", f"no answer within {timeout:g} s"


def _icmp4(sock: socket.socket, dst: str, payload: bytes, timeout: float) -> tuple[Outcome, str]:
    ident = int.from_bytes(os.urandom(2), "big")
    deadline = time.monotonic() + timeout
    sock.sendto(icmp_echo(ident, 1, payload), (dst, 0))
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            verdict = icmp_answer(sock.recv(4096), dst, ident, payload)
        except TimeoutError:
            break
        if verdict == "accept":
            return "answered", "echo reply"
        if verdict == "refused":
            return "unreachable", "ICMP unreachable came back"
    return "silent", f"no answer within {timeout:g} s"


def _icmp6(
    sock: socket.socket, address: tuple[object, ...], payload: bytes, timeout: float
) -> tuple[Outcome, str]:
    ident = int.from_bytes(os.urandom(2), "big")
    deadline = time.monotonic() + timeout
    sock.sendto(struct.pack("!BBHHH", 128, 0, 0, ident, 1) + payload, address)  # kernel sums
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(4096)
        except TimeoutError:
            break
        if len(data) >= 8 and data[0] == 129 and struct.unpack("!H", data[4:6])[0] == ident:
            return "answered", "echo reply"
    return "silent", f"no answer within {timeout:g} s"


def _os_outcome(exc: OSError) -> Outcome:
    if exc.errno == errno.EPERM:
        return "blocked"  # the sender's own firewall dropped it
    if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EADDRNOTAVAIL):
        return "unreachable"
    return "error"


def _describe(exc: OSError) -> str:
    name = errno.errorcode.get(exc.errno or 0, "OSError")
    if exc.errno == errno.EPERM:
        return "EPERM: dropped by the sender's own firewall"
    return f"{name}: {exc.strerror or exc}"


# ---------------------------------------------------------------- the lab's states


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
        argv = ["nft", "-j", "list", "set", "inet", "plantgate", "ep_support-concentrator_v4"]
        done = services.run_on(self.paths, "gw", argv, 10)
        return done.returncode == 0 and '"elem"' in done.stdout

    def expire_endpoint(self) -> None:
        """The concentrator's address leaves the firewall's endpoint set, as when its pin
        and DNS TTL run out with nobody to renew them."""
        self.nft("flush", "set", "inet", "plantgate", "ep_support-concentrator_v4")

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

    # ------------------------------------------------------------ the known baseline

    def baseline(self) -> float:
        """Tunnel up in gated mode, gate closed, IPv4 only, every process running; returns
        the seconds it took."""
        started = time.monotonic()
        if self.ipv6:
            self.ipv6_off()
        if self.gate:
            self.close_gate()
        if not self.vpn_enabled() or self._off_since is not None:
            self.set_vpn(True)
        if self.concentrator_pid() is None:
            self.start_concentrator()
        if self.daemon_pid() is None:
            self.start_daemon()
        _wait(self.tunnel_exists, 15.0, "plantgated to bring the tunnel interface up")
        self.wait_up()
        return time.monotonic() - started


def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise LeakLabError(f"timed out after {timeout:.0f} s waiting for {what}")


# ---------------------------------------------------------------- a run


@dataclass(frozen=True)
class Window:
    """What one stretch of a run saw: its probes' results and the verdicts on its packets."""

    name: str
    start: float
    end: float
    results: tuple[ProbeResult, ...]
    tally: Tally
    stopped: dict[str, int] = field(default_factory=dict)  # kill-switch rule -> packets

    @property
    def breaches(self) -> list[ProbeResult]:
        return [r for r in self.results if r.breach]

    @property
    def leaks(self) -> int:
        return len(self.tally.leaks)

    def stopped_text(self) -> str:
        rules = sorted(self.stopped.items(), key=lambda item: -item[1])
        return "; ".join(f"{rule} x{count}" for rule, count in rules) or "none"

    def line(self) -> str:
        answered = sum(1 for r in self.results if r.outcome == "answered" and r.probe.granted)
        return (
            f"{self.name}: {len(self.results)} probes, {len(self.breaches)} forbidden answered, "
            f"{answered} granted answered; packets {self.tally.summary()}; leaks {self.leaks}"
        )


class LeakRun:
    """Captures and probes around one lab for a whole run; use as a context manager."""

    def __init__(self, lab: LeakLab, *, timeout: float = 0.5, token: str | None = None) -> None:
        self.lab = lab
        self.markers = Markers(token or secrets.token_hex(4))
        self.facts = lab.facts(self.markers)
        self.captures = Captures(lab.paths)
        self.prober = Prober(lab.paths, self.markers, timeout)
        self.started = time.time()
        self.last: Window | None = None

    def __enter__(self) -> LeakRun:
        self.lab.prepare()
        self.prober.__enter__()
        try:
            self.captures.__enter__()
        except BaseException:
            self.prober.__exit__(None, None, None)
            raise
        self.started = time.time()
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.captures.close()
        finally:
            self.prober.__exit__(None, None, None)

    def probes(self, *, ipv6: bool = False) -> list[LeakProbe]:
        """One burst: site and staff probes (and IPv6 ones), with the gate as it is."""
        burst = [*site_probes(), *staff_probes(sorted(self.lab.gate))]
        return [*burst, *ipv6_probes()] if ipv6 else burst

    def burst(self, *, ipv6: bool = False, timeout: float | None = None) -> list[ProbeResult]:
        return self.prober.run(self.probes(ipv6=ipv6), timeout)

    def control(self, tunnel: bool = True) -> list[ProbeResult]:
        return self.prober.run(control_probes(tunnel))

    def verdicts(self, start: float, end: float | None = None, settle: float = 0.2) -> Tally:
        """Verdicts on the packets captured between `start` and `end` (default: now, after
        `settle` seconds for the last packets to be read)."""
        if end is None:
            time.sleep(settle)
            end = time.time()
        return tally(self.captures.between(start, end), self.facts, self.lab.off_intervals())

    def everything(self) -> Tally:
        return tally(self.captures.all(), self.facts, self.lab.off_intervals())

    @contextlib.contextmanager
    def window(self, name: str, counters: bool = True) -> Iterator[list[ProbeResult]]:
        """Collects the probe results of a stretch; `self.last` is its `Window` afterwards,
        with (`counters`) the packets each kill-switch rule dropped meanwhile."""
        before = self.lab.kill_switch_counts() if counters else {}
        start = time.time()
        results: list[ProbeResult] = []
        yield results
        time.sleep(0.2)
        end = time.time()
        stopped = counts_since(before, self.lab.kill_switch_counts()) if counters else {}
        verdicts = self.verdicts(start, end)
        self.last = Window(name, start, end, tuple(results), verdicts, stopped)
