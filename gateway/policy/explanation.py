"""The records of an explanation (flow, context, verdict, reasons) and address helpers.

Split from `explain.py`, which holds the evaluator: these are the values it takes and gives,
with their text and JSON renderings, plus the small address arithmetic both need.
"""

from __future__ import annotations

import bisect
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.policy.addresses import parse_net
from gateway.policy.compile import ND_TYPES, collapse

Proto = Literal["tcp", "udp", "icmp"]
Verdict = Literal["accept", "drop"]
Hook = Literal["input", "forward", "output"]
DecisionKind = Literal[
    "rule",
    "default",
    "loopback",
    "neighbour-discovery",
    "reverse-path",
    "strict-destination",
    "martian",
    "kill-switch",
]
PROTOS: tuple[Proto, ...] = ("tcp", "udp", "icmp")
LOOPBACK = "lo"
ND = frozenset(t.strip() for t in ND_TYPES.split(","))


class ExplainError(ValueError):
    """A flow or context that cannot be explained; `field` names the input to fix."""

    def __init__(self, message: str, field: str | None = None) -> None:
        self.message = message
        self.field = field
        super().__init__(message)


@dataclass(frozen=True)
class Flow:
    """The first packet of a new connection. Interfaces are kernel names; None = infer."""

    src: str
    dst: str
    proto: Proto
    dport: int | None = None
    icmp_type: str | None = "echo-request"
    iif: str | None = None
    oif: str | None = None

    def service_text(self, version: int = 4) -> str:
        if self.proto == "icmp":
            return f"{'icmp' if version == 4 else 'icmpv6'} {self.icmp_type}"
        return f"{self.proto}/{self.dport}"


@dataclass(frozen=True)
class Context:
    """What the ruleset sees at run time and the policy does not say.

    `self_addresses`: the appliance's addresses per kernel interface, 'addr' or 'addr/prefix'
    (the prefix gives the connected network). `resolved`: FQDN -> addresses. `open_gates`:
    (gate, source, destination) grants.
    """

    self_addresses: Mapping[str, Sequence[str]] = field(default_factory=dict)
    resolved: Mapping[str, Sequence[str]] = field(default_factory=dict)
    open_gates: AbstractSet[tuple[str, str, str]] = frozenset()


@dataclass(frozen=True)
class RuleRef:
    """A policy rule and where it is written."""

    name: str
    file: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "file": self.file, "line": self.line}


@dataclass(frozen=True)
class Side:
    """One end of the flow as the ruleset classifies it."""

    address: str
    interface: str | None
    is_self: bool
    zone: str | None = None
    endpoints: tuple[str, ...] = ()

    def describe(self) -> str:
        where = f" on {self.interface}" if self.interface else ""
        if self.is_self:
            return f"{self.address}: the appliance{where}"
        zone = f"zone '{self.zone}'" if self.zone else "no zone"
        endpoints = "".join(f", endpoint '{e}'" for e in self.endpoints)
        return f"{self.address}{where}: {zone}{endpoints}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "address": self.address,
            "interface": self.interface,
            "appliance": self.is_self,
            "zone": self.zone,
            "endpoints": list(self.endpoints),
        }


@dataclass(frozen=True)
class Decision:
    """What decided: a rule, or a default of the base chains."""

    kind: DecisionKind
    text: str
    rule: RuleRef | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "text": self.text,
            "rule": self.rule.to_dict() if self.rule else None,
        }


@dataclass(frozen=True)
class Closest:
    """For a drop: the rule entry with the fewest mismatched criteria, and the mismatches."""

    rule: RuleRef
    origin: str  # the rule's from/to pair that came closest
    target: str
    reasons: tuple[str, ...]
    gate: str | None = None  # set when only this gate being closed stood in the way

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule.to_dict(),
            "from": self.origin,
            "to": self.target,
            "reasons": list(self.reasons),
            "gate": self.gate,
        }


@dataclass(frozen=True)
class Explanation:
    """The verdict on one flow, what decided it and, for a drop, what came closest."""

    flow: Flow
    version: int
    hook: Hook
    iif: str | None
    oif: str | None
    source: Side
    destination: Side
    verdict: Verdict
    decision: Decision
    closest: Closest | None = None
    notes: tuple[str, ...] = ()

    def summary(self) -> str:
        """One line: verdict, what decided, and the closest rule's first reasons."""
        text = f"{self.verdict}: {self.decision.text}"
        if self.decision.rule is not None:
            text += f" ({self.decision.rule.where})"
        closest = self.closest
        if closest is not None and closest.gate is not None:
            text += (
                f"; rule '{closest.rule.name}' ({closest.rule.where}) would allow it while "
                f"gate '{closest.gate}' is open for {self.source.address} → "
                f"{self.destination.address}"
            )
        elif closest is not None:
            text += f"; closest rule '{closest.rule.name}' ({closest.rule.where}): " + "; ".join(
                closest.reasons
            )
        return text

    def render(self) -> str:
        """The explanation as people read it, one fact per line."""
        lines = [
            f"flow         {self.flow.service_text(self.version)} from {self.source.address} "
            f"to {self.destination.address} (IPv{self.version})",
            f"hook         {self.hook}{_interfaces_text(self.iif, self.oif)}",
            f"source       {self.source.describe()}",
            f"destination  {self.destination.describe()}",
            f"verdict      {self.verdict.upper()}",
            f"decided by   {self.decision.text}"
            + (f" at {self.decision.rule.where}" if self.decision.rule else ""),
        ]
        if self.closest is not None:
            c = self.closest
            lines.append(
                f"closest rule '{c.rule.name}' at {c.rule.where} (from {c.origin} to {c.target})"
            )
            lines += [f"               - {reason}" for reason in c.reasons]
            if c.gate is not None:
                lines.append(
                    f"               would allow while gate '{c.gate}' is open for "
                    f"{self.source.address} → {self.destination.address}"
                )
        lines += [f"note         {note}" for note in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "flow": {
                "src": self.flow.src,
                "dst": self.flow.dst,
                "proto": self.flow.proto,
                "dport": self.flow.dport,
                "icmp_type": self.flow.icmp_type if self.flow.proto == "icmp" else None,
                "ip_version": self.version,
            },
            "hook": self.hook,
            "iif": self.iif,
            "oif": self.oif,
            "source": self.source.to_dict(),
            "destination": self.destination.to_dict(),
            "verdict": self.verdict,
            "decision": self.decision.to_dict(),
            "closest": self.closest.to_dict() if self.closest else None,
            "notes": list(self.notes),
            "summary": self.summary(),
        }


