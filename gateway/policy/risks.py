"""Risk flags for `policy plan`, computed from what the rules let through (pure).

Each check compares flows (`gateway/policy/reach.py`) of the loaded policy and the candidate,
so that renaming a rule or a zone, re-ordering rules or editing comments flags nothing, while
an edit anywhere that changes what passes (a rule, a zone's networks, a service's ports, an
interface) is caught where it matters:

* `removes-management-path` — some address of a plant zone could reach the appliance on tcp
  443 or 22 through an ungated rule, and no longer can;
* `opens-hubs` — plant, internet or unzoned addresses (what `any` adds) can now reach a hubs
  zone, or an endpoint in one, on ports they could not before;
* `support-outside-gate` — support addresses can now reach something without a gate;
* `logging-off` — drop logging is switched off, or accepted connections that were logged are
  still accepted but no longer logged;
* `widens-to-any` — a rule gains `any` in `from`/`to`, or a new rule uses it;
* `lockout-risk` — the caller's own address could reach the appliance on tcp 22 or 443 and
  no longer can (new sessions refused; established ones survive an apply).

With nothing loaded there is no table, so everything passes today: checks that ask "is
something lost?" compare against allow-all, checks that ask "is something opened?" compare
against an empty policy (the candidate's own openings are what a first apply introduces).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Sequence

from gateway.policy.addresses import Net, parse_net
from gateway.policy.load import LoadedPolicy
from gateway.policy.model import ANY, SELF
from gateway.policy.plan import Change, Flag, Where, key_where, rule_index, value_where
from gateway.policy.reach import (
    ALL_PORTS,
    Flow,
    Gap,
    Geometry,
    Region,
    Spans,
    Universe,
    addr_key,
    allow_all,
    any_gate,
    covers_atom,
    gaps,
    merge_gaps,
    ports_of,
    union_all,
)

MANAGEMENT = ports_of("tcp", 22, 443)


def risk_flags(
    old: LoadedPolicy | None,
    new: LoadedPolicy,
    rules: Sequence[Change],
    definitions: Sequence[Change],
    *,
    caller: str | None = None,
) -> list[Flag]:
    """Every risk of replacing `old` with `new`, sorted by location then id."""
    checks = Checks(old, new, rules, definitions)
    flags = [
        *checks.management_path(),
        *checks.opens_hubs(),
        *checks.support_outside_gate(),
        *checks.logging_off(),
        *checks.widens_to_any(),
        *(checks.lockout(caller) if caller else []),
    ]
    unique = {(f.id, f.where, f.message): f for f in flags}
    return [unique[k] for k in sorted(unique, key=lambda k: (k[1].side != "new", k[1], k[0], k[2]))]


class Checks:
    """The two policies as flows in one universe, and where each rule's change is written."""

    def __init__(
        self,
        old: LoadedPolicy | None,
        new: LoadedPolicy,
        rules: Sequence[Change],
        definitions: Sequence[Change],
    ) -> None:
        self.old, self.new = old, new
        universe = Universe.of(old.policy if old else None, new.policy)
        self.now = Geometry(new.policy, universe)
        self.before = Geometry(old.policy, universe) if old else None
        if self.before is not None:
            self.before.rename = zone_renames(self.before, self.now)
        self.universe = universe
        self.rule_changes = {c.name: c for c in rules}
        self.renamed = {c.old_name: c.name for c in rules if c.old_name}
        self.definitions = {(c.section, c.name): c for c in definitions}

    # -- the flows on each side ------------------------------------------------------------

    @property
    def old_flows(self) -> tuple[Flow, ...]:
        return self.before.flows if self.before else ()

    @property
    def lost_baseline(self) -> tuple[Flow, ...]:
        """What passes today, for "is something lost?": allow-all when nothing is loaded."""
        return self.old_flows if self.before else (allow_all(self.universe),)

    def old_endpoint_zone(self, name: str) -> str | None:
        return self.before.endpoint_zone(name) if self.before else None

    # -- the checks ------------------------------------------------------------------------

    def management_path(self) -> Iterator[Flag]:
        """Plant addresses that reached the appliance on tcp 443 or 22 and now reach neither."""
        plant = (self.before or self.now).kind_region("plant")
        still = union_all(
            f.sources
            for f in self.now.flows
            if f.gate is None and covers_atom(f.dests, SELF) and f.ports.meet(MANAGEMENT)
        )
        for flow in self.lost_baseline:
            ports = flow.ports.meet(MANAGEMENT)
            if flow.gate is not None or not covers_atom(flow.dests, SELF) or not ports:
                continue
            lost = flow.sources.meet(plant).minus(still)
            if lost:
                yield Flag(
                    "removes-management-path",
                    f"{self.describe(lost, self.before or self.now)} could reach the "
                    f"appliance on {ports_text(ports)}{self.through(flow)} and now reaches it "
                    "on neither tcp 443 nor tcp 22: the plant loses its management path",
                    self.cause(flow, "old", ("gate", "allow", "from", "to")),
                )

    def opens_hubs(self) -> Iterator[Flag]:
        trusted = self.now.kind_region("hubs", "support", "other")
        untrusted = self.universe.everything.minus(trusted)
        for flow in self.now.flows:
            atoms = [a for a in flow.dests if self.is_hubs_atom(a)]
            found = gaps(flow, untrusted, atoms, ALL_PORTS, self.old_flows, self.old_endpoint_zone)
            for atoms, gap in grouped(found):
                yield Flag(
                    "opens-hubs",
                    f"{self.describe(gap.sources, self.now)} can now reach "
                    f"{self.atoms_text(atoms)} on {ports_text(gap.ports)}{self.through(flow)}"
                    f"{gate_text(flow)}",
                    self.cause(flow, "new", ("to", "from", "allow", "gate")),
                )

    def support_outside_gate(self) -> Iterator[Flag]:
        support = self.now.kind_region("support")
        ungated_before = [f for f in self.old_flows if f.gate is None]
        for flow in self.now.flows:
            if flow.gate is not None:
                continue
            found = gaps(
                flow, support, flow.dests, ALL_PORTS, ungated_before, self.old_endpoint_zone
            )
            for atoms, gap in grouped(found):
                yield Flag(
                    "support-outside-gate",
                    f"{self.describe(gap.sources, self.now)} can reach "
                    f"{self.atoms_text(atoms)} on {ports_text(gap.ports)}{self.through(flow)} "
                    "without a gate: support access is no longer only while a gate is open",
                    self.cause(flow, "new", ("gate", "from", "to", "allow")),
                )

    def logging_off(self) -> Iterator[Flag]:
        before_drops = self.old.policy.defaults.log_drops if self.old else True
        if before_drops and not self.new.policy.defaults.log_drops:
            yield Flag(
                "logging-off",
                "defaults.log_drops turns drop logging off: dropped packets no longer reach "
                "NFLOG, and the watcher no longer sees them",
                key_where(self.new, "new", ("defaults", "log_drops")),
            )
        logged_now = [f for f in self.now.flows if f.log]
        for flow in self.old_flows:
            if not flow.log:
                continue
            unlogged = gaps(
                flow, flow.sources, flow.dests, flow.ports, logged_now, self.now.endpoint_zone,
                any_gate,
            )  # fmt: skip
            for atoms, gap in grouped(self._still_accepted(unlogged)):
                yield Flag(
                    "logging-off",
                    f"connections from {self.describe(gap.sources, self.before or self.now)} "
                    f"to {self.atoms_text(atoms)} on {ports_text(gap.ports)} were logged"
                    f"{self.through(flow)}; they are still accepted but no longer logged",
                    self.cause(flow, "old", ("log",)),
                )

    def _still_accepted(self, unlogged: Iterable[Gap]) -> Iterator[Gap]:
        """The parts of `unlogged` that the new policy still accepts."""
        for gap in unlogged:
            probe = dataclasses.replace(gap.flow, sources=gap.sources, ports=gap.ports)
            refused = gaps(
                probe, gap.sources, [gap.atom], gap.ports, self.now.flows,
                self.now.endpoint_zone, any_gate,
            )  # fmt: skip
            accepted = gap.sources.minus(union_all(r.sources for r in refused))
            if accepted:
                yield Gap(gap.flow, gap.atom, gap.ports, accepted)

    def widens_to_any(self) -> Iterator[Flag]:
        old_rules = {r.name: r for r in self.old.policy.rules} if self.old else {}
        for index, rule in enumerate(self.new.policy.rules):
            change = self.rule_changes.get(rule.name)
            if change is None or change.change == "renamed":
                continue
            before = old_rules.get(rule.name)
            for side, names in (("from", rule.from_), ("to", rule.to)):
                had = (before.from_ if side == "from" else before.to) if before else []
                if ANY in names and ANY not in had:
                    where = value_where(
                        self.new, "new", (*self.new.rule_path(index), side, names.index(ANY))
                    )
                    what = "from any zone" if side == "from" else "to any zone"
                    yield Flag(
                        "widens-to-any",
                        f"rule '{rule.name}' now allows traffic {what} (`{side}: any`), "
                        "including zones added later",
                        where,
                    )

    def lockout(self, caller: str) -> Iterator[Flag]:
        try:
            net = parse_net(caller.split("%")[0])
        except ValueError:
            return
        here = point_region(net, self.universe.ifaces)
        for flow in self.lost_baseline:
            if not covers_atom(flow.dests, SELF):
                continue
            found = gaps(flow, here, [SELF], MANAGEMENT, self.now.flows, self.now.endpoint_zone)
            for gap in merge_gaps(found):
                yield Flag(
                    "lockout-risk",
                    f"your session comes from {caller}, which could reach the "
                    f"appliance on {ports_text(gap.ports)}{self.through(flow)} and no longer "
                    "can: new sessions from there would be refused (this one survives as an "
                    "established connection)",
                    self.cause(flow, "old", ("gate", "allow", "from", "to")),
                )

    # -- helpers ---------------------------------------------------------------------------

    def is_hubs_atom(self, atom: str) -> bool:
        zones = self.now.policy.zones
        if atom == ANY:
            return any(z.kind == "hubs" for z in zones.values())
        if atom.startswith("zone:"):
            return zones[atom[5:]].kind == "hubs" if atom[5:] in zones else False
        if atom.startswith("ep:"):
            zone = self.now.endpoint_zone(atom[3:])
            return zone is not None and zone in zones and zones[zone].kind == "hubs"
        return False

    def through(self, flow: Flow) -> str:
        return "" if flow.index < 0 else f" through rule '{flow.rule}'"

    def cause(self, flow: Flow, side: str, prefer: Sequence[str] = ()) -> Where:
        """Where the change that produces a flag is written, best first.

        A rule's changed field (those in `prefer` first: the ones that matter to the flag);
        else a changed definition it uses; else the rule itself; for a rule that is gone,
        its place in the old file.
        """
        if flow.index < 0:  # nothing loaded before: the candidate's rules section
            return key_where(self.new, "new", ("rules",))
        name = self.renamed.get(flow.rule, flow.rule) if side == "old" else flow.rule
        indexes = rule_index(self.new.policy)
        if name not in indexes:
            assert self.old is not None
            return value_where(
                self.old, "old", self.old.rule_path(rule_index(self.old.policy)[name])
            )
        index = indexes[name]
        change = self.rule_changes.get(name)
        if change is not None and change.fields:
            fields = [f.field for f in change.fields]
            field = next((f for f in prefer if f in fields), fields[0])
            return value_where(self.new, "new", (*self.new.rule_path(index), field))
        for via in change.via if change is not None else ():
            noun, _, what = via.partition(" ")
            section = f"{noun}s"
            if (section, what) in self.definitions:
                return self.definitions[(section, what)].where
        return value_where(self.new, "new", self.new.rule_path(index))

    def atoms_text(self, atoms: Sequence[str]) -> str:
        texts = [self.atom_text(a) for a in atoms]
        return texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + " and " + texts[-1]

    def atom_text(self, atom: str) -> str:
        if atom == SELF:
            return "the appliance"
        if atom == ANY:
            return "any zone (hubs included)"
        kind, _, name = atom.partition(":")
        return f"zone '{name}'" if kind == "zone" else f"endpoint '{name}'"

    def describe(self, region: Region, geometry: Geometry) -> str:
        """'zone plant', 'part of zone plant (198.18.20.0/25 on wan0)', or addresses.

        Addresses are listed only where the zone names do not say it all: for zones only
        partly in `region`, and for addresses in no zone.
        """
        whole: list[str] = []
        partial: list[str] = []
        for name in geometry.policy.zones:
            zone = geometry.zone(name)
            if region.meet(zone):
                (whole if region.covers(zone) else partial).append(name)
        rest = region.minus(union_all(geometry.zone(n) for n in [*whole, *partial]))
        words = []
        if whole:
            words.append(_zones_text(whole))
        if partial:
            sample = region_sample(region.meet(union_all(geometry.zone(n) for n in partial)))
            words.append(f"part of {_zones_text(partial)} ({sample})")
        if rest:
            words.append(f"addresses in no zone ({region_sample(rest)})")
        return " and ".join(words) or "no address"


