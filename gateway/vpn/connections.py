"""`support.connection`: every flow a staff member opens through the tunnel, as a record.

Conntrack announces flows on netlink (ctnetlink multicast groups NEW, UPDATE, DESTROY). A
flow whose original source is a staff address (`support_vpn.staff`) is a support
connection: the kill switch only lets staff addresses in on the tunnel interface, so the
address alone places the flow on the tunnel. Each produces two records:

* `state: started` when conntrack creates the flow (start time, staff, target, port);
* `state: ended` when conntrack destroys it, with its start and end, its duration and the
  bytes each way (`net.netfilter.nf_conntrack_acct`; `enable_accounting` turns it on).
  For TCP the end is when the flow reached TIME_WAIT or CLOSE (seen in an UPDATE); the
  entry itself lingers in TIME_WAIT for up to two minutes before DESTROY reports it.

`SupportConnections` (pure) pairs the messages and makes the records; `watch_support_
connections` (asyncio, pyroute2) feeds it from the kernel and hands each record to a
callback, which in plantgated publishes it on the bus and appends it to the audit log
(`record_connection`). After a netlink overflow (ENOBUFS) the watcher dumps the table to
learn the staff flows it may have missed.
"""

from __future__ import annotations

import asyncio
import datetime
import errno
import logging
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from gateway.audit import AuditLog
from gateway.events import Event, utc_now
from gateway.policy.addresses import canonical
from gateway.vpn.gate import GateRequest, Grant

log = logging.getLogger(__name__)
KIND = "support.connection"
SOURCE = "plantgated"
PROTOS = {socket.IPPROTO_TCP: "tcp", socket.IPPROTO_UDP: "udp", socket.IPPROTO_ICMP: "icmp"}
ENDED_TCP = frozenset({"TIME_WAIT", "CLOSE"})
GROUP_NEW, GROUP_UPDATE, GROUP_DESTROY = 1, 2, 4  # NFNLGRP_CONNTRACK_* as bind() bits
CT_NEW, CT_DELETE = 0, 2  # IPCTNL_MSG_CT_* (low byte of the message type)
NLM_F_CREATE = 0x400


@dataclass(frozen=True)
class Flow:
    """One conntrack message about one flow, reduced to what the records need."""

    kind: Literal["new", "update", "destroy"]
    ct_id: int
    proto: str
    src: str
    dst: str
    sport: int | None
    dport: int | None
    at: datetime.datetime
    tcp_state: str | None = None
    bytes_orig: int | None = None
    bytes_reply: int | None = None
    started: datetime.datetime | None = None  # conntrack's own timestamp, if kept


@dataclass(frozen=True)
class Directory:
    """Who is who: staff by address, and which open request grants which element."""

    staff: Mapping[str, str]
    grants: Mapping[Grant, int] = field(default_factory=dict)

    @classmethod
    def of(cls, staff: Mapping[str, str], requests: list[GateRequest]) -> Directory:
        grants = {g: r.id for r in requests if r.status == "open" for g in r.grants()}
        return cls({canonical(a): n for a, n in staff.items()}, grants)


@dataclass
class _Open:
    flow: Flow
    request: int | None
    ended: datetime.datetime | None = None


class SupportConnections:
    """Pairs a flow's NEW, UPDATE and DESTROY into `support.connection` records (pure)."""

    def __init__(self) -> None:
        self.open: dict[int, _Open] = {}

    def feed(self, flow: Flow, directory: Directory) -> dict[str, Any] | None:
        """The record this message completes, if any."""
        known = self.open.get(flow.ct_id)
        if flow.kind == "new" or (known is None and flow.kind == "update"):
            return self._start(flow, directory) if known is None else None
        if known is None and flow.kind == "destroy":
            known = self._learn(flow, directory)
        if known is None:
            return None
        if flow.kind == "update":
            if flow.tcp_state in ENDED_TCP and known.ended is None:
                known.ended = flow.at
            return None
        del self.open[flow.ct_id]
        return _record(known, flow, "ended")

    def _start(self, flow: Flow, directory: Directory) -> dict[str, Any] | None:
        known = self._learn(flow, directory)
        return _record(known, None, "started") if known is not None else None

    def _learn(self, flow: Flow, directory: Directory) -> _Open | None:
        name = directory.staff.get(canonical(flow.src))
        if name is None:
            return None
        grant = Grant(canonical(flow.src), canonical(flow.dst), flow.proto, flow.dport or 0)
        known = _Open(flow, directory.grants.get(grant))
        self.open[flow.ct_id] = known
        return known


