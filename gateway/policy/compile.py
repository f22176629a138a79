"""Policy model -> one `inet plantgate` table (a pure function; no system access).

Shape of the generated table (see docs/decisions/0001-ruleset-layout.md):

* base chains `input`, `forward`, `output` (policy drop): established/related first, invalid
  dropped, loopback and IPv6 neighbour discovery allowed, then one jump into classification,
  then a rate-limited NFLOG entry and the default verdict;
* classification dispatches on the interface with a verdict map, then on the address with one
  set lookup per zone that has networks on that interface, and `goto`s the zone's chain, so
  the per-packet cost does not grow with the number of hosts;
* every accept rule carries a counter and the comment `<rule> @ <file>:<line>`; ports live in
  one named set per policy rule, addresses in one named set per zone or endpoint.

Every policy rule is an *allow*; nothing here depends on rule order, which is what makes the
verdict explainable: a packet is accepted exactly when some rule matches it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from gateway.policy import watchlog
from gateway.policy.addresses import parse_net
from gateway.policy.derive import DEFINITION_PATHS
from gateway.policy.killswitch import KillSwitch
from gateway.policy.load import LoadedPolicy
from gateway.policy.model import ANY, SELF, Policy, Rule, Service
from gateway.policy.ruleset import NftChain, NftMap, NftSet, Origin, Table, render

IP = {4: "ip", 6: "ip6"}
ADDR_TYPE = {4: "ipv4_addr", 6: "ipv6_addr"}
ND_TYPES = "nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert"
HOOKS = ("input", "forward", "output")
GATE_PORT_TYPE = "inet_proto . inet_service"  # a gate grants source . target . proto . port


@dataclass(frozen=True)
class FqdnBinding:
    """Names of one endpoint that the resolver keeps in the endpoint's sets."""

    endpoint: str
    names: tuple[str, ...]
    sets: dict[int, str]  # IP version -> set name


@dataclass(frozen=True)
class Compiled:
    """A compiled policy: the table, its text, and what the runtime keeps filled."""

    table: Table
    text: str
    fqdn: tuple[FqdnBinding, ...]
    dynamic_sets: tuple[str, ...]  # elements added at run time; carried over by apply
    log_group: int


@dataclass(frozen=True)
class Peer:
    """One side of a rule: the zone it sits in (None = any) and its own address sets."""

    name: str
    zone: str | None
    endpoint: str | None = None


def compile_policy(loaded: LoadedPolicy) -> Compiled:
    """The whole ruleset for a validated policy. Same input, byte-identical output."""
    builder = _Builder(loaded)
    table = builder.build()
    return Compiled(
        table=table,
        text=render(table) + watchlog.arp_table(loaded.policy),
        fqdn=tuple(builder.fqdn),
        dynamic_sets=tuple(builder.dynamic),
        log_group=loaded.policy.defaults.log_group,
    )


def set_name(kind: str, name: str, version: int | None = None) -> str:
    """Stable nftables names: '-' stays (YAML names never hold '_'), '_' separates parts."""
    return f"{kind}_{name}" + (f"_v{version}" if version else "")


class Addr(NamedTuple):
    """An address or network in canonical text (as the model keeps it) and its IP version."""

    version: int
    text: str


def collapse(texts: Iterable[str]) -> list[Addr]:
    """Sorted networks with those inside another dropped (interval sets refuse overlaps).

    Plain tuples sort without a key function: this runs once per address of large sites.
    """
    spans = sorted((n.version, n.first, -n.last, t) for t in texts for n in (parse_net(t),))
    kept: list[Addr] = []
    version_seen, reach = 0, -1
    for version, _first, negative_last, text in spans:
        if version == version_seen and -negative_last <= reach:
            continue  # inside the network kept before it
        kept.append(Addr(version, text))
        version_seen, reach = version, -negative_last
    return kept