def _zones_text(names: Sequence[str]) -> str:
    quoted = ", ".join(f"'{n}'" for n in names)
    return f"{'zones' if len(names) > 1 else 'zone'} {quoted}"


def grouped(found: Iterable[Gap]) -> list[tuple[list[str], Gap]]:
    """Gaps of one rule that differ only in their destination, as one (atoms, gap)."""
    groups: dict[tuple[object, ...], tuple[list[str], Gap]] = {}
    for gap in merge_gaps(found):
        key = (gap.flow.index, gap.ports.fingerprint(), gap.sources.fingerprint())
        if key in groups:
            groups[key][0].append(gap.atom)
        else:
            groups[key] = ([gap.atom], gap)
    return [groups[k] for k in sorted(groups, key=lambda k: (k[0], groups[k][0]))]


def zone_renames(before: Geometry, now: Geometry) -> dict[str, str]:
    """Old zone name -> new name, for zones that only changed name (same kind, overlapping)."""
    renames: dict[str, str] = {}
    fresh = [z for z in now.policy.zones if z not in before.policy.zones]
    for name, zone in before.policy.zones.items():
        if name in now.policy.zones:
            continue
        for candidate in fresh:
            same_kind = now.policy.zones[candidate].kind == zone.kind
            if same_kind and before.zone(name).meet(now.zone(candidate)):
                renames[name] = candidate
                fresh.remove(candidate)
                break
    return renames


