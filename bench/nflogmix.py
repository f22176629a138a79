"""Raw NFLOG datagrams, built in memory: what the lab's ruleset would hand the watcher.

The watcher benchmark replays these through the real decoder (`parse_datagram`, `to_event`)
and engine, so they must look like the kernel's: each datagram is a batch of netlink
messages (`NFLOG_BATCH`, as plantgated asks with its queue threshold), and each message
carries the attributes nfnetlink_log sends, in its order (packet header, prefix, interface
indexes, hardware address/type/header for received packets, timestamp, payload; compare
tests/unit/fixtures/watch/recorded.json), the payload cut at the rule's snaplen.

The mix (`MIX`, by weight) is a plant under mild attack, with the lab's addresses
(DESIGN §3): a workstation scanning the appliance, internet noise against the plant leg,
hubs trying to leave the segment, a support address trying SSH outside a gate; samples of
new accepted connections (hubs -> appliance, plant -> Manage Page, appliance -> hub agent);
DNS queries and answers (some long, random-looking or failing); NTP between hubs, the
relay and its upstream; first packets on the TLS ports (mostly ClientHellos, some plain
HTTP); ARP on the hub segment. `seed` makes a mix reproducible; two seeds give the same
kinds of traffic with different details (new sources, ports, names).

Pure and standard library only (plus dnspython for DNS wire format), so that the flood
child (`bench.watchflood`) stays small.
"""

from __future__ import annotations

import random
import socket
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import dns.flags
import dns.message
import dns.rcode

T0 = 1_740_830_400.0  # 2025-03-01 12:00:00 UTC
NFLOG_BATCH = 64  # messages per datagram (plantgated's NFLOG queue threshold)
DROP_GROUP, WATCH_GROUP = 1, 2  # the lab policy's log_group and watch_group
GW_LAN, GW_WAN = "198.18.10.1", "198.18.20.1"
WORKSTATION = "198.18.20.10"
RESOLVER = "198.19.0.53"
NTP_UPSTREAM = "198.19.0.123"
ROGUE_RESOLVER = "198.19.0.99"
ALICE = "198.18.201.5"
HUBS = tuple(f"198.18.10.{10 + i}" for i in range(1, 41))
INDEX = {"lan0": 2, "wan0": 3, "wg-support": 4}
NAMES = {v: k for k, v in INDEX.items()}

# nfnetlink_log (linux/netfilter/nfnetlink_log.h)
_NLMSG = struct.Struct("=IHHII")
_NFGEN = struct.Struct("!BBH")
_ATTR = struct.Struct("=HH")
_MSG_PACKET = (4 << 8) | 0
_HOOKS = {"prerouting": 0, "input": 1, "forward": 2, "output": 3, "postrouting": 4}
_ETH_IP, _ETH_ARP = 0x0800, 0x0806
_AF_INET, _NFPROTO_ARP = 2, 3
_ATTR_HDR, _ATTR_TS, _ATTR_IN, _ATTR_OUT, _ATTR_HWADDR = 1, 3, 4, 5, 8
_ATTR_PAYLOAD, _ATTR_PREFIX, _ATTR_HWTYPE, _ATTR_HWHEADER, _ATTR_HWLEN = 9, 10, 15, 16, 17
_GW_MAC = bytes.fromhex("02005e100001")


def _attr(atype: int, value: bytes) -> bytes:
    length = 4 + len(value)
    return _ATTR.pack(length, atype) + value + b"\0" * (-length & 3)