class _Builder:
    def __init__(self, loaded: LoadedPolicy) -> None:
        self.loaded = loaded
        self.policy: Policy = loaded.policy
        self.file = Path(loaded.file).name
        self.table = Table(comment=f"PlantGate policy for site '{self.policy.site.name}'")
        self.fqdn: list[FqdnBinding] = []
        self.dynamic: list[str] = []
        self.zone_nets = {name: collapse(z.networks) for name, z in self.policy.zones.items()}
        self.zone_versions = {
            name: sorted({a.version for a in nets}) for name, nets in self.zone_nets.items()
        }

    def origin(self, what: str, path: tuple[str | int, ...]) -> Origin:
        """Where a named definition (zone, endpoint, gate) is: the line of its name, or of
        the section that implies it."""
        key = (str(path[0]), str(path[-1])) if len(path) == 2 else None
        if key in DEFINITION_PATHS:
            path = DEFINITION_PATHS[key]
        return Origin(what, self.file, self.loaded.source.key_at(path).line)

    # -- sets ---------------------------------------------------------------------------

    def build(self) -> Table:
        self._zone_sets()
        self._endpoint_sets()
        self._gate_sets()
        leaves: dict[str, list[tuple[int, Rule, Peer, Peer]]] = {}
        for index, rule in enumerate(self.policy.rules):
            for origin in rule.from_:
                for destination in rule.to:
                    for src in self._peers(origin):
                        for dst in self._peers(destination):
                            if not self._same_segment(src, dst):
                                leaf = self._leaf(src, dst)
                                leaves.setdefault(leaf, []).append((index, rule, src, dst))
        for leaf, entries in leaves.items():
            chain = self.table.chain(leaf)
            for index, rule, src, dst in entries:
                self._emit_rule(chain, index, rule, src, dst)
        self._base_chains(set(leaves))
        return self._ordered()

    def _zone_sets(self) -> None:
        for name, nets in self.zone_nets.items():
            for version in (4, 6):
                elements = [a.text for a in nets if a.version == version]
                if elements:
                    self.table.add_set(
                        NftSet(
                            set_name("zone", name, version),
                            ADDR_TYPE[version],
                            ("interval",),
                            elements,
                            self.origin(f"zone {name}", ("zones", name)),
                        )
                    )

    def _endpoint_sets(self) -> None:
        for name, endpoint in self.policy.endpoints.items():
            nets = collapse(endpoint.addresses)
            versions = (4, 6) if endpoint.fqdn else sorted({n.version for n in nets})
            flags = ("interval", "timeout") if endpoint.fqdn else ("interval",)
            sets: dict[int, str] = {}
            for version in versions:
                sets[version] = set_name("ep", name, version)
                self.table.add_set(
                    NftSet(
                        sets[version],
                        ADDR_TYPE[version],
                        flags,
                        [a.text for a in nets if a.version == version],
                        self.origin(f"endpoint {name}", ("endpoints", name)),
                    )
                )
            if endpoint.fqdn:
                self.fqdn.append(FqdnBinding(name, tuple(endpoint.fqdn), sets))
                self.dynamic += sets.values()

    def _gate_sets(self) -> None:
        for name in self.policy.gates:
            for version in (4, 6):
                nft_set = NftSet(
                    set_name("gate", name, version),
                    f"{ADDR_TYPE[version]} . {ADDR_TYPE[version]} . {GATE_PORT_TYPE}",
                    ("timeout",),
                    origin=self.origin(f"gate {name}", ("gates", name)),
                )
                self.table.add_set(nft_set)
                self.dynamic.append(nft_set.name)

    def _endpoint_versions(self, endpoint: str) -> list[int]:
        return sorted(v for v in (4, 6) if set_name("ep", endpoint, v) in self.table.sets)

    # -- rules --------------------------------------------------------------------------

    def _peers(self, name: str) -> list[Peer]:
        """The zoned peers a rule's from/to name stands for.

        `any` is every zone, and an endpoint without a zone is that endpoint in every zone:
        nothing is ever accepted from or to an interface that is in no zone.
        """
        if name == SELF:
            return [Peer(SELF, None)]
        if name == ANY:
            return [Peer(zone, zone) for zone in self.policy.zones]
        if name in self.policy.zones:
            return [Peer(name, name)]
        zone = self.policy.endpoints[name].zone
        zones = [zone] if zone is not None else list(self.policy.zones)
        return [Peer(name, z, endpoint=name) for z in zones]

    def _same_segment(self, src: Peer, dst: Peer) -> bool:
        """Both ends in one zone behind a single interface: never crosses the appliance."""
        zone = self.policy.zones.get(src.zone or "")
        return src.zone == dst.zone and zone is not None and len(zone.interfaces) == 1

    @staticmethod
    def _leaf(src: Peer, dst: Peer) -> str:
        """The chain a (from, to) pair lands in; classification jumps there."""
        if dst.name == SELF:
            return f"in_{src.zone}"
        if src.name == SELF:
            return f"out_{dst.zone}"
        return f"fwd_{src.zone}_{dst.zone}"

    def _emit_rule(self, chain: NftChain, index: int, rule: Rule, src: Peer, dst: Peer) -> None:
        origin = Origin(rule.name, self.file, self.loaded.rule_line(index))
        services = [self.policy.services[s] for s in rule.allow]
        ports = self._service_set(rule, services, origin)
        for version, matches in self._address_matches(rule, src, dst):
            for proto in self._proto_matches(version, ports, services):
                if watchlog.enabled(self.policy.defaults):
                    sample = watchlog.sample_statement(self.policy.defaults, rule.name)
                    chain.add(" ".join(p for p in [*matches, proto, sample] if p), origin)
                parts = [*matches, proto, *self._limit(rule, version), "counter"]
                if rule.log:
                    group = self.policy.defaults.log_group
                    parts.append(f'log prefix "pg accept {rule.name}: " group {group}')
                chain.add(" ".join(p for p in parts if p) + " accept", origin)

    def _address_matches(
        self, rule: Rule, src: Peer, dst: Peer
    ) -> list[tuple[int | None, list[str]]]:
        """Per IP version (None = both), the address matches this pair needs."""
        needs_version = bool(src.endpoint or dst.endpoint or rule.gate)
        needs_version |= bool(rule.rate_limit and rule.rate_limit.per_source)
        if not needs_version:
            return [(None, [])]
        versions = {4, 6}
        for peer in (src, dst):
            if peer.endpoint:
                versions &= set(self._endpoint_versions(peer.endpoint))
            if peer.zone is not None and self.zone_nets[peer.zone]:
                versions &= set(self.zone_versions[peer.zone])
        result: list[tuple[int | None, list[str]]] = []
        for version in sorted(versions):
            ip = IP[version]
            matches: list[str] = []
            if src.endpoint:
                matches.append(f"{ip} saddr @{set_name('ep', src.endpoint, version)}")
            if dst.endpoint:
                matches.append(f"{ip} daddr @{set_name('ep', dst.endpoint, version)}")
            if rule.gate:
                gate = set_name("gate", rule.gate, version)
                matches.append(f"{ip} saddr . {ip} daddr . meta l4proto . th dport @{gate}")
            if rule.rate_limit and rule.rate_limit.per_source and not matches:
                matches.append(f"meta nfproto ipv{version}")
            result.append((version, matches))
        return result

    def _service_set(self, rule: Rule, services: list[Service], origin: Origin) -> str | None:
        spans: set[tuple[str, int, int]] = set()
        for service in services:
            for proto in ("tcp", "udp"):
                for port in getattr(service, proto):
                    low, _, high = str(port).partition("-")
                    spans.add((proto, int(low), int(high or low)))
        if not spans:
            return None
        elements = [
            f"{proto} . {low}" if low == high else f"{proto} . {low}-{high}"
            for proto, low, high in sorted(spans)
        ]
        name = set_name("svc", rule.name)
        self.table.add_set(
            NftSet(name, "inet_proto . inet_service", ("interval",), elements, origin)
        )
        return name

    @staticmethod
    def _proto_matches(
        version: int | None, ports: str | None, services: list[Service]
    ) -> list[str]:
        matches = [f"meta l4proto . th dport @{ports}"] if ports else []
        icmp = sorted({t for s in services for t in s.icmp})
        icmpv6 = sorted({t for s in services for t in s.icmpv6})
        if icmp and version in (None, 4):
            matches.append(f"icmp type {{ {', '.join(icmp)} }}")
        if icmpv6 and version in (None, 6):
            matches.append(f"icmpv6 type {{ {', '.join(icmpv6)} }}")
        return matches

    def _limit(self, rule: Rule, version: int | None) -> list[str]:
        limit = rule.rate_limit
        if limit is None:
            return []
        burst = f" burst {limit.burst} packets" if limit.burst else ""
        if not limit.per_source:
            name = f"lim_{rule.name}"
            self.table.limits[name] = f"rate {limit.rate}{burst}"
            return [f'limit name "{name}"']
        assert version is not None  # per-source limits always split by IP version
        meter = NftSet(
            set_name("rl", rule.name, version),
            ADDR_TYPE[version],
            ("dynamic", "timeout"),
            size=65535,
            timeout="1m",
        )
        self.table.add_set(meter)
        return [f"update @{meter.name} {{ {IP[version]} saddr limit rate {limit.rate}{burst} }}"]

    # -- classification and base chains ---------------------------------------------------

    def _base_chains(self, leaves: set[str]) -> None:
        defaults = self.policy.defaults
        kill_switch = KillSwitch(self)
        watching = watchlog.enabled(defaults)
        if watching:
            watchlog.declare_limits(self.table, defaults)
        if defaults.reverse_path_filter or self.policy.support_vpn is not None or watching:
            self._prerouting(kill_switch)
        for hook in HOOKS:
            base = self.table.chain(hook)
            base.hook = hook
            if hook == "output" and watching:
                watchlog.dns_ntp_rules(base, defaults)
            kill_switch.before_conntrack(base, hook)
            if hook != "output" and watching:
                watchlog.tls_sample_rule(base, self.policy)
            base.add("ct state established,related accept")
            base.add("ct state invalid counter drop", note="invalid packets")
            if hook != "forward":
                base.add(f"{'iif' if hook == 'input' else 'oif'} lo accept")
                base.add(
                    f"icmpv6 type {{ {ND_TYPES} }} ip6 hoplimit 255 accept",
                    note="IPv6 neighbour discovery",
                )
            if hook == "input" and defaults.strict_destination:
                base.add(
                    "fib daddr . iif type != { local, broadcast, multicast } counter drop",
                    note="strong host: not an address of the arriving interface",
                )
            kill_switch.after_conntrack(base, hook)
            classifier = self._classifier(hook, leaves)
            if self.table.chains[classifier].rules:
                base.add(f"jump {classifier}")
            else:  # nothing is allowed in this direction: no classification needed
                del self.table.chains[classifier]
            verdict = getattr(defaults, hook)
            final = "reject with icmpx admin-prohibited" if verdict == "reject" else "drop"
            if defaults.log_drops:
                watchlog.drop_log_rules(self.table, base, hook, defaults, final)
            base.add(f"counter {final}", note=f"default: {verdict} everything else")

    def _prerouting(self, kill_switch: KillSwitch) -> None:
        chain = self.table.chain("prerouting")
        chain.hook, chain.priority, chain.policy = "prerouting", "raw", "accept"
        chain.add("iif lo accept")
        if watchlog.enabled(self.policy.defaults):
            watchlog.dns_ntp_rules(chain, self.policy.defaults)
        kill_switch.prerouting(chain)
        if not self.policy.defaults.reverse_path_filter:
            return
        chain.add("ip6 saddr :: accept", note="IPv6 duplicate address detection")
        defaults = self.policy.defaults
        if defaults.log_drops:
            chain.add(
                f"fib saddr . iif oif missing limit rate {defaults.log_rate} "
                f'log prefix "pg drop rpf: " group {defaults.log_group}'
            )
        chain.add("fib saddr . iif oif missing counter drop", note="reverse path filter")

    def _classifier(self, hook: str, leaves: set[str]) -> str:
        """The chain that sorts a hook's packets into zones (returns its name)."""
        if hook != "forward":
            prefix, side = ("in", "src") if hook == "input" else ("out", "dst")
            return self._dispatch(prefix, side, self._leaves_under(f"{prefix}_", leaves))
        sources: dict[str, str] = {}
        for src in self.policy.zones:
            targets = self._leaves_under(f"fwd_{src}_", leaves)
            if targets:
                sources[src] = self._dispatch(f"fwd_{src}", "dst", targets)
        return self._dispatch("fwd", "src", sources)

    def _leaves_under(self, prefix: str, leaves: set[str]) -> dict[str, str]:
        """Zone -> leaf chain, for the leaves named `<prefix><zone>`."""
        return {z: f"{prefix}{z}" for z in self.policy.zones if f"{prefix}{z}" in leaves}

    def _dispatch(self, prefix: str, side: str, targets: dict[str, str]) -> str:
        """Chain `<prefix>_classify`: interface vmap, then address sets, then `goto` a zone.

        `targets` maps zones to the chain their packets go to; zones without a target still
        get a `return` where needed, so an interface's catch-all zone never claims them.
        Interfaces the policy does not name are not in the map: their packets are in no zone.
        """
        chain = self.table.chain(f"{prefix}_classify")
        meta, direction = ("iifname", "saddr") if side == "src" else ("oifname", "daddr")
        vmap = NftMap(f"{prefix}_{meta}", "ifname")
        for role, kernel in self.policy.interfaces.items():
            sub = self._interface_chain(f"{prefix}_if_{role}", role, direction, targets)
            if sub is not None:
                vmap.elements.append((f'"{kernel}"', f"goto {sub}"))
        if vmap.elements:
            self.table.maps[vmap.name] = vmap
            chain.add(f"{meta} vmap @{vmap.name}")
        return chain.name

    def _interface_chain(
        self, name: str, role: str, direction: str, targets: dict[str, str]
    ) -> str | None:
        zones = self.policy.zones
        here = [z for z in zones if role in zones[z].interfaces or not zones[z].interfaces]
        catch_all = next((z for z in here if not self.zone_nets[z] and zones[z].interfaces), None)
        if not any(z in targets for z in here):
            return None
        chain = self.table.chain(name)
        for zone in here:
            if zone == catch_all or not self.zone_nets[zone]:
                continue
            verdict = f"goto {targets[zone]}" if zone in targets else "return"
            if verdict == "return" and catch_all not in targets:
                continue
            for version in self.zone_versions[zone]:
                chain.add(f"{IP[version]} {direction} @{set_name('zone', zone, version)} {verdict}")
        if catch_all is not None and catch_all in targets:
            chain.add(f"goto {targets[catch_all]}")
        return name

    def _ordered(self) -> Table:
        """Base chains first, then per hook: classification, then zone chains; reads top-down."""
        base = {"prerouting": 0, "input": 1, "forward": 2, "output": 3}
        group = {"in": 4, "fwd": 5, "out": 6}
        chains = sorted(
            self.table.chains.values(),
            key=lambda c: (
                base.get(c.name, group.get(c.name.split("_")[0], 9)),
                not c.name.endswith("classify"),
                "_if_" not in c.name,
                c.name,
            ),
        )
        self.table.chains = {c.name: c for c in chains}
        return self.table
