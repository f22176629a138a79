"""CEF: escaping per the specification, and every line parsed back by independent parsers.

`cefp` (PyPI) tokenizes header and extension with the spec's escapes and unescapes values;
`pycef` (PyPI) is a regex parser that cannot read a header containing a backslash (its
header pattern excludes `\\`) and returns values still escaped, so it is used on lines
without header escapes and compared with our escaped values.
"""

from __future__ import annotations

import cefp
import pycef
import pytest

from gateway.alerts.record import Endpoint, Rule, Severity
from gateway.alerts.render import cef
from tests.unit.alerts.conftest import sample_alert


def test_escaping_matches_the_specification_examples() -> None:
    # The CEF spec's own examples: a pipe in the header, an equals sign in the extension.
    assert cef.escape_header("detected a | in message") == "detected a \\| in message"
    assert cef.escape_header("detected a \\ in packet") == "detected a \\\\ in packet"
    assert cef.escape_value("blocked a =") == "blocked a \\="
    assert cef.escape_value("c:\\windows") == "c:\\\\windows"
    assert cef.escape_value("two\nlines\r") == "two\\nlines\\r"
    assert cef.escape_value("a|b") == "a|b"  # no pipe escape in the extension
    assert cef.escape_header("one\ntwo") == "one two"  # no line break in a header


def test_header() -> None:
    line = cef.render(sample_alert(), seq=5)
    head = line.split("|")
    assert head[:7] == [
        "CEF:0",
        "PlantGate",
        "plantgate",
        "0.1.0",
        "PG-SCAN-VERTICAL",
        "Vertical port scan",
        "8",
    ]
    assert "\n" not in line


@pytest.mark.parametrize(
    "name, summary",
    [
        ("Vertical port scan", "plain"),
        ("Pipe | and back\\slash", "equals = back\\slash | pipe\nnew line\rcr"),
        ("ünïcode name", "key=value pairs a=b c=d and trailing backslash\\"),
    ],
)
def test_cefp_parses_back_what_we_wrote(name: str, summary: str) -> None:
    alert = sample_alert(rule=Rule("PG-TEST", name), summary=summary, severity=Severity.CRITICAL)
    parsed = cefp.parse(cef.render(alert, seq=9))
    assert parsed["version"] == "0"
    assert parsed["device"] == {
        "vendor": "PlantGate",
        "product": "plantgate",
        "version": "0.1.0",
        "event_class_id": "PG-TEST",
    }
    assert parsed["name"] == name
    assert parsed["severity"] == "10"
    expected = dict(cef.extension(alert, 9))
    assert parsed["extension"] == expected
    assert parsed["extension"]["msg"] == summary


def test_pycef_reads_keys_labels_and_raw_values() -> None:
    alert = sample_alert(summary="spaces and = sign")
    parsed = pycef.parse(cef.render(alert, seq=3))
    assert parsed["DeviceEventClassID"] == "PG-SCAN-VERTICAL"
    assert parsed["Severity"] == "8"
    assert parsed["src"] == "198.18.10.11" and parsed["dpt"] == "22"
    assert parsed["cnt"] == "120" and parsed["act"] == "denied"
    assert parsed["msg"] == cef.escape_value("spaces and = sign")
    # pycef applies the csNLabel names
    assert parsed["attackTechnique"] == "T0846 Remote System Discovery"
    community = alert.network.community_id  # type: ignore[union-attr]
    assert parsed["communityId"] == cef.escape_value(community)  # base64 '=' stays escaped
    assert parsed["sequence"] == "3"


def test_extension_fields() -> None:
    ext = dict(cef.extension(sample_alert(), 5))
    assert ext["externalId"] == sample_alert().id
    assert ext["start"] == "1740830400250" and ext["end"] == "1740830409750"
    assert ext["proto"] == "TCP" and ext["app"] == "ssh"
    assert ext["smac"] == "02:00:5e:10:00:0b"
    assert ext["cs5"] == "hubs/hub" and ext["cs5Label"] == "sourceZone"
    assert ext["cfp1"] == "120" and ext["cfp4"] == "0.5"
    assert ext["flexString1"] == "lab-plant" and ext["flexString2"] == "protecting"


def test_ipv6_endpoints_use_the_ipv6_keys() -> None:
    alert = sample_alert(source=Endpoint("2001:db8::1", 1234), destination=Endpoint("2001:db8::2"))
    ext = dict(cef.extension(alert, None))
    assert ext["c6a2"] == "2001:db8::1" and ext["c6a3"] == "2001:db8::2"
    assert "src" not in ext and "flexNumber1" not in ext
