"""The canonical alert record, and the `Trigger` detectors emit (pure data, no I/O).

An `Alert` is what the SOC sees: one aggregated finding with a UUIDv7 id that stays the same
across its life (`new`, then `update`s, then `close`), a `revision` that grows with each
emission, first/last seen and a count. Every renderer (ECS, OCSF, CEF, RFC 5424) reads only
this record, so the formats never disagree about a field.

A detector never builds an `Alert`: it emits a `Trigger` (a rule fired for a key, with the
context it saw) and the `Aggregator` decides whether that opens a new alert or updates one.

Severity has one numeric mapping per output format, kept here beside the enum so that the
documentation (docs/soc/alert-feeds.md) and the renderers read the same table.
"""

from __future__ import annotations

import datetime
import enum
import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import communityid
import uuid_utils

Status = Literal["new", "update", "close"]
Action = Literal["allowed", "denied"]
Mode = Literal["learning", "protecting"]
Transport = Literal["tcp", "udp", "icmp", "icmp6", "sctp"]
STATUSES: tuple[Status, ...] = ("new", "update", "close")
ACTIONS: tuple[Action, ...] = ("allowed", "denied")
SCHEMA = 1  # version of the spool's JSON form of an Alert (`to_dict`)


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def new_alert_id() -> str:
    """A UUIDv7 (RFC 9562): time-ordered, so ids sort by creation like the feed does."""
    return str(uuid_utils.uuid7())


class Severity(enum.Enum):
    """info < low < medium < high < critical, with each format's number."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """1..5; also OCSF `severity_id` (1 Informational .. 5 Critical) and ECS
        `event.severity`."""
        return _RANK[self]

    @property
    def cef(self) -> int:
        """CEF header severity 0-10 (0-3 low, 4-6 medium, 7-8 high, 9-10 very high)."""
        return _CEF[self]

    @property
    def syslog(self) -> int:
        """RFC 5424 severity: 6 Informational, 5 Notice, 4 Warning, 3 Error, 2 Critical."""
        return _SYSLOG[self]

    @property
    def risk_score(self) -> int:
        """ECS `event.risk_score` 0-100, on the scale Elastic's detection rules use."""
        return _RISK[self]

    @property
    def ocsf_caption(self) -> str:
        return _OCSF_CAPTION[self]

    def __lt__(self, other: Severity) -> bool:
        return self.rank < other.rank

    def __le__(self, other: Severity) -> bool:
        return self.rank <= other.rank


_RANK = {
    Severity.INFO: 1,
    Severity.LOW: 2,
    Severity.MEDIUM: 3,
    Severity.HIGH: 4,
    Severity.CRITICAL: 5,
}
_CEF = {
    Severity.INFO: 1,
    Severity.LOW: 3,
    Severity.MEDIUM: 5,
    Severity.HIGH: 8,
    Severity.CRITICAL: 10,
}
_SYSLOG = {
    Severity.INFO: 6,
    Severity.LOW: 5,
    Severity.MEDIUM: 4,
    Severity.HIGH: 3,
    Severity.CRITICAL: 2,
}
_RISK = {
    Severity.INFO: 10,
    Severity.LOW: 21,
    Severity.MEDIUM: 47,
    Severity.HIGH: 73,
    Severity.CRITICAL: 99,
}
_OCSF_CAPTION = {
    Severity.INFO: "Informational",
    Severity.LOW: "Low",
    Severity.MEDIUM: "Medium",
    Severity.HIGH: "High",
    Severity.CRITICAL: "Critical",
}


@dataclass(frozen=True)
class Rule:
    """What fired: an id like `PG-SCAN-VERTICAL`, a name, and the rule's version."""

    id: str
    name: str
    version: str = "1"

    def __post_init__(self) -> None:
        if not self.id or len(self.id) > 32 or not all(33 <= ord(c) <= 126 for c in self.id):
            # The id is the RFC 5424 MSGID: 1-32 printable US-ASCII characters.
            raise ValueError(f"rule id {self.id!r}: 1-32 printable ASCII characters, no spaces")


@dataclass(frozen=True)
class Technique:
    """A MITRE ATT&CK technique and its tactic: ATT&CK for ICS where it has one, Enterprise
    otherwise (`matrix`), e.g. T0846 Remote System Discovery / TA0102 Discovery (ICS), or
    T1041 Exfiltration Over C2 Channel / TA0010 Exfiltration (Enterprise: ICS has no
    exfiltration tactic)."""

    id: str
    name: str
    tactic_id: str
    tactic_name: str
    matrix: Literal["ics", "enterprise"] = "ics"

    @property
    def reference(self) -> str:
        return f"https://attack.mitre.org/techniques/{self.id.replace('.', '/')}/"

    @property
    def tactic_reference(self) -> str:
        return f"https://attack.mitre.org/tactics/{self.tactic_id}/"


