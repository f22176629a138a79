"""The policy model: what a site's policy YAML means, as pydantic types.

The model is the single source of truth for the policy's shape: the loader validates YAML
against it, `plantgate policy schema` turns it into the JSON Schema editors use, and the
compiler reads it. Shape checks live here (types, ranges, syntax of addresses and ports);
checks that need the whole policy (references, overlaps, rules that can never match) live in
`validate.py`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)

from gateway.policy.addresses import parse_net
from gateway.policy.detection import Detection
from gateway.policy.errors import did_you_mean
from gateway.policy.source import describe_kind

SELF = "self"  # the appliance itself, in a rule's from/to
ZoneKind = Literal["hubs", "plant", "internet", "support", "other"]
ANY = "any"  # any zone, in a rule's from/to
RESERVED_NAMES = frozenset({SELF, ANY})

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,39}$"
Name = Annotated[
    str,
    StringConstraints(pattern=NAME_PATTERN),
    Field(description="Lowercase letters, digits and '-', starting with a letter; 40 at most."),
]

IFNAME_PATTERN = r"^[A-Za-z0-9_.+:-]{1,15}$"
InterfaceName = Annotated[
    str,
    StringConstraints(pattern=IFNAME_PATTERN),
    Field(description="A kernel interface name (15 characters at most)."),
]

RATE_PATTERN = r"^[1-9][0-9]{0,8}/(second|minute|hour|day)$"
Rate = Annotated[
    str,
    StringConstraints(pattern=RATE_PATTERN),
    Field(description="Packets per unit of time, e.g. '10/second' or '600/minute'."),
]

FQDN_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")

# ICMP type names nftables knows (icmp type / icmpv6 type); anything else is a typo.
ICMP_TYPES = frozenset(
    {
        "echo-reply",
        "destination-unreachable",
        "source-quench",
        "redirect",
        "echo-request",
        "router-advertisement",
        "router-solicitation",
        "time-exceeded",
        "parameter-problem",
        "timestamp-request",
        "timestamp-reply",
        "info-request",
        "info-reply",
        "address-mask-request",
        "address-mask-reply",
    }
)
ICMPV6_TYPES = frozenset(
    {
        "destination-unreachable",
        "packet-too-big",
        "time-exceeded",
        "parameter-problem",
        "echo-request",
        "echo-reply",
        "mld-listener-query",
        "mld-listener-report",
        "mld-listener-done",
        "nd-router-solicit",
        "nd-router-advert",
        "nd-neighbor-solicit",
        "nd-neighbor-advert",
        "nd-redirect",
        "router-renumbering",
        "ind-neighbor-solicit",
        "ind-neighbor-advert",
        "mld2-listener-report",
    }
)


def _check_network(text: str) -> str:
    """An address or a network in CIDR form, host bits clear; returned in canonical form."""
    return str(parse_net(text))


DURATION_PATTERN = r"^[1-9][0-9]{0,5}(s|m|h|d)$"
DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
WG_KEY_PATTERN = r"^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$"


def duration_seconds(text: str) -> int:
    """'90s', '15m', '4h', '2d' -> seconds (the text is already validated)."""
    return int(text[:-1]) * DURATION_SECONDS[text[-1]]


def _check_interface_address(text: str) -> str:
    """An address with its prefix length, like '198.18.200.2/24' (host bits expected)."""
    address, slash, prefix = text.partition("/")
    if not slash:
        raise ValueError(f"'{text}' needs a prefix length, like '{text}/24'")
    parse_net(address)
    bits = 128 if ":" in address else 32
    if not prefix.isdigit() or not 1 <= int(prefix) <= bits:
        raise ValueError(f"'{text}' has an invalid prefix length (1-{bits})")
    return f"{parse_net(address)}/{int(prefix)}"


def _check_host(text: str) -> str:
    net = parse_net(text)
    if net.first != net.last:
        raise ValueError(f"'{text}' is a network; give one address")
    return str(net)


def _check_fqdn(text: str) -> str:
    name = text.rstrip(".").lower()
    if "://" in text or "/" in text or ":" in text:
        raise ValueError(f"'{text}' is not a host name (write the name alone, no scheme or port)")
    labels = name.split(".")
    if len(name) > 253 or len(labels) < 2 or not all(FQDN_LABEL.match(lb) for lb in labels):
        raise ValueError(f"'{text}' is not a fully qualified domain name like 'ntp.example.org'")
    return name


def _check_port(value: Any) -> Any:
    """A port (int 1-65535) or a range 'LOW-HIGH', returned as int or normalised 'LOW-HIGH'."""
    if isinstance(value, int) and not isinstance(value, bool):
        if not 1 <= value <= 65535:
            raise ValueError(f"port {value} is out of range (1-65535)")
        return value
    if not isinstance(value, str):
        raise ValueError(f"expected a port number or a range, got {describe_kind(value)} {value!r}")
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", value)
    if not match:
        raise ValueError(f"'{value}' is not a port or a range like '8000-8100'")
    low, high = int(match[1]), int(match[2])
    for port in (low, high):
        if not 1 <= port <= 65535:
            raise ValueError(f"port {port} in range '{value}' is out of range (1-65535)")
    if low >= high:
        raise ValueError(f"range '{value}' is empty or reversed (write LOW-HIGH, LOW < HIGH)")
    return f"{low}-{high}"


def _as_list(value: Any) -> Any:
    """Let `from: hubs` stand for `from: [hubs]`."""
    return [value] if isinstance(value, str) else value


def _icmp_type(allowed: frozenset[str]) -> Any:
    def check(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"unknown ICMP type '{value}'{did_you_mean(value, allowed)}")
        return value

    return check


Network = Annotated[
    str,
    AfterValidator(_check_network),
    Field(description="An IPv4/IPv6 address or CIDR network, e.g. '10.20.0.0/16'."),
]
Duration = Annotated[
    str,
    StringConstraints(pattern=DURATION_PATTERN),
    Field(description="A duration: '90s', '15m', '4h' or '2d'."),
]
InterfaceAddress = Annotated[
    str,
    AfterValidator(_check_interface_address),
    Field(description="An address with its prefix length, e.g. '198.18.200.2/24'."),
]
HostAddress = Annotated[
    str, AfterValidator(_check_host), Field(description="One IPv4 or IPv6 address.")
]
Fqdn = Annotated[
    str,
    AfterValidator(_check_fqdn),
    Field(description="A fully qualified domain name, resolved by the appliance (TTL honoured)."),
]
Port = Annotated[
    int | str,
    BeforeValidator(_check_port),
    WithJsonSchema(
        {
            "oneOf": [
                {"type": "integer", "minimum": 1, "maximum": 65535},
                {"type": "string", "pattern": r"^\d{1,5}-\d{1,5}$"},
            ],
            "description": "A port (1-65535) or a range 'LOW-HIGH'.",
        }
    ),
]
NameList = Annotated[
    list[Name],
    BeforeValidator(_as_list),
    Field(min_length=1, description="One name or a list of names."),
]


class _Strict(BaseModel):
    """Unknown keys are errors, values are not coerced ('443' is not 443), models are frozen."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)