@dataclass(frozen=True, slots=True)
class Logged:
    """One packet as a `log` rule sees it: where, with which prefix, and its bytes."""

    group: int
    prefix: str
    hook: str
    payload: bytes
    snaplen: int
    indev: str | None = None
    outdev: str | None = None
    mac: bytes | None = None  # sender's hardware address (received Ethernet frames)
    arp: bool = False

    def message(self, ts: float) -> bytes:
        """The nfnetlink_log message for this packet at time `ts`."""
        hw_protocol = _ETH_ARP if self.arp else _ETH_IP
        attrs = [
            _attr(_ATTR_HDR, struct.pack("!HBx", hw_protocol, _HOOKS[self.hook])),
            _attr(_ATTR_PREFIX, self.prefix.encode() + b"\0"),
        ]
        if self.indev is not None:
            attrs.append(_attr(_ATTR_IN, struct.pack("!I", INDEX[self.indev])))
        if self.outdev is not None:
            attrs.append(_attr(_ATTR_OUT, struct.pack("!I", INDEX[self.outdev])))
        if self.mac is not None:
            attrs.append(_attr(_ATTR_HWADDR, struct.pack("!H2x8s", 6, self.mac)))
            attrs.append(_attr(_ATTR_HWTYPE, struct.pack("!H", 1)))
            attrs.append(_attr(_ATTR_HWLEN, struct.pack("!H", 14)))
            header = _GW_MAC + self.mac + struct.pack("!H", hw_protocol)
            attrs.append(_attr(_ATTR_HWHEADER, header))
        sec = int(ts)
        attrs.append(_attr(_ATTR_TS, struct.pack("!QQ", sec, int((ts - sec) * 1e6))))
        attrs.append(_attr(_ATTR_PAYLOAD, self.payload[: self.snaplen]))
        family = _NFPROTO_ARP if self.arp else _AF_INET
        body = _NFGEN.pack(family, 0, self.group) + b"".join(attrs)
        return _NLMSG.pack(_NLMSG.size + len(body), _MSG_PACKET, 0, 0, 0) + body


# --- packets -------------------------------------------------------------------------------


def ipv4(src: str, dst: str, proto: int, l4: bytes, ident: int = 1) -> bytes:
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(l4),
        ident & 0xFFFF,
        0x4000,
        64,
        proto,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    return header + l4


_FLAG_BITS = {c: 1 << i for i, c in enumerate("FSRPAUECN")}


def tcp(src: str, dst: str, sport: int, dport: int, flags: str = "S", data: bytes = b"") -> bytes:
    bits = sum(_FLAG_BITS[c] for c in flags)
    options = (
        b"\x02\x04\x05\xb4\x04\x02\x08\x0a" + b"\0" * 8 + b"\x01\x03\x03\x07"
        if flags == "S"
        else b""
    )
    offset = (20 + len(options)) // 4
    segment = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, offset << 4, bits, 64240, 0, 0)
    return ipv4(src, dst, 6, segment + options + data)


def udp(src: str, dst: str, sport: int, dport: int, data: bytes) -> bytes:
    return ipv4(src, dst, 17, struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data)


def arp(mac: bytes, ip: str, target: str, op: int = 1) -> bytes:
    return struct.pack(
        "!HHBBH6s4s6s4s",
        1,
        0x0800,
        6,
        4,
        op,
        mac,
        socket.inet_aton(ip),
        b"\0" * 6 if op == 1 else _GW_MAC,
        socket.inet_aton(target),
    )


def mac_of(address: str) -> bytes:
    return b"\x02\x00" + socket.inet_aton(address)


def client_hello(rng: random.Random) -> bytes:
    """The first bytes of a TLS 1.2/1.3 ClientHello record (what the detector reads)."""
    body = (
        b"\x03\x03" + rng.randbytes(32) + b"\x20" + rng.randbytes(32) + b"\x00\x04\x13\x01\x13\x02"
    )
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(handshake).to_bytes(2, "big") + handshake


def dns_query(name: str, ident: int) -> bytes:
    message = dns.message.make_query(name, "A")
    message.id = ident
    return message.to_wire()


def dns_answer(name: str, ident: int, rcode: dns.rcode.Rcode = dns.rcode.NOERROR) -> bytes:
    query = dns.message.make_query(name, "A")
    query.id = ident
    response = dns.message.make_response(query)
    response.set_rcode(rcode)
    return response.to_wire()


def ntp(mode: int, stratum: int = 2, refid: bytes = b"\xc6\x13\x00\x7b") -> bytes:
    return struct.pack("!BBbbII4s", (4 << 3) | mode, stratum, 6, -20, 0, 0, refid) + b"\0" * 32


# --- the mix -------------------------------------------------------------------------------

