"""Sends the leak test's probes and says whether each was answered.

Every payload that can hold one carries this run's marker, and each probe's source port
comes from its origin's range, so the verdicts can tell a probe from background traffic. UDP
echo responders on the probes' targets make "the datagram got there" visible.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import select
import socket
import struct
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from gateway.lab import netns
from gateway.lab.leaks.probes import ECHO_PORT, LeakProbe, Outcome, ProbeResult
from gateway.lab.probe import icmp_answer, icmp_echo
from gateway.lab.services import LabPaths
from gateway.vpn.leakcheck import MARK, Markers, Origin

SO_BINDTODEVICE = 25
IP_TRANSPARENT = 19  # send from an address the host does not have (root only)
ECHO_HOSTS = ("staff", "upstream", "gw", "hub1")


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
