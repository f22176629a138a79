"""Checks that need the whole policy: references, overlaps, rules that can never match.

Each check reads the shape-valid parts of the policy and returns located problems; none
raises. Names that the file declares but whose bodies are broken count as defined, so one
mistake is reported once, where it is.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

from gateway.policy.addresses import Net, Tagged, overlaps, parse_net
from gateway.policy.derive import (
    NTP_SERVICE,
    NTS_SERVICE,
    SUPPORT_SERVICE,
    SUPPORT_STAFF,
    SUPPORT_TUNNEL,
    TIME_SERVE,
    TIME_UPSTREAM,
    access_rule_names,
)
from gateway.policy.detection import check_detection
from gateway.policy.errors import Problem, undefined
from gateway.policy.load import Parts
from gateway.policy.model import ANY, RESERVED_NAMES, SELF, Endpoint, Rule, Zone
from gateway.policy.source import Source
from gateway.policy.validate_support import check_support

BOTH = frozenset({4, 6})
Families = dict[str, frozenset[int]]  # zone or endpoint -> the IP versions it can have


def check_semantics(parts: Parts, source: Source) -> list[Problem]:
    """Every cross-reference and consistency problem in the policy."""
    return [
        *_check_interfaces(parts, source),
        *_check_zones(parts, source),
        *_check_endpoints(parts, source),
        *_check_services(parts, source),
        *_check_rules(parts, source),
        *_check_site(parts, source),
        *_check_reserved(parts, source),
        *_check_time(parts, source),
        *check_support(parts, source),
        *check_detection(parts, source),
    ]


def _check_interfaces(parts: Parts, source: Source) -> Iterator[Problem]:
    owner: dict[str, str] = {}
    for role, kernel in parts.interfaces.items():
        if kernel in owner:
            line = source.value_at(("interfaces", owner[kernel])).line
            yield source.problem(
                ("interfaces", role),
                f"interface '{kernel}' is already role '{owner[kernel]}' (line {line}); "
                "give each role its own interface",
            )
        owner.setdefault(kernel, role)
    used = {i for zone in parts.zones.values() for i in zone.interfaces}
    for role in parts.interfaces:
        if role not in used and "zones" in parts.declared:
            yield source.warning(
                ("interfaces", role),
                f"interface role '{role}' is in no zone: everything on it is dropped",
                at_key=True,
            )


def _check_zones(parts: Parts, source: Source) -> Iterator[Problem]:
    roles = parts.names("interfaces")
    catch_all: dict[str, str] = {}
    for name, zone in parts.zones.items():
        if name in RESERVED_NAMES:
            yield source.problem(
                ("zones", name), f"'{name}' is reserved; pick another zone name", at_key=True
            )
        if name in parts.names("endpoints"):
            yield source.problem(
                ("endpoints", name), f"'{name}' is both a zone and an endpoint", at_key=True
            )
        if not zone.interfaces and not zone.networks:
            yield source.problem(
                ("zones", name),
                f"zone '{name}' has neither interfaces nor networks: it matches nothing",
                at_key=True,
            )
        for index, role in enumerate(zone.interfaces):
            if role not in roles:
                yield source.problem(
                    ("zones", name, "interfaces", index), undefined("interface role", role, roles)
                )
            elif not zone.networks and role in catch_all:
                yield source.problem(
                    ("zones", name, "interfaces", index),
                    f"interface '{role}' already catches everything else as zone "
                    f"'{catch_all[role]}'; give one of the two zones networks",
                )
            elif not zone.networks:
                catch_all[role] = name
    yield from _check_zone_overlaps(parts.zones, source)


def _check_zone_overlaps(zones: dict[str, Zone], source: Source) -> Iterator[Problem]:
    """Two zones must not both claim a packet: no shared networks on a shared interface."""
    tagged: list[Tagged[tuple[str, int]]] = [
        Tagged(parse_net(network), (name, index))
        for name, zone in zones.items()
        for index, network in enumerate(zone.networks)
    ]
    domains: dict[str, list[Tagged[tuple[str, int]]]] = defaultdict(list)
    anywhere = [t for t in tagged if not zones[t.tag[0]].interfaces]
    for item in tagged:
        for role in zones[item.tag[0]].interfaces:
            domains[role].append(item)
    groups = [group + anywhere for group in domains.values()] or [anywhere]
    reported: set[tuple[str, int]] = set()
    for group in groups:
        for earlier, later in overlaps(group):
            if later.tag not in reported:
                reported.add(later.tag)
                yield _overlap_problem(earlier, later, source, competing=True)
    for earlier, later in overlaps(tagged):  # the same addresses behind different interfaces
        if later.tag not in reported and earlier.tag[0] != later.tag[0]:
            reported.add(later.tag)
            yield _overlap_problem(earlier, later, source, competing=False)


def _overlap_problem(
    earlier: Tagged[tuple[str, int]],
    later: Tagged[tuple[str, int]],
    source: Source,
    *,
    competing: bool,
) -> Problem:
    (zone_a, index_a), (zone_b, index_b) = earlier.tag, later.tag
    line = source.value_at(("zones", zone_a, "networks", index_a)).line
    path = ("zones", zone_b, "networks", index_b)
    if zone_a == zone_b:
        return source.warning(
            path,
            f"{later.net} overlaps {earlier.net} (line {line}) in the same zone; "
            "one of them is redundant",
        )
    if competing:
        return source.problem(
            path,
            f"{later.net} overlaps {earlier.net} of zone '{zone_a}' (line {line}); "
            "a packet could belong to both zones",
        )
    return source.warning(
        path,
        f"{later.net} overlaps {earlier.net} of zone '{zone_a}' (line {line}) behind another "
        "interface: the same addresses in two places",
    )


def _zone_of_address(zones: dict[str, Zone], net: Net, interfaces: list[str]) -> str | None:
    """The zone with networks that would claim `net` on any of `interfaces`."""
    for name, zone in zones.items():
        shares = not zone.interfaces or set(zone.interfaces) & set(interfaces)
        if shares and any(_inside(net, parse_net(n)) for n in zone.networks):
            return name
    return None


def _inside(inner: Net, outer: Net) -> bool:
    return inner.version == outer.version and outer.first <= inner.first <= inner.last <= outer.last


def _check_endpoints(parts: Parts, source: Source) -> Iterator[Problem]:
    zones = parts.names("zones")
    for name, endpoint in parts.endpoints.items():
        if name in RESERVED_NAMES:
            yield source.problem(
                ("endpoints", name), f"'{name}' is reserved; pick another name", at_key=True
            )
        if not endpoint.addresses and not endpoint.fqdn:
            yield source.problem(
                ("endpoints", name), f"endpoint '{name}' needs addresses or fqdn", at_key=True
            )
        if endpoint.zone is not None and endpoint.zone not in zones:
            yield source.problem(
                ("endpoints", name, "zone"), undefined("zone", endpoint.zone, zones)
            )
        zone = parts.zones.get(endpoint.zone or "")
        if zone is not None:
            yield from _check_endpoint_in_zone(name, endpoint, zone, parts.zones, source)


def _check_endpoint_in_zone(
    name: str, endpoint: Endpoint, zone: Zone, zones: dict[str, Zone], source: Source
) -> Iterator[Problem]:
    own = [parse_net(n) for n in zone.networks]
    for index, address in enumerate(endpoint.addresses):
        net = parse_net(address)
        path = ("endpoints", name, "addresses", index)
        if own and not any(_inside(net, o) for o in own):
            yield source.problem(
                path,
                f"{address} is outside zone '{endpoint.zone}' "
                f"({', '.join(zone.networks)}): this endpoint can never "
                "match there",
            )
        elif not own:
            other = _zone_of_address(zones, net, zone.interfaces)
            if other is not None and other != endpoint.zone:
                yield source.problem(
                    path,
                    f"{address} lies in zone '{other}', so traffic to it "
                    f"is never in zone '{endpoint.zone}'",
                )


def _check_services(parts: Parts, source: Source) -> Iterator[Problem]:
    for name, service in parts.services.items():
        if not (service.tcp or service.udp or service.icmp or service.icmpv6):
            yield source.problem(
                ("services", name),
                f"service '{name}' lists no tcp, udp, icmp or icmpv6 entries",
                at_key=True,
            )
        for proto in ("tcp", "udp"):
            ports = [_port_range(p) for p in getattr(service, proto)]
            tagged = [
                Tagged(Net(4, low, high, 0), index) for index, (low, high) in enumerate(ports)
            ]
            for earlier, later in overlaps(tagged):
                yield source.warning(
                    ("services", name, proto, later.tag),
                    f"{proto} {_port_text(ports[later.tag])} overlaps "
                    f"{_port_text(ports[earlier.tag])} in the same service",
                )


def _port_range(port: int | str) -> tuple[int, int]:
    if isinstance(port, int):
        return port, port
    low, high = port.split("-")
    return int(low), int(high)


def _port_text(span: tuple[int, int]) -> str:
    return str(span[0]) if span[0] == span[1] else f"{span[0]}-{span[1]}"


def _check_rules(parts: Parts, source: Source) -> Iterator[Problem]:
    seen: dict[str, int] = {}
    families = {p: _families(p, parts) for p in [*parts.zones, *parts.endpoints]}
    for index, rule in parts.rules:
        if rule.name in seen:
            line = source.value_at(("rules", seen[rule.name], "name")).line
            yield source.problem(
                ("rules", index, "name"), f"rule name '{rule.name}' is already used on line {line}"
            )
        seen.setdefault(rule.name, index)
        yield from _check_rule_references(index, rule, parts, source)
        yield from _check_rule_can_match(index, rule, parts, families, source)


def _check_rule_references(
    index: int, rule: Rule, parts: Parts, source: Source
) -> Iterator[Problem]:
    peers = parts.names("zones") | parts.names("endpoints") | RESERVED_NAMES
    for side, names in (("from", rule.from_), ("to", rule.to)):
        for position, name in enumerate(names):
            if name not in peers:
                yield source.problem(
                    ("rules", index, side, position), undefined("zone or endpoint", name, peers)
                )
    services = parts.names("services")
    listed: set[str] = set()
    for position, name in enumerate(rule.allow):
        path = ("rules", index, "allow", position)
        if name not in services:
            yield source.problem(path, undefined("service", name, services))
        elif name in listed:
            yield source.warning(path, f"service '{name}' is listed twice")
        listed.add(name)
    gates = parts.names("gates")
    if rule.gate is not None and rule.gate not in gates:
        yield source.problem(("rules", index, "gate"), undefined("gate", rule.gate, gates))
    if rule.gate is not None:
        for position, name in enumerate(rule.allow):
            service = parts.services.get(name)
            if service is not None and (service.icmp or service.icmpv6):
                yield source.problem(
                    ("rules", index, "allow", position),
                    f"service '{name}' has ICMP types, but a gate grants tcp/udp ports only",
                )


def _check_rule_can_match(
    index: int, rule: Rule, parts: Parts, families: Families, source: Source
) -> Iterator[Problem]:
    service_families = _service_families(rule, parts)
    for target, destination in enumerate(rule.to):
        path = ("rules", index, "to", target)
        for origin in rule.from_:
            reason = _never_matches(origin, destination, parts, families)
            common = families.get(origin, BOTH) & families.get(destination, BOTH)
            services_only = service_families if service_families is not None else common
            if reason is None and common and not common & services_only:
                reason = (
                    f"its services are {_family_text(services_only)} only, "
                    f"but '{origin}' and '{destination}' are {_family_text(common)}"
                )
            if reason is not None:
                yield source.problem(
                    path,
                    f"rule '{rule.name}' can never match from "
                    f"'{origin}' to '{destination}': {reason}",
                )


def _never_matches(origin: str, destination: str, parts: Parts, families: Families) -> str | None:
    if origin == SELF and destination == SELF:
        return "the appliance's own loopback traffic is always allowed and never filtered"
    if origin == destination and origin in parts.endpoints:
        return "an endpoint does not talk to itself through the appliance"
    zone_a, zone_b = _zone_name(origin, parts), _zone_name(destination, parts)
    if zone_a is not None and zone_a == zone_b:
        zone = parts.zones[zone_a]
        if len(zone.interfaces) == 1:
            return (
                f"traffic within zone '{zone_a}' stays on interface role "
                f"'{zone.interfaces[0]}' and never passes through the appliance"
            )
    mine, theirs = families.get(origin, BOTH), families.get(destination, BOTH)
    if not mine & theirs:
        return (
            f"'{origin}' is {_family_text(mine)} only and "
            f"'{destination}' is {_family_text(theirs)} only"
        )
    return None


def _zone_name(peer: str, parts: Parts) -> str | None:
    if peer in parts.zones:
        return peer
    endpoint = parts.endpoints.get(peer)
    return endpoint.zone if endpoint is not None and endpoint.zone in parts.zones else None


def _families(peer: str, parts: Parts) -> frozenset[int]:
    """IP versions a zone or endpoint can have (both when unknown or unrestricted)."""
    if peer in parts.zones and parts.zones[peer].networks:
        return frozenset(parse_net(n).version for n in parts.zones[peer].networks)
    endpoint = parts.endpoints.get(peer)
    if endpoint is not None and endpoint.addresses and not endpoint.fqdn:
        return frozenset(parse_net(a).version for a in endpoint.addresses)
    return BOTH


def _service_families(rule: Rule, parts: Parts) -> frozenset[int] | None:
    """IP versions the rule's services can carry; None when any has ports (both versions)."""
    families: set[int] = set()
    for name in rule.allow:
        service = parts.services.get(name)
        if service is None or service.tcp or service.udp:
            return None
        families |= {4} if service.icmp else set()
        families |= {6} if service.icmpv6 else set()
    return frozenset(families)


