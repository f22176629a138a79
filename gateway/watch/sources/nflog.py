"""NFLOG event source: the packets that nftables ``log group N`` rules hand to user space.

The policy table logs what it drops with ``log group N prefix "..."``; the traffic watcher and
the kernel tests read those packets here. pyroute2 has no NFLOG support and the wire format
is small, so this module speaks nfnetlink_log itself over a plain
``AF_NETLINK``/``NETLINK_NETFILTER`` socket with :mod:`struct` (constants from
``linux/netfilter/nfnetlink_log.h``), in three layers:

* :func:`decode_ip` — pure: the copied IPv4/IPv6 packet as a :class:`DecodedPacket`
  (addresses, protocol, ports, TCP flags, ICMP type). Never raises on any input.
* :func:`parse_messages` / :func:`parse_datagram` — pure: one received datagram (several
  netlink messages) as :class:`NflogPacket` records, so the parsing is tested on recorded bytes.
* :class:`NflogReader` — the thin socket adapter: open (optionally inside a named network
  namespace), bind the group, set copy-packet mode, check every ACK, receive, count overruns.

Decisions worth knowing:

* Overruns are never silent. When the kernel could not queue log messages because the socket
  buffer was full, ``recv`` fails with ``ENOBUFS``; :meth:`NflogReader.read` counts it in
  ``stats.overruns`` and goes on returning what it has. Messages that do not parse are
  counted in ``stats.malformed`` instead of being raised to the caller.
* A group has one reader per network namespace. A second socket binding the same group is
  refused by the kernel (``EPERM``: the group belongs to another netlink port); the same
  socket binding twice gets ``EBUSY``. Both surface as :class:`NflogError` naming the group.
* ``PF_UNBIND``/``PF_BIND`` (libnetfilter_log's ``nflog_bind_pf``) are sent only when asked
  (``bind_pf=True``). On current kernels a ``log group`` rule names its logger type itself,
  so they are not needed (verified on 6.x: packets arrive without them); and they are not a
  no-op there: they make nfnetlink_log the
  namespace's *default* IPv4/IPv6 logger (``/proc/net/netfilter/nf_log`` shows
  ``2 nfnetlink_log``) and that outlives the reader, so kernel messages that use the default
  logger (``nf_conntrack_log_invalid``, for one) would go to group 0 instead of the kernel
  log. When sent, their ACKs are read and an error is logged, not raised.
* :class:`DecodedPacket` and :class:`NflogPacket` (and the watch events built from them) are
  made once per logged packet and only read afterwards. They are slotted dataclasses, not
  frozen ones: a frozen dataclass sets each field through ``object.__setattr__``, and that
  made building a packet's records about a fifth of the watcher's whole cost per event
  (``python -m bench --only watch``; docs/decisions/0011-watcher.md). Treat them as
  read-only; they compare and hash by value as before.
* :meth:`NflogReader.read` is not thread-safe; use one reader per thread or task. For asyncio,
  register :meth:`NflogReader.fileno` with ``loop.add_reader`` and call ``read(0)``.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import logging
import math
import os
import select
import socket
import struct
import time
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Final, Self

from gateway.netns import socket_in_netns

__all__ = [
    "DecodedPacket",
    "NflogAck",
    "NflogError",
    "NflogPacket",
    "NflogReader",
    "NflogStats",
    "ParsedDatagram",
    "decode_ip",
    "encode_config",
    "parse_datagram",
    "parse_messages",
    "proto_name",
    "tcp_flags_text",
]

log = logging.getLogger(__name__)

# --- netlink and nfnetlink_log constants (linux/netlink.h, linux/netfilter/nfnetlink*.h) ----

NETLINK_NETFILTER: Final = 12
NLMSG_NOOP: Final = 1
NLMSG_ERROR: Final = 2
NLMSG_DONE: Final = 3
NLMSG_OVERRUN: Final = 4
NLM_F_REQUEST: Final = 0x1
NLM_F_ACK: Final = 0x4
NLA_F_NESTED: Final = 1 << 15
NLA_F_NET_BYTEORDER: Final = 1 << 14
NLA_TYPE_MASK: Final = 0xFFFF & ~(NLA_F_NESTED | NLA_F_NET_BYTEORDER)

NFNL_SUBSYS_ULOG: Final = 4
NFULNL_MSG_PACKET: Final = 0
NFULNL_MSG_CONFIG: Final = 1
MSG_TYPE_PACKET: Final = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET
MSG_TYPE_CONFIG: Final = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG

NFULA_PACKET_HDR: Final = 1
NFULA_MARK: Final = 2
NFULA_TIMESTAMP: Final = 3
NFULA_IFINDEX_INDEV: Final = 4
NFULA_IFINDEX_OUTDEV: Final = 5
NFULA_HWADDR: Final = 8
NFULA_PAYLOAD: Final = 9
NFULA_PREFIX: Final = 10
NFULA_UID: Final = 11
NFULA_GID: Final = 14

NFULA_CFG_CMD: Final = 1
NFULA_CFG_MODE: Final = 2
NFULA_CFG_TIMEOUT: Final = 4
NFULA_CFG_QTHRESH: Final = 5
NFULNL_CFG_CMD_BIND: Final = 1
NFULNL_CFG_CMD_UNBIND: Final = 2
NFULNL_CFG_CMD_PF_BIND: Final = 3
NFULNL_CFG_CMD_PF_UNBIND: Final = 4
NFULNL_COPY_PACKET: Final = 0x02
NFULNL_COPY_RANGE_MAX: Final = 0xFFFF

_NLMSGHDR = struct.Struct("=IHHII")  # len, type, flags, seq, pid (host order)
_NFGENMSG = struct.Struct("!BBH")  # family, version, res_id (group, big-endian)
_NLATTR = struct.Struct("=HH")  # len, type (host order)
_ERRNO = struct.Struct("=i")
_BE16 = struct.Struct("!H")
_BE32 = struct.Struct("!I")
_PACKET_HDR = struct.Struct("!HBx")  # hw_protocol, hook, pad
_TIMESTAMP = struct.Struct("!QQ")  # sec, usec
_CFG_MODE = struct.Struct("!IBx")  # copy_range, copy_mode, pad
_HWADDR = struct.Struct("!H2x8s")  # nfulnl_msg_packet_hw: hw_addrlen, pad, hw_addr[8]

_SO_RCVBUFFORCE: Final = 33
_RECV_BUFSIZE: Final = 256 * 1024  # > any single nfnetlink_log skb (64 KiB copy + attributes)
_DRAIN_LIMIT: Final = 64  # datagrams per read() call, so a flood cannot starve the caller


def _align4(n: int) -> int:
    return (n + 3) & ~3


# --- pure: IP packet decoding ------------------------------------------------------------


@dataclass(slots=True, unsafe_hash=True)  # read-only, not frozen: see above
class DecodedPacket:
    """The headers of one logged packet, as far as the copied bytes reach.

    ``truncated`` is True when the capture ended, or a length field was inconsistent, before
    the headers read here (IP, IPv6 extension headers, the L4 header) were complete; fields
    that could not be read are None. A payload cut by the snaplen *after* those headers is
    not truncation. ``proto``/``proto_num`` name the last protocol reached (for IPv6, after
    the known extension headers). ``length`` is the length the IP header claims (IPv4 total
    length; IPv6 40 + payload length). ``fragment`` is True for any fragment; a non-first
    fragment has no L4 fields.
    """

    version: int
    src: str | None = None
    dst: str | None = None
    proto: str | None = None
    proto_num: int | None = None
    ttl: int | None = None
    length: int | None = None
    sport: int | None = None
    dport: int | None = None
    tcp_flags: str | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    fragment: bool = False
    truncated: bool = False


_PROTO_NAMES: Final[dict[int, str]] = {
    0: "hopopt",
    1: "icmp",
    2: "igmp",
    4: "ipip",
    6: "tcp",
    17: "udp",
    33: "dccp",
    41: "ipv6",
    43: "ipv6-route",
    44: "ipv6-frag",
    47: "gre",
    50: "esp",
    51: "ah",
    58: "icmpv6",
    59: "ipv6-nonxt",
    60: "ipv6-opts",
    89: "ospf",
    103: "pim",
    112: "vrrp",
    132: "sctp",
    136: "udplite",
}
_IPPROTO_TCP: Final = 6
_IPPROTO_UDP: Final = 17
_ICMP_PROTOS: Final = frozenset({1, 58})
_IPV6_FRAGMENT: Final = 44
_IPV6_SKIPPABLE: Final = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options
_TCP_FLAG_LETTERS: Final = "FSRPAUECN"  # bit 0 (FIN) .. bit 8 (NS), as tcpdump/scapy name them


def proto_name(num: int) -> str:
    """The conventional (nft) name of IP protocol ``num``, or the number as text."""
    return _PROTO_NAMES.get(num, str(num))


def tcp_flags_text(flags: int) -> str:
    """TCP flag bits as letters in bit order: 0x02 -> "S", 0x12 -> "SA", 0x11 -> "FA"."""
    return _FLAG_TEXT[flags & 0x1FF]


def _flag_text(flags: int) -> str:
    return "".join(c for i, c in enumerate(_TCP_FLAG_LETTERS) if flags >> i & 1)


# Every 9-bit flag combination, precomputed: decoding runs once per logged packet.
_FLAG_TEXT: Final = tuple(_flag_text(bits) for bits in range(512))
_PORTS = struct.Struct("!HH")
_IPV4 = struct.Struct("!BxHxxHBBxx4s4s")  # ver/ihl, total length, flags/frag, ttl, proto, src, dst
_inet_ntoa = socket.inet_ntoa


def decode_ip(payload: bytes) -> DecodedPacket | None:
    """Decode an IPv4 or IPv6 packet's headers; None when it is not IP at all.

    Pure and total: any input returns a value, short or malformed input with
    ``truncated=True``.
    """
    if not payload:
        return None
    version = payload[0] >> 4
    if version == 4:
        return _decode_ipv4(payload)
    if version == 6:
        return _decode_ipv6(payload)
    return None


def _decode_ipv4(b: bytes) -> DecodedPacket:
    # The watcher decodes every logged packet: one constructor call, addresses through
    # inet_ntoa (C), no intermediate records.
    if len(b) < 20:
        return DecodedPacket(version=4, truncated=True)
    first, total_len, frag_field, ttl, proto, src4, dst4 = _IPV4.unpack_from(b)
    ihl = (first & 0x0F) * 4
    frag_offset = frag_field & 0x1FFF
    fragment = bool(frag_field & 0x2000) or frag_offset != 0
    src, dst = _inet_ntoa(src4), _inet_ntoa(dst4)
    name = _PROTO_NAMES.get(proto) or str(proto)
    bad_header = ihl < 20 or len(b) < ihl or 0 < total_len < ihl
    if bad_header or frag_offset != 0:  # a later fragment has no L4 header here
        return DecodedPacket(
            version=4,
            src=src,
            dst=dst,
            proto=name,
            proto_num=proto,
            ttl=ttl,
            length=total_len,
            fragment=fragment,
            truncated=bad_header,
        )
    end = total_len if ihl <= total_len <= len(b) else len(b)  # total_len 0: BIG TCP / TSO
    sport, dport, flags, icmp_type, icmp_code, truncated = _l4_fields(proto, b, ihl, end)
    # positional, in field order: keyword arguments cost more than the decoding around them
    return DecodedPacket(
        4, src, dst, name, proto, ttl, total_len, sport, dport, flags, icmp_type, icmp_code,
        fragment, truncated,
    )  # fmt: skip


_L4 = tuple[int | None, int | None, str | None, int | None, int | None, bool]


def _l4_fields(proto: int, b: bytes, start: int, end: int) -> _L4:
    """(sport, dport, tcp flags, icmp type, icmp code, truncated) of the L4 header in
    ``b[start:end]``; all None and not truncated for a protocol without one decoded here."""
    size = end - start
    if proto == _IPPROTO_TCP:
        sport, dport = _PORTS.unpack_from(b, start) if size >= 4 else (None, None)
        flags = _FLAG_TEXT[((b[start + 12] & 0x01) << 8) | b[start + 13]] if size >= 14 else None
        data_offset = (b[start + 12] >> 4) * 4 if size >= 13 else 0
        return sport, dport, flags, None, None, size < 20 or data_offset < 20
    if proto == _IPPROTO_UDP:
        sport, dport = _PORTS.unpack_from(b, start) if size >= 4 else (None, None)
        return sport, dport, None, None, None, size < 8
    if proto in _ICMP_PROTOS:
        icmp_type = b[start] if size >= 1 else None
        icmp_code = b[start + 1] if size >= 2 else None
        return None, None, None, icmp_type, icmp_code, size < 4
    return None, None, None, None, None, False


def _decode_ipv6(b: bytes) -> DecodedPacket:
    if len(b) < 40:
        return DecodedPacket(version=6, truncated=True)
    (payload_len,) = _BE16.unpack_from(b, 4)
    next_header, offset, fragment, later_fragment, complete = _walk_ipv6_extensions(b, b[6])
    header = DecodedPacket(
        version=6,
        src=str(ipaddress.IPv6Address(b[8:24])),
        dst=str(ipaddress.IPv6Address(b[24:40])),
        ttl=b[7],
        length=40 + payload_len,
        proto=proto_name(next_header),
        proto_num=next_header,
        fragment=fragment,
    )
    if not complete:
        return replace(header, truncated=True)
    if later_fragment:
        return header
    sport, dport, flags, icmp_type, icmp_code, truncated = _l4_fields(
        next_header, b, offset, len(b)
    )
    return replace(
        header,
        sport=sport,
        dport=dport,
        tcp_flags=flags,
        icmp_type=icmp_type,
        icmp_code=icmp_code,
        truncated=truncated,
    )


def _walk_ipv6_extensions(b: bytes, next_header: int) -> tuple[int, int, bool, bool, bool]:
    """Skip the known IPv6 extension headers starting after the fixed header.

    Returns (next header, offset of it, fragment seen, non-first fragment, walk complete).
    Every step advances at least 8 bytes, so the walk ends.
    """
    offset, fragment = 40, False
    while next_header in _IPV6_SKIPPABLE or next_header == _IPV6_FRAGMENT:
        if len(b) < offset + 8:
            return next_header, offset, fragment, False, False
        if next_header == _IPV6_FRAGMENT:
            fragment = True
            (frag_field,) = _BE16.unpack_from(b, offset + 2)
            next_header, offset = b[offset], offset + 8
            if frag_field >> 3:
                return next_header, offset, True, True, True
            continue
        ext_len = (b[offset + 1] + 1) * 8
        if len(b) < offset + ext_len:
            return next_header, offset, fragment, False, False
        next_header, offset = b[offset], offset + ext_len
    return next_header, offset, fragment, False, True


# --- pure: netlink message parsing and building ----------------------------------------


@dataclass(slots=True, unsafe_hash=True)  # read-only, not frozen: see above
class NflogPacket:
    """One packet logged by a ``log group`` rule, as nfnetlink_log delivered it.

    ``indev``/``outdev`` are interface indexes (None when the hook has none); ``mark`` is 0
    when the kernel sent none; ``timestamp`` (seconds since the epoch) is None unless the skb
    carried one (received packets are stamped only while some socket on the host has asked
    for receive timestamps);
    ``uid``/``gid`` are present for locally generated packets with a socket owner.
    ``hwaddr`` is the link-layer source address (``aa:bb:..``) of a received packet, when
    the kernel has one (Ethernet; not on a tunnel or for locally generated packets).
    ``family`` is the nfgenmsg family (2 = IPv4, 10 = IPv6, 7 = bridge, ...).
    """

    group: int
    family: int = 0
    prefix: str = ""
    indev: int | None = None
    outdev: int | None = None
    hook: int | None = None
    hw_protocol: int | None = None
    mark: int = 0
    timestamp: float | None = None
    payload: bytes = b""
    uid: int | None = None
    gid: int | None = None
    hwaddr: str | None = None

    @property
    def decoded(self) -> DecodedPacket | None:
        """The payload's headers (:func:`decode_ip`; computed on each access)."""
        return decode_ip(self.payload)