_NAMES = ("ntp.upstream.test", "account.upstream.test", "vpn.support.test", "lab-resolver.test")
_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_INTERNET_PORTS = (23, 445, 3389, 502, 8080, 1433, 5900, 161)


def _random_internet(rng: random.Random) -> str:
    return f"198.19.{rng.randrange(1, 255)}.{rng.randrange(1, 255)}"


def _scan(rng: random.Random, n: int) -> Logged:
    pkt = tcp(WORKSTATION, GW_WAN, 40000 + n % 20000, 1 + n % 1024)
    return Logged(
        DROP_GROUP, "pg drop input: ", "input", pkt, 128, "wan0", None, mac_of(WORKSTATION)
    )


def _noise(rng: random.Random, n: int) -> Logged:
    src = _random_internet(rng)
    pkt = tcp(src, GW_WAN, rng.randrange(1024, 65535), rng.choice(_INTERNET_PORTS))
    return Logged(
        DROP_GROUP, "pg drop input: ", "input", pkt, 128, "wan0", None, b"\x02\x00\xc6\x12\x14\xfe"
    )


def _egress(rng: random.Random, n: int) -> Logged:
    hub = rng.choice(HUBS)
    if rng.random() < 0.5:
        pkt = tcp(hub, _random_internet(rng), rng.randrange(32768, 61000), 443)
    else:
        pkt = udp(hub, WORKSTATION, rng.randrange(32768, 61000), 445, b"\0" * 40)
    return Logged(DROP_GROUP, "pg drop forward: ", "forward", pkt, 128, "lan0", "wan0", mac_of(hub))


def _staff(rng: random.Random, n: int) -> Logged:
    pkt = tcp(ALICE, rng.choice(HUBS), rng.randrange(32768, 61000), 22)
    return Logged(DROP_GROUP, "pg drop forward: ", "forward", pkt, 128, "wg-support", "lan0")


def _new_hub(rng: random.Random, n: int) -> Logged:
    hub = rng.choice(HUBS)
    pkt = tcp(hub, GW_LAN, rng.randrange(32768, 61000), rng.choice((443, 8443, 8140)))
    return Logged(
        WATCH_GROUP, "pg new hubs-to-appliance: ", "input", pkt, 128, "lan0", None, mac_of(hub)
    )


def _new_plant(rng: random.Random, n: int) -> Logged:
    src = f"198.18.20.{rng.randrange(10, 60)}"
    pkt = tcp(src, GW_WAN, rng.randrange(32768, 61000), 443)
    return Logged(WATCH_GROUP, "pg new manage-page: ", "input", pkt, 128, "wan0", None, mac_of(src))


def _new_out(rng: random.Random, n: int) -> Logged:
    pkt = tcp(GW_LAN, rng.choice(HUBS), rng.randrange(32768, 61000), 9100)
    return Logged(WATCH_GROUP, "pg new appliance-to-hubs: ", "output", pkt, 128, None, "lan0")


def _dns(rng: random.Random, n: int) -> Logged:
    ident = rng.randrange(65536)
    roll = rng.random()
    if roll < 0.45:  # the appliance resolving its endpoints
        pkt = udp(
            GW_WAN, RESOLVER, rng.randrange(32768, 61000), 53, dns_query(rng.choice(_NAMES), ident)
        )
        return Logged(WATCH_GROUP, "pg dns: ", "output", pkt, 512, None, "wan0")
    if roll < 0.85:
        name = rng.choice(_NAMES)
        rcode = dns.rcode.NXDOMAIN if rng.random() < 0.1 else dns.rcode.NOERROR
        pkt = udp(RESOLVER, GW_WAN, 53, rng.randrange(32768, 61000), dns_answer(name, ident, rcode))
        return Logged(
            WATCH_GROUP,
            "pg dns: ",
            "prerouting",
            pkt,
            512,
            "wan0",
            None,
            b"\x02\x00\xc6\x12\x14\xfe",
        )
    hub = rng.choice(HUBS)  # a hub asking an outside resolver, sometimes for tunnel-like names
    labels = [
        "".join(rng.choice(_ALPHABET) for _ in range(rng.choice((8, 30, 55)))) for _ in range(3)
    ]
    pkt = udp(
        hub,
        ROGUE_RESOLVER,
        rng.randrange(32768, 61000),
        53,
        dns_query(".".join(labels) + ".example", ident),
    )
    return Logged(WATCH_GROUP, "pg dns: ", "prerouting", pkt, 512, "lan0", None, mac_of(hub))