def _record(known: _Open, last: Flow | None, state: str) -> dict[str, Any]:
    first = known.flow
    start = first.started or first.at
    end = (known.ended or (last.at if last else None)) if state == "ended" else None
    fields: dict[str, Any] = {
        "state": state,
        "staff": None,
        "staff_address": canonical(first.src),
        "target": canonical(first.dst),
        "proto": first.proto,
        "port": first.dport,
        "start": start.isoformat(),
        "end": end.isoformat() if end else None,
        "request": known.request,
        "conntrack_id": first.ct_id,
    }
    if end is not None:
        fields["duration_s"] = round(max(0.0, (end - start).total_seconds()), 3)
    if last is not None:
        fields["bytes_from_staff"] = last.bytes_orig
        fields["bytes_to_staff"] = last.bytes_reply
    return fields


def name_record(fields: dict[str, Any], directory: Directory) -> dict[str, Any]:
    return {**fields, "staff": directory.staff.get(fields["staff_address"])}


# -- the kernel side ----------------------------------------------------------------------------


def flow_from_message(msg: Any, at: datetime.datetime) -> Flow | None:
    """A pyroute2 ctnetlink message -> Flow (None for messages about something else)."""
    kind_code = msg["header"]["type"] & 0xFF
    if kind_code == CT_NEW:
        kind: Literal["new", "update", "destroy"] = (
            "new" if msg["header"]["flags"] & NLM_F_CREATE else "update"
        )
    elif kind_code == CT_DELETE:
        kind = "destroy"
    else:
        return None
    orig = msg.get_attr("CTA_TUPLE_ORIG")
    if orig is None:
        return None
    ip, proto_attrs = orig.get_attr("CTA_TUPLE_IP"), orig.get_attr("CTA_TUPLE_PROTO")
    src = ip.get_attr("CTA_IP_V4_SRC") or ip.get_attr("CTA_IP_V6_SRC")
    dst = ip.get_attr("CTA_IP_V4_DST") or ip.get_attr("CTA_IP_V6_DST")
    number = proto_attrs.get_attr("CTA_PROTO_NUM")
    return Flow(
        kind=kind,
        ct_id=int(msg.get_attr("CTA_ID") or 0),
        proto=PROTOS.get(number, str(number)),
        src=str(src),
        dst=str(dst),
        sport=proto_attrs.get_attr("CTA_PROTO_SRC_PORT"),
        dport=proto_attrs.get_attr("CTA_PROTO_DST_PORT"),
        at=at,
        tcp_state=_tcp_state(msg),
        bytes_orig=_bytes(msg, "CTA_COUNTERS_ORIG"),
        bytes_reply=_bytes(msg, "CTA_COUNTERS_REPLY"),
        started=_started(msg),
    )


def _tcp_state(msg: Any) -> str | None:
    from pyroute2.netlink.nfnetlink.nfctsocket import TCP_CONNTRACK_TO_NAME

    info = msg.get_attr("CTA_PROTOINFO")
    tcp = info.get_attr("CTA_PROTOINFO_TCP") if info is not None else None
    state = tcp.get_attr("CTA_PROTOINFO_TCP_STATE") if tcp is not None else None
    return TCP_CONNTRACK_TO_NAME.get(state) if state is not None else None


def _bytes(msg: Any, name: str) -> int | None:
    counters = msg.get_attr(name)
    if counters is None:
        return None
    value = counters.get_attr("CTA_COUNTERS_BYTES")
    if value is None:
        value = counters.get_attr("CTA_COUNTERS32_BYTES")
    return int(value) if value is not None else None


def _started(msg: Any) -> datetime.datetime | None:
    stamp = msg.get_attr("CTA_TIMESTAMP")
    start = stamp.get_attr("CTA_TIMESTAMP_START") if stamp is not None else None
    return datetime.datetime.fromtimestamp(start / 1e9, datetime.UTC) if start else None


