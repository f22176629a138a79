"""Conntrack event source: every flow's start and end, with byte and packet counts.

ctnetlink announces flows on netlink multicast groups; the watcher binds NEW and DESTROY
(start and end; UPDATE would add a message per TCP state change for nothing the detectors
use). Three layers, like the NFLOG source:

* `parse_ct_datagram` — pure: one received datagram as `CtFlow`s (`FlowEvent` + conntrack
  id), decoded with `struct`. pyroute2 decodes the same messages in about 44 µs each on
  this project's benchmark machine against a few µs here, and a SYN flood makes one NEW
  message per SYN, so the event path does not go through it. Never raises; bad messages
  are counted.
* `ConntrackReader` — the socket: a raw `NETLINK_NETFILTER` socket (optionally opened in a
  named namespace) bound to the two groups, with a large receive buffer (forced past
  rmem_max as root). When the kernel could not queue events (`ENOBUFS`), the overrun is
  counted, the messages the kernel dropped are counted from the socket's own drop counter
  (`/proc/net/netlink`, when visible) and `resync_due` is set.
* `resync` — pyroute2's `AsyncConntrack.dump()`: after an overrun, the flows in the table
  that were never announced come back as `start` events (the reader remembers the ids it
  has announced, bounded); ends lost in the overrun cannot be recovered and are counted.
* `table_fill` — pyroute2's conntrack statistics: entries and the table's maximum, which
  the watcher turns into `TableEvent`s (pressure detection).

Accounting (`net.netfilter.nf_conntrack_acct`) must be on for the byte and packet counts;
`enable_accounting` in gateway/vpn/connections.py turns it on in the caller's namespace.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import struct
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

from gateway.netns import socket_in_netns
from gateway.watch.detectors.base import FlowEvent

log = logging.getLogger(__name__)

NETLINK_NETFILTER: Final = 12
NFNL_SUBSYS_CTNETLINK: Final = 1
IPCTNL_MSG_CT_NEW: Final = 0
IPCTNL_MSG_CT_DELETE: Final = 2
MSG_NEW: Final = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW
MSG_DELETE: Final = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_DELETE
NLM_F_CREATE: Final = 0x400
GROUP_NEW: Final = 1 << 0  # NFNLGRP_CONNTRACK_NEW (1), as a bind() bit
GROUP_DESTROY: Final = 1 << 2  # NFNLGRP_CONNTRACK_DESTROY (3)

CTA_TUPLE_ORIG, CTA_PROTOINFO, CTA_COUNTERS_ORIG, CTA_COUNTERS_REPLY, CTA_ID = 1, 4, 9, 10, 12
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST = 1, 2, 3, 4
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
CTA_PROTOINFO_TCP, CTA_PROTOINFO_TCP_STATE = 1, 1
CTA_COUNTERS_PACKETS, CTA_COUNTERS_BYTES = 1, 2
CTA_COUNTERS32_PACKETS, CTA_COUNTERS32_BYTES = 3, 4
NLA_TYPE_MASK: Final = 0x3FFF

TCP_STATES: Final = (
    "NONE",
    "SYN_SENT",
    "SYN_RECV",
    "ESTABLISHED",
    "FIN_WAIT",
    "CLOSE_WAIT",
    "LAST_ACK",
    "TIME_WAIT",
    "CLOSE",
    "SYN_SENT2",
)
PROTOS: Final = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp", 136: "udplite"}

_NLMSGHDR = struct.Struct("=IHHII")
_NLATTR = struct.Struct("=HH")
_BE16 = struct.Struct("!H")
_BE32 = struct.Struct("!I")
_BE64 = struct.Struct("!Q")
_SO_RCVBUFFORCE: Final = 33
_RECV_BUFSIZE: Final = 256 * 1024
_DRAIN_LIMIT: Final = 256
_ANNOUNCED_MAX: Final = 65_536


@dataclass(frozen=True, slots=True)
class CtFlow:
    """One conntrack message: the flow event and conntrack's id for the entry."""

    event: FlowEvent
    ct_id: int


class _Bad(Exception):
    pass


def _attrs(data: bytes, start: int, end: int) -> dict[int, tuple[int, int]]:
    """type -> (value start, value end) for the attributes in data[start:end]."""
    out: dict[int, tuple[int, int]] = {}
    offset = start
    while offset + 4 <= end:
        length, atype = _NLATTR.unpack_from(data, offset)
        if length < 4 or offset + length > end:
            raise _Bad
        out[atype & NLA_TYPE_MASK] = (offset + 4, offset + length)
        offset += (length + 3) & ~3
    return out


def _int(data: bytes, span: tuple[int, int] | None) -> int | None:
    if span is None:
        return None
    start, end = span
    size = end - start
    if size >= 8:
        return int(_BE64.unpack_from(data, start)[0])
    if size >= 4:
        return int(_BE32.unpack_from(data, start)[0])
    if size >= 2:
        return int(_BE16.unpack_from(data, start)[0])
    if size == 1:
        return data[start]
    return None


