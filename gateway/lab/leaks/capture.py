"""The leak test's captures: every packet on the physical side and inside the tunnel.

One AF_PACKET socket per namespace (cooked, every interface, filtered by name, so a capture
survives its interface being deleted and made again), kernel timestamps, a reader thread
each. The kernel's drop counter is kept, and a capture that fills up says so: a capture that
loses packets could miss a leak. What the packets mean is `gateway.vpn.leakcheck`'s business.
"""

from __future__ import annotations

import contextlib
import select
import socket
import struct
import threading
import time
from collections.abc import Iterable

from gateway.lab import netns, support
from gateway.lab.services import LabPaths
from gateway.vpn.leakcheck import Seen, Side

ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_TIMESTAMPNS = 35
SO_RCVBUFFORCE = 33
CAPTURE_BUFFER = 16 << 20
SNAPLEN = 2048
MAX_PACKETS = 400_000

CAPTURE_POINTS: dict[str, tuple[Side, tuple[str, ...]]] = {
    "gw": ("physical", ("wan0",)),
    "plant": ("physical", ("eth0", "up0")),
    "upstream": ("tunnel", (support.CONC_IFNAME,)),
}


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