@dataclass(frozen=True, slots=True)
class NflogAck:
    """An NLMSG_ERROR answer: ``error`` is 0 for an ACK, else a positive errno."""

    seq: int
    error: int


@dataclass(frozen=True, slots=True)
class ParsedDatagram:
    """Everything in one datagram: log packets, ACKs/errors, and how many messages were bad."""

    packets: list[NflogPacket]
    acks: list[NflogAck]
    malformed: int = 0


class _Malformed(Exception):
    """A message whose lengths do not add up; counted, never raised out of this module."""


def _u32(data: bytes, start: int, end: int) -> int:
    if end - start < 4:
        raise _Malformed("short u32 attribute")
    result: int = _BE32.unpack_from(data, start)[0]
    return result


def _parse_packet(data: bytes, start: int, end: int) -> NflogPacket:
    # This runs once per logged packet, so the attribute walk is one loop with every
    # attribute read in place (no slices but the payload and prefix, no call per
    # attribute), in the order the kernel sends them. Attributes are 4-byte aligned;
    # NLA_F_NESTED/NLA_F_NET_BYTEORDER are masked off; unknown ones are skipped.
    if end - start < _NFGENMSG.size:
        raise _Malformed("no nfgenmsg header")
    family, _version, group = _NFGENMSG.unpack_from(data, start)
    prefix, payload, mark = "", b"", 0
    indev: int | None = None
    outdev: int | None = None
    hook: int | None = None
    hw_protocol: int | None = None
    timestamp: float | None = None
    uid: int | None = None
    gid: int | None = None
    hwaddr: str | None = None
    offset = start + _NFGENMSG.size
    unpack_attr = _NLATTR.unpack_from
    while offset + 4 <= end:
        length, atype = unpack_attr(data, offset)
        stop = offset + length
        if length < 4 or stop > end:
            raise _Malformed(f"attribute length {length} at offset {offset}")
        atype &= NLA_TYPE_MASK
        value = offset + 4
        if atype > NFULA_GID:  # HWTYPE, HWLEN, HWHEADER, CT, ...: not read here
            pass
        elif atype == NFULA_PACKET_HDR:
            if length - 4 < _PACKET_HDR.size:
                raise _Malformed("short packet header")
            hw_protocol, hook = _PACKET_HDR.unpack_from(data, value)
        elif atype == NFULA_PREFIX:
            nul = data.find(b"\0", value, stop)
            prefix = data[value : nul if nul >= 0 else stop].decode("utf-8", "replace")
        elif atype == NFULA_IFINDEX_INDEV:
            indev = _u32(data, value, stop)
        elif atype == NFULA_HWADDR:
            if length - 4 < _HWADDR.size:
                raise _Malformed("short hardware address")
            hw_len, address = _HWADDR.unpack_from(data, value)
            if 0 < hw_len <= len(address):
                hwaddr = address[:hw_len].hex(":")
        elif atype == NFULA_TIMESTAMP:
            if length - 4 < _TIMESTAMP.size:
                raise _Malformed("short timestamp")
            sec, usec = _TIMESTAMP.unpack_from(data, value)
            timestamp = sec + usec / 1_000_000
        elif atype == NFULA_PAYLOAD:
            payload = data[value:stop]
        elif atype == NFULA_IFINDEX_OUTDEV:
            outdev = _u32(data, value, stop)
        elif atype == NFULA_MARK:
            mark = _u32(data, value, stop)
        elif atype == NFULA_UID:
            uid = _u32(data, value, stop)
        elif atype == NFULA_GID:
            gid = _u32(data, value, stop)
        offset += (length + 3) & ~3
    # positional, in field order (see _decode_ipv4)
    return NflogPacket(
        group, family, prefix, indev, outdev, hook, hw_protocol, mark, timestamp, payload, uid,
        gid, hwaddr,
    )  # fmt: skip


