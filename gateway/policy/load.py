"""Policy file -> validated `Policy`, or every problem in it at once.

The document is validated section by section and item by item, so one broken zone or rule
does not hide problems elsewhere; semantic checks (references, overlaps, rules that can never
match) then run on every item that has a valid shape. Nothing here touches the system.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from gateway.policy.derive import derive
from gateway.policy.detection import Detection
from gateway.policy.errors import PolicyError, Position, Problem, did_you_mean, quoted_list
from gateway.policy.model import (
    NAME_PATTERN,
    REQUIRED_SECTIONS,
    SECTIONS,
    Defaults,
    Endpoint,
    Gate,
    InterfaceName,
    Policy,
    Rule,
    Service,
    Site,
    SupportVpn,
    TimeService,
    Zone,
)
from gateway.policy.shape_errors import PATTERN_HINTS, translate_all
from gateway.policy.source import START, PathItem, Source, describe_kind, parse, read_source

# Sections that map names to definitions; each entry is validated on its own.
MAPPED: dict[str, Any] = {
    "interfaces": InterfaceName,
    "zones": Zone,
    "endpoints": Endpoint,
    "services": Service,
    "gates": Gate,
}
_NAME_RE = re.compile(NAME_PATTERN)
_ADAPTERS: dict[Any, TypeAdapter[Any]] = {}


def _is_name(value: str) -> bool:
    return _NAME_RE.match(value) is not None


def _adapter(annotation: Any) -> TypeAdapter[Any]:
    if annotation not in _ADAPTERS:
        _ADAPTERS[annotation] = TypeAdapter(annotation)
    return _ADAPTERS[annotation]


@dataclass
class Parts:
    """The pieces of a policy whose shape is valid, plus every name the file declares.

    `declared` holds names even of entries whose body is broken, so that a reference to them
    is not also reported as undefined.
    """

    site: Site | None = None
    interfaces: dict[str, str] = field(default_factory=dict)
    zones: dict[str, Zone] = field(default_factory=dict)
    endpoints: dict[str, Endpoint] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    gates: dict[str, Gate] = field(default_factory=dict)
    rules: list[tuple[int, Rule]] = field(default_factory=list)
    defaults: Defaults | None = None
    time: TimeService | None = None
    support_vpn: SupportVpn | None = None
    detection: Detection | None = None
    declared: dict[str, set[str]] = field(default_factory=dict)

    def names(self, section: str) -> set[str]:
        """Names the file declares in `section`, even those whose bodies are broken."""
        return self.declared.get(section, set())


@dataclass(frozen=True)
class LoadedPolicy:
    """A valid policy with the source it came from (for traceable rules) and its warnings."""

    policy: Policy  # with the rules the policy implies (derive.py) after the written ones
    source: Source
    warnings: tuple[Problem, ...] = ()
    rule_paths: tuple[tuple[PathItem, ...], ...] = ()  # where each rule comes from in the YAML
    written: Policy | None = None  # the policy as written, before derive() added to it

    def with_vpn_mode(self, mode: str) -> LoadedPolicy:
        """The same policy with support_vpn.mode overridden (plantgate vpn enable/disable)."""
        base = self.written or self.policy
        if base.support_vpn is None or base.support_vpn.mode == mode:
            return self
        support = base.support_vpn.model_copy(update={"mode": mode})
        effective, paths = derive(base.model_copy(update={"support_vpn": support}))
        return replace(self, policy=effective, rule_paths=paths, written=base)

    @property
    def file(self) -> str:
        return self.source.file

    def position(self, path: Sequence[PathItem]) -> Position:
        return self.source.value_at(path)

    def rule_path(self, index: int) -> tuple[PathItem, ...]:
        """The YAML path a rule comes from: `rules[i]`, or the section that implies it."""
        return self.rule_paths[index] if index < len(self.rule_paths) else ("rules", index)

    def rule_line(self, index: int) -> int:
        """The line of the rule's `- name:` item, used in every generated nftables comment."""
        return self.source.value_at(self.rule_path(index)).line


