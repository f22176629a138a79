"""Why one new connection is accepted or dropped: a pure model of the compiled ruleset.

`explain(loaded, flow, ctx)` evaluates the *first packet* of a new connection the way the
table from `compile.py` does (docs/decisions/0001-ruleset-layout.md), and says which rule or
which default decided, and, for a drop, which rule came closest and why it did not match. It
reads no system state: the appliance's addresses, what FQDN endpoints resolve to and which
gates are open come in a `Context`. Adapters that fill a Context from a live system live in
`cli_explain.py`; `policytest.py` checks this model against the kernel with real packets.

What is mirrored, in the order the kernel walks it:

1. hook: destination is an appliance address -> input; source is one -> output; else
   forward. Loopback (`iif lo` / `oif lo`, or appliance to appliance) is accepted first.
2. prerouting (input and forward): the reverse path filter, `fib saddr . iif oif missing`.
3. input and output: IPv6 neighbour discovery is accepted (its hop limit is assumed to be
   255, as ND requires); input then drops a destination that is not an address of the
   arriving interface (`strict_destination`, the strong host model).
4. classification: the source (input, forward) is placed in a zone on the arriving interface,
   the destination (output, forward) on the leaving one: the first zone with networks on that
   interface (or bound to no interface) that contains the address, in policy order, else the
   interface's catch-all zone. A zone with networks claims its addresses even when no rule
   uses it. An interface the policy does not name is in no zone; `any` means any zone and an
   endpoint without a zone matches in any zone, so nothing on such an interface is accepted.
5. a rule entry (one from/to pair of a rule) matches when both peers match, the service
   holds the protocol and port (or ICMP type), the IP version fits, and its gate, if any, is
   open for exactly this source and destination. Every rule allows, so the verdict does not
   depend on order; the *deciding* rule is the first match in the kernel's walk (the one
   whose counter moves).

Approximations (also in docs/decisions/0003): routing is not read from the system. The reverse
path filter and interface inference route an address by longest prefix over the networks of
zones bound to interfaces and the appliance's connected networks; anything else takes the
default route, assumed to leave through the catch-all interface(s). Rate limits are noted, not
modelled (the model says accept). Established traffic, broadcast and multicast are out of scope.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from gateway.policy.addresses import Net, parse_net
from gateway.policy.errors import did_you_mean, quoted_list
from gateway.policy.explanation import (
    LOOPBACK,
    ND,
    PROTOS,
    Address,
    Appliance,
    Closest,
    Context,
    Decision,
    DecisionKind,
    ExplainError,
    Explanation,
    Flow,
    Hook,
    Proto,
    RuleRef,
    Side,
    Verdict,
    _contains,
    _spans,
    appliance_of,
    parse_address,
)
from gateway.policy.load import LoadedPolicy
from gateway.policy.model import ANY, ICMP_TYPES, ICMPV6_TYPES, SELF, Policy, Rule

__all__ = [
    "LOOPBACK",
    "ND",
    "PROTOS",
    "Address",
    "Appliance",
    "Closest",
    "Context",
    "Decision",
    "DecisionKind",
    "ExplainError",
    "ExplainFn",
    "Explainer",
    "Explanation",
    "Flow",
    "Hook",
    "Proto",
    "RuleRef",
    "Side",
    "Verdict",
    "appliance_of",
    "explain",
    "parse_address",
]


def explain(loaded: LoadedPolicy, flow: Flow, ctx: Context) -> Explanation:
    """The verdict on `flow` under `loaded`; ExplainError for a flow that makes no sense."""
    return Explainer(loaded).explain(flow, ctx)


ExplainFn = Callable[[Flow, Context], Explanation]


# ---------------------------------------------------------------- rule entries


@dataclass(frozen=True)
class _Peer:
    """One side of a rule entry: its name, the zone it lands in (None = any), its endpoint."""

    name: str
    zone: str | None
    endpoint: str | None = None


@dataclass(frozen=True)
class _Service:
    """A rule's services, flattened: port spans and ICMP types."""

    spans: tuple[tuple[str, int, int], ...]
    icmp: frozenset[str]
    icmpv6: frozenset[str]

    def describe(self) -> str:
        parts = [f"{p}/{lo}" if lo == hi else f"{p}/{lo}-{hi}" for p, lo, hi in self.spans]
        parts += [f"icmp {t}" for t in sorted(self.icmp)]
        parts += [f"icmpv6 {t}" for t in sorted(self.icmpv6)]
        return ", ".join(parts)