def _parse_error(data: bytes, start: int, end: int, seq: int) -> NflogAck:
    if end - start < _ERRNO.size:
        raise _Malformed("short NLMSG_ERROR")
    (code,) = _ERRNO.unpack_from(data, start)
    return NflogAck(seq=seq, error=-code)


def parse_datagram(data: bytes) -> ParsedDatagram:
    """Parse every netlink message in one received datagram. Pure; never raises.

    NFLOG packets become :class:`NflogPacket`, NLMSG_ERROR messages :class:`NflogAck`;
    NOOP/DONE/OVERRUN and other subsystems' messages are skipped. A message whose lengths
    do not add up is counted in ``malformed``; if the netlink header itself is bad, the rest
    of the datagram cannot be framed and is counted as one more malformed message.
    """
    packets: list[NflogPacket] = []
    acks: list[NflogAck] = []
    malformed, offset = 0, 0
    while offset < len(data):
        if len(data) - offset < _NLMSGHDR.size:
            malformed += 1
            break
        length, mtype, _flags, seq, _pid = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size or offset + length > len(data):
            malformed += 1
            break
        body, end = offset + _NLMSGHDR.size, offset + length
        try:
            if mtype == MSG_TYPE_PACKET:
                packets.append(_parse_packet(data, body, end))
            elif mtype == NLMSG_ERROR:
                acks.append(_parse_error(data, body, end, seq))
        except _Malformed:
            malformed += 1
        offset += (length + 3) & ~3  # NLMSG_ALIGN
    return ParsedDatagram(packets, acks, malformed)


