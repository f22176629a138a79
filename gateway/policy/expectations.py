"""Policy tests: what a site expects of its policy, as YAML, loaded with located errors.

A test file (`policies/tests/*.yaml`) has four sections:

```yaml
appliance:                  # the appliance's addresses (kernel interface: address/prefix)
  lan0: 198.18.10.1/24
hosts:                      # names for addresses, besides the lab's own
  staff: 198.18.201.5
names:                      # what FQDN endpoints resolve to while testing
  ntp.upstream.test: [198.19.0.123]
expect:                     # one flow each: exactly one of tcp, udp, icmp
  - {from: hub1, to: gw, tcp: 8140, expect: accept, note: enrollment}
  - {from: staff, to: hub1, tcp: 22, gate: open, expect: accept}
```

Hosts are written by lab name (`hub1`..`hub200`, `plant` = the workstation 198.18.20.10,
`upstream` = 198.18.255.2), by a name from `hosts:`, or as a literal address. `gw` or `self`
is the appliance's address on the interface facing the other end (`gw@wan0` picks one);
`gate: open` opens every gate of the policy for exactly this source and destination, `gate:
NAME` only that one. `iif`/`oif` pin the interfaces (a source on an interface it does not
live behind is a spoofed source).

Decisions: the loader reuses the policy loader's parser, problem type and pydantic message
rewriting, so a test file fails the way a policy does (`FILE:LINE:COL: error: ...`, every
problem at once, "did you mean"). Lab names cannot be redefined in `hosts:`: `plant` in a
test means one address everywhere. Each expectation is explained once while loading, so an
expectation the model cannot place (an ambiguous interface) is a located error too.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from gateway.lab import topology
from gateway.policy.errors import PolicyError, Position, Problem, did_you_mean, quoted_list
from gateway.policy.explain import (
    Address,
    Context,
    Explainer,
    ExplainError,
    Flow,
    Proto,
    Verdict,
    appliance_of,
    parse_address,
)
from gateway.policy.model import ICMP_TYPES, ICMPV6_TYPES, IFNAME_PATTERN, NAME_PATTERN
from gateway.policy.shape_errors import translate_all
from gateway.policy.source import START, Source, describe_kind, parse, read_source

APPLIANCE_NAMES = ("gw", "self")
LAB_HOSTS = {"plant": topology.PLANT_WORKSTATION, "upstream": topology.UPSTREAM_UPLINK}
OPEN = "open"
SECTIONS = ("appliance", "hosts", "names", "expect")
REQUIRED = ("appliance", "expect")
_NAME = re.compile(NAME_PATTERN)
FIELD_KEYS = {"iif": "iif", "oif": "oif", "src": "from", "dst": "to", "dport": "tcp"}


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


Port = Annotated[int, Field(ge=1, le=65535)]
Ifname = Annotated[str, StringConstraints(pattern=IFNAME_PATTERN)]
Addresses = Annotated[list[str], BeforeValidator(_as_list), Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, populate_by_name=True)


class ExpectItem(_Strict):
    """One expectation: a flow and the verdict the policy must give it."""

    from_: str = Field(alias="from", description="Host name, gw/self, or an address.")
    to: str
    tcp: Port | None = None
    udp: Port | None = None
    icmp: str | None = Field(default=None, description="ICMP type, e.g. 'echo-request'.")
    expect: Literal["accept", "drop"]
    gate: str | None = Field(default=None, description="'open' (every gate) or a gate name.")
    iif: Ifname | None = None
    oif: Ifname | None = None
    note: str = ""

    @model_validator(mode="after")
    def _one_service(self) -> ExpectItem:
        given = [k for k in ("tcp", "udp", "icmp") if getattr(self, k) is not None]
        if len(given) != 1:
            found = f"got {', '.join(given)}" if given else "got none"
            raise ValueError(f"give exactly one of tcp, udp or icmp ({found})")
        return self


@dataclass(frozen=True)
class Case:
    """One expectation, resolved to addresses: ready to explain or to send."""

    file: str
    position: Position
    index: int
    origin: str  # `from` as written
    target: str  # `to` as written
    flow: Flow
    expect: Verdict
    gates: tuple[str, ...]  # gates open for this source and destination
    note: str = ""

    @property
    def where(self) -> str:
        return f"{self.file}:{self.position.line}:{self.position.col}"

    @property
    def label(self) -> str:
        version = ipaddress.ip_address(self.flow.src).version
        gate = f" [gate {', '.join(self.gates)} open]" if self.gates else ""
        return f"{self.origin} → {self.target} {self.flow.service_text(version)}{gate}"


@dataclass(frozen=True)
class ExpectationFile:
    """A loaded test file: the appliance, the names it resolves, and its cases."""

    file: str
    appliance: dict[str, tuple[str, ...]]
    names: dict[str, tuple[str, ...]]
    cases: tuple[Case, ...]

    def context(self, case: Case | None = None) -> Context:
        """What the model needs for `case` (or for no gate open)."""
        grants: set[tuple[str, str, str]] = set()
        if case is not None:
            grants = {(g, case.flow.src, case.flow.dst) for g in case.gates}
        return Context(self.appliance, self.names, frozenset(grants))


# ---------------------------------------------------------------- loading


def load_tests(path: str | Path, explainer: Explainer) -> ExpectationFile:
    """Read and check a test file against the policy; PolicyError with every problem."""
    text = read_source(path, "test file")
    name = str(path)
    return load_tests_text(text, name, explainer)


def load_tests_text(text: str, file: str, explainer: Explainer) -> ExpectationFile:
    """Check test-file text; PolicyError with every problem, in file order."""
    source = _parse(text, file)
    loader = _Loader(source, explainer)
    result = loader.load()
    if loader.problems:
        raise PolicyError(loader.problems)
    return result


def _parse(text: str, file: str) -> Source:
    try:
        return parse(text, file)
    except PolicyError as exc:
        if any(p.message.startswith("a policy is a mapping") for p in exc.problems):
            kind = "empty" if not text.strip() else "not a mapping"
            message = (
                f"a test file is a mapping of sections ({', '.join(SECTIONS)}); this is {kind}"
            )
            raise PolicyError([Problem(file, START, message)]) from None
        raise


class _Loader:
    """Checks one test file section by section, collecting problems instead of stopping."""

    def __init__(self, source: Source, explainer: Explainer) -> None:
        self.source = source
        self.explainer = explainer
        self.policy = explainer.policy
        self.problems: list[Problem] = []
        self.hosts: dict[str, str] = {}
        self.appliance: dict[str, tuple[str, ...]] = {}
        self.names: dict[str, tuple[str, ...]] = {}
        self.appliance_broken = False  # then `gw` is not resolved: no cascade of errors
        self.broken_hosts: set[str] = set()  # declared, but with a bad address

    def error(self, path: tuple[str | int, ...], message: str, *, at_key: bool = False) -> None:
        self.problems.append(self.source.problem(path, message, at_key=at_key))

    def load(self) -> ExpectationFile:
        data: dict[str, Any] = self.source.data
        for key in data:
            if key not in SECTIONS:
                hint = did_you_mean(key, SECTIONS) or f" (sections are {quoted_list(SECTIONS)})"
                self.error((key,), f"unknown section '{key}'{hint}", at_key=True)
        for key in REQUIRED:
            if key not in data:
                self.problems.append(
                    Problem(self.source.file, START, f"missing required section '{key}'")
                )
        self._appliance(data.get("appliance"))
        self._hosts(data.get("hosts"))
        self._names(data.get("names"))
        cases = self._expectations(data.get("expect"))
        return ExpectationFile(self.source.file, self.appliance, self.names, tuple(cases))

    # -- sections ---------------------------------------------------------------------

    def _mapping(self, key: str, value: Any) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.error((key,), f"{key}: expected a mapping, got {describe_kind(value)}")
            return {}
        return value

    def _strings(self, path: tuple[str | int, ...], value: Any) -> list[str] | None:
        try:
            items: list[str] = TypeAdapter(Addresses).validate_python(value, strict=True)
        except ValidationError as exc:
            self.problems += translate_all(exc.errors(), path, self.source, Addresses)
            return None
        return items

    def _appliance(self, value: Any) -> None:
        before = len(self.problems)
        self._appliance_entries(value)
        self.appliance_broken = len(self.problems) > before

    def _appliance_entries(self, value: Any) -> None:
        interfaces = tuple(self.policy.interfaces.values())
        for ifname, body in self._mapping("appliance", value).items():
            path: tuple[str | int, ...] = ("appliance", ifname)
            if ifname not in interfaces:
                hint = did_you_mean(ifname, interfaces) or f" (it has {quoted_list(interfaces)})"
                self.error(path, f"'{ifname}' is not an interface of the policy{hint}", at_key=True)
                continue
            texts = self._strings(path, body)
            if texts is None:
                continue
            good = [t for i, t in enumerate(texts) if self._interface_address(path, i, t)]
            self.appliance[ifname] = tuple(good)

    def _interface_address(self, path: tuple[str | int, ...], index: int, text: str) -> bool:
        try:
            ipaddress.ip_interface(text)
        except ValueError:
            where = (*path, index) if isinstance(self._at(path), list) else path
            self.error(where, f"'{text}' is not an address/prefix like '198.18.10.1/24'")
            return False
        return True

    def _at(self, path: tuple[str | int, ...]) -> Any:
        node: Any = self.source.data
        for item in path:
            node = node[item]
        return node

    def _hosts(self, value: Any) -> None:
        for name, body in self._mapping("hosts", value).items():
            before = len(self.problems)
            self._host_entry(name, body)
            if len(self.problems) > before:
                self.broken_hosts.add(name)

    def _host_entry(self, name: str, body: Any) -> None:
        path: tuple[str | int, ...] = ("hosts", name)
        problem = _host_name_problem(name)
        if problem is not None:
            self.error(path, problem, at_key=True)
        elif not isinstance(body, str):
            self.error(path, f"hosts.{name}: expected an address, got {describe_kind(body)}")
        else:
            try:
                self.hosts[name] = parse_address(body, "host").text
            except ExplainError:
                message = f"hosts.{name}: '{body}' is not an IP address (one host, no prefix)"
                self.error(path, message)

    def _names(self, value: Any) -> None:
        known = {n for e in self.policy.endpoints.values() for n in e.fqdn}
        for fqdn, body in self._mapping("names", value).items():
            path: tuple[str | int, ...] = ("names", fqdn)
            if fqdn not in known:
                hint = did_you_mean(fqdn, known) or f" (its names are {quoted_list(known)})"
                self.error(
                    path, f"'{fqdn}' is not a name of any endpoint in the policy{hint}", at_key=True
                )
                continue
            texts = self._strings(path, body)
            if texts is None:
                continue
            good = []
            for index, text in enumerate(texts):
                try:
                    good.append(parse_address(text, "name").text)
                except ExplainError:
                    where = (*path, index) if isinstance(body, list) else path
                    self.error(where, f"names.{fqdn}: '{text}' is not an IP address")
            self.names[fqdn] = tuple(good)

    # -- expectations -------------------------------------------------------------------

    def _expectations(self, value: Any) -> list[Case]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.error(("expect",), f"expect: expected a list, got {describe_kind(value)}")
            return []
        cases = []
        for index, body in enumerate(value):
            try:
                item = ExpectItem.model_validate(body)
            except ValidationError as exc:
                self.problems += translate_all(
                    exc.errors(), ("expect", index), self.source, ExpectItem
                )
                continue
            case = self._case(index, item)
            if case is not None:
                cases.append(case)
        return cases

    def _case(self, index: int, item: ExpectItem) -> Case | None:
        before = len(self.problems)
        path: tuple[str | int, ...] = ("expect", index)
        origin = self._host((*path, "from"), item.from_)
        target = self._host((*path, "to"), item.to)
        gates = self._gates((*path, "gate"), item.gate)
        self._interface_name((*path, "iif"), item.iif)
        self._interface_name((*path, "oif"), item.oif)
        if len(self.problems) > before or origin is None or target is None:
            return None
        if self.appliance_broken and isinstance(origin, str) | isinstance(target, str):
            return None  # `gw` needs the appliance section, whose own error says enough
        proto, port, icmp = _service(item)
        try:
            src, dst = self._place(origin, target, item)
            flow = Flow(src.text, dst.text, proto, port, icmp, item.iif, item.oif)
            if proto == "icmp":
                self._check_icmp((*path, "icmp"), icmp, src.version)
            case = Case(
                self.source.file,
                self.source.value_at(path),
                index,
                item.from_,
                item.to,
                flow,
                item.expect,
                gates,
                item.note,
            )
            if len(self.problems) == before:
                context = ExpectationFile(self.source.file, self.appliance, self.names, ()).context(
                    case
                )
                self.explainer.explain(flow, context)
        except ExplainError as exc:
            self._explain_problem(path, exc)
            return None
        return case if len(self.problems) == before else None

    def _explain_problem(self, path: tuple[str | int, ...], exc: ExplainError) -> None:
        key = FIELD_KEYS.get(exc.field or "")
        hint = f" (add `{key}:` to the expectation)" if key in ("iif", "oif") else ""
        self.error(path, f"expect[{path[-1]}]: {exc.message}{hint}")

    def _host(self, path: tuple[str | int, ...], name: str) -> Address | str | None:
        """An address, the appliance marker 'gw' / 'gw@IF', or None after an error."""
        head, _, ifname = name.partition("@")
        if head in APPLIANCE_NAMES:
            if ifname and ifname not in self.appliance:
                hint = did_you_mean(ifname, self.appliance)
                self.error(path, f"'{name}': the appliance has no addresses on '{ifname}'{hint}")
                return None
            return f"gw@{ifname}" if ifname else "gw"
        if name in self.hosts:
            return parse_address(self.hosts[name], "host")
        if name in self.broken_hosts:
            return None  # its definition's own error says enough
        lab = _lab_address(name)
        if lab is not None:
            return parse_address(lab, "host")
        try:
            return parse_address(name, "host")
        except ExplainError:
            pass
        known = [*APPLIANCE_NAMES, *self.hosts, *LAB_HOSTS, *_hub_names()]
        hint = did_you_mean(name, known)
        if not hint:
            names = [*APPLIANCE_NAMES, *LAB_HOSTS, "hub1..hub200", *self.hosts]
            hint = f" (hosts are {quoted_list(names)})"
        self.error(path, f"unknown host '{name}'{hint}")
        return None

    def _gates(self, path: tuple[str | int, ...], gate: str | None) -> tuple[str, ...]:
        if gate is None:
            return ()
        gates = tuple(self.policy.gates)
        if gate == OPEN:
            if not gates:
                self.error(path, "gate: the policy has no gates to open")
            return gates
        if gate not in gates:
            hint = (
                did_you_mean(gate, [*gates, OPEN])
                or f" (write 'open' or one of {quoted_list(gates)})"
            )
            self.error(path, f"unknown gate '{gate}'{hint}")
            return ()
        return (gate,)

    def _interface_name(self, path: tuple[str | int, ...], ifname: str | None) -> None:
        known = {*self.policy.interfaces.values(), *self.appliance, "lo"}
        if ifname is not None and ifname not in known:
            hint = did_you_mean(ifname, known) or f" (known: {quoted_list(known)})"
            self.error(path, f"unknown interface '{ifname}'{hint}")

    def _check_icmp(self, path: tuple[str | int, ...], icmp: str | None, version: int) -> None:
        known = ICMP_TYPES if version == 4 else ICMPV6_TYPES
        if icmp not in known:
            hint = did_you_mean(str(icmp), known)
            self.error(path, f"unknown ICMP{'v6' if version == 6 else ''} type '{icmp}'{hint}")

    def _place(
        self, origin: Address | str, target: Address | str, item: ExpectItem
    ) -> tuple[Address, Address]:
        """Both ends as addresses; `gw` becomes the appliance's address facing the other end."""
        if isinstance(origin, str) and isinstance(target, str):
            raise ExplainError(
                "from and to are both the appliance; write one of them as an address"
            )
        appliance = appliance_of(Context(self.appliance))
        if isinstance(origin, str):
            assert isinstance(target, Address)
            ifname = origin.partition("@")[2] or item.oif
            ifname = ifname or self.explainer.infer_interface(target, appliance, "oif")
            return self._gw_address(ifname, target.version), target
        assert isinstance(origin, Address)
        if isinstance(target, str):
            ifname = target.partition("@")[2] or item.iif
            ifname = ifname or self.explainer.infer_interface(origin, appliance, "iif")
            return origin, self._gw_address(ifname, origin.version)
        return origin, target

    def _gw_address(self, ifname: str, version: int) -> Address:
        for text in self.appliance.get(ifname, ()):
            addr = parse_address(text.partition("/")[0], "appliance address")
            if addr.version == version:
                return addr
        raise ExplainError(
            f"the appliance has no IPv{version} address on {ifname} (see appliance:)"
        )


def _service(item: ExpectItem) -> tuple[Proto, int | None, str | None]:
    if item.tcp is not None:
        return "tcp", item.tcp, None
    if item.udp is not None:
        return "udp", item.udp, None
    return "icmp", None, item.icmp


def _host_name_problem(name: str) -> str | None:
    """Why `name` cannot be defined in `hosts:`, or None."""
    if not _NAME.match(name):
        return f"hosts: '{name}' is not a valid name (use a-z, 0-9 and '-')"
    if name in APPLIANCE_NAMES or name == "any":
        return f"'{name}' is reserved for the appliance; pick another name"
    lab = _lab_address(name)
    if lab is not None:
        return f"'{name}' is a lab host ({lab}); pick another name"
    return None


def _lab_address(name: str) -> str | None:
    """The lab's address for `name` (hub1..hub200, plant, upstream), or None."""
    index = topology.hub_index(name)
    if index is not None and 1 <= index <= topology.MAX_HUBS:
        return topology.hub_address(index)
    return LAB_HOSTS.get(name)


def _hub_names() -> Iterable[str]:
    return (topology.hub_name(i) for i in range(1, topology.MAX_HUBS + 1))
