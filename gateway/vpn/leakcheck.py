"""Leak test verdicts for the support tunnel: is a captured packet allowed where it was seen?

Pure: the lab's leak test (`tests/kernel/test_vpn_leaks.py`) and the chaos benchmark
(`bench/leaks.py`) capture packets with `gateway.lab.leaks` and hand each one here with the
facts of the site. Nothing here touches a socket.

Two places are watched, and each has its own rule:

* **the physical side** (the appliance's plant leg `wan0`, and the plant network behind it):
  the only support traffic allowed there is WireGuard between the appliance's own address
  and the concentrator's public address on its port, in both directions (plus the ICMP
  errors about that one flow). While the VPN is off (`mode: disabled`, `plantgate vpn
  disable`) not even that may leave the appliance. Everything else is judged by what it
  carries:

  - a tunnel (inner-network) address anywhere in it, as source or destination, or in the
    packet an ICMP error quotes, is a **leak** whatever its payload;
  - a probe of this run (its marker in the payload, or its TCP/UDP port in a probe range) is
    a **leak**: every probe is traffic the kill switch or the gate must stop;
  - anything else exchanged with the concentrator's public address, and anything shaped like
    WireGuard that the appliance sends anywhere else (a tunnel following a roaming endpoint),
    is a **leak**, as is IPv6 on the WireGuard port;
  - a positive-control packet is counted as such (it proves the capture sees marked traffic);
  - the rest is **background** (DNS, NTP, ARP, neighbour discovery...) and is ignored.

* **inside the tunnel** (the concentrator's `wg-conc`, where tunnel traffic comes out in the
  clear): any IPv6 is a leak unless the policy allows IPv6 on the support path; a probe sent
  from the site side (the appliance or a hub) is a leak, since the appliance forwards and
  sends nothing into the tunnel; the staff's own probes are expected there.

Probes carry a marker, `PGLEAK <origin> <run token> <serial>`, in every payload that can hold
one (UDP, ICMP echo); a TCP SYN carries none, so TCP probes bind a source port from the
origin's port range instead. Replies and ICMP errors quote the marker or the port, so they
are recognised too. The run token keeps an earlier run's stragglers apart.
"""

from __future__ import annotations

import ipaddress
import struct
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from gateway.policy.model import Policy
from gateway.watch.sources.nflog import DecodedPacket, decode_ip

Origin = Literal["control", "site", "staff"]
Side = Literal["physical", "tunnel"]
Verdict = Literal["wireguard", "control", "background", "inbound", "leak"]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

MARK = b"PGLEAK "
ORIGINS: tuple[Origin, ...] = ("control", "site", "staff")
ICMP_ERRORS_V4 = frozenset({3, 4, 5, 11, 12})  # unreachable, quench, redirect, time, parameter
ICMP_ERRORS_V6 = frozenset({1, 2, 3, 4})  # unreachable, too big, time exceeded, parameter
IPV6_SKIPPABLE = frozenset({0, 43, 60})  # hop-by-hop, routing, destination options
IPV6_FRAGMENT = 44
UDP = 17
WG_SIZES = {1: 148, 2: 92, 3: 64}  # initiation, response, cookie reply
WG_DATA, WG_DATA_MIN = 4, 32  # transport data: 16-byte header + 16-byte tag + padded payload


@dataclass(frozen=True)
class Markers:
    """How this run's probes are recognised: a token in the payload, or a source port."""

    token: str
    site_ports: tuple[int, int] = (21000, 22999)
    staff_ports: tuple[int, int] = (23000, 24899)

    def payload(self, origin: Origin, serial: int, size: int = 48) -> bytes:
        """The marked payload of one probe (padded to `size` bytes)."""
        text = MARK + f"{origin} {self.token} {serial:06d} ".encode()
        return text.ljust(size, b".")

    def origin_of(self, data: bytes) -> Origin | None:
        """The origin named by a marker of this run anywhere in `data` (quotes included)."""
        start = data.find(MARK)
        while start != -1:
            words = data[start + len(MARK) : start + len(MARK) + 40].split(b" ")
            if len(words) >= 2 and words[1].decode(errors="replace") == self.token:
                origin = words[0].decode(errors="replace")
                for known in ORIGINS:
                    if origin == known:
                        return known
            start = data.find(MARK, start + 1)
        return None

    def port_origin(self, packet: DecodedPacket) -> Origin | None:
        """`site` or `staff` when a TCP/UDP port of the packet is in that origin's range."""
        for port in (packet.sport, packet.dport):
            if port is None:
                continue
            if self.site_ports[0] <= port <= self.site_ports[1]:
                return "site"
            if self.staff_ports[0] <= port <= self.staff_ports[1]:
                return "staff"
        return None

    def ports(self, origin: Origin) -> range:
        first, last = self.site_ports if origin == "site" else self.staff_ports
        return range(first, last + 1)