def parse_messages(data: bytes) -> list[NflogPacket]:
    """The NFLOG packets in one datagram (see :func:`parse_datagram`). Pure; never raises."""
    return parse_datagram(data).packets


def _attr(atype: int, value: bytes) -> bytes:
    length = _NLATTR.size + len(value)
    return _NLATTR.pack(length, atype) + value + b"\0" * (_align4(length) - length)


def encode_config(
    seq: int,
    group: int,
    *,
    family: int = socket.AF_UNSPEC,
    command: int | None = None,
    snaplen: int | None = None,
    qthreshold: int | None = None,
    flush_timeout: float | None = None,
    ack: bool = True,
) -> bytes:
    """Build one NFULNL_MSG_CONFIG request.

    It carries a command, and/or the group's settings: copy-packet mode with ``snaplen``,
    the batch size ``qthreshold`` and the batch ``flush_timeout`` in seconds (sent in the
    kernel's 1/100 s units).
    """
    attrs = b""
    if command is not None:
        attrs += _attr(NFULA_CFG_CMD, bytes([command]))
    if snaplen is not None:
        attrs += _attr(NFULA_CFG_MODE, _CFG_MODE.pack(snaplen, NFULNL_COPY_PACKET))
    if flush_timeout is not None:
        attrs += _attr(NFULA_CFG_TIMEOUT, _BE32.pack(round(flush_timeout * 100)))
    if qthreshold is not None:
        attrs += _attr(NFULA_CFG_QTHRESH, _BE32.pack(qthreshold))
    body = _NFGENMSG.pack(family, 0, group) + attrs
    flags = NLM_F_REQUEST | (NLM_F_ACK if ack else 0)
    return _NLMSGHDR.pack(_NLMSGHDR.size + len(body), MSG_TYPE_CONFIG, flags, seq, 0) + body