def enable_accounting() -> None:
    """Byte counters and start/stop stamps on conntrack entries (this thread's namespace)."""
    for key in ("nf_conntrack_acct", "nf_conntrack_timestamp"):
        Path(f"/proc/sys/net/netfilter/{key}").write_text("1\n")


def record_connection(
    state: Path, publish: Callable[[Event], object]
) -> Callable[[dict[str, Any]], None]:
    """The usual sink: publish a `support.connection` event and append it to the audit log."""

    def sink(fields: dict[str, Any]) -> None:
        AuditLog(state).append(fields.get("staff") or "unknown", KIND, fields)
        publish(Event(KIND, SOURCE, fields))

    return sink


def state_directory(state: Path) -> Callable[[], Directory]:
    """Directory from the current revision's staff list and the gate's open requests."""
    from gateway.vpn.gateservice import PolicyReader
    from gateway.vpn.gatestore import GateStore
    from gateway.vpn.targets import GateError

    policy, store = PolicyReader(state), GateStore(state)

    def read() -> Directory:
        try:
            support = policy().support_vpn
        except GateError:
            return Directory({})
        staff = {m.address: m.name for m in support.staff} if support else {}
        return Directory.of(staff, [r for r in store.all() if r.status == "open"])

    return read


class _Cached:
    """The directory, re-read at most every `ttl` seconds, and always for a staff flow."""

    def __init__(self, read: Callable[[], Directory], ttl: float = 5.0) -> None:
        self.read, self.ttl = read, ttl
        self.value, self.stamp = read(), utc_now()

    def get(self, flow: Flow) -> Directory:
        stale = (utc_now() - self.stamp).total_seconds() > self.ttl
        if stale or canonical(flow.src) in self.value.staff:
            self.value, self.stamp = self.read(), utc_now()
        return self.value


async def watch_support_connections(
    directory: Callable[[], Directory],
    sink: Callable[[dict[str, Any]], None],
    stop: asyncio.Event,
    *,
    use_socket: socket.socket | None = None,
) -> None:
    """Turn the kernel's conntrack messages into records until `stop` is set.

    `directory` says who is who (plantgated: `state_directory(state)`); it is re-read for
    every staff flow and every few seconds otherwise. `use_socket` is a NETLINK_NETFILTER
    socket made in another namespace (tests); by default one is opened in the caller's.
    """
    from pyroute2.conntrack import AsyncConntrack

    conntrack: Any = AsyncConntrack(use_socket=use_socket) if use_socket else AsyncConntrack()
    await conntrack.bind(groups=GROUP_NEW | GROUP_UPDATE | GROUP_DESTROY)
    pairing = SupportConnections()
    reader = asyncio.create_task(_read(conntrack, pairing, _Cached(directory), sink))
    try:
        await stop.wait()
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
        conntrack.close()


async def _read(
    conntrack: Any,
    pairing: SupportConnections,
    directory: _Cached,
    sink: Callable[[dict[str, Any]], None],
) -> None:
    while True:
        try:
            async for msg in conntrack.get():
                _handle(flow_from_message(msg, utc_now()), pairing, directory, sink)
        except OSError as exc:
            if exc.errno != errno.ENOBUFS:
                raise
            log.warning("conntrack events overflowed: resyncing from a dump")
            await _resync(conntrack, pairing, directory, sink)


def _handle(
    flow: Flow | None,
    pairing: SupportConnections,
    directory: _Cached,
    sink: Callable[[dict[str, Any]], None],
) -> None:
    if flow is None or flow.proto not in ("tcp", "udp"):
        return
    if flow.kind == "update" and flow.ct_id not in pairing.open:
        return  # the common case, kept cheap: a flow that is not a support connection
    known = directory.get(flow)
    record = pairing.feed(flow, known)
    if record is not None:
        sink(name_record(record, known))


async def _resync(
    conntrack: Any,
    pairing: SupportConnections,
    directory: _Cached,
    sink: Callable[[dict[str, Any]], None],
) -> None:
    async for entry in await conntrack.dump():
        flow = flow_from_message(entry, utc_now())
        if flow is not None and flow.ct_id not in pairing.open:
            _handle(replace(flow, kind="new"), pairing, directory, sink)