@dataclass(frozen=True)
class Facts:
    """What the verdicts need to know about the site."""

    appliance: frozenset[str]  # the appliance's addresses on the physical side
    concentrator: frozenset[str]  # the concentrator's public addresses
    port: int  # the concentrator's WireGuard port
    inner: tuple[Network, ...]  # tunnel addresses (support_vpn.inner_networks, and more)
    markers: Markers
    ipv6_in_tunnel: bool = False  # support_vpn.ipv6

    def is_inner(self, address: str | None) -> bool:
        if address is None:
            return False
        ip = ipaddress.ip_address(address)
        return any(ip.version == net.version and ip in net for net in self.inner)


def facts_for(
    policy: Policy,
    appliance: Iterable[str],
    concentrator: Iterable[str],
    markers: Markers,
    extra_inner: Iterable[str] = (),
) -> Facts:
    """Facts from the policy's `support_vpn` section, the addresses in use, and any further
    networks a test treats as tunnel addresses (`extra_inner`, e.g. IPv6 look-alikes)."""
    support = policy.support_vpn
    if support is None:
        raise ValueError("the policy has no support_vpn section: there is no tunnel to check")
    inner = [ipaddress.ip_network(n, strict=False) for n in [*support.inner_networks, *extra_inner]]
    return Facts(
        appliance=frozenset(appliance),
        concentrator=frozenset(concentrator),
        port=support.port,
        inner=tuple(inner),
        markers=markers,
        ipv6_in_tunnel=support.ipv6,
    )


@dataclass(frozen=True)
class Finding:
    """The verdict on one packet, and why."""

    verdict: Verdict
    reason: str
    packet: DecodedPacket | None = None

    @property
    def leak(self) -> bool:
        return self.verdict == "leak"


# ---------------------------------------------------------------- decoding helpers


def l4_offset(data: bytes, packet: DecodedPacket) -> int | None:
    """Where the TCP/UDP/ICMP header starts in `data`, or None (fragment, short, unknown)."""
    if packet.version == 4:
        offset = (data[0] & 0x0F) * 4
        return offset if len(data) >= offset + 4 else None
    offset, next_header = 40, data[6] if len(data) > 6 else -1
    while next_header in IPV6_SKIPPABLE or next_header == IPV6_FRAGMENT:
        if len(data) < offset + 8:
            return None
        if next_header == IPV6_FRAGMENT:
            return None  # our probes are never fragmented; a fragment is not decoded further
        next_header, offset = data[offset], offset + (data[offset + 1] + 1) * 8
    return offset if len(data) >= offset + 4 else None


def quoted(data: bytes, packet: DecodedPacket) -> tuple[DecodedPacket, bytes] | None:
    """The packet an ICMP error quotes (headers as far as they were quoted), if any."""
    errors = ICMP_ERRORS_V4 if packet.version == 4 else ICMP_ERRORS_V6
    if packet.icmp_type not in errors or packet.proto not in ("icmp", "icmpv6"):
        return None
    offset = l4_offset(data, packet)
    if offset is None or len(data) < offset + 8:
        return None
    inner = data[offset + 8 :]
    decoded = decode_ip(inner)
    if decoded is None or decoded.src is None:
        return None
    return decoded, inner