@dataclass(frozen=True)
class Endpoint:
    """One side of what was seen: address, port, zone (from the policy), asset role, MAC."""

    address: str
    port: int | None = None
    zone: str | None = None
    role: str | None = None  # asset role, e.g. hub, appliance, plc, workstation
    mac: str | None = None  # aa:bb:cc:dd:ee:ff, lower case

    def __post_init__(self) -> None:
        _check_address(self.address)  # ValueError for a non-address
        if self.port is not None and not 0 <= self.port <= 65535:
            raise ValueError(f"port {self.port} out of range")
        if self.mac is not None:
            object.__setattr__(self, "mac", normalize_mac(self.mac))


@functools.lru_cache(maxsize=4096)
def _check_address(address: str) -> None:
    ipaddress.ip_address(address)


def normalize_mac(mac: str) -> str:
    digits = mac.replace(":", "").replace("-", "").replace(".", "").lower()
    if len(digits) != 12 or any(c not in "0123456789abcdef" for c in digits):
        raise ValueError(f"bad MAC address {mac!r}")
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


@dataclass(frozen=True)
class Network:
    """Transport (tcp/udp/icmp), application protocol, Community ID, bytes and packets."""

    transport: str | None = None
    protocol: str | None = None  # application protocol: modbus, https, ntp, ...
    community_id: str | None = None
    bytes: int | None = None
    packets: int | None = None


_PROTO_NUMBERS = {"icmp": 1, "tcp": 6, "udp": 17, "icmp6": 58, "sctp": 132}


def flow_network(
    source: Endpoint,
    destination: Endpoint,
    transport: str,
    protocol: str | None = None,
    *,
    bytes: int | None = None,
    packets: int | None = None,
    icmp_type: int | None = None,
    icmp_code: int | None = None,
) -> Network:
    """A `Network` for a flow, with its Community ID (v1, seed 0) from the `communityid`
    package. For ICMP the type and code take the ports' place; unknown transports (or a flow
    without ports where ports are needed) get no Community ID rather than a wrong one."""
    return Network(
        transport=transport,
        protocol=protocol,
        community_id=community_id_of(
            source, destination, transport, icmp_type=icmp_type, icmp_code=icmp_code
        ),
        bytes=bytes,
        packets=packets,
    )


_COMMUNITY = communityid.CommunityID(seed=0)


def community_id_of(
    source: Endpoint,
    destination: Endpoint,
    transport: str,
    *,
    icmp_type: int | None = None,
    icmp_code: int | None = None,
) -> str | None:
    proto = _PROTO_NUMBERS.get(transport)
    if proto is None:
        return None
    if proto in (1, 58):
        if icmp_type is None:
            return None
        make = communityid.FlowTuple.make_icmp if proto == 1 else communityid.FlowTuple.make_icmp6
        tpl = make(source.address, destination.address, icmp_type, icmp_code or 0)
    else:
        if source.port is None or destination.port is None:
            return None
        tpl = communityid.FlowTuple(
            proto, source.address, destination.address, source.port, destination.port
        )
    return str(_COMMUNITY.calc(tpl))


@dataclass(frozen=True)
class Evidence:
    """Why it fired: the threshold crossed within `window_s`, the value observed, the
    baseline it was compared with (any may be absent)."""

    threshold: float | None = None
    window_s: float | None = None
    observed: float | None = None
    baseline: float | None = None

    def merge(self, newer: Evidence) -> Evidence:
        """Later evidence for the same alert: the newest threshold, window and baseline,
        and the largest value observed so far."""
        observed = [v for v in (self.observed, newer.observed) if v is not None]
        return Evidence(
            threshold=newer.threshold if newer.threshold is not None else self.threshold,
            window_s=newer.window_s if newer.window_s is not None else self.window_s,
            observed=max(observed) if observed else None,
            baseline=newer.baseline if newer.baseline is not None else self.baseline,
        )


@dataclass(frozen=True)
class Observer:
    """Who saw it: the site (policy `site.name`), the appliance, PlantGate's version, and
    whether the watcher is still learning its baseline or protecting."""

    site: str
    appliance: str
    version: str
    mode: Mode = "protecting"
    vendor: str = "PlantGate"
    product: str = "plantgate"


Labels = Mapping[str, str | int | float | bool]


