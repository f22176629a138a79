"""`policy plan`: what applying a policy would change, rule by rule, with risk flags (pure).

`plan(old, new)` compares the policy of the current revision (`old`, None when nothing is
loaded) with a candidate (`new`) at the level people write policy in:

* rules, matched by name: added, removed, renamed (same meaning, new name) or changed, with
  the fields that changed and the definitions they use whose meaning changed ("through zone
  hubs"); each with its YAML location (in the new file, or in the old one for removals);
* definitions (zones, endpoints, services, gates, interfaces, defaults, site): their fields,
  and element diffs of networks, addresses, names and ports, with counts for large sets;
* risk flags (`gateway/policy/risks.py`), computed from what the rules let through.

Descriptions and comments are not compared, and rule order does not matter (every rule is an
allow), so edits to them plan as "no change". Output is deterministic: `render()` for people,
`to_json()` for tools.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gateway.policy.addresses import parse_net
from gateway.policy.load import LoadedPolicy
from gateway.policy.model import Endpoint, Policy, RateLimit, Rule, Service, Zone
from gateway.policy.source import PathItem

Side = Literal["old", "new"]
ChangeKind = Literal["added", "removed", "changed", "renamed"]
SHOW = 10  # elements listed per side before counts take over
SINGULAR = {
    "zones": "zone",
    "endpoints": "endpoint",
    "services": "service",
    "gates": "gate",
    "interfaces": "interface",
    "defaults": "defaults",
    "site": "site",
}
MARKER = {"added": "+", "removed": "−", "changed": "~", "renamed": "~"}


@dataclass(frozen=True, order=True)
class Where:
    """A place in the old (stored revision) or new (candidate) policy file."""

    side: Side
    file: str
    line: int
    col: int = 1

    def render(self) -> str:
        text = f"{self.file}:{self.line}"
        return text if self.side == "new" else f"was {text}"

    def to_json(self) -> dict[str, Any]:
        return {"side": self.side, "file": self.file, "line": self.line, "column": self.col}


@dataclass(frozen=True)
class FieldChange:
    field: str
    old: str
    new: str


@dataclass(frozen=True)
class ElementChange:
    """Elements of one list-valued field (networks, addresses, names, ports) added/removed."""

    field: str
    added: tuple[str, ...]
    removed: tuple[str, ...]

    def counts(self, limit: int = SHOW) -> str:
        parts = [f"+{len(self.added):,} {self.field}"] if self.added else []
        if self.removed:
            parts.append(f"−{len(self.removed):,}" + ("" if self.added else f" {self.field}"))
        text = ", ".join(parts)
        if len(self.added) > limit or len(self.removed) > limit:
            text += f" (showing {limit})"
        return text


@dataclass(frozen=True)
class Change:
    """One rule or definition that apply would add, remove, rename or change."""

    section: str  # rules, zones, endpoints, services, gates, interfaces, defaults, site
    name: str
    change: ChangeKind
    where: Where
    fields: tuple[FieldChange, ...] = ()
    elements: tuple[ElementChange, ...] = ()
    via: tuple[str, ...] = ()  # rules: changed definitions they use, as "zone hubs"
    old_name: str | None = None  # renamed rules
    summary: str = ""  # added and removed rules: what the rule allows

    @property
    def label(self) -> str:
        noun = "rule" if self.section == "rules" else SINGULAR[self.section]
        return noun if self.section in ("defaults", "site") else f"{noun} {self.name}"

    def detail_lines(self, limit: int = SHOW) -> list[str]:
        lines = [self.summary] if self.summary else []
        if self.old_name is not None:
            same = "it allows the same" if self.section == "rules" else "otherwise the same"
            lines.append(f"renamed from {self.old_name}; {same}")
        lines += [f"{f.field}: {f.old} -> {f.new}" for f in self.fields]
        for element in self.elements:
            lines.append(element.counts(limit))
            lines += [f"  + {e}" for e in element.added[:limit]]
            lines += [f"  − {e}" for e in element.removed[:limit]]
        if self.via:
            lines.append("through changed " + ", ".join(self.via))
        return lines

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "section": self.section,
            "name": self.name,
            "change": self.change,
            "where": self.where.to_json(),
            "fields": [{"field": f.field, "old": f.old, "new": f.new} for f in self.fields],
            "elements": [
                {
                    "field": e.field,
                    "added_count": len(e.added),
                    "removed_count": len(e.removed),
                    "added": list(e.added),
                    "removed": list(e.removed),
                }
                for e in self.elements
            ],
            "via": list(self.via),
        }
        if self.old_name is not None:
            data["old_name"] = self.old_name
        if self.summary:
            data["summary"] = self.summary
        return data


@dataclass(frozen=True)
class Flag:
    """A risk: a stable id, a sentence, and the YAML location that causes it."""

    id: str
    message: str
    where: Where

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "message": self.message, "where": self.where.to_json()}


@dataclass(frozen=True)
class Plan:
    old_file: str | None  # None: nothing is loaded
    new_file: str
    rules: tuple[Change, ...]
    definitions: tuple[Change, ...]
    flags: tuple[Flag, ...]
    same_text: bool

    @property
    def changed(self) -> bool:
        return bool(self.rules or self.definitions)

    def render(self, limit: int = SHOW) -> str:
        """Readable plan: risks first, then rules, then definitions."""
        return "\n".join(render_lines(self, limit)) + "\n"

    def to_json(self) -> dict[str, Any]:
        return {
            "old": None if self.old_file is None else {"file": self.old_file},
            "new": {"file": self.new_file},
            "changed": self.changed,
            "flags": [f.to_json() for f in self.flags],
            "rules": [c.to_json() for c in self.rules],
            "definitions": [c.to_json() for c in self.definitions],
            "summary": {
                "flags": len(self.flags),
                **{f"rules_{k}": _count(self.rules, k) for k in MARKER},
                **{f"definitions_{k}": _count(self.definitions, k) for k in MARKER},
            },
        }


def _count(changes: Iterable[Change], kind: str) -> int:
    return sum(1 for c in changes if c.change == kind)


def plan(old: LoadedPolicy | None, new: LoadedPolicy, *, caller: str | None = None) -> Plan:
    """What replacing `old` (None: nothing loaded) with `new` changes, and its risks.

    `caller` is the address the user's own session comes from (SSH_CONNECTION), for the
    lockout check; the function itself reads no environment.
    """
    from gateway.policy.risks import risk_flags

    renames = definition_renames(old, new)
    definitions = tuple(diff_definitions(old, new, renames))
    rules = tuple(diff_rules(old, new, definitions, renames))
    flags = tuple(risk_flags(old, new, rules, definitions, caller=caller))
    return Plan(
        old_file=None if old is None else old.file,
        new_file=new.file,
        rules=rules,
        definitions=definitions,
        flags=flags,
        same_text=old is not None and old.source.text == new.source.text,
    )


# -- locations -----------------------------------------------------------------------------


def key_where(loaded: LoadedPolicy, side: Side, path: tuple[PathItem, ...]) -> Where:
    position = loaded.source.key_at(path)
    return Where(side, loaded.file, position.line, position.col)


def value_where(loaded: LoadedPolicy, side: Side, path: tuple[PathItem, ...]) -> Where:
    position = loaded.source.value_at(path)
    return Where(side, loaded.file, position.line, position.col)


def rule_index(policy: Policy) -> dict[str, int]:
    return {rule.name: index for index, rule in enumerate(policy.rules)}


# -- rules ---------------------------------------------------------------------------------

RULE_FIELDS = ("from", "to", "allow", "gate", "log", "rate_limit")


def rate_text(limit: RateLimit | None) -> str:
    if limit is None:
        return "none"
    burst = f" burst {limit.burst}" if limit.burst else ""
    return f"{limit.rate}{burst}" + (" per source" if limit.per_source else "")


def rule_meaning(
    rule: Rule, names: Names | None = None, policy: Policy | None = None
) -> dict[str, str]:
    """What a rule allows, as comparable text (lists sorted: their order means nothing).

    `names` and `policy` translate an old rule's references into today's names, so a rule
    that uses a renamed zone, endpoint or service means the same as before.
    """

    def peer(name: str) -> str:
        if names is None or policy is None:
            return name
        section = "zones" if name in policy.zones else "endpoints"
        return names(section, name)

    def service(name: str) -> str:
        return names("services", name) if names is not None else name

    return {
        "from": ", ".join(sorted(peer(p) for p in rule.from_)),
        "to": ", ".join(sorted(peer(p) for p in rule.to)),
        "allow": ", ".join(sorted(service(s) for s in rule.allow)),
        "gate": rule.gate or "none",
        "log": "true" if rule.log else "false",
        "rate_limit": rate_text(rule.rate_limit),
    }


def rule_summary(rule: Rule) -> str:
    text = f"from {', '.join(rule.from_)} to {', '.join(rule.to)}, allow {', '.join(rule.allow)}"
    if rule.gate:
        text += f", while gate {rule.gate} is open"
    if rule.log:
        text += ", logged"
    if rule.rate_limit:
        text += f", limited to {rate_text(rule.rate_limit)}"
    return text


def rule_dependencies(rule: Rule, policy: Policy) -> list[tuple[str, str]]:
    """(section, name) of the definitions a rule's meaning rests on, interface roles too."""
    zones: list[str] = []
    deps: list[tuple[str, str]] = []
    for peer in [*rule.from_, *rule.to]:
        if peer in policy.zones:
            zones.append(peer)
        elif peer in policy.endpoints:
            deps.append(("endpoints", peer))
            zone = policy.endpoints[peer].zone
            if zone is not None and zone in policy.zones:
                zones.append(zone)
    for zone in zones:
        deps.append(("zones", zone))
        deps += [("interfaces", role) for role in policy.zones[zone].interfaces]
    deps += [("services", s) for s in rule.allow]
    if rule.gate:
        deps.append(("gates", rule.gate))
    return list(dict.fromkeys(deps))


