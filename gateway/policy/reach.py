"""What a policy lets through, as flows: sources x destinations x ports (pure).

`policy plan` asks questions about meaning, never about names: "could some address of the
plant network reach the appliance on tcp 443 before, and can it still?". To answer them each
rule becomes a `Flow`:

* sources are *address regions*: per (interface, IP version) a set of address intervals,
  plus opaque atoms for FQDN names (their addresses are known only at run time) and for the
  appliance itself. A zone's region is where the compiler would classify a packet into it
  (its networks on its interfaces; a catch-all zone gets the rest of its interfaces), so a
  renamed zone with the same networks means the same thing, and a shrunk network loses
  addresses;
* destinations are *atoms*: `self`, `any`, `zone:NAME`, `ep:NAME`. A zone covers its
  endpoints; `any` covers every zone but not the appliance. Destinations stay at zone level so
  that adding a hub to the hubs zone does not count as reaching something new;
* ports are a region too, keyed by protocol (`tcp`, `udp`, `icmp TYPE`, `icmpv6 TYPE`).

Coverage questions ("is this flow allowed by those?") are answered exactly by interval
arithmetic over these regions. Both policies of a plan share one `Universe` (the interface
names and FQDN names of both), so their regions can be compared point by point.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

from gateway.policy.addresses import parse_net
from gateway.policy.model import ANY, ICMP_TYPES, ICMPV6_TYPES, SELF, Policy, Service

Span = tuple[int, int]  # inclusive
Key = tuple[str, ...]
FULL = {4: (0, (1 << 32) - 1), 6: (0, (1 << 128) - 1)}
OTHER_IFACE = "*"  # any interface the policy does not name


class Spans:
    """Sorted, disjoint, non-adjacent inclusive integer intervals; immutable."""

    def __init__(self, items: tuple[Span, ...] = ()) -> None:
        self.items = items

    @classmethod
    def of(cls, spans: Iterable[Span]) -> Spans:
        return cls(tuple(_coalesce(sorted(spans))))

    def __bool__(self) -> bool:
        return bool(self.items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Spans) and self.items == other.items

    def __hash__(self) -> int:
        return hash(self.items)

    def __repr__(self) -> str:
        return f"Spans({self.items!r})"

    @cached_property
    def _lasts(self) -> list[int]:
        return [last for _, last in self.items]

    def _overlapping(self, low: int, high: int) -> Iterator[Span]:
        """Intervals of self that meet [low, high], by bisection (self may be large)."""
        index = bisect.bisect_left(self._lasts, low)
        while index < len(self.items) and self.items[index][0] <= high:
            yield self.items[index]
            index += 1

    def union(self, other: Spans) -> Spans:
        if not other:
            return self
        if not self:
            return other
        return Spans(tuple(_coalesce(heapq.merge(self.items, other.items))))

    def minus(self, other: Spans) -> Spans:
        if not self or not other:
            return self
        out: list[Span] = []
        for low, high in self.items:
            start = low
            for o_low, o_high in other._overlapping(low, high):
                if o_low > start:
                    out.append((start, o_low - 1))
                start = max(start, o_high + 1)
            if start <= high:
                out.append((start, high))
        return Spans(tuple(out))

    def meet(self, other: Spans) -> Spans:
        if not self or not other:
            return Spans()
        small, large = (self, other) if len(self.items) <= len(other.items) else (other, self)
        out = [
            (max(low, o_low), min(high, o_high))
            for low, high in small.items
            for o_low, o_high in large._overlapping(low, high)
        ]
        return Spans(tuple(out))


def _coalesce(spans: Iterable[Span]) -> Iterator[Span]:
    current: Span | None = None
    for low, high in spans:
        if current is not None and low <= current[1] + 1:
            current = (current[0], max(current[1], high))
            continue
        if current is not None:
            yield current
        current = (low, high)
    if current is not None:
        yield current


MARK = Spans(((0, 0),))  # an atom without a range: the appliance, an FQDN name, an ICMP type


@dataclass(frozen=True)
class Region:
    """Keyed interval sets: addresses per (interface, version), FQDN names, ports per proto."""

    parts: Mapping[Key, Spans] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return any(self.parts.values())

    def union(self, other: Region) -> Region:
        parts = dict(self.parts)
        for key, spans in other.parts.items():
            parts[key] = parts[key].union(spans) if key in parts else spans
        return Region({k: v for k, v in parts.items() if v})

    def minus(self, other: Region) -> Region:
        parts = {
            k: v.minus(other.parts[k]) if k in other.parts else v for k, v in self.parts.items()
        }
        return Region({k: v for k, v in parts.items() if v})

    def meet(self, other: Region) -> Region:
        parts = {k: v.meet(other.parts[k]) for k, v in self.parts.items() if k in other.parts}
        return Region({k: v for k, v in parts.items() if v})

    def covers(self, other: Region) -> bool:
        return not other.minus(self)

    def fingerprint(self) -> tuple[tuple[Key, tuple[Span, ...]], ...]:
        """A hashable, ordered form, for grouping equal regions."""
        return tuple((key, self.parts[key].items) for key in sorted(self.parts))

    def sorted_keys(self) -> list[Key]:
        return sorted(self.parts)


def union_all(regions: Iterable[Region]) -> Region:
    result = Region()
    for region in regions:
        result = result.union(region)
    return result


def addr_key(iface: str, version: int) -> Key:
    return ("addr", iface, str(version))


def fqdn_key(name: str) -> Key:
    return ("fqdn", name)


SELF_REGION = Region({("self",): MARK})

# -- ports ------------------------------------------------------------------------------------


def port_span(port: int | str) -> Span:
    low, _, high = str(port).partition("-")
    return int(low), int(high or low)


def service_ports(service: Service) -> Region:
    parts: dict[Key, Spans] = {}
    for proto in ("tcp", "udp"):
        spans = [port_span(p) for p in getattr(service, proto)]
        if spans:
            parts[(proto,)] = Spans.of(spans)
    for proto in ("icmp", "icmpv6"):
        for kind in getattr(service, proto):
            parts[(proto, kind)] = MARK
    return Region(parts)


def ports_of(proto: str, *ports: int) -> Region:
    return Region({(proto,): Spans.of((p, p) for p in ports)})


ALL_PORTS = Region(
    {
        ("tcp",): Spans(((0, 65535),)),
        ("udp",): Spans(((0, 65535),)),
        **{("icmp", t): MARK for t in ICMP_TYPES},
        **{("icmpv6", t): MARK for t in ICMPV6_TYPES},
    }
)


def refine(ports: Region, others: Sequence[Region]) -> list[Region]:
    """`ports` cut into pieces on which each of `others` is either all in or all out."""
    pieces: list[Region] = []
    for key in ports.sorted_keys():
        cuts: set[int] = set()
        for other in others:
            for low, high in other.parts.get(key, Spans()).items:
                cuts.update((low, high + 1))
        for low, high in ports.parts[key].items:
            inner = sorted(c for c in cuts if low < c <= high)
            bounds = [low, *inner, high + 1]
            for start, stop in itertools.pairwise(bounds):
                pieces.append(Region({key: Spans(((start, stop - 1),))}))
    return pieces


# -- a policy as flows ---------------------------------------------------------------------


@dataclass(frozen=True)
class Universe:
    """What both policies of a plan can name: kernel interfaces and FQDN names."""

    ifaces: tuple[str, ...]
    names: tuple[str, ...]

    @classmethod
    def of(cls, *policies: Policy | None) -> Universe:
        ifaces = {OTHER_IFACE}
        names: set[str] = set()
        for policy in policies:
            if policy is not None:
                ifaces.update(policy.interfaces.values())
                names.update(n for e in policy.endpoints.values() for n in e.fqdn)
        return cls(tuple(sorted(ifaces)), tuple(sorted(names)))

    @cached_property
    def everything(self) -> Region:
        """Every address on every interface and every name: what `any` matches."""
        parts: dict[Key, Spans] = {
            addr_key(i, v): Spans((FULL[v],)) for i in self.ifaces for v in (4, 6)
        }
        parts.update({fqdn_key(n): MARK for n in self.names})
        return Region(parts)


@dataclass(frozen=True)
class Flow:
    """One rule's traffic: from `sources` to `dests` on `ports` (while `gate` is open)."""

    rule: str
    index: int  # position in its policy's rule list
    sources: Region
    dests: frozenset[str]
    ports: Region
    gate: str | None
    log: bool