class Site(_Strict):
    """Who this policy is for."""

    name: Name
    description: str = ""
    resolver: Name | None = Field(
        default=None,
        description="Endpoint (with addresses) the appliance asks to resolve FQDN endpoints.",
    )


class Zone(_Strict):
    """A part of the network: the interfaces it is behind and/or the networks it holds.

    A packet belongs to the zone whose networks contain its address on that interface;
    a zone with interfaces but no networks catches the rest of its interface.
    """

    description: str = ""
    kind: ZoneKind = Field(
        default="other",
        description="What the zone is, for risk checks in `policy plan`: hubs, plant, "
        "internet, support or other.",
    )
    interfaces: list[Name] = Field(default_factory=list, description="Interface roles.")
    networks: list[Network] = Field(default_factory=list)


class Endpoint(_Strict):
    """A named peer: fixed addresses and/or names that the appliance resolves."""

    description: str = ""
    zone: Name | None = Field(
        default=None, description="Zone the endpoint is reached through (recommended)."
    )
    addresses: list[Network] = Field(default_factory=list)
    fqdn: list[Fqdn] = Field(default_factory=list)


class Service(_Strict):
    """Ports and ICMP types that a rule can allow."""

    description: str = ""
    tcp: list[Port] = Field(default_factory=list)
    udp: list[Port] = Field(default_factory=list)
    icmp: list[Annotated[str, AfterValidator(_icmp_type(ICMP_TYPES))]] = Field(
        default_factory=list, description="ICMP (IPv4) type names, e.g. 'echo-request'."
    )
    icmpv6: list[Annotated[str, AfterValidator(_icmp_type(ICMPV6_TYPES))]] = Field(
        default_factory=list, description="ICMPv6 type names."
    )