def point_region(net: Net, ifaces: Iterable[str]) -> Region:
    """One address (or network) arriving on any interface."""
    spans = Spans(((net.first, net.last),))
    return Region({addr_key(i, net.version): spans for i in ifaces})


def gate_text(flow: Flow) -> str:
    return f" while gate '{flow.gate}' is open" if flow.gate else ""


def ports_text(ports: Region) -> str:
    words = []
    for key in ports.sorted_keys():
        if len(key) == 2:
            words.append(f"{key[0]} {key[1]}")
            continue
        for low, high in ports.parts[key].items:
            if (low, high) in ((0, 65535), (1, 65535)):
                words.append(f"every {key[0]} port")
            else:
                words.append(f"{key[0]} {low}" if low == high else f"{key[0]} {low}-{high}")
    return _shorten(words, 6)


def region_sample(region: Region, count: int = 2) -> str:
    words = []
    for key in region.sorted_keys():
        if key[0] == "fqdn":
            words.append(key[1])
        elif key[0] == "addr":
            for span in region.parts[key].items:
                words.append(f"{span_text(int(key[2]), span)} on {iface_text(key[1])}")
    return _shorten(words, count)


def iface_text(iface: str) -> str:
    return "any other interface" if iface == "*" else iface


def span_text(version: int, span: tuple[int, int]) -> str:
    """A CIDR block when the span is one, else 'first-last'."""
    bits = 32 if version == 4 else 128
    first, last = span
    size = last - first + 1
    if size & (size - 1) == 0 and first % size == 0:  # a power of two, aligned: a block
        return str(Net(version, first, last, bits - (size.bit_length() - 1)))
    return f"{Net(version, first, first, bits)}-{Net(version, last, last, bits)}"


def _shorten(words: list[str], count: int) -> str:
    shown = ", ".join(words[:count])
    return shown + (f" and {len(words) - count:,} more" if len(words) > count else "")