class Geometry:
    """A policy's zones and endpoints as regions and atoms, in a shared universe.

    `rename` maps this policy's zone names onto the names the plan reports in (the new
    policy's), so an old rule's `zone:hubs` and a new rule's `zone:shopfloor` compare equal
    when the zone was only renamed.
    """

    def __init__(
        self, policy: Policy, universe: Universe, rename: Mapping[str, str] | None = None
    ) -> None:
        self.policy = policy
        self.universe = universe
        self.rename = dict(rename or {})
        self._zones: dict[str, Region] = {}

    def zone_name(self, name: str) -> str:
        return self.rename.get(name, name)

    def _ifaces(self, roles: Sequence[str]) -> list[str]:
        if not roles:
            return list(self.universe.ifaces)
        return sorted({self.policy.interfaces[r] for r in roles if r in self.policy.interfaces})

    def _networks(self, texts: Iterable[str]) -> dict[int, Spans]:
        by_version: dict[int, list[Span]] = {4: [], 6: []}
        for text in texts:
            net = parse_net(text)
            by_version[net.version].append((net.first, net.last))
        return {v: Spans.of(spans) for v, spans in by_version.items() if spans}

    @cached_property
    def _claimed(self) -> dict[Key, Spans]:
        """Per (interface, version), the addresses zones with networks claim there."""
        claimed: dict[Key, Spans] = {}
        for zone in self.policy.zones.values():
            for version, spans in self._networks(zone.networks).items():
                for iface in self._ifaces(zone.interfaces):
                    key = addr_key(iface, version)
                    claimed[key] = claimed.get(key, Spans()).union(spans)
        return claimed

    def zone(self, name: str) -> Region:
        """Where a packet is classified into zone `name` (its endpoints' names included)."""
        if name not in self._zones:
            zone = self.policy.zones[name]
            parts: dict[Key, Spans] = {}
            if zone.networks:
                for version, spans in self._networks(zone.networks).items():
                    for iface in self._ifaces(zone.interfaces):
                        parts[addr_key(iface, version)] = spans
            else:  # a catch-all: the rest of its interfaces
                for iface in self._ifaces(zone.interfaces):
                    for version in (4, 6):
                        key = addr_key(iface, version)
                        rest = Spans((FULL[version],)).minus(self._claimed.get(key, Spans()))
                        if rest:
                            parts[key] = rest
            for endpoint in self.policy.endpoints.values():
                if endpoint.zone == name:
                    parts.update({fqdn_key(n): MARK for n in endpoint.fqdn})
            self._zones[name] = Region(parts)
        return self._zones[name]

    def endpoint(self, name: str) -> Region:
        endpoint = self.policy.endpoints[name]
        names = Region({fqdn_key(n): MARK for n in endpoint.fqdn})
        own = self._networks(endpoint.addresses)
        # A zone-less endpoint is that endpoint in every zone (compile.py): never outside them.
        zoned = endpoint.zone is not None and endpoint.zone in self.policy.zones
        within = self.zone(endpoint.zone) if zoned and endpoint.zone else self.all_zones
        parts = {
            key: spans.meet(own[int(key[2])])
            for key, spans in within.parts.items()
            if key[0] == "addr" and int(key[2]) in own
        }
        return Region({k: v for k, v in parts.items() if v}).union(names)

    @cached_property
    def all_zones(self) -> Region:
        """What `any` covers: every zone, and nothing on an interface that is in no zone."""
        return union_all(self.zone(z) for z in self.policy.zones)

    def region(self, peer: str) -> Region:
        if peer == SELF:
            return SELF_REGION
        if peer == ANY:
            return self.all_zones
        if peer in self.policy.zones:
            return self.zone(peer)
        return self.endpoint(peer)

    def atom(self, peer: str) -> str:
        if peer in (SELF, ANY):
            return peer
        if peer in self.policy.zones:
            return f"zone:{self.zone_name(peer)}"
        return f"ep:{peer}"

    def endpoint_zone(self, name: str) -> str | None:
        endpoint = self.policy.endpoints.get(name)
        if endpoint is None or endpoint.zone is None:
            return None
        return self.zone_name(endpoint.zone)

    def kind_region(self, *kinds: str) -> Region:
        return union_all(
            self.zone(z) for z, zone in self.policy.zones.items() if zone.kind in kinds
        )

    @cached_property
    def flows(self) -> tuple[Flow, ...]:
        flows = []
        for index, rule in enumerate(self.policy.rules):
            services = [self.policy.services[s] for s in rule.allow]
            flows.append(
                Flow(
                    rule=rule.name,
                    index=index,
                    sources=union_all(self.region(p) for p in rule.from_),
                    dests=frozenset(self.atom(p) for p in rule.to),
                    ports=union_all(service_ports(s) for s in services),
                    gate=rule.gate,
                    log=rule.log,
                )
            )
        return tuple(flows)


