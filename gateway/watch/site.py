"""`PolicySite`: what detectors may ask about the site (`SiteView`), from the applied policy,
the appliance's own addresses and the live support gate.

* `zone_of` — the most specific zone network holding the address; else the zone of a
  fixed-address endpoint holding it; else, when the policy has exactly one catch-all zone
  (interfaces, no networks: "the internet"), that zone. None otherwise. The support
  tunnel's networks (`support_vpn.inner_networks` and the appliance's own tunnel address's
  network) count as networks of the zone on the tunnel's interface: the appliance's
  198.18.200.2 in the lab is in the support zone, not "the internet".
* `role_of` — `appliance` (an address of this machine), `broadcast`/`multicast` (a zone
  network's broadcast address, 255.255.255.255, multicast), `support-staff` (a
  `support_vpn.staff` address), an endpoint's name (fixed addresses), else the role of its
  zone's kind: hubs -> `hub`, plant -> `plant`, internet -> `upstream`, support ->
  `support-staff`. None for an address in no zone.
* `gate_open` — an open gate grant covers (staff, target, proto, port) now: in `gated` mode
  from the gate store (`GateGrants`, re-read at most every `refresh_s` and whenever a
  `gate.*` event says it changed); in `always-on` mode any listed staff address; never
  in `disabled` mode.

Answers are cached per address (bounded: the cache is cleared when it reaches `CACHE_MAX`),
since detectors ask for the same few addresses at every packet.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from gateway.policy.addresses import canonical, parse_net
from gateway.policy.model import Policy
from gateway.vpn.gate import Grant, held_grants

CACHE_MAX = 65_536
KIND_ROLES = {"hubs": "hub", "plant": "plant", "internet": "upstream", "support": "support-staff"}
_LIMITED_BROADCAST = "255.255.255.255"


@dataclass(frozen=True, slots=True)
class _Span:
    version: int
    first: int
    last: int
    name: str  # zone or endpoint
    zone: str | None


def _spans(items: Iterable[tuple[str, str, str | None]]) -> list[_Span]:
    """(network text, name, zone) -> spans, most specific first."""
    spans = []
    for text, name, zone in items:
        net = parse_net(text)
        spans.append(_Span(net.version, net.first, net.last, name, zone))
    return sorted(spans, key=lambda s: s.last - s.first)


def _address(text: str) -> tuple[int, int] | None:
    """(version, value) of an address; None when it is not one. IPv4 in dotted-quad form
    (what the decoders produce) takes the C fast path: detectors ask about every packet's
    addresses, and a flood of new sources misses the cache at every packet."""
    try:
        return 4, int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except OSError:
        pass
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return ip.version, int(ip)


def _is_multicast(version: int, value: int) -> bool:
    return value >> 28 == 0xE if version == 4 else value >> 120 == 0xFF


def _canonical(version: int, value: int) -> str:
    """The canonical text of an address (as `canonical` gives it), from its value."""
    if version == 4:
        return socket.inet_ntoa(value.to_bytes(4, "big"))
    return str(ipaddress.IPv6Address(value))


def tunnel_networks(policy: Policy) -> list[tuple[str, str]]:
    """(network, zone) for the support tunnel's inside: its `inner_networks` and the
    network of the appliance's tunnel address, in the zone whose interfaces include the
    tunnel's (a `support` zone first, should several). Empty without a tunnel or a zone.
    """
    support = policy.support_vpn
    if support is None:
        return []
    zones = [n for n, z in policy.zones.items() if support.interface in z.interfaces]
    zones.sort(key=lambda n: policy.zones[n].kind != "support")
    if not zones:
        return []
    own = str(ipaddress.ip_interface(support.address).network)
    return [(n, zones[0]) for n in dict.fromkeys([*support.inner_networks, own])]


class GateGrants:
    """The open gate grants from the state directory, re-read at most every `refresh_s`."""

    def __init__(self, state: Path, refresh_s: float = 2.0) -> None:
        from gateway.vpn.gatestore import GateStore

        self.store = GateStore(state)
        self.refresh_s = refresh_s
        self._held: Mapping[Grant, float] = {}
        self._read_at: float | None = None

    def invalidate(self) -> None:
        self._read_at = None

    def __call__(self, ts: float) -> Mapping[Grant, float]:
        """Grant -> seconds left at the last read (a grant past its end is not open)."""
        if self._read_at is None or ts - self._read_at >= self.refresh_s:
            now = datetime.datetime.fromtimestamp(ts, datetime.UTC)
            try:
                self._held = held_grants(self.store.all(), now)
            except (OSError, ValueError):
                self._held = {}  # unreadable: no grant counts as open (fail closed)
            self._read_at = ts
        return self._held


class PolicySite:
    """A `SiteView` for one applied policy; `set_local` when the appliance's addresses change."""

    def __init__(
        self,
        policy: Policy,
        local: Iterable[str] = (),
        grants: Callable[[float], Mapping[Grant, float]] | None = None,
    ) -> None:
        self.policy = policy
        self._grants = grants or (lambda _ts: {})
        self._zones = _spans(
            [
                *((n, name, name) for name, z in policy.zones.items() for n in z.networks),
                *((n, zone, zone) for n, zone in tunnel_networks(policy)),
            ]
        )
        self._endpoints = _spans(
            (a, name, e.zone) for name, e in policy.endpoints.items() for a in e.addresses
        )
        catch_all = [n for n, z in policy.zones.items() if z.interfaces and not z.networks]
        self._catch_all = catch_all[0] if len(catch_all) == 1 else None
        self._kinds = {name: z.kind for name, z in policy.zones.items()}
        self._broadcast = {
            span.last for span in self._zones if span.version == 4 and span.last - span.first > 1
        }
        support = policy.support_vpn
        self.support_mode = support.mode if support is not None else "disabled"
        self.staff = {canonical(m.address): m.name for m in support.staff} if support else {}
        self._local: frozenset[str] = frozenset()
        self.set_local(local)

    def set_local(self, addresses: Iterable[str]) -> None:
        """The appliance's own addresses (its interfaces' and the tunnel's)."""
        support = self.policy.support_vpn
        inner = [support.address.partition("/")[0]] if support is not None else []
        self._local = frozenset(canonical(a) for a in [*addresses, *inner])
        self._zone_cache: dict[str, str | None] = {}
        self._role_cache: dict[str, str | None] = {}

    def zone_kind(self, zone: str) -> str | None:
        """The policy's `kind` of a zone (hubs, plant, internet, support, other)."""
        return self._kinds.get(zone)

    @property
    def local(self) -> frozenset[str]:
        return self._local

    def is_appliance(self, address: str) -> bool:
        return address in self._local

    def zone_of(self, address: str) -> str | None:
        cache = self._zone_cache
        if address in cache:
            return cache[address]
        found = _address(address)
        zone: str | None = None
        if found is not None:
            zone = self._find(self._zones, *found)
            if zone is None:
                span = self._span(self._endpoints, *found)
                zone = span.zone if span is not None else None
            if zone is None:
                zone = self._catch_all
        if len(cache) >= CACHE_MAX:
            cache.clear()
        cache[address] = zone
        return zone

    def role_of(self, address: str) -> str | None:
        cache = self._role_cache
        if address in cache:
            return cache[address]
        role = self._role(address)
        if len(cache) >= CACHE_MAX:
            cache.clear()
        cache[address] = role
        return role

    def _role(self, address: str) -> str | None:
        if address in self._local:
            return "appliance"
        found = _address(address)
        if found is None:
            return None
        version, value = found
        if address == _LIMITED_BROADCAST or (version == 4 and value in self._broadcast):
            return "broadcast"
        if _is_multicast(version, value):
            return "multicast"
        if self.staff and _canonical(version, value) in self.staff:
            return "support-staff"
        endpoint = self._span(self._endpoints, version, value)
        if endpoint is not None:
            return endpoint.name
        zone = self.zone_of(address)
        return KIND_ROLES.get(self._kinds.get(zone or "", ""))

    def gate_open(self, src: str, dst: str, proto: str, port: int | None, ts: float) -> bool:
        if self.support_mode == "disabled":
            return False
        staff = canonical(src)
        if staff not in self.staff:
            return False
        if self.support_mode == "always-on":
            return True
        grant = Grant(staff, canonical(dst), proto, port or 0)
        return grant in self._grants(ts)

    @staticmethod
    def _span(spans: list[_Span], version: int, value: int) -> _Span | None:
        for span in spans:
            if span.version == version and span.first <= value <= span.last:
                return span
        return None

    def _find(self, spans: list[_Span], version: int, value: int) -> str | None:
        span = self._span(spans, version, value)
        return span.name if span is not None else None
