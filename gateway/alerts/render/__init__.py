"""Renderers: the canonical `Alert` in the formats SOC tools read.

Each is a pure function of the alert and its feed sequence number (`seq`, the spool cursor;
None when the alert was never spooled):

    ecs.render(alert, seq) -> dict       Elastic Common Schema document, `event.kind: alert`
    ocsf.render(alert, seq) -> dict      OCSF Detection Finding (class 2004), schema 1.5.0
    cef.render(alert, seq) -> str        ArcSight Common Event Format, one line
    syslog.render(alert, seq) -> str     RFC 5424 message with structured data

`render_text` gives every format as one line of text, the feed's and the CLI's unit.
"""

from __future__ import annotations

import json
from typing import Literal, get_args

from gateway.alerts.record import Alert
from gateway.alerts.render import cef, ecs, ocsf, syslog

Format = Literal["ecs", "ocsf", "cef", "syslog"]
FORMATS: tuple[Format, ...] = get_args(Format)
JSON_FORMATS: tuple[Format, ...] = ("ecs", "ocsf")


def render_json(alert: Alert, fmt: Format, seq: int | None) -> dict[str, object]:
    if fmt == "ecs":
        return ecs.render(alert, seq)
    if fmt == "ocsf":
        return ocsf.render(alert, seq)
    raise ValueError(f"{fmt} is not a JSON format")


def render_text(alert: Alert, fmt: Format, seq: int | None) -> str:
    """One line (no newline) in format `fmt`; JSON formats compact, keys sorted."""
    if fmt in JSON_FORMATS:
        return json.dumps(render_json(alert, fmt, seq), sort_keys=True, separators=(",", ":"))
    if fmt == "cef":
        return cef.render(alert, seq)
    if fmt == "syslog":
        return syslog.render(alert, seq)
    raise ValueError(f"unknown format {fmt!r}: expected one of {', '.join(FORMATS)}")