def _address(data: bytes, span: tuple[int, int] | None) -> str | None:
    if span is None:
        return None
    raw = data[span[0] : span[1]]
    if len(raw) == 4:
        return socket.inet_ntoa(raw)
    if len(raw) == 16:
        return socket.inet_ntop(socket.AF_INET6, raw)
    return None


def _counters(data: bytes, span: tuple[int, int] | None) -> tuple[int, int]:
    if span is None:
        return 0, 0
    attrs = _attrs(data, *span)
    packets = _int(data, attrs.get(CTA_COUNTERS_PACKETS) or attrs.get(CTA_COUNTERS32_PACKETS))
    size = _int(data, attrs.get(CTA_COUNTERS_BYTES) or attrs.get(CTA_COUNTERS32_BYTES))
    return packets or 0, size or 0


def _flow(data: bytes, start: int, end: int, mtype: int, now: float) -> CtFlow | None:
    top = _attrs(data, start + 4, end)  # after the nfgenmsg header
    orig = top.get(CTA_TUPLE_ORIG)
    if orig is None:
        return None
    tuple_attrs = _attrs(data, *orig)
    ip_span, proto_span = tuple_attrs.get(CTA_TUPLE_IP), tuple_attrs.get(CTA_TUPLE_PROTO)
    if ip_span is None or proto_span is None:
        raise _Bad
    ip = _attrs(data, *ip_span)
    src = _address(data, ip.get(CTA_IP_V4_SRC) or ip.get(CTA_IP_V6_SRC))
    dst = _address(data, ip.get(CTA_IP_V4_DST) or ip.get(CTA_IP_V6_DST))
    proto_attrs = _attrs(data, *proto_span)
    number = _int(data, proto_attrs.get(CTA_PROTO_NUM))
    if src is None or dst is None or number is None:
        raise _Bad
    state = None
    info = top.get(CTA_PROTOINFO)
    if info is not None:
        tcp = _attrs(data, *info).get(CTA_PROTOINFO_TCP)
        if tcp is not None:
            code = _int(data, _attrs(data, *tcp).get(CTA_PROTOINFO_TCP_STATE))
            state = TCP_STATES[code] if code is not None and code < len(TCP_STATES) else None
    orig_packets, orig_bytes = _counters(data, top.get(CTA_COUNTERS_ORIG))
    reply_packets, reply_bytes = _counters(data, top.get(CTA_COUNTERS_REPLY))
    phase: Literal["start", "end"] = "end" if mtype == MSG_DELETE else "start"
    event = FlowEvent(
        ts=now,
        phase=phase,
        proto=PROTOS.get(number, str(number)),
        src=src,
        dst=dst,
        sport=_int(data, proto_attrs.get(CTA_PROTO_SRC_PORT)),
        dport=_int(data, proto_attrs.get(CTA_PROTO_DST_PORT)),
        orig_packets=orig_packets,
        orig_bytes=orig_bytes,
        reply_packets=reply_packets,
        reply_bytes=reply_bytes,
        state=state,
    )
    return CtFlow(event, _int(data, top.get(CTA_ID)) or 0)


def parse_ct_datagram(
    data: bytes, now: float, *, updates: bool = False
) -> tuple[list[CtFlow], int]:
    """The flows in one datagram of ctnetlink messages, and how many messages were bad.

    NEW messages with NLM_F_CREATE are starts, DELETE messages ends; NEW messages without
    it are updates, skipped unless `updates` (a dump answers with those: each is a flow
    that exists). Pure; never raises.
    """
    flows: list[CtFlow] = []
    bad, offset = 0, 0
    while offset + _NLMSGHDR.size <= len(data):
        length, mtype, flags, _seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            return flows, bad + 1
        body, end = offset + _NLMSGHDR.size, offset + length
        wanted = mtype == MSG_DELETE or (mtype == MSG_NEW and (updates or flags & NLM_F_CREATE))
        if wanted:
            try:
                flow = _flow(data, body, end, mtype, now)
            except (_Bad, struct.error):
                bad += 1
            else:
                if flow is not None:
                    flows.append(flow)
        offset += (length + 3) & ~3
    return flows, bad


def netlink_drops(fd: int) -> int | None:
    """The kernel's count of messages dropped for the netlink socket `fd` (`Drops` in
    /proc/net/netlink of the caller's namespace); None when the socket is not listed there
    (opened in another namespace)."""
    inode = os.fstat(fd).st_ino
    try:
        lines = Path("/proc/thread-self/net/netlink").read_text().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) >= 10 and fields[9] == str(inode):
            return int(fields[8])
    return None


@dataclass(slots=True)
class CtStats:
    messages: int = 0
    overruns: int = 0  # ENOBUFS: the kernel dropped events
    dropped: int = 0  # events dropped, from the socket's drop counter (when visible)
    malformed: int = 0
    resyncs: int = 0
    recovered: int = 0  # starts found by a resync that were never announced


