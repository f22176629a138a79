"""policies/schema.json is exactly what `plantgate policy schema` prints, and it validates."""

from __future__ import annotations

import json

from gateway.policy.cli import schema_text
from tests.unit.conftest import POLICIES


def test_schema_file_is_current() -> None:
    shipped = (POLICIES / "schema.json").read_text()
    assert shipped == schema_text(), "policies/schema.json is stale: run `make schema`"


def test_schema_describes_the_sections_editors_need() -> None:
    schema = json.loads(schema_text())
    assert schema["required"] == ["version", "site", "interfaces", "zones", "services", "rules"]
    rule = schema["$defs"]["Rule"]
    assert set(rule["required"]) == {"name", "from", "to", "allow"}
    assert rule["additionalProperties"] is False
    port = schema["$defs"]["Service"]["properties"]["tcp"]["items"]
    assert {"type": "integer", "minimum": 1, "maximum": 65535} in port["oneOf"]
