"""Elastic Common Schema (ECS 8.11) document for an alert.

Fields used, all defined by ECS: `@timestamp`, `message`, `ecs.version`, `event.*` (kind
`alert`, categories `network` and `intrusion_detection`, type `allowed`/`denied`/`info`,
id, sequence, start, end, created, severity, risk_score, reason, module, dataset, provider),
`rule.*` (id, name, version, ruleset), `threat.*` (framework, technique and tactic id, name
and reference), `source.*`/`destination.*` (ip, port, mac in ECS's upper-case hyphen form),
`network.*` (transport, protocol, community_id, bytes, packets, type), `observer.*` (vendor,
product, version, hostname, type, ingress/egress zone = source/destination zone), `labels`.

What ECS has no field for goes under `plantgate.*` (ECS's custom-field rule: one top-level
name of our own): alert status, count and revision, the evidence, the asset roles, the site
and learning/protecting mode.

`event.id` is the alert's UUIDv7 and stays the same for its `new`, `update`s and `close`:
index with it as the document id to keep only the latest state, or with
`event.id` + `plantgate.alert.revision` to keep every emission.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from gateway.alerts.record import Alert, Endpoint, iso_utc

ECS_VERSION = "8.11.0"


def render(alert: Alert, seq: int | None = None) -> dict[str, Any]:
    event: dict[str, Any] = {
        "kind": "alert",
        "category": ["network", "intrusion_detection"],
        "type": [alert.action] if alert.action else ["info"],
        "id": alert.id,
        "created": iso_utc(alert.emitted),
        "start": iso_utc(alert.first_seen),
        "end": iso_utc(alert.last_seen),
        "severity": alert.severity.rank,
        "risk_score": float(alert.severity.risk_score),
        "reason": alert.summary,
        "module": "plantgate",
        "dataset": "plantgate.alerts",
        "provider": "plantgate",
    }
    if alert.action:
        event["action"] = alert.action
    if seq is not None:
        event["sequence"] = seq
    doc: dict[str, Any] = {
        "@timestamp": iso_utc(alert.last_seen),
        "message": alert.summary,
        "ecs": {"version": ECS_VERSION},
        "event": event,
        "rule": {
            "id": alert.rule.id,
            "name": alert.rule.name,
            "version": alert.rule.version,
            "ruleset": "plantgate",
        },
        "observer": _observer(alert),
        "plantgate": _custom(alert),
    }
    if alert.technique is not None:
        t = alert.technique
        doc["threat"] = {
            "framework": "MITRE ATT&CK",
            "technique": {"id": [t.id], "name": [t.name], "reference": [t.reference]},
            "tactic": {
                "id": [t.tactic_id],
                "name": [t.tactic_name],
                "reference": [t.tactic_reference],
            },
        }
    if alert.source is not None:
        doc["source"] = _endpoint(alert.source)
    if alert.destination is not None:
        doc["destination"] = _endpoint(alert.destination)
    network = _network(alert)
    if network:
        doc["network"] = network
    if alert.labels:
        doc["labels"] = {k: str(v) for k, v in alert.labels.items()}
    return doc


def _endpoint(side: Endpoint) -> dict[str, Any]:
    out: dict[str, Any] = {"ip": side.address, "address": side.address}
    if side.port is not None:
        out["port"] = side.port
    if side.mac is not None:
        out["mac"] = side.mac.upper().replace(":", "-")
    return out


def _network(alert: Alert) -> dict[str, Any]:
    out: dict[str, Any] = {}
    net = alert.network
    if net is not None:
        for name in ("transport", "protocol", "community_id", "bytes", "packets"):
            value = getattr(net, name)
            if value is not None:
                out[name] = value
    address = alert.source or alert.destination
    if address is not None:
        out["type"] = f"ipv{ipaddress.ip_address(address.address).version}"
    return out


def _observer(alert: Alert) -> dict[str, Any]:
    o = alert.observer
    out: dict[str, Any] = {
        "vendor": o.vendor,
        "product": o.product,
        "version": o.version,
        "hostname": o.appliance,
        "name": o.appliance,
        "type": "firewall",
    }
    if alert.source is not None and alert.source.zone:
        out["ingress"] = {"zone": alert.source.zone}
    if alert.destination is not None and alert.destination.zone:
        out["egress"] = {"zone": alert.destination.zone}
    return out


def _custom(alert: Alert) -> dict[str, Any]:
    out: dict[str, Any] = {
        "alert": {
            "status": alert.status,
            "count": alert.count,
            "revision": alert.revision,
            "key": alert.key,
        },
        "observer": {"site": alert.observer.site, "mode": alert.observer.mode},
    }
    if alert.evidence is not None:
        evidence = {k: v for k, v in vars(alert.evidence).items() if v is not None}
        if evidence:
            out["evidence"] = evidence
    for side, endpoint in (("source", alert.source), ("destination", alert.destination)):
        if endpoint is not None and (endpoint.role or endpoint.zone):
            out[side] = {k: v for k, v in (("zone", endpoint.zone), ("role", endpoint.role)) if v}
    return out
