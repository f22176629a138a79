"""What a gate may grant: the requester's target specs resolved against `support_vpn.targets`.

A spec is `ADDRESS[:SERVICE]` or `self[:SERVICE]` (`[IPV6]:SERVICE` for IPv6). `self` is the
appliance's own address inside the tunnel (`support_vpn.address`), the only appliance address
a staff member can reach (strong host model). An address is a target when a `targets` entry
names `self` and it is the appliance's tunnel address, or names a zone the address lies in.
The service must be one that entry allows; without one, the single allowed service is taken.

Each service port becomes one grant element (`staff . target . proto . port`): the gate set
holds single ports, so a service's port range is expanded, up to `MAX_RANGE` ports.

Pure: reads only the policy it is given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

from gateway.policy.addresses import Net, contains, parse_net
from gateway.policy.errors import did_you_mean, quoted_list
from gateway.policy.model import SELF, Policy, SupportVpn

MAX_RANGE = 64
_BRACKETED = re.compile(r"^\[(?P<addr>[^\]]+)\](?::(?P<svc>.*))?$")

Kind = Literal["invalid", "missing", "refused"]


class GateError(Exception):
    """A gate operation that cannot be done; `kind` says why, for exit codes and HTTP status.

    * invalid: bad input (a malformed duration, an unknown staff member or service): exit 2;
    * missing: no such request: exit 2 (HTTP 404);
    * refused: the rules say no (eligibility, approvals, state, expiry): exit 1 (HTTP 409).
    """

    def __init__(self, message: str, kind: Kind = "refused") -> None:
        super().__init__(message)
        self.message = message
        self.kind: Kind = kind


class Target(BaseModel):
    """One granted port on one destination; `service` is the policy's name for it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    address: str
    service: str
    proto: Literal["tcp", "udp"]
    port: int

    def label(self) -> str:
        return f"{self.address} {self.proto}/{self.port} ({self.service})"


@dataclass(frozen=True)
class Spec:
    """A parsed target spec: the address text (or 'self') and the service, if named."""

    address: str
    service: str | None


def parse_spec(text: str) -> Spec:
    """'198.18.10.11:ssh', 'self', '[fd00::1]:ssh', 'fd00::1' -> Spec (not yet checked)."""
    raw = text.strip()
    bracketed = _BRACKETED.match(raw)
    if bracketed:
        return Spec(bracketed["addr"], bracketed["svc"] or None)
    if raw.count(":") == 1:
        address, _, service = raw.partition(":")
        return Spec(address, service or None)
    return Spec(raw, None)


def appliance_address(support: SupportVpn) -> str:
    """The appliance's own address inside the tunnel: what `self` means to a gate."""
    return str(parse_net(support.address.partition("/")[0]))


def resolve(policy: Policy, support: SupportVpn, text: str) -> list[Target]:
    """A requester's target spec -> the grants it stands for; GateError saying why not."""
    spec = parse_spec(text)
    address = _address(support, spec, text)
    allowed = _allowed_services(policy, support, address)
    if not allowed:
        raise GateError(f"{_shown(support, address)} is not a support target ({_scope(support)})")
    service = _service(policy, spec, address, allowed, support)
    return _expand(policy, address, service)


def _address(support: SupportVpn, spec: Spec, text: str) -> str:
    if spec.address == SELF:
        return appliance_address(support)
    try:
        net = parse_net(spec.address)
    except ValueError:
        raise GateError(
            f"'{text}' is not a target: expected ADDRESS[:SERVICE] or self[:SERVICE]",
            "invalid",
        ) from None
    if not net.is_host:
        raise GateError(f"'{spec.address}' is a network: a gate grants single addresses", "invalid")
    if net.version == 6 and not support.ipv6:
        raise GateError(
            f"{spec.address}: support_vpn.ipv6 is off, so IPv6 targets cannot be granted"
        )
    return str(net)


def _allowed_services(policy: Policy, support: SupportVpn, address: str) -> list[str]:
    """Services some targets entry allows on this address, in policy order."""
    found: list[str] = []
    own = appliance_address(support)
    for entry in support.targets:
        covered = any(
            (name == SELF and address == own) or (name != SELF and in_zone(policy, name, address))
            for name in entry.to
        )
        if covered:
            found += [s for s in entry.allow if s not in found]
    return found


def in_zone(policy: Policy, zone_name: str, address: str) -> bool:
    """Whether the address is classified into the zone: in its networks, or, for a zone
    without networks (an interface's catch-all), in no networked zone on its interfaces."""
    zone = policy.zones.get(zone_name)
    if zone is None:
        return False
    net = parse_net(address)
    if zone.networks:
        return contains((parse_net(n) for n in zone.networks), net)
    others: list[Net] = [
        parse_net(n)
        for other in policy.zones.values()
        if set(other.interfaces) & set(zone.interfaces)
        for n in other.networks
    ]
    return bool(zone.interfaces) and not contains(others, net)


def _service(
    policy: Policy, spec: Spec, address: str, allowed: list[str], support: SupportVpn
) -> str:
    shown = _shown(support, address)
    if spec.service is None:
        if len(allowed) == 1:
            return allowed[0]
        example = SELF if address == appliance_address(support) else address
        raise GateError(
            f"name a service for {shown}: one of {quoted_list(allowed)}, like "
            f"{example}:{allowed[0]}",
            "invalid",
        )
    if spec.service not in policy.services:
        hint = did_you_mean(spec.service, allowed)
        raise GateError(f"unknown service '{spec.service}'{hint}", "invalid")
    if spec.service not in allowed:
        raise GateError(
            f"the gate does not grant '{spec.service}' on {shown} (it grants "
            f"{quoted_list(allowed)})"
        )
    return spec.service


def _expand(policy: Policy, address: str, name: str) -> list[Target]:
    service = policy.services[name]
    targets: list[Target] = []
    for proto in ("tcp", "udp"):
        for port in getattr(service, proto):
            low, _, high = str(port).partition("-")
            first, last = int(low), int(high or low)
            if last - first + 1 > MAX_RANGE:
                raise GateError(
                    f"service '{name}' has the port range {port} ({last - first + 1} ports): a "
                    f"gate grants single ports, at most {MAX_RANGE} per range"
                )
            targets += [
                Target(address=address, service=name, proto=proto, port=p)
                for p in range(first, last + 1)
            ]
    return targets


def _shown(support: SupportVpn, address: str) -> str:
    return f"self ({address})" if address == appliance_address(support) else address


def _scope(support: SupportVpn) -> str:
    places = sorted({name for entry in support.targets for name in entry.to})
    return "the gate grants access to " + ", ".join(
        f"self ({appliance_address(support)})" if p == SELF else f"zone '{p}'" for p in places
    )