@dataclass(frozen=True)
class Trigger:
    """What a detector emits when a rule fires for a key (e.g. a source address).

    Repeated triggers of the same `rule.id` and `key` update one alert (see `Aggregator`).
    `count` is how many occurrences this trigger stands for (a detector that already
    counts, e.g. 120 ports probed, says so here). `ts` is when it happened (UTC).
    """

    rule: Rule
    key: str
    severity: Severity
    summary: str
    ts: datetime.datetime = field(default_factory=utc_now)
    technique: Technique | None = None
    source: Endpoint | None = None
    destination: Endpoint | None = None
    network: Network | None = None
    action: Action | None = None
    evidence: Evidence | None = None
    count: int = 1
    labels: Labels = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ts.tzinfo is None:
            raise ValueError("Trigger.ts must be timezone-aware (UTC)")
        if self.count < 1:
            raise ValueError("Trigger.count must be at least 1")


@dataclass(frozen=True)
class Alert:
    """One emission of an aggregated alert: `status` new, update or close."""

    id: str
    rule: Rule
    severity: Severity
    status: Status
    summary: str
    first_seen: datetime.datetime
    last_seen: datetime.datetime
    count: int
    observer: Observer
    revision: int = 0
    emitted: datetime.datetime = field(default_factory=utc_now)
    technique: Technique | None = None
    source: Endpoint | None = None
    destination: Endpoint | None = None
    network: Network | None = None
    action: Action | None = None
    evidence: Evidence | None = None
    key: str = ""
    labels: Labels = field(default_factory=dict)

    def with_observer(self, observer: Observer) -> Alert:
        return replace(self, observer=observer)

    def to_dict(self) -> dict[str, Any]:
        """The spool's JSON form (schema `SCHEMA`): plain types, times in ISO 8601 UTC."""
        return {
            "schema": SCHEMA,
            "id": self.id,
            "revision": self.revision,
            "status": self.status,
            "rule": _plain(self.rule),
            "severity": self.severity.value,
            "summary": self.summary,
            "first_seen": _iso(self.first_seen),
            "last_seen": _iso(self.last_seen),
            "emitted": _iso(self.emitted),
            "count": self.count,
            "observer": _plain(self.observer),
            "technique": _plain(self.technique),
            "source": _plain(self.source),
            "destination": _plain(self.destination),
            "network": _plain(self.network),
            "action": self.action,
            "evidence": _plain(self.evidence),
            "key": self.key,
            "labels": dict(self.labels),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Alert:
        """Inverse of `to_dict`; ValueError/KeyError/TypeError on a record that is not one."""
        if data.get("schema") != SCHEMA:
            raise ValueError(f"unknown alert schema {data.get('schema')!r}")
        status = data["status"]
        if status not in STATUSES:
            raise ValueError(f"bad status {status!r}")
        action = data.get("action")
        if action is not None and action not in ACTIONS:
            raise ValueError(f"bad action {action!r}")
        return cls(
            id=str(data["id"]),
            rule=Rule(**data["rule"]),
            severity=Severity(data["severity"]),
            status=status,
            summary=str(data["summary"]),
            first_seen=_parse_time(data["first_seen"]),
            last_seen=_parse_time(data["last_seen"]),
            count=int(data["count"]),
            observer=Observer(**data["observer"]),
            revision=int(data.get("revision", 0)),
            emitted=_parse_time(data["emitted"]),
            technique=_opt(Technique, data.get("technique")),
            source=_opt(Endpoint, data.get("source")),
            destination=_opt(Endpoint, data.get("destination")),
            network=_opt(Network, data.get("network")),
            action=action,
            evidence=_opt(Evidence, data.get("evidence")),
            key=str(data.get("key", "")),
            labels=dict(data.get("labels") or {}),
        )


def _plain(value: object) -> dict[str, Any] | None:
    if value is None:
        return None
    return {k: v for k, v in vars(value).items()}


def _opt(kind: Any, data: Any) -> Any:
    return None if data is None else kind(**data)


def _iso(ts: datetime.datetime) -> str:
    return ts.astimezone(datetime.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse_time(text: str) -> datetime.datetime:
    stamp = datetime.datetime.fromisoformat(text)
    if stamp.tzinfo is None:
        raise ValueError(f"time without offset: {text!r}")
    return stamp.astimezone(datetime.UTC)


def iso_utc(ts: datetime.datetime) -> str:
    """RFC 3339 UTC with microseconds and `Z`: the one time format of every renderer."""
    return _iso(ts)


def epoch_ms(ts: datetime.datetime) -> int:
    return int(ts.timestamp() * 1000)
