"""RFC 5424: header fields, structured data escaping, and parsing back with
syslog-rfc5424-parser (PyPI), which tokenizes by the RFC's grammar but returns PARAM-VALUEs
still escaped; `unescape` applies §6.3.3 to compare them with what we meant."""

from __future__ import annotations

import re

import pytest
from syslog_rfc5424_parser import SyslogMessage

from gateway.alerts.record import Observer, Rule, Severity
from gateway.alerts.render import syslog
from tests.unit.alerts.conftest import OBSERVER, sample_alert

# RFC 5424 §6: HEADER = PRI VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID
HEADER = re.compile(
    r"^<(?P<pri>\d{1,3})>1 "
    r"(?P<ts>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})) "
    r"(?P<host>[!-~]{1,255}) (?P<app>[!-~]{1,48}) (?P<proc>[!-~]{1,128}) (?P<msgid>[!-~]{1,32}) "
)


def unescape(value: str) -> str:
    return re.sub(r'\\(["\\\]])', r"\1", value)


def test_header_fields() -> None:
    line = syslog.render(sample_alert(), seq=12)
    m = HEADER.match(line)
    assert m is not None
    assert int(m["pri"]) == 16 * 8 + 3  # local0, high -> Error (3)
    assert m["ts"] == "2025-03-01T12:00:10.250000Z"
    assert (m["host"], m["app"], m["proc"], m["msgid"]) == (
        "gw",
        "plantgate",
        "-",
        "PG-SCAN-VERTICAL",
    )


@pytest.mark.parametrize("severity", list(Severity))
def test_parser_reads_severity_and_facility(severity: Severity) -> None:
    line = syslog.render(
        sample_alert(severity=severity), seq=1, facility=syslog.FACILITIES["local4"]
    )
    parsed = SyslogMessage.parse(line)
    names = {6: "info", 5: "notice", 4: "warning", 3: "err", 2: "crit"}
    assert parsed.severity.name.lower().startswith(names[severity.syslog][:3])
    assert parsed.facility.name == "local4"


def test_structured_data_round_trips_through_the_parser() -> None:
    alert = sample_alert(
        rule=Rule("PG-TEST", 'quote " backslash \\ bracket ] end'),
        summary="multi\nline summary, ünïcode",
    )
    line = syslog.render(alert, seq=2147483648)
    parsed = SyslogMessage.parse(line).as_dict()
    assert parsed["appname"] == "plantgate" and parsed["msgid"] == "PG-TEST"
    sd = parsed["sd"]
    assert set(sd) == {"origin", "meta", syslog.SD_ID}
    assert sd["origin"] == {"software": "plantgate", "swVersion": "0.1.0"}
    assert sd["meta"] == {"sequenceId": "1"}  # 2^31 wraps to 1 (RFC 5424 §7.3.1)
    ours = {k: unescape(v) for k, v in sd[syslog.SD_ID].items()}
    assert ours == dict(syslog.params(alert, 2147483648))
    assert ours["ruleName"] == 'quote " backslash \\ bracket ] end'
    assert parsed["msg"] == "\ufeffmulti line summary, ünïcode"


def test_sd_id_uses_the_documentation_pen() -> None:
    assert syslog.SD_ID == "plantgate@32473" and syslog.PEN == 32473
    for name, _ in syslog.params(sample_alert(), 1):
        assert 1 <= len(name) <= 32 and re.fullmatch(r"[!-~]+", name)
        assert not set(name) & set('= ]"')


def test_hostname_is_sanitized_and_message_bounded() -> None:
    odd = Observer("site", "gw with spaces\u00e9", "0.1.0")
    line = syslog.render(sample_alert(observer=odd, summary="x" * 20000), seq=None)
    assert HEADER.match(line)["host"] == "gwwithspaces"  # type: ignore[index]
    assert len(line.encode()) <= syslog.MAX_OCTETS
    assert "meta" not in line.split(" [", 1)[1][:10]
    SyslogMessage.parse(line)
    with pytest.raises(ValueError):
        syslog.render(sample_alert(), facility=24)


def test_observer_default() -> None:
    assert syslog.render(sample_alert(observer=OBSERVER), seq=1).startswith("<131>1 ")
