"""Alert settings: sinks, spool bounds, aggregation timing, from `<state>/alerts/config.yaml`.

Until the policy grows an `alerts:` section (docs/decisions/0010-alerts.md proposes one), the
appliance reads this small file. Every key is optional; a missing file means: spool and feed
only, no syslog, no webhook.

    syslog:                        # RFC 5425 syslog over TLS to the SOC's collector
      host: 198.18.20.10
      port: 6514
      ca: /var/lib/plantgate/alerts/collector-ca.crt
      server_name: collector.plant.test     # default: host
      client_cert: ...; client_key: ...     # mutual TLS, when the collector asks for it
      facility: local0
      backlog: 1000                         # alerts held in memory while sending
    webhook:
      url: https://siem.example/hooks/plantgate
      ca: ...                               # default: the system's trust store
      format: ecs                           # or ocsf
      token_file: ...                       # Bearer token, a 0600 file (never inline)
    spool: {segment_bytes: 4194304, max_bytes: 268435456}
    aggregation: {window_s: 60, update_every_s: 10, max_open_s: 3600, max_entries: 10000}
    feed: {tcp_port: 8514}                  # also on 127.0.0.1 (default: Unix socket only)
    intake_queue: 10000
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from gateway.alerts.render.syslog import FACILITIES


class ConfigError(ValueError):
    """The alerts configuration file is unreadable or invalid (message says where)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SyslogSettings(_Strict):
    host: str = Field(min_length=1)
    port: int = Field(default=6514, ge=1, le=65535)
    ca: Path
    server_name: str | None = None
    client_cert: Path | None = None
    client_key: Path | None = None
    facility: str = "local0"
    backlog: int = Field(default=1000, ge=1, le=100_000)
    confirm_after_s: float = Field(default=2.0, ge=0, le=60)

    @field_validator("facility")
    @classmethod
    def _facility(cls, value: str) -> str:
        if value not in FACILITIES:
            raise ValueError(f"unknown facility {value!r}: one of {', '.join(FACILITIES)}")
        return value


class WebhookSettings(_Strict):
    url: str
    ca: Path | None = None
    format: Literal["ecs", "ocsf"] = "ecs"
    token_file: Path | None = None
    batch: int = Field(default=100, ge=1, le=1000)
    timeout_s: float = Field(default=10.0, gt=0, le=120)

    @field_validator("url")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith("https://"):
            raise ValueError("the webhook must be https://")
        return value


class SpoolSettings(_Strict):
    segment_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_bytes: int = Field(default=256 * 1024 * 1024, ge=2048)


class AggregationSettings(_Strict):
    window_s: float = Field(default=60.0, gt=0)
    update_every_s: float = Field(default=10.0, ge=0)
    max_open_s: float = Field(default=3600.0, gt=0)
    max_entries: int = Field(default=10_000, ge=1, le=1_000_000)


class FeedSettings(_Strict):
    tcp_port: int | None = Field(default=None, ge=1, le=65535)


class AlertSettings(_Strict):
    syslog: SyslogSettings | None = None
    webhook: WebhookSettings | None = None
    spool: SpoolSettings = SpoolSettings()
    aggregation: AggregationSettings = AggregationSettings()
    feed: FeedSettings = FeedSettings()
    intake_queue: int = Field(default=10_000, ge=1, le=1_000_000)


def config_path(state: Path) -> Path:
    return state / "alerts" / "config.yaml"


def load_settings(path: Path) -> AlertSettings:
    """The settings in `path`; defaults when it does not exist; ConfigError when invalid."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return AlertSettings()
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from None
    try:
        data = YAML(typ="safe").load(text)
    except YAMLError as exc:
        raise ConfigError(f"{path}: not YAML: {exc}") from None
    try:
        return AlertSettings.model_validate(data or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(f"{path}: {problems}") from None