def _interfaces_text(iif: str | None, oif: str | None) -> str:
    parts = [f"in on {iif}" if iif else "", f"out on {oif}" if oif else ""]
    shown = ", ".join(p for p in parts if p)
    return f" ({shown})" if shown else ""


# ---------------------------------------------------------------- addresses


@dataclass(frozen=True)
class Address:
    """A parsed IP address: canonical text, version and integer value."""

    text: str
    version: int
    value: int

    @property
    def is_loopback(self) -> bool:
        return ipaddress.ip_address(self.text).is_loopback

    def __str__(self) -> str:
        return self.text


def parse_address(text: str, what: str, field_name: str | None = None) -> Address:
    """One IP address (no prefix); ExplainError naming `what` otherwise."""
    try:
        ip = ipaddress.ip_address(text.strip())
    except ValueError:
        raise ExplainError(f"{what} '{text}' is not an IP address", field_name) from None
    return Address(str(ip), ip.version, int(ip))


@dataclass(frozen=True)
class _Spans:
    """Sorted, non-overlapping ranges of one IP version, looked up by bisection."""

    firsts: tuple[int, ...]
    lasts: tuple[int, ...]
    lengths: tuple[int, ...]  # prefix length of each range's network

    def find(self, value: int) -> int | None:
        """The prefix length of the range holding `value`, or None."""
        at = bisect.bisect_right(self.firsts, value) - 1
        if at >= 0 and value <= self.lasts[at]:
            return self.lengths[at]
        return None


def _spans(texts: Iterable[str]) -> dict[int, _Spans]:
    """Per IP version, the collapsed networks of `texts` (the ranges the kernel's set holds)."""
    by_version: dict[int, list[tuple[int, int, int]]] = {}
    for addr in collapse(texts):
        net = parse_net(addr.text)
        by_version.setdefault(addr.version, []).append((net.first, net.last, net.prefixlen))
    return {
        version: _Spans(
            tuple(r[0] for r in ranges), tuple(r[1] for r in ranges), tuple(r[2] for r in ranges)
        )
        for version, ranges in by_version.items()
    }


def _contains(spans: Mapping[int, _Spans], addr: Address) -> int | None:
    found = spans.get(addr.version)
    return found.find(addr.value) if found else None


@dataclass(frozen=True)
class _Connected:
    ifname: str
    version: int
    first: int
    last: int
    prefixlen: int
    text: str


@dataclass(frozen=True)
class Appliance:
    """The appliance as a Context describes it: who owns which address, connected networks."""

    owners: dict[str, frozenset[str]]  # canonical address -> interfaces holding it
    connected: tuple[_Connected, ...]
    addresses: dict[str, tuple[str, ...]]  # interface -> its addresses (no prefix), in order

    def owns(self, addr: Address) -> bool:
        return addr.text in self.owners or addr.is_loopback

    def interfaces_of(self, addr: Address) -> frozenset[str]:
        if addr.is_loopback:
            return frozenset({LOOPBACK})
        return self.owners.get(addr.text, frozenset())


def appliance_of(ctx: Context) -> Appliance:
    """Parse the Context's appliance addresses; ExplainError for a malformed one."""
    owners: dict[str, set[str]] = {}
    connected: list[_Connected] = []
    addresses: dict[str, tuple[str, ...]] = {}
    for ifname, texts in ctx.self_addresses.items():
        mine: list[str] = []
        for text in texts:
            try:
                iface = ipaddress.ip_interface(text.strip())
            except ValueError:
                raise ExplainError(
                    f"appliance address '{text}' on {ifname} is not an address or address/prefix",
                    "self",
                ) from None
            owners.setdefault(str(iface.ip), set()).add(ifname)
            mine.append(str(iface.ip))
            net = iface.network
            first, last = int(net.network_address), int(net.broadcast_address)
            connected.append(_Connected(ifname, net.version, first, last, net.prefixlen, str(net)))
        addresses[ifname] = tuple(mine)
    return Appliance({a: frozenset(s) for a, s in owners.items()}, tuple(connected), addresses)