class Gate(_Strict):
    """A switch the plant opens for approved, expiring access (the kernel enforces expiry)."""

    description: str = ""


class RateLimit(_Strict):
    """New connections a rule accepts per unit of time; the excess is dropped and logged."""

    rate: Rate
    burst: int | None = Field(default=None, ge=1, le=1_000_000)
    per_source: bool = Field(default=False, description="Count each source address separately.")


class Rule(_Strict):
    """One row of the port matrix: traffic `from` these `to` those, for these services."""

    name: Name
    from_: NameList = Field(alias="from", description="Zones, endpoints, 'self' or 'any'.")
    to: NameList = Field(description="Zones, endpoints, 'self' or 'any'.")
    allow: list[Name] = Field(min_length=1, description="Services this rule allows.")
    gate: Name | None = Field(
        default=None, description="Only while this gate is open for the source and destination."
    )
    log: bool = Field(default=False, description="Log each new accepted connection to NFLOG.")
    rate_limit: RateLimit | None = None
    comment: str = ""


class TimeService(_Strict):
    """The NTP relay: chrony serves time to `serve`, synced from `upstreams`.

    The compiler opens udp/123 from the served zones to the appliance (rule `time-serve`)
    and from the appliance to the upstream endpoints only (rule `time-upstream`).
    """

    upstreams: NameList = Field(description="Endpoints (names or addresses) to sync from.")
    serve: NameList = Field(default_factory=lambda: ["hubs"], description="Zones served time.")
    orphan_stratum: int = Field(
        default=10, ge=1, le=15, description="Stratum served while every upstream is lost."
    )
    offset_warn: float = Field(default=0.1, gt=0, le=3600, description="Seconds: warn above.")
    offset_high: float = Field(default=1.0, gt=0, le=86400, description="Seconds: alert above.")
    falseticker_bound: float = Field(
        default=0.5,
        gt=0,
        le=3600,
        description="Seconds an upstream may disagree with the others before it is flagged.",
    )
    nts: bool = Field(default=False, description="Authenticate upstreams with NTS (tcp/4460).")
    monitor_interval: float = Field(
        default=64, ge=5, le=3600, description="Seconds between monitor queries."
    )


class StaffMember(_Strict):
    """A vendor engineer who may be granted support access."""

    name: Name
    address: HostAddress = Field(description="Inner address the concentrator gives them.")
    us_person: bool = Field(description="Attested US person (ITAR): required to be granted.")
    max_window: Duration = Field(default="4h", description="Longest window they may get.")


class SupportTarget(_Strict):
    """What a gate may grant: these services on these destinations."""

    to: NameList = Field(description="Zones (usually hubs) and/or 'self'.")
    allow: list[Name] = Field(min_length=1, description="Services (tcp/udp only).")


def _default_targets() -> list[SupportTarget]:
    return [SupportTarget(to=[SELF, "hubs"], allow=["ssh"])]