@dataclass(frozen=True)
class _Entry:
    """One (from, to) pair of one rule: what the compiler turns into a chain's rules."""

    index: int
    order: int  # position among all entries, in file order
    rule: Rule
    ref: RuleRef
    src: _Peer
    dst: _Peer
    service: _Service
    versions: frozenset[int] | None  # None: the compiled rule matches either version

    @property
    def hook(self) -> Hook:
        if self.dst.name == SELF:
            return "input"
        if self.src.name == SELF:
            return "output"
        return "forward"


@dataclass(frozen=True)
class _Route:
    interfaces: tuple[str, ...]
    via: str


@dataclass(frozen=True)
class _Sides:
    hook: Hook
    iif: str | None
    oif: str | None
    source: Side
    destination: Side


class Explainer:
    """A policy prepared for many explanations: zone lookups by bisection, rules flattened.

    Building it costs about what one compile does; each `explain` is then a few set lookups
    per zone and one pass over the rule entries, so a 10,000-hub site stays fast.
    """

    def __init__(self, loaded: LoadedPolicy) -> None:
        self.loaded = loaded
        self.policy: Policy = loaded.policy
        policy = self.policy
        self.role_of = {kernel: role for role, kernel in policy.interfaces.items()}
        self.zone_spans = {name: _spans(z.networks) for name, z in policy.zones.items()}
        self.zone_versions = {n: frozenset(s) for n, s in self.zone_spans.items()}
        self.catch_all = {
            role: name
            for name, z in policy.zones.items()
            if z.interfaces and not z.networks
            for role in z.interfaces
        }
        self.endpoint_spans = {n: _spans(e.addresses) for n, e in policy.endpoints.items()}
        support = policy.support_vpn
        self.inner_spans = _spans(support.inner_networks) if support else {}
        self.entries = tuple(self._entries())

    # -- preparation ----------------------------------------------------------------

    def _entries(self) -> Iterable[_Entry]:
        order = 0
        for index, rule in enumerate(self.policy.rules):
            ref = RuleRef(rule.name, self.loaded.file, self.loaded.rule_line(index))
            service = self._service(rule)
            for origin in rule.from_:
                for target in rule.to:
                    src, dst = self._peer(origin), self._peer(target)
                    versions = self._versions(rule, src, dst)
                    yield _Entry(index, order, rule, ref, src, dst, service, versions)
                    order += 1

    def _peer(self, name: str) -> _Peer:
        if name in (SELF, ANY):
            return _Peer(name, None)
        if name in self.policy.zones:
            return _Peer(name, name)
        return _Peer(name, self.policy.endpoints[name].zone, endpoint=name)

    def _service(self, rule: Rule) -> _Service:
        spans: set[tuple[str, int, int]] = set()
        icmp: set[str] = set()
        icmpv6: set[str] = set()
        for name in rule.allow:
            service = self.policy.services[name]
            for proto in ("tcp", "udp"):
                for port in getattr(service, proto):
                    low, _, high = str(port).partition("-")
                    spans.add((proto, int(low), int(high or low)))
            icmp.update(service.icmp)
            icmpv6.update(service.icmpv6)
        return _Service(tuple(sorted(spans)), frozenset(icmp), frozenset(icmpv6))

    def _endpoint_versions(self, endpoint: str) -> frozenset[int]:
        if self.policy.endpoints[endpoint].fqdn:
            return frozenset({4, 6})
        return frozenset(self.endpoint_spans[endpoint])

    def _versions(self, rule: Rule, src: _Peer, dst: _Peer) -> frozenset[int] | None:
        """IP versions the compiled entry covers (compile._address_matches), None = both."""
        needs = bool(src.endpoint or dst.endpoint or rule.gate)
        needs |= bool(rule.rate_limit and rule.rate_limit.per_source)
        if not needs:
            return None
        versions = frozenset({4, 6})
        for peer in (src, dst):
            if peer.endpoint:
                versions &= self._endpoint_versions(peer.endpoint)
            if peer.zone is not None and self.zone_versions[peer.zone]:
                versions &= self.zone_versions[peer.zone]
        return versions

    # -- routing and classification -----------------------------------------------------

    def kernel_interfaces(self) -> tuple[str, ...]:
        """The kernel interface names the policy binds, in policy order."""
        return tuple(self.policy.interfaces.values())

    def route(self, addr: Address, appliance: Appliance) -> _Route:
        """Where the appliance would send packets for `addr` (longest prefix, then default)."""
        found: list[tuple[int, str, str]] = []
        for name, spans in self.zone_spans.items():
            length = _contains(spans, addr)
            roles = self.policy.zones[name].interfaces
            if length is not None and roles:
                found += [(length, self.policy.interfaces[r], f"zone '{name}'") for r in roles]
        for net in appliance.connected:
            if net.version == addr.version and net.first <= addr.value <= net.last:
                found.append((net.prefixlen, net.ifname, f"connected network {net.text}"))
        if found:
            best = max(length for length, _, _ in found)
            chosen = [(i, why) for length, i, why in found if length == best]
            via = " and ".join(dict.fromkeys(why for _, why in chosen))
            return _Route(tuple(dict.fromkeys(i for i, _ in chosen)), via)
        catch = tuple(
            self.policy.interfaces[r] for r in self.policy.interfaces if r in self.catch_all
        )
        if catch:
            zones = " and ".join(f"'{self.catch_all[self.role_of[i]]}'" for i in catch)
            plural = "s" if len(catch) > 1 else ""
            return _Route(catch, f"the default route, through catch-all zone{plural} {zones}")
        return _Route((), "no route")

    def infer_interface(self, addr: Address, appliance: Appliance, field_name: str) -> str:
        """The one interface `addr` is behind; ExplainError listing the choices otherwise."""
        route = self.route(addr, appliance)
        if len(route.interfaces) == 1:
            return route.interfaces[0]
        verb = "arrives on" if field_name == "iif" else "leaves through"
        if route.interfaces:
            choices = " or ".join(route.interfaces)
            raise ExplainError(
                f"cannot tell which interface {addr} {verb}: it could be {choices} ({route.via})",
                field_name,
            )
        raise ExplainError(
            f"cannot tell which interface {addr} {verb}: it is in no zone's networks and no "
            "interface has a catch-all zone",
            field_name,
        )

    def classify(self, addr: Address, ifname: str | None) -> str | None:
        """The zone the ruleset puts `addr` in on interface `ifname` (None: no zone)."""
        role = self.role_of.get(ifname or "")
        if role is None:
            return None  # an interface the policy does not name is in no zone
        for name, zone in self.policy.zones.items():
            here = not zone.interfaces or role in zone.interfaces
            if here and zone.networks and _contains(self.zone_spans[name], addr) is not None:
                return name
        return self.catch_all.get(role)

    def endpoint_addresses(self, name: str, ctx: Context) -> list[str]:
        endpoint = self.policy.endpoints[name]
        resolved = [a for fqdn in endpoint.fqdn for a in ctx.resolved.get(fqdn, ())]
        return [*endpoint.addresses, *resolved]

    def in_endpoint(self, name: str, addr: Address, ctx: Context) -> bool:
        if _contains(self.endpoint_spans[name], addr) is not None:
            return True
        for fqdn in self.policy.endpoints[name].fqdn:
            for text in ctx.resolved.get(fqdn, ()):
                net = _parse_net_or_none(text)
                if (
                    net is not None
                    and net.version == addr.version
                    and net.first <= addr.value <= net.last
                ):
                    return True
        return False

    def endpoints_of(self, addr: Address, ctx: Context) -> tuple[str, ...]:
        return tuple(n for n in self.policy.endpoints if self.in_endpoint(n, addr, ctx))

    # -- the evaluation -----------------------------------------------------------------

    def explain(self, flow: Flow, ctx: Context) -> Explanation:
        """The verdict on `flow`; ExplainError for a flow that makes no sense."""
        src = parse_address(flow.src, "source", "src")
        dst = parse_address(flow.dst, "destination", "dst")
        if src.version != dst.version:
            raise ExplainError(
                f"source {src} is IPv{src.version} but destination {dst} is IPv{dst.version}",
                "dst",
            )
        _check_service(flow, src.version)
        appliance = appliance_of(ctx)
        self._check_interfaces(flow, appliance)
        loop = self._loopback(flow, src, dst, appliance)
        if loop is not None:
            return loop
        sides = self._sides(flow, src, dst, appliance, ctx)
        early = self._base_chains(flow, src, dst, sides, appliance, ctx)
        if early is not None and early[0] == "accept":
            return self._finish(flow, src.version, sides, "accept", early[1])
        blocker = early[1] if early is not None else None
        return self._rules(flow, src, dst, sides, ctx, blocker)

    def _check_interfaces(self, flow: Flow, appliance: Appliance) -> None:
        known = {*self.kernel_interfaces(), *appliance.addresses, LOOPBACK}
        for field_name, value in (("iif", flow.iif), ("oif", flow.oif)):
            if value is not None and value not in known:
                hint = did_you_mean(value, known) or f" (known: {quoted_list(known)})"
                raise ExplainError(f"unknown interface '{value}'{hint}", field_name)

    def _loopback(
        self, flow: Flow, src: Address, dst: Address, appliance: Appliance
    ) -> Explanation | None:
        src_self, dst_self = appliance.owns(src), appliance.owns(dst)
        arriving = flow.iif not in (None, LOOPBACK)
        if not (LOOPBACK in (flow.iif, flow.oif) or (src_self and dst_self and not arriving)):
            return None
        hook: Hook = "input" if flow.iif == LOOPBACK else "output"
        sides = _Sides(
            hook,
            LOOPBACK if hook == "input" else None,
            LOOPBACK if hook == "output" else None,
            Side(src.text, LOOPBACK, src_self),
            Side(dst.text, LOOPBACK, dst_self),
        )
        decision = Decision(
            "loopback",
            f"loopback traffic is always accepted ({'iif' if hook == 'input' else 'oif'} lo)",
        )
        return self._finish(flow, src.version, sides, "accept", decision)

    def _sides(
        self, flow: Flow, src: Address, dst: Address, appliance: Appliance, ctx: Context
    ) -> _Sides:
        """Hook, interfaces and both ends' classification."""
        if appliance.owns(dst):
            if flow.oif is not None:
                raise ExplainError(
                    f"oif does not apply: the destination {dst} is the appliance (input)", "oif"
                )
            iif = flow.iif or self.infer_interface(src, appliance, "iif")
            source = self._side(src, iif, ctx)
            return _Sides("input", iif, None, source, self._self_side(dst, appliance))
        if appliance.owns(src) and flow.iif is None:
            oif = flow.oif or self.infer_interface(dst, appliance, "oif")
            destination = self._side(dst, oif, ctx)
            return _Sides("output", None, oif, self._self_side(src, appliance), destination)
        iif = flow.iif or self.infer_interface(src, appliance, "iif")
        oif = flow.oif or self.infer_interface(dst, appliance, "oif")
        return _Sides("forward", iif, oif, self._side(src, iif, ctx), self._side(dst, oif, ctx))

    def _side(self, addr: Address, ifname: str, ctx: Context) -> Side:
        return Side(
            addr.text, ifname, False, self.classify(addr, ifname), self.endpoints_of(addr, ctx)
        )

    @staticmethod
    def _self_side(addr: Address, appliance: Appliance) -> Side:
        owners = sorted(appliance.interfaces_of(addr))
        return Side(addr.text, owners[0] if owners else None, True)

    def _base_chains(
        self,
        flow: Flow,
        src: Address,
        dst: Address,
        sides: _Sides,
        appliance: Appliance,
        ctx: Context,
    ) -> tuple[Verdict, Decision] | None:
        """What the base chains decide before classification, in the kernel's order."""
        defaults = self.policy.defaults
        iif = sides.iif
        stopped = self._kill_switch(src, dst, sides, ctx)
        if stopped is not None:
            return "drop", stopped
        if sides.hook != "output" and appliance.owns(src):
            kind: DecisionKind = "reverse-path" if defaults.reverse_path_filter else "martian"
            return "drop", Decision(
                kind,
                f"spoofed source: {src} is the appliance's own address, arriving on {iif}",
            )
        if sides.hook != "output" and defaults.reverse_path_filter and src.text != "::":
            route = self.route(src, appliance)
            if iif not in route.interfaces:
                back = " or ".join(route.interfaces) if route.interfaces else "nowhere"
                return "drop", Decision(
                    "reverse-path",
                    f"reverse path filter: replies to {src} would leave through {back} "
                    f"({route.via}), not {iif} where the packet arrives",
                )
        if sides.hook != "forward" and _is_nd(flow, src.version):
            return "accept", Decision(
                "neighbour-discovery",
                f"IPv6 neighbour discovery ({flow.icmp_type}) is always accepted "
                "(hop limit 255 assumed)",
            )
        strict = sides.hook == "input" and defaults.strict_destination
        if strict and iif not in appliance.interfaces_of(dst):
            owners = " and ".join(sorted(appliance.interfaces_of(dst))) or "no interface"
            return "drop", Decision(
                "strict-destination",
                f"strict destination: {dst} is the appliance's address on {owners}, "
                f"but the packet arrives on {iif}",
            )
        return None

    def _kill_switch(
        self, src: Address, dst: Address, sides: _Sides, ctx: Context
    ) -> Decision | None:
        """The support tunnel's kill switch (killswitch.py), in the order the kernel meets it.

        Prerouting, then before conntrack, then (forward) before classification; every one
        drops, so the first that applies decides.
        """
        support = self.policy.support_vpn
        if support is None:
            return None
        tunnel = self.policy.interfaces[support.interface]
        inner = self.inner_spans
        hook, iif, oif = sides.hook, sides.iif, sides.oif
        arriving, leaving = hook in ("input", "forward"), hook in ("output", "forward")
        if arriving and _contains(inner, src) is not None and iif != tunnel:
            return _kill(f"{src} is a support-tunnel address but arrives on {iif}, not {tunnel}")
        concentrator = self.in_endpoint(support.concentrator, dst, ctx)
        if support.mode == "disabled":
            if arriving and iif == tunnel:
                return _kill(f"the support VPN is disabled: nothing arrives on {tunnel}")
            if leaving and (oif == tunnel or concentrator):
                return _kill(
                    f"the support VPN is disabled: nothing goes to {tunnel} or the concentrator"
                )
        if leaving and _contains(inner, dst) is not None and oif not in (tunnel, LOOPBACK):
            return _kill(
                f"{dst} is a support-tunnel address: it is reached only through "
                f"{tunnel}, never {oif}"
            )
        ipv6_on_tunnel = (arriving and iif == tunnel) or (leaving and oif == tunnel)
        if not support.ipv6 and src.version == 6 and ipv6_on_tunnel:
            return _kill("no IPv6 on the support path (support_vpn.ipv6 is false)")
        if hook == "forward" and (oif == tunnel or _contains(inner, dst) is not None):
            return _kill(f"nothing is forwarded into the support tunnel ({tunnel})")
        if hook == "forward" and concentrator:
            return _kill("nothing is forwarded toward the support concentrator")
        return None

    def _rules(
        self,
        flow: Flow,
        src: Address,
        dst: Address,
        sides: _Sides,
        ctx: Context,
        blocker: Decision | None,
    ) -> Explanation:
        gates = {(g, s, d) for g, s, d in (_canonical_gate(x) for x in ctx.open_gates)}
        scored = [(self._mismatches(e, flow, src, dst, sides, ctx, gates), e) for e in self.entries]
        matched = sorted((e for reasons, e in scored if not reasons), key=lambda e: e.order)
        if matched and blocker is None:
            return self._accepted(flow, src, dst, sides, matched[0])
        decision = blocker or self._default(flow, src.version, sides)
        closest = self._closest(scored, blocker, src, dst)
        return self._finish(flow, src.version, sides, "drop", decision, closest)

    def _accepted(
        self, flow: Flow, src: Address, dst: Address, sides: _Sides, entry: _Entry
    ) -> Explanation:
        rule = entry.rule
        text = (
            f"rule '{rule.name}' allows {_peer_text(entry.src)} → {_peer_text(entry.dst)}, "
            f"{flow.service_text(src.version)}"
        )
        notes: list[str] = []
        if rule.gate:
            notes.append(f"gate '{rule.gate}' is open for {src} → {dst}")
        if rule.rate_limit is not None:
            limit = rule.rate_limit
            burst = f", burst {limit.burst}" if limit.burst else ""
            per = " per source" if limit.per_source else ""
            notes.append(
                f"rule '{rule.name}' is rate-limited to {limit.rate}{burst}{per}: beyond that "
                "new connections are dropped; the model assumes the limit is not reached"
            )
        if rule.log:
            notes.append(
                f"each new connection is logged to NFLOG group {self.policy.defaults.log_group}"
            )
        decision = Decision("rule", text, entry.ref)
        return self._finish(flow, src.version, sides, "accept", decision, notes=notes)

    def _default(self, flow: Flow, version: int, sides: _Sides) -> Decision:
        verdict = getattr(self.policy.defaults, sides.hook)
        what = f"{_side_text(sides.source)} → {_side_text(sides.destination)}"
        return Decision(
            "default",
            f"no rule allows {what}, {flow.service_text(version)}: default {verdict} "
            f"in {sides.hook}",
        )

    def _closest(
        self,
        scored: list[tuple[list[str], _Entry]],
        blocker: Decision | None,
        src: Address,
        dst: Address,
    ) -> Closest | None:
        if not scored:
            return None
        reasons, entry = min(scored, key=lambda item: (len(item[0]), item[1].order))
        gate = None
        if blocker is not None:
            reasons = [blocker.text, *reasons]
        elif entry.rule.gate is not None and reasons == [_gate_reason(entry.rule.gate, src, dst)]:
            gate = entry.rule.gate
        return Closest(entry.ref, entry.src.name, entry.dst.name, tuple(reasons), gate)

    def _finish(
        self,
        flow: Flow,
        version: int,
        sides: _Sides,
        verdict: Verdict,
        decision: Decision,
        closest: Closest | None = None,
        notes: Sequence[str] = (),
    ) -> Explanation:
        extra = list(notes)
        defaults = self.policy.defaults
        if verdict == "drop" and decision.kind != "martian" and defaults.log_drops:
            extra.append(
                f"drops are logged (at most {defaults.log_rate}) to NFLOG group "
                f"{defaults.log_group}"
            )
        if decision.kind == "default" and getattr(defaults, sides.hook) == "reject":
            extra.append("the sender is told: ICMP administratively prohibited")
        if sides.hook == "forward" and sides.iif == sides.oif:
            extra.append(
                f"both ends are on {sides.iif}: such traffic normally does not pass through "
                "the appliance; shown as if it did"
            )
        return Explanation(
            flow=flow,
            version=version,
            hook=sides.hook,
            iif=sides.iif,
            oif=sides.oif,
            source=sides.source,
            destination=sides.destination,
            verdict=verdict,
            decision=decision,
            closest=closest,
            notes=tuple(extra),
        )

    # -- one rule entry against the flow ---------------------------------------------------

    def _mismatches(
        self,
        entry: _Entry,
        flow: Flow,
        src: Address,
        dst: Address,
        sides: _Sides,
        ctx: Context,
        gates: set[tuple[str, str, str]],
    ) -> list[str]:
        """Each criterion the entry fails, as one sentence; empty when it matches."""
        reasons = [
            r
            for r in (
                self._peer_reason("source", entry.src, src, sides.source, ctx),
                self._peer_reason("destination", entry.dst, dst, sides.destination, ctx),
                _service_reason(entry, flow, src.version),
            )
            if r is not None
        ]
        if not reasons and entry.versions is not None and src.version not in entry.versions:
            only = " and ".join(f"IPv{v}" for v in sorted(entry.versions)) or "no IP version"
            reasons.append(f"for {entry.src.name} → {entry.dst.name} the rule covers {only} only")
        if not reasons and self._same_segment(sides):
            zone = sides.source.zone
            reasons.append(
                f"both ends are in zone '{zone}' behind one interface: such traffic "
                "never crosses the appliance, so no rule is generated for it"
            )
        gate = entry.rule.gate
        if gate is not None and flow.proto == "icmp":
            reasons.append(f"gate '{gate}' grants tcp/udp ports only, never ICMP")
        elif gate is not None and (gate, src.text, dst.text) not in gates:
            reasons.append(_gate_reason(gate, src, dst))
        return reasons

    def _same_segment(self, sides: _Sides) -> bool:
        """Forwarded within one zone bound to a single interface (the compiler skips these)."""
        src, dst = sides.source.zone, sides.destination.zone
        zone = self.policy.zones.get(src or "")
        one_interface = zone is not None and len(zone.interfaces) == 1
        return sides.hook == "forward" and src == dst and one_interface

    def _peer_reason(
        self, kind: str, peer: _Peer, addr: Address, side: Side, ctx: Context
    ) -> str | None:
        """Why `side` is not `peer` (None when it is)."""
        direction = "from" if kind == "source" else "to"
        if peer.name == SELF:
            if side.is_self:
                return None
            return f"{kind} {addr} is not the appliance; the rule allows {direction} 'self'"
        if side.is_self:
            never = " ('any' never means the appliance)" if peer.name == ANY else ""
            return (
                f"{kind} {addr} is the appliance; the rule allows {direction} '{peer.name}'{never}"
            )
        if side.zone is None and peer.zone is None:
            return (
                f"{kind} {addr} is in no zone on {side.interface}; "
                f"'{peer.name}' means {'any zone' if peer.name == ANY else 'in any zone'}"
            )
        if peer.name == ANY:
            return None
        if peer.endpoint is not None and not self.in_endpoint(peer.endpoint, addr, ctx):
            listed = self._endpoint_text(peer.endpoint, ctx)
            return f"{kind} {addr} is not an address of endpoint '{peer.endpoint}' ({listed})"
        if peer.zone is None or side.zone == peer.zone:
            return None
        where = f"in zone '{side.zone}'" if side.zone else "in no zone"
        wanted = f"'{peer.zone}'"
        if peer.endpoint is not None:
            wanted = f"endpoint '{peer.endpoint}' in zone '{peer.zone}'"
        return f"{kind} {addr} is {where} on {side.interface}, the rule allows {direction} {wanted}"

    def _endpoint_text(self, name: str, ctx: Context) -> str:
        endpoint = self.policy.endpoints[name]
        addresses = self.endpoint_addresses(name, ctx)
        unresolved = [n for n in endpoint.fqdn if not ctx.resolved.get(n)]
        parts = [", ".join(addresses)] if addresses else []
        if unresolved:
            parts.append(f"{', '.join(unresolved)} resolved to nothing")
        return "; ".join(parts) or "no addresses"


