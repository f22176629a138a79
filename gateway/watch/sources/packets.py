"""NFLOG packets -> watch events: the prefix says what the ruleset meant, `struct` does ARP.

Prefixes the compiled ruleset uses (gateway/policy/watchlog.py, compile.py):

    pg drop <hook>:        default verdict (input, forward, output, rpf)   -> PacketEvent drop
    pg new <rule>: / pg accept <rule>:  new accepted connections          -> PacketEvent new/accept
    pg dns: / pg ntp: / pg tls:         samples for the protocol detectors -> PacketEvent
    pg arp:                ARP on the hub segment                         -> ArpEvent

Anything else (another tool's prefix on the same group) is not ours and is skipped. Pure
except for `Interfaces`, which asks the kernel for interface names (in the caller's
network namespace) and caches them.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from gateway.watch.detectors.base import ArpEvent, PacketEvent, PacketKind
from gateway.watch.sources.nflog import NflogPacket, decode_ip

ETH_P_ARP = 0x0806
_ARP = struct.Struct("!HHBBH6s4s6s4s")  # htype, ptype, hlen, plen, op, sha, spa, tha, tpa
_ARP_OPS = {1: "request", 2: "reply"}
_SIMPLE: dict[str, PacketKind] = {"dns": "dns", "ntp": "ntp", "tls": "tls"}
_RULED: dict[str, PacketKind] = {"new": "new", "accept": "accept"}


@dataclass(frozen=True, slots=True)
class Prefix:
    """What a `pg ...: ` prefix says: the event kind and the rule or hook it names."""

    kind: PacketKind
    rule: str | None = None
    hook: str | None = None


_PREFIXES: dict[str, Prefix | None] = {}
_PREFIXES_MAX = 1024  # a ruleset has a prefix per hook and per sampled rule


def parse_prefix(prefix: str) -> Prefix | None:
    """'pg drop input: ' -> Prefix('drop', hook='input'); None for a prefix not ours.

    Answers are remembered (a few dozen distinct prefixes, each seen at every packet)."""
    try:
        return _PREFIXES[prefix]
    except KeyError:
        pass
    parsed = _parse_prefix(prefix)
    if len(_PREFIXES) >= _PREFIXES_MAX:
        _PREFIXES.clear()
    _PREFIXES[prefix] = parsed
    return parsed


def _parse_prefix(prefix: str) -> Prefix | None:
    if not prefix.startswith("pg "):
        return None
    body = prefix[3:].rstrip().removesuffix(":")
    word, _, rest = body.partition(" ")
    if word == "drop":
        return Prefix("drop", hook=rest or None)
    if word in _RULED and rest:
        return Prefix(_RULED[word], rule=rest)
    if word in _SIMPLE and not rest:
        return Prefix(_SIMPLE[word])
    if word == "arp" and not rest:
        return Prefix("arp")
    return None


@dataclass(frozen=True, slots=True)
class Arp:
    op: str
    sender_mac: str
    sender_ip: str
    target_ip: str


def decode_arp(payload: bytes) -> Arp | None:
    """An Ethernet/IPv4 ARP request or reply (RFC 826); None for anything else. Never raises."""
    if len(payload) < _ARP.size:
        return None
    htype, ptype, hlen, plen, op, sha, spa, _tha, tpa = _ARP.unpack_from(payload)
    if htype != 1 or ptype != 0x0800 or hlen != 6 or plen != 4 or op not in _ARP_OPS:
        return None
    return Arp(_ARP_OPS[op], sha.hex(":"), socket.inet_ntoa(spa), socket.inet_ntoa(tpa))


class Interfaces:
    """Interface index -> name, cached; names come from the kernel of the caller's namespace.

    An index the kernel does not know (the interface went away) is answered as its number.
    The cache is bounded and cleared when an interface is renamed or removed (`forget`).
    """

    MAX = 4096

    def __init__(self, lookup: Callable[[int], str] = socket.if_indextoname) -> None:
        self._lookup = lookup
        self._names: dict[int, str] = {}

    def forget(self) -> None:
        self._names.clear()

    def name(self, index: int | None) -> str | None:
        if index is None or index == 0:
            return None
        name = self._names.get(index)
        if name is None:
            try:
                name = self._lookup(index)
            except OSError:
                return str(index)  # not cached: the next packet asks again
            if len(self._names) >= self.MAX:
                self._names.clear()
            self._names[index] = name
        return name


def to_event(
    packet: NflogPacket, names: Callable[[int | None], str | None], now: float
) -> PacketEvent | ArpEvent | None:
    """The watch event one logged packet stands for; None when it is not ours or not
    decodable. `now` stands in for the kernel's timestamp, which received packets carry
    only while some socket on the host asks for receive timestamps."""
    prefix = parse_prefix(packet.prefix)
    if prefix is None:
        return None
    ts = packet.timestamp or now
    if prefix.kind == "arp":
        arp = decode_arp(packet.payload)
        if arp is None:
            return None
        return ArpEvent(
            ts=ts,
            interface=names(packet.indev) or "",
            op="request" if arp.op == "request" else "reply",
            sender_mac=arp.sender_mac,
            sender_ip=arp.sender_ip,
            target_ip=arp.target_ip,
        )
    decoded = decode_ip(packet.payload)
    if decoded is None:
        return None
    # positional, in field order: one event per logged packet, and keywords cost more
    return PacketEvent(
        ts, prefix.kind, decoded, packet.payload, prefix.rule, prefix.hook,
        names(packet.indev), names(packet.outdev), packet.hwaddr,
    )  # fmt: skip