class SupportVpn(_Strict):
    """The outbound support tunnel (WireGuard) and who may come through it, when.

    The compiler derives the tunnel and access rules from it and adds a kill switch to the
    table: staff addresses only on the tunnel, nothing forwarded into it, nothing for the
    inner networks leaves any other way, no IPv6 on it unless allowed.
    """

    mode: Literal["disabled", "gated", "always-on"] = Field(
        default="gated",
        description="disabled: no tunnel; gated: access only while a gate is open; "
        "always-on: listed staff reach the targets without a gate.",
    )
    interface: Name = Field(description="Interface role of the tunnel (e.g. support-tunnel).")
    address: InterfaceAddress = Field(description="The appliance's inner address and prefix.")
    concentrator: Name = Field(description="Endpoint of the vendor's concentrator.")
    port: int = Field(default=51820, ge=1, le=65535, description="The concentrator's UDP port.")
    public_key: str = Field(
        pattern=WG_KEY_PATTERN, description="The concentrator's WireGuard public key (base64)."
    )
    inner_networks: list[Network] = Field(
        min_length=1, description="Addresses inside the tunnel (the concentrator's and staff)."
    )
    keepalive: int = Field(default=25, ge=0, le=3600, description="Seconds; 0 = off.")
    ipv6: bool = Field(default=False, description="Allow IPv6 on the support path.")
    gate: Name = Field(default="support", description="The gate that grants access.")
    approvals_required: int = Field(default=1, ge=1, le=5)
    request_ttl: Duration = Field(default="8h", description="Pending requests expire after.")
    targets: list[SupportTarget] = Field(default_factory=_default_targets)
    staff: list[StaffMember] = Field(default_factory=list)


class Defaults(_Strict):
    """What happens to everything no rule allows."""

    input: Literal["drop", "reject"] = "drop"
    forward: Literal["drop", "reject"] = "drop"
    output: Literal["drop", "reject"] = "drop"
    log_drops: bool = Field(
        default=True, description="Send dropped packets (rate-limited) to NFLOG for the watcher."
    )
    log_group: int = Field(default=1, ge=0, le=65535, description="NFLOG group for drops.")
    log_rate: Rate = Field(
        default="10/second",
        description="Drops logged beyond the first of each flow (ICMP, repeats after the "
        "first tier is spent).",
    )
    log_burst: int = Field(default=20, ge=1, le=100_000)
    log_first_rate: Rate = Field(
        default="1000/second",
        description="First drops of distinct TCP/UDP (source, destination, port) tuples "
        "logged: each tuple once a minute, so the watcher counts scans exactly.",
    )
    log_snaplen: int = Field(default=128, ge=0, le=65535, description="Bytes of packet logged.")
    watch_logging: bool = Field(
        default=True,
        description="Send the traffic watcher samples: new accepted connections, DNS and NTP "
        "packets, ARP on the hub segment (to NFLOG group watch_group, rate-limited).",
    )
    watch_group: int = Field(default=2, ge=0, le=65535, description="NFLOG group for samples.")
    watch_sample_rate: Rate = Field(default="50/second", description="New connections logged.")
    watch_dns_ntp_rate: Rate = Field(default="200/second", description="DNS/NTP packets logged.")
    watch_snaplen: int = Field(
        default=512, ge=64, le=65535, description="Bytes of DNS/NTP packets logged."
    )
    strict_destination: bool = Field(
        default=True,
        description="Accept traffic for the appliance only at an address of the interface it "
        "arrives on (strong host model): hubs cannot reach the plant leg's address.",
    )
    reverse_path_filter: bool = Field(
        default=True,
        description="Drop packets whose source would not be routed back out their interface.",
    )


class Policy(_Strict):
    """A site's whole policy: default-deny in every direction, plus these rules."""

    model_config = ConfigDict(
        title="PlantGate site policy",
        json_schema_extra={"$id": "https://plantgate.invalid/schema/policy-v1.json"},
    )

    version: Literal[1]
    site: Site
    interfaces: dict[Name, InterfaceName] = Field(description="Interface role: kernel name.")
    zones: dict[Name, Zone]
    endpoints: dict[Name, Endpoint] = Field(default_factory=dict)
    services: dict[Name, Service]
    gates: dict[Name, Gate] = Field(default_factory=dict)
    time: TimeService | None = Field(default=None, description="The NTP relay for the hubs.")
    support_vpn: SupportVpn | None = Field(default=None, description="The support tunnel.")
    rules: list[Rule]
    defaults: Defaults = Field(default_factory=Defaults)
    detection: Detection = Field(
        default_factory=Detection,
        description="The traffic watcher: learning or protecting, and each detector's "
        "thresholds (every key optional).",
    )


# Top-level sections in file order, with the type each one validates against. The loader
# validates section by section (and item by item) so one broken rule does not hide the rest.
SECTIONS: dict[str, Any] = {name: field.annotation for name, field in Policy.model_fields.items()}
REQUIRED_SECTIONS = frozenset(n for n, f in Policy.model_fields.items() if f.is_required())
