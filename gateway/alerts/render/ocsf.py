"""OCSF Detection Finding (class_uid 2004, category 2 Findings), schema version 1.5.0.

The version is pinned to the one `py-ocsf-models` (our independent validator in the tests)
implements. The alert's life maps to the finding's activity: `new` -> 1 Create, `update` ->
2 Update, `close` -> 3 Close; `type_uid` = 2004 * 100 + activity_id.

- `finding_info.uid` is the alert's UUIDv7 (stable over its life); `metadata.uid` is
  `<id>.<revision>`, unique per emission; `metadata.sequence` the feed cursor.
- `finding_info.analytic` is the rule (type_id 1 Rule, uid, name, version);
  `finding_info.attacks` the ATT&CK technique and tactic.
- The flow is in `evidences[0]`: `src_endpoint`/`dst_endpoint` (ip, port, mac, zone) and
  `connection_info` (protocol_name, protocol_num, community_uid); bytes, packets and the
  threshold/window/observed/baseline go to the evidence's `data`.
- `security_control` profile: `action_id` 1 Allowed / 2 Denied and `disposition_id`
  1 Allowed / 2 Blocked.
- Asset roles, the site and the learning/protecting mode have no OCSF attribute in this
  class: they go under `unmapped.plantgate`.
"""

from __future__ import annotations

from typing import Any

from gateway.alerts.record import Alert, Endpoint, epoch_ms

OCSF_VERSION = "1.5.0"
CLASS_UID = 2004
CATEGORY_UID = 2
ACTIVITY = {"new": (1, "Create"), "update": (2, "Update"), "close": (3, "Close")}
PROTOCOL_NUMBERS = {"icmp": 1, "tcp": 6, "udp": 17, "icmp6": 58, "sctp": 132}
OBSERVABLE_IP = 2
OBSERVABLE_MAC = 3


def render(alert: Alert, seq: int | None = None) -> dict[str, Any]:
    activity_id, activity_name = ACTIVITY[alert.status]
    metadata: dict[str, Any] = {
        "version": OCSF_VERSION,
        "product": {
            "name": "PlantGate",
            "vendor_name": alert.observer.vendor,
            "version": alert.observer.version,
        },
        "uid": f"{alert.id}.{alert.revision}",
        "correlation_uid": alert.id,
        "profiles": ["security_control"],
        "log_name": "alerts",
        "log_provider": alert.observer.product,
    }
    if seq is not None:
        metadata["sequence"] = seq
    finding_info: dict[str, Any] = {
        "uid": alert.id,
        "title": alert.rule.name,
        "desc": alert.summary,
        "types": [alert.rule.id],
        "analytic": {
            "uid": alert.rule.id,
            "name": alert.rule.name,
            "version": alert.rule.version,
            "type_id": 1,
            "type": "Rule",
        },
        "created_time": epoch_ms(alert.first_seen),
        "first_seen_time": epoch_ms(alert.first_seen),
        "last_seen_time": epoch_ms(alert.last_seen),
        "modified_time": epoch_ms(alert.emitted),
    }
    if alert.technique is not None:
        t = alert.technique
        finding_info["attacks"] = [
            {
                "technique": {"uid": t.id, "name": t.name, "src_url": t.reference},
                "tactic": {
                    "uid": t.tactic_id,
                    "name": t.tactic_name,
                    "src_url": t.tactic_reference,
                },
            }
        ]
    doc: dict[str, Any] = {
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "activity_id": activity_id,
        "activity_name": activity_name,
        "type_uid": CLASS_UID * 100 + activity_id,
        "type_name": f"Detection Finding: {activity_name}",
        "time": epoch_ms(alert.emitted),
        "start_time": epoch_ms(alert.first_seen),
        "end_time": epoch_ms(alert.last_seen),
        "duration": max(0, epoch_ms(alert.last_seen) - epoch_ms(alert.first_seen)),
        "count": alert.count,
        "severity_id": alert.severity.rank,
        "severity": alert.severity.ocsf_caption,
        "status_id": 1,
        "status": "New",
        "message": alert.summary,
        "metadata": metadata,
        "finding_info": finding_info,
        "unmapped": {"plantgate": _unmapped(alert)},
    }
    if alert.action is not None:
        allowed = alert.action == "allowed"
        doc["action_id"] = 1 if allowed else 2
        doc["action"] = "Allowed" if allowed else "Denied"
        doc["disposition_id"] = 1 if allowed else 2
        doc["disposition"] = "Allowed" if allowed else "Blocked"
    evidence = _evidence(alert)
    if evidence:
        doc["evidences"] = [evidence]
    observables = _observables(alert)
    if observables:
        doc["observables"] = observables
    return doc


def _endpoint(side: Endpoint) -> dict[str, Any]:
    out: dict[str, Any] = {"ip": side.address}
    if side.port is not None:
        out["port"] = side.port
    if side.mac is not None:
        out["mac"] = side.mac
    if side.zone is not None:
        out["zone"] = side.zone
    return out


def _evidence(alert: Alert) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if alert.source is not None:
        out["src_endpoint"] = _endpoint(alert.source)
    if alert.destination is not None:
        out["dst_endpoint"] = _endpoint(alert.destination)
    net = alert.network
    if net is not None:
        info: dict[str, Any] = {}
        if net.transport:
            info["protocol_name"] = net.transport
            if net.transport in PROTOCOL_NUMBERS:
                info["protocol_num"] = PROTOCOL_NUMBERS[net.transport]
        if net.community_id:
            info["community_uid"] = net.community_id
        if info:
            out["connection_info"] = info
    data: dict[str, Any] = {}
    if net is not None:
        data.update(
            {k: v for k, v in (("bytes", net.bytes), ("packets", net.packets)) if v is not None}
        )
        if net.protocol:
            data["app_protocol"] = net.protocol
    if alert.evidence is not None:
        data.update({k: v for k, v in vars(alert.evidence).items() if v is not None})
    if data:
        out["data"] = data
    return out


def _observables(alert: Alert) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, side in (("src_endpoint", alert.source), ("dst_endpoint", alert.destination)):
        if side is None:
            continue
        out.append({"name": f"{name}.ip", "type_id": OBSERVABLE_IP, "value": side.address})
        if side.mac is not None:
            out.append({"name": f"{name}.mac", "type_id": OBSERVABLE_MAC, "value": side.mac})
    return out


def _unmapped(alert: Alert) -> dict[str, Any]:
    out: dict[str, Any] = {
        "status": alert.status,
        "revision": alert.revision,
        "key": alert.key,
        "site": alert.observer.site,
        "appliance": alert.observer.appliance,
        "mode": alert.observer.mode,
    }
    if alert.source is not None and alert.source.role:
        out["src_role"] = alert.source.role
    if alert.destination is not None and alert.destination.role:
        out["dst_role"] = alert.destination.role
    if alert.labels:
        out["labels"] = dict(alert.labels)
    return out
