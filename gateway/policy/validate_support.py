"""Checks for the `support_vpn` section: references, staff eligibility data, targets.

Access through the tunnel is only as tight as these: a staff address outside the inner
networks could never arrive; a target service with ICMP could not be granted per port; a
staff member in no zone on the tunnel interface would be matched nowhere.
"""

from __future__ import annotations

from collections.abc import Iterator

from gateway.policy.addresses import Net, parse_net
from gateway.policy.errors import Problem, undefined
from gateway.policy.load import Parts
from gateway.policy.model import SELF, SupportVpn
from gateway.policy.source import Source

SECTION = "support_vpn"


def check_support(parts: Parts, source: Source) -> Iterator[Problem]:
    support = parts.support_vpn
    if support is None:
        return
    yield from _references(parts, support, source)
    yield from _targets(parts, support, source)
    yield from _staff(parts, support, source)
    if support.mode == "always-on":
        yield source.warning(
            (SECTION, "mode"),
            "mode always-on: listed staff reach the targets at any time, without a gate",
        )


def _references(parts: Parts, support: SupportVpn, source: Source) -> Iterator[Problem]:
    for key, section, kind in (
        ("interface", "interfaces", "interface role"),
        ("concentrator", "endpoints", "endpoint"),
        ("gate", "gates", "gate"),
    ):
        name = getattr(support, key)
        if name not in parts.names(section):
            yield source.problem((SECTION, key), undefined(kind, name, parts.names(section)))
    inner = [parse_net(n) for n in support.inner_networks]
    own = parse_net(support.address.partition("/")[0])
    if not _inside_any(own, inner):
        yield source.problem(
            (SECTION, "address"),
            f"{support.address} is outside inner_networks ({', '.join(support.inner_networks)})",
        )


def _targets(parts: Parts, support: SupportVpn, source: Source) -> Iterator[Problem]:
    zones, services = parts.names("zones"), parts.names("services")
    for index, target in enumerate(support.targets):
        for position, name in enumerate(target.to):
            if name != SELF and name not in zones:
                path = (SECTION, "targets", index, "to", position)
                yield source.problem(path, undefined("zone", name, zones | {SELF}))
        for position, name in enumerate(target.allow):
            path = (SECTION, "targets", index, "allow", position)
            service = parts.services.get(name)
            if name not in services:
                yield source.problem(path, undefined("service", name, services))
            elif service is not None and (service.icmp or service.icmpv6):
                yield source.problem(
                    path, f"service '{name}' has ICMP types: a gate grants tcp/udp ports only"
                )


def _staff(parts: Parts, support: SupportVpn, source: Source) -> Iterator[Problem]:
    inner = [parse_net(n) for n in support.inner_networks]
    zone_nets = [
        parse_net(network)
        for zone in parts.zones.values()
        if support.interface in zone.interfaces
        for network in zone.networks
    ]
    catch_all = any(
        support.interface in z.interfaces and not z.networks for z in parts.zones.values()
    )
    names: dict[str, int] = {}
    addresses: dict[str, int] = {}
    for index, member in enumerate(support.staff):
        path = (SECTION, "staff", index)
        if member.name in names:
            yield source.problem(
                (*path, "name"),
                f"staff name '{member.name}' is listed twice (also at staff[{names[member.name]}])",
            )
        if member.address in addresses:
            yield source.problem(
                (*path, "address"),
                f"{member.address} is already staff[{addresses[member.address]}]"
                "'s address: each person needs their own",
            )
        names.setdefault(member.name, index)
        addresses.setdefault(member.address, index)
        address = parse_net(member.address)
        if not _inside_any(address, inner):
            yield source.problem(
                (*path, "address"),
                f"{member.address} is outside inner_networks: it can never "
                "arrive through the tunnel",
            )
        elif not catch_all and not _inside_any(address, zone_nets):
            yield source.problem(
                (*path, "address"),
                f"{member.address} is in no zone on interface role '{support.interface}'",
            )


def _inside_any(net: Net, outer: list[Net]) -> bool:
    return any(
        o.version == net.version and o.first <= net.first and net.last <= o.last for o in outer
    )
