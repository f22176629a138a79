"""ECS: every field we write is an ECS 8.11 field of the right type, with allowed values.

`ECS_FIELDS` is an excerpt of ECS's field reference (generated/ecs/ecs_flat.yml: name and
type of each field we use); `ALLOWED` its allowed values for the categorization fields.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
from typing import Any

from gateway.alerts.render import ecs
from tests.unit.alerts.conftest import sample_alert

ECS_FIELDS = {
    "@timestamp": "date",
    "message": "match_only_text",
    "ecs.version": "keyword",
    "event.kind": "keyword",
    "event.category": "keyword",
    "event.type": "keyword",
    "event.action": "keyword",
    "event.id": "keyword",
    "event.created": "date",
    "event.start": "date",
    "event.end": "date",
    "event.severity": "long",
    "event.risk_score": "float",
    "event.reason": "keyword",
    "event.module": "keyword",
    "event.dataset": "keyword",
    "event.provider": "keyword",
    "event.sequence": "long",
    "rule.id": "keyword",
    "rule.name": "keyword",
    "rule.version": "keyword",
    "rule.ruleset": "keyword",
    "threat.framework": "keyword",
    "threat.technique.id": "keyword",
    "threat.technique.name": "keyword",
    "threat.technique.reference": "keyword",
    "threat.tactic.id": "keyword",
    "threat.tactic.name": "keyword",
    "threat.tactic.reference": "keyword",
    "source.ip": "ip",
    "source.address": "keyword",
    "source.port": "long",
    "source.mac": "keyword",
    "destination.ip": "ip",
    "destination.address": "keyword",
    "destination.port": "long",
    "destination.mac": "keyword",
    "network.transport": "keyword",
    "network.protocol": "keyword",
    "network.community_id": "keyword",
    "network.bytes": "long",
    "network.packets": "long",
    "network.type": "keyword",
    "observer.vendor": "keyword",
    "observer.product": "keyword",
    "observer.version": "keyword",
    "observer.hostname": "keyword",
    "observer.name": "keyword",
    "observer.type": "keyword",
    "observer.ingress.zone": "keyword",
    "observer.egress.zone": "keyword",
}
ALLOWED = {
    "event.kind": {
        "alert",
        "asset",
        "enrichment",
        "event",
        "metric",
        "state",
        "pipeline_error",
        "signal",
    },
    "event.category": {"network", "intrusion_detection", "threat", "host", "authentication"},
    "event.type": {
        "allowed",
        "denied",
        "info",
        "connection",
        "start",
        "end",
        "protocol",
        "access",
        "indicator",
    },
}
MAC = r"^([0-9A-F]{2}-){5}[0-9A-F]{2}$"


def leaves(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in doc.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(leaves(value, path + "."))
        else:
            out[path] = value
    return out


def check_type(name: str, kind: str, value: Any) -> None:
    values = value if isinstance(value, list) else [value]
    for v in values:
        if kind in ("keyword", "match_only_text"):
            assert isinstance(v, str), name
        elif kind == "long":
            assert isinstance(v, int) and not isinstance(v, bool), name
        elif kind == "float":
            assert isinstance(v, float), name
        elif kind == "date":
            assert datetime.datetime.fromisoformat(v).tzinfo is not None, name
        elif kind == "ip":
            ipaddress.ip_address(v)


def test_every_field_is_ecs_or_our_namespace() -> None:
    doc = ecs.render(sample_alert(), seq=42)
    for name, value in leaves(doc).items():
        if name.startswith(("plantgate.", "labels.")):
            continue
        assert name in ECS_FIELDS, f"{name} is not an ECS field"
        check_type(name, ECS_FIELDS[name], value)
    for name, allowed in ALLOWED.items():
        values = leaves(doc)[name]
        assert set(values if isinstance(values, list) else [values]) <= allowed
    json.dumps(doc)  # plain JSON


def test_alert_fields_land_where_ecs_says() -> None:
    doc = ecs.render(sample_alert(), seq=42)
    assert doc["event"]["kind"] == "alert"
    assert doc["event"]["type"] == ["denied"] and doc["event"]["action"] == "denied"
    assert doc["event"]["id"] == sample_alert().id and doc["event"]["sequence"] == 42
    assert doc["event"]["severity"] == 4 and doc["event"]["risk_score"] == 73.0
    assert doc["rule"] == {
        "id": "PG-SCAN-VERTICAL",
        "name": "Vertical port scan",
        "version": "2",
        "ruleset": "plantgate",
    }
    assert doc["threat"]["framework"] == "MITRE ATT&CK"
    assert doc["threat"]["technique"]["id"] == ["T0846"]
    assert doc["threat"]["tactic"] == {
        "id": ["TA0102"],
        "name": ["Discovery"],
        "reference": ["https://attack.mitre.org/tactics/TA0102/"],
    }
    assert doc["source"]["ip"] == "198.18.10.11" and doc["source"]["port"] == 40123
    import re

    assert re.match(MAC, doc["source"]["mac"])
    assert doc["network"]["community_id"].startswith("1:")
    assert doc["network"]["transport"] == "tcp" and doc["network"]["type"] == "ipv4"
    assert doc["observer"]["ingress"]["zone"] == "hubs"
    assert doc["plantgate"]["alert"] == {
        "status": "new",
        "count": 120,
        "revision": 0,
        "key": "198.18.10.11",
    }
    assert doc["plantgate"]["source"] == {"zone": "hubs", "role": "hub"}
    assert doc["plantgate"]["evidence"]["observed"] == 120
    assert doc["@timestamp"] == "2025-03-01T12:00:09.750000Z"


def test_minimal_alert_has_no_empty_objects() -> None:
    doc = ecs.render(
        sample_alert(
            technique=None,
            source=None,
            destination=None,
            network=None,
            action=None,
            evidence=None,
            labels={},
        ),
        seq=None,
    )
    assert "threat" not in doc and "source" not in doc and "network" not in doc
    assert doc["event"]["type"] == ["info"] and "sequence" not in doc["event"]