def changed_definitions(definitions: Iterable[Change]) -> set[tuple[str, str]]:
    """(section, name) of definitions whose meaning changed (renames change nothing)."""
    return {(c.section, c.name) for c in definitions if c.change in ("changed", "removed")}


def diff_rules(
    old: LoadedPolicy | None,
    new: LoadedPolicy,
    definitions: Iterable[Change],
    renames: Renames | None = None,
) -> list[Change]:
    """Rule changes: new-file order first (added, renamed, changed), then removals."""
    renames = renames or definition_renames(old, new)
    old_rules = {r.name: r for r in old.policy.rules} if old is not None else {}
    new_rules = {r.name: r for r in new.policy.rules}
    gone = [r for name, r in old_rules.items() if name not in new_rules]
    added = [r for n, r in new_rules.items() if n not in old_rules]
    old_meaning = (
        {r.name: rule_meaning(r, renames, old.policy) for r in old.policy.rules} if old else {}
    )
    renamed = _renames(gone, added, old_meaning)
    touched = changed_definitions(definitions)
    changes: list[Change] = []
    for index, rule in enumerate(new.policy.rules):
        where = value_where(new, "new", new.rule_path(index))
        before = old_rules.get(rule.name)
        if rule.name in renamed:
            changes.append(
                Change("rules", rule.name, "renamed", where, old_name=renamed[rule.name])
            )
        elif before is None:
            changes.append(Change("rules", rule.name, "added", where, summary=rule_summary(rule)))
        else:
            change = _changed_rule(old_meaning[rule.name], rule, where, touched, new.policy)
            if change is not None:
                changes.append(change)
    kept = set(renamed.values())
    for rule in gone:
        if rule.name not in kept and old is not None:
            where = value_where(old, "old", old.rule_path(rule_index(old.policy)[rule.name]))
            changes.append(Change("rules", rule.name, "removed", where, summary=rule_summary(rule)))
    return changes