class ConntrackReader:
    """Flow starts and ends from the kernel (see the module docstring). Not thread-safe."""

    def __init__(
        self, *, netns: str | None = None, rcvbuf: int = 8 * 1024 * 1024, updates: bool = False
    ) -> None:
        self.netns = netns
        self.stats = CtStats()
        self.resync_due = False
        self._groups = GROUP_NEW | GROUP_DESTROY
        self._buf = bytearray(_RECV_BUFSIZE)
        self._announced: OrderedDict[int, None] = OrderedDict()
        self._drops_seen = 0
        family, kind = socket.AF_NETLINK, socket.SOCK_RAW
        sock = (
            socket_in_netns(netns, family, kind, NETLINK_NETFILTER)
            if netns is not None
            else socket.socket(family, kind, NETLINK_NETFILTER)
        )
        try:
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, rcvbuf)
            except PermissionError:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.bind((0, self._groups))
        except BaseException:
            sock.close()
            raise
        self._sock: socket.socket | None = sock

    def fileno(self) -> int:
        if self._sock is None:
            raise ValueError("ConntrackReader is closed")
        return self._sock.fileno()

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    def read(self, now: float) -> list[FlowEvent]:
        """Every flow event queued now (a bounded number of datagrams per call)."""
        if self._sock is None:
            raise ValueError("ConntrackReader is closed")
        out: list[FlowEvent] = []
        for _ in range(_DRAIN_LIMIT):
            try:
                size = self._sock.recv_into(self._buf, 0, socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self.stats.overruns += 1
                self.resync_due = True
                continue
            flows, bad = parse_ct_datagram(bytes(memoryview(self._buf)[:size]), now)
            self.stats.malformed += bad
            for flow in flows:
                self._announce(flow)
                out.append(flow.event)
        return out

    def lost(self) -> int:
        """Events lost since the last call: from the kernel's drop counter when visible,
        else one per overrun (a lower bound)."""
        assert self._sock is not None
        drops = netlink_drops(self._sock.fileno())
        if drops is None:
            lost, self.stats.dropped = self.stats.overruns - self.stats.dropped, self.stats.overruns
            return max(0, lost)
        lost, self._drops_seen = drops - self._drops_seen, drops
        self.stats.dropped = drops
        return max(0, lost)

    def _announce(self, flow: CtFlow) -> None:
        self.stats.messages += 1
        if flow.event.phase == "start":
            self._announced[flow.ct_id] = None
            if len(self._announced) > _ANNOUNCED_MAX:
                self._announced.popitem(last=False)
        else:
            self._announced.pop(flow.ct_id, None)

    async def resync(self, now: float) -> list[FlowEvent]:
        """The flows in the table that were never announced, as `start` events (pyroute2
        dump); clears `resync_due`."""
        from pyroute2.conntrack import AsyncConntrack

        self.resync_due = False
        self.stats.resyncs += 1
        kwargs: dict[str, Any] = {"nfgen_family": socket.AF_UNSPEC}
        if self.netns is not None:
            kwargs["use_socket"] = socket_in_netns(
                self.netns, socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_NETFILTER
            )
        conntrack: Any = AsyncConntrack(**kwargs)
        out: list[FlowEvent] = []
        try:
            async for message in await conntrack.dump():
                event, ct_id = _from_pyroute2(message, now)
                if event is not None and ct_id not in self._announced:
                    self._announce(CtFlow(event, ct_id))
                    out.append(event)
        finally:
            conntrack.close()
        self.stats.recovered += len(out)
        return out


def _from_pyroute2(message: Any, now: float) -> tuple[FlowEvent | None, int]:
    """A pyroute2 ctnetlink dump entry as a `start` event (the same fields as the parser)."""
    orig = message.get_attr("CTA_TUPLE_ORIG")
    if orig is None:
        return None, 0
    ip, proto = orig.get_attr("CTA_TUPLE_IP"), orig.get_attr("CTA_TUPLE_PROTO")
    if ip is None or proto is None:
        return None, 0
    src = ip.get_attr("CTA_IP_V4_SRC") or ip.get_attr("CTA_IP_V6_SRC")
    dst = ip.get_attr("CTA_IP_V4_DST") or ip.get_attr("CTA_IP_V6_DST")
    number = proto.get_attr("CTA_PROTO_NUM")
    if src is None or dst is None or number is None:
        return None, 0
    event = FlowEvent(
        ts=now,
        phase="start",
        proto=PROTOS.get(int(number), str(number)),
        src=str(src),
        dst=str(dst),
        sport=proto.get_attr("CTA_PROTO_SRC_PORT"),
        dport=proto.get_attr("CTA_PROTO_DST_PORT"),
    )
    return event, int(message.get_attr("CTA_ID") or 0)


async def table_fill(netns: str | None = None) -> tuple[int, int]:
    """(entries, maximum) of the conntrack table, from ctnetlink's statistics (pyroute2)."""
    from pyroute2.conntrack import AsyncConntrack

    kwargs: dict[str, Any] = {}
    if netns is not None:
        kwargs["use_socket"] = socket_in_netns(
            netns, socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_NETFILTER
        )
    conntrack: Any = AsyncConntrack(**kwargs)
    try:
        count = await conntrack.count()
        maximum = await conntrack.conntrack_max_size()
    finally:
        conntrack.close()
    return int(count or 0), int(maximum or 0)