def _family_text(families: frozenset[int]) -> str:
    return " and ".join(f"IPv{v}" for v in sorted(families))


def _check_site(parts: Parts, source: Source) -> Iterator[Problem]:
    resolver = parts.site.resolver if parts.site else None
    if resolver is not None:
        endpoint = parts.endpoints.get(resolver)
        if resolver not in parts.names("endpoints"):
            yield source.problem(
                ("site", "resolver"),
                undefined("endpoint", resolver, parts.names("endpoints")),
            )
        elif endpoint is not None and not endpoint.addresses:
            yield source.problem(
                ("site", "resolver"),
                f"resolver endpoint '{resolver}' needs fixed addresses: it "
                "cannot resolve its own name",
            )
    if resolver is None and parts.site is not None:
        for name, endpoint in parts.endpoints.items():
            if endpoint.fqdn:
                yield source.problem(
                    ("endpoints", name, "fqdn"),
                    f"endpoint '{name}' has names to resolve but site.resolver "
                    "names no resolver endpoint",
                )
    _ = ANY  # 'any' is a valid peer everywhere; it needs no check of its own


def _check_reserved(parts: Parts, source: Source) -> Iterator[Problem]:
    """Names the time and support_vpn sections take, when present, for what they imply."""
    owner: dict[tuple[str, str], str] = {}  # (section, name) -> the section that takes it
    if parts.time is not None:
        for name in (TIME_SERVE, TIME_UPSTREAM):
            owner[("rules", name)] = "time"
        for name in (NTP_SERVICE, NTS_SERVICE):
            owner[("services", name)] = "time"
    if parts.support_vpn is not None:
        for name in (SUPPORT_TUNNEL, *(n for n, _ in access_rule_names(parts.support_vpn))):
            owner[("rules", name)] = "support_vpn"
        owner[("services", SUPPORT_SERVICE)] = "support_vpn"
        owner[("endpoints", SUPPORT_STAFF)] = "support_vpn"
    for index, rule in parts.rules:
        if ("rules", rule.name) in owner:
            section = owner[("rules", rule.name)]
            yield source.problem(
                ("rules", index, "name"),
                f"rule name '{rule.name}' is reserved: the {section} section makes that rule",
            )
    for kind in ("services", "endpoints"):
        for name in parts.names(kind):
            if (kind, name) in owner:
                section = owner[(kind, name)]
                yield source.problem(
                    (kind, name),
                    f"{kind[:-1]} name '{name}' is reserved for the {section} section",
                    at_key=True,
                )


def _check_time(parts: Parts, source: Source) -> Iterator[Problem]:
    """The NTP relay's references and thresholds."""
    time = parts.time
    if time is None:
        return
    endpoints, zones = parts.names("endpoints"), parts.names("zones")
    for index, name in enumerate(time.upstreams):
        if name not in endpoints:
            yield source.problem(
                ("time", "upstreams", index), undefined("endpoint", name, endpoints)
            )
    for index, name in enumerate(time.serve):
        if name not in zones:
            yield source.problem(("time", "serve", index), undefined("zone", name, zones))
    if time.offset_warn >= time.offset_high:
        yield source.problem(
            ("time", "offset_warn"),
            f"offset_warn ({time.offset_warn:g} s) must be below offset_high "
            f"({time.offset_high:g} s)",
        )
