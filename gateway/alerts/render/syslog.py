"""RFC 5424 syslog message for an alert, with the alert in structured data.

    <PRI>1 TIMESTAMP HOSTNAME plantgate - MSGID [origin ...][meta ...][plantgate@32473 ...] BOM MSG

- PRI = facility * 8 + severity; facility `local0` (16) unless configured, severity from
  `Severity.syslog` (info 6, low 5, medium 4, high 3, critical 2).
- TIMESTAMP: the emission time, RFC 3339 in UTC with microseconds (`...T12:00:00.123456Z`).
- HOSTNAME: the appliance's name (printable US-ASCII, at most 255), APP-NAME `plantgate`,
  PROCID `-`, MSGID the rule id (1-32 printable characters, checked by `Rule`).
- STRUCTURED-DATA: the IANA-registered `origin` (software, swVersion) and `meta`
  (sequenceId: the feed cursor, wrapped into 1..2147483647 as RFC 5424 §7.3.1 says) elements,
  then `plantgate@32473` with the alert. 32473 is the private enterprise number IANA
  reserves for documentation (RFC 5612); a vendor shipping this would register its own and
  change `SD_ID`. PARAM-VALUEs escape `"`, `\\` and `]` with a backslash (§6.3.3).
- MSG: a UTF-8 BOM and the alert's summary; line breaks become spaces, so one message is
  one line in a file. The whole message is kept within `MAX_OCTETS` (RFC 5425 receivers
  must accept 2048 and should accept 8192) by shortening MSG if need be.
"""

from __future__ import annotations

from gateway.alerts.record import Alert, iso_utc

PEN = 32473  # IANA: "Reserved for documentation" (RFC 5612)
SD_ID = f"plantgate@{PEN}"
APP_NAME = "plantgate"
FACILITIES = {f"local{i}": 16 + i for i in range(8)} | {"user": 1, "daemon": 3, "auth": 4}
DEFAULT_FACILITY = FACILITIES["local0"]
MAX_OCTETS = 8192
BOM = "\ufeff"
SEQUENCE_MAX = 2147483647


def escape_param(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def header_token(value: str, limit: int) -> str:
    """A HEADER field: printable US-ASCII (33-126) only, at most `limit`, `-` when empty."""
    token = "".join(c for c in value if 33 <= ord(c) <= 126)[:limit]
    return token or "-"


def sd_element(sd_id: str, params: list[tuple[str, str]]) -> str:
    inner = "".join(f' {name}="{escape_param(value)}"' for name, value in params)
    return f"[{sd_id}{inner}]"


def render(
    alert: Alert,
    seq: int | None = None,
    *,
    facility: int = DEFAULT_FACILITY,
    hostname: str | None = None,
) -> str:
    if not 0 <= facility <= 23:
        raise ValueError(f"syslog facility {facility} out of range 0-23")
    pri = facility * 8 + alert.severity.syslog
    header = " ".join(
        (
            f"<{pri}>1",
            iso_utc(alert.emitted),
            header_token(hostname or alert.observer.appliance, 255),
            APP_NAME,
            "-",
            header_token(alert.rule.id, 32),
        )
    )
    elements = [
        sd_element(
            "origin", [("software", alert.observer.product), ("swVersion", alert.observer.version)]
        )
    ]
    if seq is not None and seq > 0:
        elements.append(sd_element("meta", [("sequenceId", str((seq - 1) % SEQUENCE_MAX + 1))]))
    elements.append(sd_element(SD_ID, params(alert, seq)))
    head = f"{header} {''.join(elements)}"
    summary = " ".join(alert.summary.splitlines())
    room = MAX_OCTETS - len(head.encode()) - 1 - len(BOM.encode())
    if room <= 0:
        return head
    body = summary.encode()[:room].decode(errors="ignore")
    return f"{head} {BOM}{body}"


def params(alert: Alert, seq: int | None) -> list[tuple[str, str]]:
    """The `plantgate@32473` SD-PARAMs, unescaped (names are at most 32 characters)."""
    out: list[tuple[str, str]] = [
        ("id", alert.id),
        ("revision", str(alert.revision)),
        ("status", alert.status),
        ("rule", alert.rule.id),
        ("ruleName", alert.rule.name),
        ("ruleVersion", alert.rule.version),
        ("severity", alert.severity.value),
        ("count", str(alert.count)),
        ("firstSeen", iso_utc(alert.first_seen)),
        ("lastSeen", iso_utc(alert.last_seen)),
    ]
    if seq is not None:
        out.append(("seq", str(seq)))
    if alert.technique is not None:
        t = alert.technique
        out += [
            ("technique", t.id),
            ("techniqueName", t.name),
            ("tactic", t.tactic_id),
            ("tacticName", t.tactic_name),
        ]
    for prefix, side in (("src", alert.source), ("dst", alert.destination)):
        if side is None:
            continue
        out.append((prefix, side.address))
        for suffix, value in (
            ("Port", side.port),
            ("Zone", side.zone),
            ("Role", side.role),
            ("Mac", side.mac),
        ):
            if value is not None:
                out.append((prefix + suffix, str(value)))
    net = alert.network
    if net is not None:
        for name, value in (
            ("transport", net.transport),
            ("protocol", net.protocol),
            ("communityId", net.community_id),
            ("bytes", net.bytes),
            ("packets", net.packets),
        ):
            if value is not None:
                out.append((name, str(value)))
    if alert.action is not None:
        out.append(("action", alert.action))
    if alert.evidence is not None:
        e = alert.evidence
        for name, number in (
            ("threshold", e.threshold),
            ("windowSeconds", e.window_s),
            ("observed", e.observed),
            ("baseline", e.baseline),
        ):
            if number is not None:
                out.append((name, _number(number)))
    out += [
        ("site", alert.observer.site),
        ("appliance", alert.observer.appliance),
        ("mode", alert.observer.mode),
    ]
    return out


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