def allow_all(universe: Universe) -> Flow:
    """What an empty kernel allows: everything, everywhere (no table is loaded)."""
    return Flow(
        "(no table)", -1, universe.everything, frozenset({SELF, ANY}), ALL_PORTS, None, False
    )


def no_zone(_: str) -> str | None:
    return None


def covers_atom(
    held: frozenset[str], atom: str, endpoint_zone: Callable[[str], str | None] = no_zone
) -> bool:
    """Does a flow to the atoms `held` reach destination `atom`?

    `endpoint_zone` tells, in the policy `held` comes from, which zone holds an endpoint:
    a flow to a zone reaches the zone's endpoints too.
    """
    if atom in held:
        return True
    if atom == SELF:
        return False
    if ANY in held:
        return True
    if atom.startswith("ep:"):
        zone = endpoint_zone(atom[3:])
        return zone is not None and f"zone:{zone}" in held
    return False


@dataclass(frozen=True)
class Gap:
    """Part of a flow that the other side does not allow: these sources, this atom, ports."""

    flow: Flow
    atom: str
    ports: Region
    sources: Region


GateRule = Callable[[Flow, Flow], bool]


def any_gate(_: Flow, __: Flow) -> bool:
    return True


def same_or_no_gate(wanted: Flow, offered: Flow) -> bool:
    """An ungated flow covers anything; a gated one covers only flows behind the same gate."""
    return offered.gate is None or offered.gate == wanted.gate