def udp_payload(data: bytes, packet: DecodedPacket) -> tuple[int, bytes] | None:
    """(length the UDP header claims for its payload, the payload bytes captured)."""
    if packet.proto_num != UDP:
        return None
    offset = l4_offset(data, packet)
    if offset is None or len(data) < offset + 8:
        return None
    (length,) = struct.unpack_from("!H", data, offset + 4)
    return max(0, length - 8), data[offset + 8 :]


def wireguard_shaped(data: bytes, packet: DecodedPacket) -> bool:
    """A UDP datagram whose payload has a WireGuard message's type, zero bytes and size."""
    found = udp_payload(data, packet)
    if found is None:
        return False
    length, payload = found
    if len(payload) < 4 or payload[1:4] != b"\0\0\0":
        return False
    kind = payload[0]
    if kind == WG_DATA:
        return length >= WG_DATA_MIN and (length - WG_DATA_MIN) % 16 == 0
    return WG_SIZES.get(kind) == length


def describe(packet: DecodedPacket | None) -> str:
    """`udp 198.18.20.1:40000 -> 198.19.0.51:51820`, `icmp 1.2.3.4 -> 5.6.7.8 type 8`."""
    if packet is None:
        return "not an IP packet"
    proto = packet.proto or "?"
    if packet.sport is not None and packet.dport is not None:
        src, dst = _hostport(packet.src, packet.sport), _hostport(packet.dst, packet.dport)
        flags = f" [{packet.tcp_flags}]" if packet.tcp_flags else ""
        return f"{proto} {src} -> {dst}{flags}"
    kind = f" type {packet.icmp_type}" if packet.icmp_type is not None else ""
    return f"{proto} {packet.src} -> {packet.dst}{kind}"


def _hostport(address: str | None, port: int) -> str:
    return f"[{address}]:{port}" if address and ":" in address else f"{address}:{port}"


# ---------------------------------------------------------------- verdicts


def _flow(packet: DecodedPacket, facts: Facts) -> Literal["out", "in"] | None:
    """`out`/`in` when the packet is the tunnel's own UDP flow (appliance <-> concentrator)."""
    if packet.proto_num != UDP:
        return None
    if (
        packet.src in facts.appliance
        and packet.dst in facts.concentrator
        and packet.dport == facts.port
    ):
        return "out"
    if (
        packet.src in facts.concentrator
        and packet.sport == facts.port
        and packet.dst in facts.appliance
    ):
        return "in"
    return None


def _tunnel_flow(direction: str, facts: Facts, vpn_on: bool, what: str) -> Finding:
    if vpn_on:
        return Finding("wireguard", what)
    if direction == "out":
        return Finding("leak", f"{what} left the appliance while the VPN is off")
    return Finding("inbound", f"{what} arrived while the VPN is off (the appliance answers none)")


def classify(data: bytes, facts: Facts, side: Side, *, vpn_on: bool = True) -> Finding:
    """The verdict on one captured IP packet (link-layer header already removed)."""
    packet = decode_ip(data)
    if packet is None or packet.src is None:
        return Finding("background", "not an IP packet")
    found = _classify_physical if side == "physical" else _classify_tunnel
    finding = found(data, packet, facts, vpn_on)
    return Finding(finding.verdict, finding.reason, packet)


def _classify_physical(data: bytes, packet: DecodedPacket, facts: Facts, vpn_on: bool) -> Finding:
    quote = quoted(data, packet)
    for where, seen in (("", packet), ("quoted ", quote[0] if quote else None)):
        if seen is None:
            continue
        for address in (seen.src, seen.dst):
            if facts.is_inner(address):
                return Finding("leak", f"tunnel address {address} in a {where}packet outside it")
    direction = _flow(packet, facts)
    if direction is not None:
        if wireguard_shaped(data, packet):
            return _tunnel_flow(direction, facts, vpn_on, "WireGuard with the concentrator")
        return Finding("leak", "not WireGuard, yet on the tunnel's own flow")
    if quote is not None:
        about = _flow(quote[0], facts)
        if about is not None:
            way = "out" if packet.src in facts.appliance else "in"
            return _tunnel_flow(way, facts, vpn_on, "ICMP error about the tunnel's flow")
    origin = facts.markers.origin_of(data)
    if origin == "control":
        return Finding("control", "positive control")
    if origin is not None:
        return Finding("leak", f"{origin} probe outside the tunnel")
    by_port = facts.markers.port_origin(quote[0] if quote else packet)
    by_port = by_port or facts.markers.port_origin(packet)
    if by_port is not None:
        return Finding("leak", f"{by_port} probe (by its port) outside the tunnel")
    if packet.src in facts.concentrator or packet.dst in facts.concentrator:
        return Finding("leak", "traffic with the concentrator outside the tunnel")
    if packet.src in facts.appliance and wireguard_shaped(data, packet):
        return Finding("leak", "WireGuard to an endpoint that is not the concentrator")
    if packet.version == 6 and facts.port in (packet.sport, packet.dport):
        return Finding("leak", "IPv6 on the WireGuard port")
    return Finding("background", "not support traffic")