def _renames(
    gone: list[Rule], added: list[Rule], old_meaning: Mapping[str, dict[str, str]]
) -> dict[str, str]:
    """New name -> old name for added rules that mean exactly what a removed rule meant."""
    by_meaning: dict[tuple[str, ...], list[str]] = {}
    for rule in gone:
        by_meaning.setdefault(tuple(old_meaning[rule.name].values()), []).append(rule.name)
    renamed: dict[str, str] = {}
    for rule in added:
        names = by_meaning.get(tuple(rule_meaning(rule).values()))
        if names:
            renamed[rule.name] = names.pop(0)
    return renamed


def _changed_rule(
    old_text: dict[str, str],
    after: Rule,
    where: Where,
    touched: set[tuple[str, str]],
    policy: Policy,
) -> Change | None:
    new_text = rule_meaning(after)
    fields = tuple(
        FieldChange(name, old_text[name], new_text[name])
        for name in RULE_FIELDS
        if old_text[name] != new_text[name]
    )
    via = tuple(
        f"{SINGULAR[section]} {name}"
        for section, name in rule_dependencies(after, policy)
        if (section, name) in touched
    )
    if not fields and not via:
        return None
    return Change("rules", after.name, "changed", where, fields=fields, via=via)


# -- definitions ---------------------------------------------------------------------------