def gaps(
    flow: Flow,
    sources: Region,
    atoms: Iterable[str],
    ports: Region,
    against: Sequence[Flow],
    endpoint_zone: Callable[[str], str | None] = no_zone,
    gate_ok: GateRule = same_or_no_gate,
) -> list[Gap]:
    """What of `flow` (cut to `sources`, `atoms`, `ports`) the flows `against` do not allow.

    `endpoint_zone` answers for the policy `against` comes from (see `covers_atom`).
    """
    found: list[Gap] = []
    wanted_sources = flow.sources.meet(sources)
    wanted_ports = flow.ports.meet(ports)
    if not wanted_sources or not wanted_ports:
        return found
    for atom in sorted(atoms):
        offers = [
            f for f in against if gate_ok(flow, f) and covers_atom(f.dests, atom, endpoint_zone)
        ]
        for piece in refine(wanted_ports, [f.ports for f in offers]):
            covering = union_all(f.sources for f in offers if f.ports.covers(piece))
            left = wanted_sources.minus(covering)
            if left:
                found.append(Gap(flow, atom, piece, left))
    return found


def merge_gaps(found: Iterable[Gap]) -> list[Gap]:
    """One gap per (rule, destination atom): ports and sources united."""
    merged: dict[tuple[int, str], Gap] = {}
    for gap in found:
        key = (gap.flow.index, gap.atom)
        if key in merged:
            old = merged[key]
            merged[key] = Gap(
                old.flow, old.atom, old.ports.union(gap.ports), old.sources.union(gap.sources)
            )
        else:
            merged[key] = gap
    return [merged[k] for k in sorted(merged)]