# --- adapter: the socket -------------------------------------------------------------------


class NflogError(OSError):
    """Opening or configuring an NFLOG reader failed; ``errno`` holds the kernel's answer."""


@dataclass(slots=True)
class NflogStats:
    """Counters of one reader. ``bytes`` counts copied payload bytes (at most snaplen each).

    ``overruns`` counts ENOBUFS from recv: the kernel dropped log messages because the
    socket buffer was full; how many were lost is not known. ``malformed`` counts messages
    that did not parse; ``truncated`` counts datagrams larger than the receive buffer.
    """

    packets: int = 0
    bytes: int = 0
    overruns: int = 0
    malformed: int = 0
    truncated: int = 0
    datagrams: int = 0


def estimate_lost_packets(lost_datagrams: int, stats: NflogStats) -> int:
    """Logged packets lost with `lost_datagrams` kernel datagrams (pure).

    The kernel batches log messages (up to the group's qthreshold) into one datagram, and its
    drop counters count datagrams: under the load that causes drops a datagram carries many
    packets, so reporting datagrams understated losses about twentyfold (bench/watch.py).
    The average batch seen so far stands in for the unknown size of the lost ones.
    """
    if lost_datagrams <= 0:
        return 0
    per_datagram = stats.packets / stats.datagrams if stats.datagrams else 1.0
    return math.ceil(lost_datagrams * max(1.0, per_datagram))