def load_file(path: str | Path) -> LoadedPolicy:
    """Read and validate a policy file; raises PolicyError with located problems."""
    return load_text(read_source(path, "policy file"), str(path))


def load_text(text: str, file: str) -> LoadedPolicy:
    """Validate policy text; raises PolicyError with every problem found, in file order."""
    from gateway.policy.validate import check_semantics

    source = parse(text, file)
    parts, problems = validate_shapes(source)
    problems += check_semantics(parts, source)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise PolicyError(errors)
    try:
        policy = Policy.model_validate(source.data)
    except ValidationError as exc:  # a shape the per-item checks missed: still located
        raise PolicyError(translate_all(exc.errors(), (), source, Policy)) from None
    warnings = tuple(
        sorted((p for p in problems if p.severity == "warning"), key=lambda p: p.position)
    )
    effective, paths = derive(policy)
    return LoadedPolicy(
        policy=effective, source=source, warnings=warnings, rule_paths=paths, written=policy
    )


def validate_shapes(source: Source) -> tuple[Parts, list[Problem]]:
    """Check each section's and item's shape; return what is valid and what is not."""
    data: dict[str, Any] = source.data
    parts = Parts()
    problems: list[Problem] = []
    for key in data:
        if key not in SECTIONS:
            hint = did_you_mean(key, SECTIONS) or f" (sections are {quoted_list(SECTIONS)})"
            problems.append(source.problem((key,), f"unknown section '{key}'{hint}", at_key=True))
    for key in sorted(REQUIRED_SECTIONS - data.keys()):
        problems.append(Problem(source.file, START, f"missing required section '{key}'"))
    for key, value in data.items():
        if key in MAPPED:
            problems += _validate_mapping(source, key, value, parts)
        elif key == "rules":
            problems += _validate_rules(source, value, parts)
        elif key in SECTIONS:
            problems += _validate_single(source, key, value, parts)
    return parts, problems


def _validate_single(source: Source, key: str, value: Any, parts: Parts) -> list[Problem]:
    annotation = SECTIONS[key]
    try:
        valid = _adapter(annotation).validate_python(value)
    except ValidationError as exc:
        return translate_all(exc.errors(), (key,), source, annotation)
    if key == "site":
        parts.site = valid
    elif key == "defaults":
        parts.defaults = valid
    elif key == "time":
        parts.time = valid
    elif key == "support_vpn":
        parts.support_vpn = valid
    elif key == "detection":
        parts.detection = valid
    return []


def _validate_mapping(source: Source, key: str, value: Any, parts: Parts) -> list[Problem]:
    if value is None:
        value = {}
    if not isinstance(value, dict):
        got = describe_kind(value)
        return [source.problem((key,), f"{key}: expected a mapping of names, got {got}")]
    problems: list[Problem] = []
    parts.declared[key] = set(value)
    valid: dict[str, Any] = getattr(parts, key)
    annotation = MAPPED[key]
    for name, body in value.items():
        if not _is_name(name):
            message = f"{key}: '{name}' {PATTERN_HINTS[NAME_PATTERN]}"
            problems.append(source.problem((key, name), message, at_key=True))
            continue
        try:
            valid[name] = _adapter(annotation).validate_python(body)
        except ValidationError as exc:
            problems += translate_all(exc.errors(), (key, name), source, annotation)
    return problems


def _validate_rules(source: Source, value: Any, parts: Parts) -> list[Problem]:
    if not isinstance(value, list):
        return [source.problem(("rules",), f"rules: expected a list, got {describe_kind(value)}")]
    problems: list[Problem] = []
    parts.declared["rules"] = set()
    for index, body in enumerate(value):
        if isinstance(body, dict) and isinstance(body.get("name"), str):
            parts.declared["rules"].add(body["name"])
        try:
            parts.rules.append((index, _adapter(Rule).validate_python(body)))
        except ValidationError as exc:
            problems += translate_all(exc.errors(), ("rules", index), source, Rule)
    return problems