def _net_order(text: str) -> tuple[int, int, int]:
    net = parse_net(text)
    return net.version, net.first, net.prefixlen


def _port_order(text: str) -> tuple[str, int, str]:
    proto, _, value = text.partition(" ")
    low = value.split("-")[0]
    return (proto, int(low), "") if low.isdigit() else (proto, 0, value)


def element_diff(
    field: str, old: Iterable[str], new: Iterable[str], order: Callable[[str], Any] = str
) -> ElementChange | None:
    before, after = set(old), set(new)
    if before == after:
        return None
    return ElementChange(
        field, tuple(sorted(after - before, key=order)), tuple(sorted(before - after, key=order))
    )


def service_elements(service: Service) -> list[str]:
    items = [f"{proto} {port}" for proto in ("tcp", "udp") for port in getattr(service, proto)]
    items += [f"{proto} {kind}" for proto in ("icmp", "icmpv6") for kind in getattr(service, proto)]
    return items


Parts = tuple[dict[str, str], dict[str, list[str]]]  # fields as text, list fields
Names = Callable[[str, str], str]  # (section, old name) -> the name it has now


def same_name(_: str, name: str) -> str:
    return name


def _zone_parts(zone: Zone, names: Names) -> Parts:
    roles = sorted(names("interfaces", r) for r in zone.interfaces)
    return {"kind": zone.kind, "interfaces": ", ".join(roles) or "none"}, {
        "networks": list(zone.networks)
    }


def _endpoint_parts(endpoint: Endpoint, names: Names) -> Parts:
    zone = names("zones", endpoint.zone) if endpoint.zone else "none"
    return {"zone": zone}, {"addresses": list(endpoint.addresses), "names": list(endpoint.fqdn)}


def _service_parts(service: Service, _: Names) -> Parts:
    return {}, {"ports": service_elements(service)}


def _gate_parts(_: object, __: Names) -> Parts:
    return {}, {}


def _interface_parts(kernel: str, _: Names) -> Parts:
    return {"device": kernel}, {}


# In dependency order: a zone's parts name interface roles, an endpoint's name a zone.
PARTS: dict[str, Callable[[Any, Names], Parts]] = {
    "interfaces": _interface_parts,
    "zones": _zone_parts,
    "endpoints": _endpoint_parts,
    "services": _service_parts,
    "gates": _gate_parts,
}
# Gates keep their name: open grants live in sets named after them.
RENAMABLE = ("interfaces", "zones", "endpoints", "services")
ORDER: dict[str, Callable[[str], Any]] = {
    "networks": _net_order,
    "addresses": _net_order,
    "ports": _port_order,
}


@dataclass
class Renames:
    """Definitions that only changed name: per section, old name -> new name."""

    by_section: dict[str, dict[str, str]]

    def __call__(self, section: str, name: str) -> str:
        return self.by_section.get(section, {}).get(name, name)


def definition_renames(old: LoadedPolicy | None, new: LoadedPolicy) -> Renames:
    """Removed definitions whose body reappears, identical, under a new name."""
    renames = Renames({})
    if old is None:
        return renames
    for section in RENAMABLE:
        parts = PARTS[section]
        before, after = getattr(old.policy, section), getattr(new.policy, section)
        gone = {n: parts(v, renames) for n, v in before.items() if n not in after}
        found: dict[str, str] = {}
        for name, value in after.items():
            if name in before:
                continue
            body = parts(value, same_name)
            match = next((o for o, b in gone.items() if b == body and o not in found), None)
            if match is not None:
                found[match] = name
        renames.by_section[section] = found
    return renames