def _ntp(rng: random.Random, n: int) -> Logged:
    roll = rng.random()
    hub = rng.choice(HUBS)
    if roll < 0.5:
        pkt = udp(hub, GW_LAN, 123, 123, ntp(3, 0, b"\0" * 4))
        return Logged(WATCH_GROUP, "pg ntp: ", "prerouting", pkt, 512, "lan0", None, mac_of(hub))
    if roll < 0.9:
        pkt = udp(GW_LAN, hub, 123, 123, ntp(4, 3))
        return Logged(WATCH_GROUP, "pg ntp: ", "output", pkt, 512, None, "lan0")
    if roll < 0.95:
        pkt = udp(GW_WAN, NTP_UPSTREAM, 123, 123, ntp(3, 0, b"\0" * 4))
        return Logged(WATCH_GROUP, "pg ntp: ", "output", pkt, 512, None, "wan0")
    pkt = udp(hub, NTP_UPSTREAM, 123, 123, ntp(3, 0, b"\0" * 4))  # a hub with another source
    return Logged(WATCH_GROUP, "pg ntp: ", "prerouting", pkt, 512, "lan0", None, mac_of(hub))


def _tls(rng: random.Random, n: int) -> Logged:
    hub = rng.choice(HUBS)
    data = client_hello(rng) if rng.random() < 0.95 else b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n"
    pkt = tcp(hub, GW_LAN, rng.randrange(32768, 61000), rng.choice((443, 8443)), "PA", data)
    return Logged(WATCH_GROUP, "pg tls: ", "input", pkt, 128, "lan0", None, mac_of(hub))


def _arp(rng: random.Random, n: int) -> Logged:
    hub = rng.choice(HUBS)
    return Logged(
        WATCH_GROUP,
        "pg arp: ",
        "input",
        arp(mac_of(hub), hub, GW_LAN),
        64,
        "lan0",
        None,
        mac_of(hub),
        arp=True,
    )


Make = Callable[[random.Random, int], Logged]
MIX: tuple[tuple[str, float, Make], ...] = (
    ("drop: scan of the appliance", 0.12, _scan),
    ("drop: internet noise", 0.13, _noise),
    ("drop: hub egress", 0.07, _egress),
    ("drop: staff ssh outside a gate", 0.03, _staff),
    ("new: hubs -> appliance", 0.13, _new_hub),
    ("new: plant -> Manage Page", 0.06, _new_plant),
    ("new: appliance -> hub agent", 0.06, _new_out),
    ("dns", 0.15, _dns),
    ("ntp", 0.10, _ntp),
    ("tls first packets", 0.10, _tls),
    ("arp", 0.05, _arp),
)


def packets(count: int, seed: int) -> Iterator[Logged]:
    """`count` logged packets of the mix, reproducibly for `seed`."""
    rng = random.Random(seed)
    makers = [m for _, _, m in MIX]
    weights = [w for _, w, _ in MIX]
    for n in range(count):
        (make,) = rng.choices(makers, weights)
        yield make(rng, n)


def datagrams(
    logged: Iterator[Logged], rate: float, start: float = T0, batch: int = NFLOG_BATCH
) -> Iterator[bytes]:
    """The packets as received datagrams of `batch` messages each (one group per datagram,
    as the kernel batches per group), stamped as if they arrived at `rate` a second."""
    pending: dict[int, list[bytes]] = {DROP_GROUP: [], WATCH_GROUP: []}
    step = 1.0 / rate
    for n, item in enumerate(logged):
        queue = pending[item.group]
        queue.append(item.message(start + n * step))
        if len(queue) == batch:
            yield b"".join(queue)
            queue.clear()
    for queue in pending.values():
        if queue:
            yield b"".join(queue)


def names(index: int | None) -> str | None:
    """Interface index -> name, as `Interfaces.name` answers in the lab's gw."""
    return NAMES.get(index) if index else None
