"""Rules the policy implies, written out as ordinary rules.

The `time` section opens udp/123 from the served zones to the appliance and from the
appliance to the upstream endpoints (plus tcp/4460 for NTS key exchange). The `support_vpn`
section opens the WireGuard port to the concentrator (unless disabled) and, for the listed
staff only, the targets' services through the support gate (or without it, always-on).

Deriving them as plain rules, with names of their own, means the compiler, explain, plan and
the policy tests see them exactly like the rules people write, and every generated nftables
rule still cites the YAML line it comes from (the section's). The kill switch itself is not
an allow rule; the compiler adds it from `support_vpn` directly.
"""

from __future__ import annotations

from gateway.policy.addresses import parse_net
from gateway.policy.model import SELF, Endpoint, Policy, Rule, Service, SupportVpn
from gateway.policy.source import PathItem

TIME_SERVE = "time-serve"
TIME_UPSTREAM = "time-upstream"
NTP_SERVICE = "ntp-relay"
NTS_SERVICE = "ntp-relay-nts"
SUPPORT_TUNNEL = "support-tunnel"
SUPPORT_SERVICE = "support-wireguard"
SUPPORT_STAFF = "support-staff"

RulePath = tuple[PathItem, ...]


def access_rule_names(support: SupportVpn) -> list[tuple[str, int]]:
    """`support-<services>` per target (numbered if two would clash), with its index."""
    names: list[tuple[str, int]] = []
    for index, target in enumerate(support.targets):
        name = "support-" + "-".join(target.allow)
        if name in {n for n, _ in names} or len(name) > 40:
            name = f"support-access-{index + 1}"
        names.append((name, index))
    return names


# Where derived definitions come from in the YAML, for comments and locations.
DEFINITION_PATHS: dict[tuple[str, str], RulePath] = {
    ("services", NTP_SERVICE): ("time",),
    ("services", NTS_SERVICE): ("time", "nts"),
    ("services", SUPPORT_SERVICE): ("support_vpn", "port"),
    ("endpoints", SUPPORT_STAFF): ("support_vpn", "staff"),
}


def derive(policy: Policy) -> tuple[Policy, tuple[RulePath, ...]]:
    """The policy with its implied services and rules added, and each rule's YAML path."""
    paths: list[RulePath] = [("rules", index) for index in range(len(policy.rules))]
    services = dict(policy.services)
    endpoints = dict(policy.endpoints)
    rules = list(policy.rules)
    if policy.time is not None:
        _derive_time(policy, services, rules, paths)
    if policy.support_vpn is not None:
        _derive_support(policy, policy.support_vpn, services, endpoints, rules, paths)
    if len(rules) == len(policy.rules):
        return policy, tuple(paths)
    update = {"services": services, "endpoints": endpoints, "rules": rules}
    return policy.model_copy(update=update), tuple(paths)


def _rule(name: str, origin: object, to: object, allow: list[str], **extra: object) -> Rule:
    return Rule.model_validate({"name": name, "from": origin, "to": to, "allow": allow, **extra})


def _derive_time(
    policy: Policy, services: dict[str, Service], rules: list[Rule], paths: list[RulePath]
) -> None:
    time = policy.time
    assert time is not None
    services[NTP_SERVICE] = Service(description="NTP (the relay)", udp=[123])
    upstream_allow = [NTP_SERVICE]
    if time.nts:
        services[NTS_SERVICE] = Service(description="NTS key exchange", tcp=[4460])
        upstream_allow.append(NTS_SERVICE)
    rules.append(
        _rule(
            TIME_SERVE,
            list(time.serve),
            SELF,
            [NTP_SERVICE],
            comment="time.serve: the NTP relay answers these zones",
        )
    )
    rules.append(
        _rule(
            TIME_UPSTREAM,
            SELF,
            list(time.upstreams),
            upstream_allow,
            comment="time.upstreams: the relay syncs from these only",
        )
    )
    paths += [("time", "serve"), ("time", "upstreams")]


def _derive_support(
    policy: Policy,
    support: SupportVpn,
    services: dict[str, Service],
    endpoints: dict[str, Endpoint],
    rules: list[Rule],
    paths: list[RulePath],
) -> None:
    if support.mode == "disabled":
        return
    services[SUPPORT_SERVICE] = Service(
        description="WireGuard to the concentrator", udp=[support.port]
    )
    rules.append(
        _rule(
            SUPPORT_TUNNEL,
            SELF,
            support.concentrator,
            [SUPPORT_SERVICE],
            comment="support_vpn: the tunnel to the vendor's concentrator",
        )
    )
    paths.append(("support_vpn", "concentrator"))
    if not support.staff:
        return  # nobody is eligible: no access rule at all
    endpoints[SUPPORT_STAFF] = Endpoint(
        description="support_vpn.staff",
        zone=staff_zone(policy, support),
        addresses=[member.address for member in support.staff],
    )
    gate = {"gate": support.gate, "log": True} if support.mode == "gated" else {"log": True}
    for name, index in access_rule_names(support):
        target = support.targets[index]
        rules.append(
            _rule(
                name,
                SUPPORT_STAFF,
                list(target.to),
                list(target.allow),
                comment="support_vpn.targets",
                **gate,
            )
        )
        paths.append(("support_vpn", "targets", index))


def staff_zone(policy: Policy, support: SupportVpn) -> str | None:
    """The zone on the tunnel interface that holds the staff addresses."""
    if not support.staff:
        return None
    first = parse_net(support.staff[0].address)
    catch_all = None
    for name, zone in policy.zones.items():
        if support.interface not in zone.interfaces:
            continue
        for network in zone.networks:
            net = parse_net(network)
            if net.version == first.version and net.first <= first.first <= net.last:
                return name
        if not zone.networks:
            catch_all = name
    return catch_all
