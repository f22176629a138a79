"""ArcSight Common Event Format (CEF 0) line for an alert.

    CEF:0|PlantGate|plantgate|VERSION|RULE-ID|RULE NAME|SEVERITY 0-10|EXTENSION

Escaping, as the CEF specification says:

- header fields: `\\` -> `\\\\` and `|` -> `\\|`; a header field has no line breaks, so CR
  and LF become spaces;
- extension values: `\\` -> `\\\\`, `=` -> `\\=`, LF -> `\\n`, CR -> `\\r` (a `|` needs no
  escape there). Keys are fixed names from the dictionary below, never user data.

Extension keys (standard CEF dictionary names): `rt` (emitted), `start`/`end` (first/last
seen) in milliseconds since the epoch, `cnt`, `act`, `src`/`dst` (IPv4) or `c6a2`/`c6a3`
(IPv6, source/destination), `spt`/`dpt`, `smac`/`dmac`, `proto` (TCP, UDP, ...), `app`
(application protocol), `externalId` (the alert's UUIDv7), `dvchost` (the appliance), `msg`,
`cat` (the ATT&CK tactic), and labelled custom fields:

    cs1 attackTechnique   "T0846 Remote System Discovery"
    cs2 attackTactic      "TA0102 Discovery"
    cs3 communityId       network Community ID
    cs4 alertStatus       new | update | close
    cs5 sourceZone        zone/role of the source, e.g. "hubs/hub"
    cs6 destinationZone   zone/role of the destination
    cn1 bytes             cn2 packets
    cfp1 observed         cfp2 threshold     cfp3 windowSeconds     cfp4 baseline
    flexString1 site      flexString2 mode (learning | protecting)
    flexNumber1 sequence  (the feed cursor)  flexNumber2 revision
"""

from __future__ import annotations

import ipaddress

from gateway.alerts.record import Alert, Endpoint, epoch_ms

CEF_VERSION = 0


def escape_header(value: str) -> str:
    value = value.replace("\\", "\\\\").replace("|", "\\|")
    return value.replace("\r\n", " ").replace("\r", " ").replace("\n", " ")


def escape_value(value: str) -> str:
    return (
        value.replace("\\", "\\\\")
        .replace("=", "\\=")
        .replace("\r\n", "\\n")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
    )


def render(alert: Alert, seq: int | None = None) -> str:
    o = alert.observer
    header = [
        f"CEF:{CEF_VERSION}",
        escape_header(o.vendor),
        escape_header(o.product),
        escape_header(o.version),
        escape_header(alert.rule.id),
        escape_header(alert.rule.name),
        str(alert.severity.cef),
    ]
    ext = " ".join(f"{key}={escape_value(value)}" for key, value in extension(alert, seq))
    return "|".join(header) + "|" + ext


def extension(alert: Alert, seq: int | None) -> list[tuple[str, str]]:
    """The extension as ordered (key, unescaped value) pairs."""
    pairs: list[tuple[str, str]] = [
        ("rt", str(epoch_ms(alert.emitted))),
        ("start", str(epoch_ms(alert.first_seen))),
        ("end", str(epoch_ms(alert.last_seen))),
        ("cnt", str(alert.count)),
        ("externalId", alert.id),
        ("dvchost", alert.observer.appliance),
    ]
    if alert.action is not None:
        pairs.append(("act", alert.action))
    for side, (ip4, ip6, port, mac) in (
        (alert.source, ("src", "c6a2", "spt", "smac")),
        (alert.destination, ("dst", "c6a3", "dpt", "dmac")),
    ):
        if side is None:
            continue
        v6 = ipaddress.ip_address(side.address).version == 6
        pairs.append((ip6 if v6 else ip4, side.address))
        if side.port is not None:
            pairs.append((port, str(side.port)))
        if side.mac is not None:
            pairs.append((mac, side.mac))
    net = alert.network
    if net is not None and net.transport:
        pairs.append(("proto", net.transport.upper()))
    if net is not None and net.protocol:
        pairs.append(("app", net.protocol))
    pairs.append(("msg", alert.summary))
    if alert.technique is not None:
        t = alert.technique
        pairs += [
            ("cat", t.tactic_name),
            ("cs1", f"{t.id} {t.name}"),
            ("cs1Label", "attackTechnique"),
            ("cs2", f"{t.tactic_id} {t.tactic_name}"),
            ("cs2Label", "attackTactic"),
        ]
    if net is not None and net.community_id:
        pairs += [("cs3", net.community_id), ("cs3Label", "communityId")]
    pairs += [("cs4", alert.status), ("cs4Label", "alertStatus")]
    for value, name, label in (
        (_zone(alert.source), "cs5", "sourceZone"),
        (_zone(alert.destination), "cs6", "destinationZone"),
    ):
        if value:
            pairs += [(name, value), (f"{name}Label", label)]
    if net is not None:
        for amount, name, label in ((net.bytes, "cn1", "bytes"), (net.packets, "cn2", "packets")):
            if amount is not None:
                pairs += [(name, str(amount)), (f"{name}Label", label)]
    if alert.evidence is not None:
        e = alert.evidence
        for number, name, label in (
            (e.observed, "cfp1", "observed"),
            (e.threshold, "cfp2", "threshold"),
            (e.window_s, "cfp3", "windowSeconds"),
            (e.baseline, "cfp4", "baseline"),
        ):
            if number is not None:
                pairs += [(name, _number(number)), (f"{name}Label", label)]
    pairs += [
        ("flexString1", alert.observer.site),
        ("flexString1Label", "site"),
        ("flexString2", alert.observer.mode),
        ("flexString2Label", "mode"),
    ]
    if seq is not None:
        pairs += [("flexNumber1", str(seq)), ("flexNumber1Label", "sequence")]
    pairs += [("flexNumber2", str(alert.revision)), ("flexNumber2Label", "revision")]
    return pairs


def _zone(side: Endpoint | None) -> str:
    if side is None:
        return ""
    return "/".join(part for part in (side.zone, side.role) if part)


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))