# ---------------------------------------------------------------- small pure helpers


def _parse_net_or_none(text: str) -> Net | None:
    try:
        return parse_net(text)
    except ValueError:
        return None


def _canonical_gate(grant: tuple[str, str, str]) -> tuple[str, str, str]:
    gate, src, dst = grant
    try:
        return gate, str(ipaddress.ip_address(src)), str(ipaddress.ip_address(dst))
    except ValueError:
        return grant


def _kill(text: str) -> Decision:
    return Decision("kill-switch", f"support kill switch: {text}")


def _gate_reason(gate: str, src: Address, dst: Address) -> str:
    return f"gate '{gate}' is closed for {src} → {dst}"


def _is_nd(flow: Flow, version: int) -> bool:
    return flow.proto == "icmp" and version == 6 and flow.icmp_type in ND


def _check_service(flow: Flow, version: int) -> None:
    """Protocol, port and ICMP type that make sense together; ExplainError otherwise."""
    if flow.proto not in PROTOS:
        raise ExplainError(f"unknown protocol '{flow.proto}' (use tcp, udp or icmp)", "proto")
    if flow.proto == "icmp":
        if flow.dport is not None:
            raise ExplainError("a port applies to tcp and udp only, not icmp", "dport")
        known = ICMP_TYPES if version == 4 else ICMPV6_TYPES
        if flow.icmp_type not in known:
            kind = "ICMP" if version == 4 else "ICMPv6"
            hint = did_you_mean(str(flow.icmp_type), known)
            raise ExplainError(f"unknown {kind} type '{flow.icmp_type}'{hint}", "icmp_type")
        return
    if flow.dport is None:
        raise ExplainError(f"{flow.proto} needs a destination port", "dport")
    if not 1 <= flow.dport <= 65535:
        raise ExplainError(f"port {flow.dport} is out of range (1-65535)", "dport")


def _service_reason(entry: _Entry, flow: Flow, version: int) -> str | None:
    """Why the flow's protocol and port (or ICMP type) are not in the entry's services."""
    service, versions = entry.service, entry.versions
    if flow.proto == "icmp":
        types = service.icmp if version == 4 else service.icmpv6
        fits = versions is None or version in versions
        if flow.icmp_type in types and fits:
            return None
    else:
        port = flow.dport or 0
        spans = service.spans
        if any(p == flow.proto and lo <= port <= hi for p, lo, hi in spans):
            return None
    names = ", ".join(entry.rule.allow)
    offered = service.describe() or "nothing"
    return f"{flow.service_text(version)} is not in services {names} ({offered})"


def _peer_text(peer: _Peer) -> str:
    if peer.name == SELF:
        return "the appliance"
    if peer.name == ANY:
        return "any zone"
    return f"endpoint '{peer.name}'" if peer.endpoint else f"zone '{peer.name}'"


def _side_text(side: Side) -> str:
    if side.is_self:
        return "the appliance"
    return f"zone '{side.zone}'" if side.zone else f"{side.address} (no zone)"