def _new_netlink_socket() -> socket.socket:
    return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)


def _set_rcvbuf(sock: socket.socket, size: int) -> None:
    try:  # root may exceed net.core.rmem_max
        sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, size)
    except PermissionError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def _bind_error_text(group: int, err: int) -> str:
    name = errno.errorcode.get(err, str(err))
    text = f"cannot bind NFLOG group {group}: {os.strerror(err)} ({name})"
    if err in (errno.EPERM, errno.EBUSY):
        text += "; the group already has a reader in this network namespace"
    return text


class NflogReader:
    """Read the packets logged to one NFLOG group (``log group N`` in nftables).

    ``netns`` names a namespace under /var/run/netns (or is an absolute path to a netns
    file); the socket is created inside it. ``snaplen`` bytes of each packet are copied
    (1..65535); ``rcvbuf`` is the socket receive buffer (forced past rmem_max when root).

    The kernel batches log messages per group: a batch goes out when it holds
    ``qthreshold`` packets (kernel default 100; a rule's ``queue-threshold`` overrides it)
    or ``flush_timeout`` seconds after its first packet (default 1 s), so by default a
    lone packet is seen about a second late. ``qthreshold=1`` delivers each at once, at a
    syscall per packet. None keeps the kernel's value.

    ``ack_timeout`` bounds the wait for each configuration ACK; ``bind_pf`` also sends
    PF_UNBIND/PF_BIND for AF_INET and AF_INET6 (see the module docstring: only old kernels
    need it, and it changes the namespace's default logger).
    Use as a context manager or call :meth:`close`.
    """

    def __init__(
        self,
        group: int,
        *,
        snaplen: int = 256,
        rcvbuf: int = 4 * 1024 * 1024,
        netns: str | None = None,
        qthreshold: int | None = None,
        flush_timeout: float | None = None,
        ack_timeout: float = 5.0,
        bind_pf: bool = False,
    ) -> None:
        if not 0 <= group <= 0xFFFF:
            raise ValueError(f"NFLOG group must be 0..65535, not {group}")
        if not 1 <= snaplen <= NFULNL_COPY_RANGE_MAX:
            raise ValueError(f"snaplen must be 1..{NFULNL_COPY_RANGE_MAX}, not {snaplen}")
        if qthreshold is not None and not 1 <= qthreshold <= 0xFFFFFFFF:
            raise ValueError(f"qthreshold must be a positive 32-bit count, not {qthreshold}")
        if flush_timeout is not None and not 0 <= flush_timeout * 100 <= 0xFFFFFFFF:
            raise ValueError(f"flush_timeout must be >= 0 seconds, not {flush_timeout}")
        self.group = group
        self.snaplen = snaplen
        self.netns = netns
        self.stats = NflogStats()
        self._qthreshold = qthreshold
        self._flush_timeout = flush_timeout
        self._ack_timeout = ack_timeout
        self._bind_pf = bind_pf
        self._pending: list[NflogPacket] = []
        self._buf = bytearray(_RECV_BUFSIZE)
        self._seq = int(time.time()) & 0x7FFFFFFF
        sock = (
            socket_in_netns(netns, socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
            if netns is not None
            else _new_netlink_socket()
        )
        try:
            sock.setblocking(False)
            _set_rcvbuf(sock, rcvbuf)
            sock.bind((0, 0))
            self._sock: socket.socket | None = sock
            self._configure()
        except BaseException:
            sock.close()
            self._sock = None
            raise

    # -- lifecycle --

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._sock is None else f"fd={self._sock.fileno()}"
        where = f" netns={self.netns!r}" if self.netns else ""
        return f"<NflogReader group={self.group}{where} {state}>"

    @property
    def closed(self) -> bool:
        return self._sock is None

    def close(self) -> None:
        """Unbind the group (best effort; the kernel also unbinds on close) and close."""
        sock, self._sock = self._sock, None
        if sock is None:
            return
        with contextlib.suppress(OSError):
            unbind = encode_config(
                self._next_seq(), self.group, command=NFULNL_CFG_CMD_UNBIND, ack=False
            )
            sock.sendto(unbind, (0, 0))
        sock.close()

    def fileno(self) -> int:
        """The socket's descriptor, for select/poll or ``loop.add_reader``."""
        return self._open_socket().fileno()

    # -- reading --

    def read(self, timeout: float | None = None) -> list[NflogPacket]:
        """Wait up to ``timeout`` seconds (None: forever, 0: poll) for logged packets.

        Returns every packet of every datagram already queued (up to a bounded number of
        datagrams per call). The list may be empty, also before the timeout when what woke
        the reader was an overrun (ENOBUFS, counted in ``stats.overruns``, never raised) or
        a message that is not a packet.
        """
        sock = self._open_socket()
        packets, self._pending = self._pending, []
        if packets or self._wait(sock, timeout):
            packets.extend(self._drain(sock))
        return packets

    def _open_socket(self) -> socket.socket:
        if self._sock is None:
            raise ValueError("NflogReader is closed")
        return self._sock

    @staticmethod
    def _wait(sock: socket.socket, timeout: float | None) -> bool:
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        millis = -1 if timeout is None else max(0, math.ceil(timeout * 1000))
        return bool(poller.poll(millis))

    def _recv_one(self, sock: socket.socket) -> ParsedDatagram | None:
        """One datagram, parsed and counted; None when nothing is queued."""
        while True:
            try:
                size = sock.recv_into(self._buf, 0, socket.MSG_DONTWAIT | socket.MSG_TRUNC)
            except (BlockingIOError, InterruptedError):
                return None
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self.stats.overruns += 1
                # counted for the caller; a log line per overrun would flood under load
                log.debug("NFLOG group %d: socket overrun, log messages lost", self.group)
                continue
            if size > len(self._buf):
                self.stats.truncated += 1
            parsed = parse_datagram(bytes(memoryview(self._buf)[: min(size, len(self._buf))]))
            self._account(parsed)
            return parsed

    def _drain(self, sock: socket.socket) -> list[NflogPacket]:
        packets: list[NflogPacket] = []
        for _ in range(_DRAIN_LIMIT):
            parsed = self._recv_one(sock)
            if parsed is None:
                break
            packets.extend(parsed.packets)
        return packets

    def _account(self, parsed: ParsedDatagram) -> None:
        self.stats.datagrams += 1
        self.stats.packets += len(parsed.packets)
        self.stats.bytes += sum(len(p.payload) for p in parsed.packets)
        self.stats.malformed += parsed.malformed

    # -- configuration --

    def _next_seq(self) -> int:
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        return self._seq

    def _configure(self) -> None:
        if self._bind_pf:
            self._rebind_families()
        err = self._request(
            encode_config(self._next_seq(), self.group, command=NFULNL_CFG_CMD_BIND)
        )
        if err:
            raise NflogError(err, _bind_error_text(self.group, err))
        settings = encode_config(
            self._next_seq(),
            self.group,
            snaplen=self.snaplen,
            qthreshold=self._qthreshold,
            flush_timeout=self._flush_timeout,
        )
        err = self._request(settings)
        if err:
            text = f"cannot configure NFLOG group {self.group}: {os.strerror(err)}"
            raise NflogError(err, text)

    def _rebind_families(self) -> None:
        for family in (socket.AF_INET, socket.AF_INET6):
            for command in (NFULNL_CFG_CMD_PF_UNBIND, NFULNL_CFG_CMD_PF_BIND):
                message = encode_config(
                    self._next_seq(), self.group, family=family, command=command
                )
                err = self._request(message)
                if err:
                    log.warning(
                        "NFLOG pf command %d for family %d: %s", command, family, os.strerror(err)
                    )

    def _request(self, message: bytes) -> int:
        """Send one config request and wait for its ACK; the errno (0 = success).

        Log packets that arrive meanwhile are kept for the next :meth:`read`.
        """
        sock = self._open_socket()
        (seq,) = struct.unpack_from("=I", message, 8)
        sock.sendto(message, (0, 0))
        deadline = time.monotonic() + self._ack_timeout
        while (remaining := deadline - time.monotonic()) > 0:
            if not self._wait(sock, remaining):
                break
            parsed = self._recv_one(sock)
            if parsed is None:
                continue
            self._pending.extend(parsed.packets)
            for ack in parsed.acks:
                if ack.seq == seq:
                    return ack.error
        raise NflogError(
            errno.ETIMEDOUT, f"NFLOG group {self.group}: no answer from the kernel (seq {seq})"
        )