def diff_definitions(
    old: LoadedPolicy | None, new: LoadedPolicy, renames: Renames | None = None
) -> list[Change]:
    renames = renames or definition_renames(old, new)
    changes: list[Change] = []
    for section, parts in PARTS.items():
        before: Mapping[str, Any] = getattr(old.policy, section) if old is not None else {}
        after: Mapping[str, Any] = getattr(new.policy, section)
        was = {v: k for k, v in renames.by_section.get(section, {}).items()}
        for name, value in after.items():
            where = key_where(new, "new", (section, name))
            if name in was:
                changes.append(Change(section, name, "renamed", where, old_name=was[name]))
            elif name not in before:
                body = _describe(parts(value, same_name))
                changes.append(Change(section, name, "added", where, summary=body))
            else:
                change = _changed(
                    section, name, where, parts(before[name], renames), parts(value, same_name)
                )
                if change is not None:
                    changes.append(change)
        for name in before:
            if name not in after and name not in renames.by_section.get(section, {}):
                assert old is not None
                changes.append(
                    Change(section, name, "removed", key_where(old, "old", (section, name)))
                )
    changes += _flat_section("site", old, new, ("name", "resolver"))
    changes += _flat_section("defaults", old, new, None)
    return changes


def _describe(parts: Parts) -> str:
    fields, elements = parts
    words = [f"{k} {v}" for k, v in fields.items() if v != "none"]
    for key, items in elements.items():
        if items:
            shown = ", ".join(items[:SHOW]) + (
                f" and {len(items) - SHOW:,} more" if len(items) > SHOW else ""
            )
            words.append(f"{key} {shown}")
    return "; ".join(words)


def _changed(
    section: str,
    name: str,
    where: Where,
    before: Parts,
    after: Parts,
) -> Change | None:
    fields = tuple(
        FieldChange(k, before[0][k], after[0][k]) for k in after[0] if before[0][k] != after[0][k]
    )
    elements = tuple(
        e
        for k in after[1]
        if (e := element_diff(k, before[1][k], after[1][k], ORDER.get(k, str))) is not None
    )
    if not fields and not elements:
        return None
    return Change(section, name, "changed", where, fields=fields, elements=elements)


def _flat_section(
    section: str, old: LoadedPolicy | None, new: LoadedPolicy, names: tuple[str, ...] | None
) -> list[Change]:
    """Site and defaults: one change listing the fields that differ."""
    after = getattr(new.policy, section)
    if old is None:
        return []
    before = getattr(old.policy, section)
    keys = names or tuple(type(after).model_fields)
    fields = tuple(
        FieldChange(k, _text(getattr(before, k)), _text(getattr(after, k)))
        for k in keys
        if getattr(before, k) != getattr(after, k)
    )
    if not fields:
        return []
    return [Change(section, section, "changed", key_where(new, "new", (section,)), fields=fields)]


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "none" if value is None else str(value)


# -- rendering -----------------------------------------------------------------------------


def render_lines(plan: Plan, limit: int = SHOW) -> list[str]:
    lines = _flag_lines(plan)
    if not plan.changed:
        lines += ["", _no_change(plan)]
        return lines
    for title, changes in (("RULES", plan.rules), ("DEFINITIONS", plan.definitions)):
        if changes:
            lines += ["", f"{title} ({_tally(changes)})"]
            for change in changes:
                lines.append(f"  {MARKER[change.change]} {change.label}  {change.where.render()}")
                lines += [f"      {line}" for line in change.detail_lines(limit)]
    return lines


def _flag_lines(plan: Plan) -> list[str]:
    if not plan.flags:
        return ["RISKS: none flagged"]
    lines = [f"RISKS ({len(plan.flags)})"]
    for flag in plan.flags:
        lines.append(f"  !! {flag.id}  {flag.where.render()}")
        lines.append(f"     {flag.message}")
    return lines


def _tally(changes: Iterable[Change]) -> str:
    counts = {k: 0 for k in ("added", "removed", "renamed", "changed")}
    for change in changes:
        counts[change.change] += 1
    return ", ".join(f"{n} {k}" for k, n in counts.items() if n)


def _no_change(plan: Plan) -> str:
    if plan.same_text:
        return "No changes: this is the policy that is loaded."
    return (
        "No changes: apply would allow exactly what is loaded now "
        "(the text differs only in comments, descriptions, order or layout)."
    )