def _classify_tunnel(data: bytes, packet: DecodedPacket, facts: Facts, vpn_on: bool) -> Finding:
    del vpn_on  # inside the tunnel the same holds whether the VPN is on or not
    if packet.version == 6 and not facts.ipv6_in_tunnel:
        return Finding("leak", "IPv6 in the tunnel (support_vpn.ipv6 is false)")
    origin = facts.markers.origin_of(data)
    if origin == "control":
        return Finding("control", "positive control")
    quote = quoted(data, packet)
    origin = origin or facts.markers.port_origin(quote[0] if quote else packet)
    origin = origin or facts.markers.port_origin(packet)
    if origin == "site":
        return Finding("leak", "probe from the site side inside the tunnel")
    if origin == "staff":
        return Finding("background", "staff probe (expected inside the tunnel)")
    return Finding("background", "tunnel traffic")


# ---------------------------------------------------------------- tallies


@dataclass(frozen=True)
class Seen:
    """One captured packet as the capture adapter hands it over."""

    where: str  # capture point, e.g. "gw:wan0"
    side: Side
    at: float  # wall-clock time (kernel timestamp)
    outgoing: bool  # sent by the capturing host on that interface
    data: bytes


@dataclass(frozen=True)
class Leak:
    seen: Seen
    finding: Finding

    def text(self) -> str:
        way = "out" if self.seen.outgoing else "in"
        return f"{self.seen.where} ({way}) {describe(self.finding.packet)}: {self.finding.reason}"


@dataclass
class Tally:
    """Counts per capture point and verdict, and every leak in full."""

    counts: Counter[tuple[str, Verdict]] = field(default_factory=Counter)
    leaks: list[Leak] = field(default_factory=list)

    def add(self, seen: Seen, finding: Finding) -> None:
        self.counts[(seen.where, finding.verdict)] += 1
        if finding.leak:
            self.leaks.append(Leak(seen, finding))

    def count(self, verdict: Verdict, where: str | None = None) -> int:
        return sum(n for (w, v), n in self.counts.items() if v == verdict and where in (None, w))

    def packets(self, where: str | None = None) -> int:
        return sum(n for (w, _), n in self.counts.items() if where in (None, w))

    def points(self) -> list[str]:
        return sorted({w for w, _ in self.counts})

    def summary(self) -> str:
        """`gw:wan0 12 (wireguard 8, background 4)`, one capture point after the other."""
        parts = []
        for where in self.points():
            kinds = ", ".join(
                f"{v} {n}" for (w, v), n in sorted(self.counts.items()) if w == where and n
            )
            parts.append(f"{where} {self.packets(where)} ({kinds})")
        return "; ".join(parts) or "nothing captured"


def vpn_on_at(at: float, off: Sequence[tuple[float, float]]) -> bool:
    """Whether the VPN was on at time `at`, given the intervals during which it was off."""
    return not any(start <= at <= end for start, end in off)


def tally(captured: Iterable[Seen], facts: Facts, off: Sequence[tuple[float, float]] = ()) -> Tally:
    """Verdicts on every captured packet; `off`: when the VPN was switched off."""
    result = Tally()
    for seen in captured:
        vpn_on = vpn_on_at(seen.at, off)
        result.add(seen, classify(seen.data, facts, seen.side, vpn_on=vpn_on))
    return result
