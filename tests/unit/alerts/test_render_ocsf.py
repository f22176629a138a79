"""OCSF: each rendered finding validates with py-ocsf-models (OCSF 1.5.0 Detection Finding).

py-ocsf-models does not model a few OCSF 1.5.0 attributes we use; those are listed in
`NOT_MODELLED` with the schema objects that define them, and checked against the attribute
names of those objects here (ocsf-schema: objects/evidences.json, network_endpoint.json,
network_connection_info.json, profiles/security_control.json).
"""

from __future__ import annotations

from typing import Any

import pytest
from py_ocsf_models import OCSF_VERSION
from py_ocsf_models.events.findings.detection_finding import DetectionFinding

from gateway.alerts.record import Severity
from gateway.alerts.render import ocsf
from tests.unit.alerts.conftest import sample_alert

NOT_MODELLED = {
    "action_id": None,  # security_control profile
    "action": None,
    "disposition_id": None,
    "disposition": None,
    "evidences.0.src_endpoint": {"ip", "port", "mac", "zone"},  # network_endpoint
    "evidences.0.dst_endpoint": {"ip", "port", "mac", "zone"},
    "evidences.0.connection_info": {"protocol_name", "protocol_num", "community_uid"},
}


def unmodelled(doc: Any, dumped: Any, path: str = "") -> dict[str, Any]:
    """Paths of `doc` that the validated model dropped; fails on a value it changed."""
    out: dict[str, Any] = {}
    if isinstance(doc, dict):
        for key, value in doc.items():
            if key not in dumped:
                out[path + key] = value
            else:
                out.update(unmodelled(value, dumped[key], f"{path}{key}."))
    elif isinstance(doc, list):
        for i, (a, b) in enumerate(zip(doc, dumped, strict=True)):
            out.update(unmodelled(a, b, f"{path}{i}."))
    else:
        assert doc == dumped, f"{path}: {doc!r} became {dumped!r}"
    return out


@pytest.mark.parametrize("status", ["new", "update", "close"])
def test_validates_as_a_detection_finding(status: str) -> None:
    doc = ocsf.render(sample_alert(status=status, revision=2), seq=7)
    model = DetectionFinding.model_validate(doc)
    dumped = model.model_dump(mode="json", exclude_none=True)
    extra = unmodelled(doc, dumped)
    assert set(extra) <= set(NOT_MODELLED), set(extra) - set(NOT_MODELLED)
    for path, names in NOT_MODELLED.items():
        if names is not None and path in extra:
            assert set(extra[path]) <= names
    assert model.class_uid == 2004 and model.category_uid == 2
    assert doc["metadata"]["version"] == OCSF_VERSION == ocsf.OCSF_VERSION


def test_activity_follows_the_alert_life() -> None:
    for status, activity in (("new", 1), ("update", 2), ("close", 3)):
        doc = ocsf.render(sample_alert(status=status), seq=1)
        assert doc["activity_id"] == activity
        assert doc["type_uid"] == 2004 * 100 + activity


def test_fields() -> None:
    alert = sample_alert()
    doc = ocsf.render(alert, seq=7)
    assert doc["finding_info"]["uid"] == alert.id
    assert doc["metadata"]["uid"] == f"{alert.id}.0" and doc["metadata"]["sequence"] == 7
    assert doc["finding_info"]["analytic"] == {
        "uid": "PG-SCAN-VERTICAL",
        "name": "Vertical port scan",
        "version": "2",
        "type_id": 1,
        "type": "Rule",
    }
    [attackinfo] = doc["finding_info"]["attacks"]
    assert attackinfo["technique"]["uid"] == "T0846" and attackinfo["tactic"]["uid"] == "TA0102"
    assert doc["count"] == 120 and doc["duration"] == 9500
    assert doc["severity_id"] == Severity.HIGH.rank == 4 and doc["severity"] == "High"
    [evidence] = doc["evidences"]
    assert evidence["src_endpoint"] == {
        "ip": "198.18.10.11",
        "port": 40123,
        "mac": "02:00:5e:10:00:0b",
        "zone": "hubs",
    }
    assert evidence["connection_info"]["protocol_num"] == 6
    assert evidence["connection_info"]["community_uid"] == alert.network.community_id  # type: ignore[union-attr]
    assert evidence["data"]["threshold"] == 100 and evidence["data"]["bytes"] == 7200
    assert doc["action_id"] == 2 and doc["disposition_id"] == 2
    assert doc["unmapped"]["plantgate"]["src_role"] == "hub"
    assert {"name": "src_endpoint.ip", "type_id": 2, "value": "198.18.10.11"} in doc["observables"]


def test_minimal_alert_validates() -> None:
    doc = ocsf.render(
        sample_alert(
            technique=None, source=None, destination=None, network=None, action=None, evidence=None
        ),
        seq=None,
    )
    DetectionFinding.model_validate(doc)
    assert "evidences" not in doc and "action_id" not in doc and "sequence" not in doc["metadata"]
