"""The policy's `detection` section: the traffic watcher's mode and every detector's settings.

    detection:
      mode: learning            # learning -> protecting after learning_window (or a freeze)
      learning_window: 7d
      scan_vertical: {threshold: 20, window_s: 60}
      dns: {approved_resolvers: [198.19.0.53]}

Each key below `mode` and `learning_window` is one detector's settings model, defined beside
the detector (gateway/watch/detectors/*.py): the detector and its YAML cannot drift apart.
Every field has a default sized for a small plant LAN (tens of hubs, a few workstations), so
the section may be left out entirely. Shape errors are located like every other section's
(`FILE:LINE:COL`, did-you-mean for misspelt keys); `check_detection` adds what needs the
rest of the policy.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field

from gateway.watch.detectors.assets import AssetSettings
from gateway.watch.detectors.components import ComponentSettings
from gateway.watch.detectors.denied import DeniedSettings
from gateway.watch.detectors.dns import DnsSettings
from gateway.watch.detectors.egress import EgressSettings
from gateway.watch.detectors.flood import FloodSettings
from gateway.watch.detectors.hubport import HubAgentSettings
from gateway.watch.detectors.ntp import NtpSettings
from gateway.watch.detectors.pairs import PairSettings
from gateway.watch.detectors.scan import HorizontalScanSettings, VerticalScanSettings
from gateway.watch.detectors.ssh import SshSettings
from gateway.watch.detectors.support import SupportSettings
from gateway.watch.detectors.tls import TlsSettings

if TYPE_CHECKING:
    from gateway.policy.errors import Problem
    from gateway.policy.load import Parts
    from gateway.policy.source import Source

SECTION = "detection"
DURATION = r"^[1-9][0-9]{0,5}(s|m|h|d)$"  # as model.DURATION_PATTERN (model imports this)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Detection(BaseModel):
    """The traffic watcher: learning or protecting, and each detector's thresholds."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    mode: Literal["learning", "protecting"] = Field(
        default="learning",
        description="learning: learn the site's conversations and devices for "
        "learning_window, then protect; protecting: alert on anything not in the baseline "
        "from the start.",
    )
    learning_window: str = Field(
        default="7d",
        pattern=DURATION,
        description="How long to learn before protecting: '12h', '7d', '30d'.",
    )
    denied: DeniedSettings = Field(default_factory=DeniedSettings)
    scan_vertical: VerticalScanSettings = Field(default_factory=VerticalScanSettings)
    scan_horizontal: HorizontalScanSettings = Field(default_factory=HorizontalScanSettings)
    assets: AssetSettings = Field(default_factory=AssetSettings)
    pairs: PairSettings = Field(default_factory=PairSettings)
    hub_agent: HubAgentSettings = Field(default_factory=HubAgentSettings)
    egress: EgressSettings = Field(default_factory=EgressSettings)
    flood: FloodSettings = Field(default_factory=FloodSettings)
    tls: TlsSettings = Field(default_factory=TlsSettings)
    dns: DnsSettings = Field(default_factory=DnsSettings)
    ntp: NtpSettings = Field(default_factory=NtpSettings)
    ssh: SshSettings = Field(default_factory=SshSettings)
    support: SupportSettings = Field(default_factory=SupportSettings)
    components: ComponentSettings = Field(default_factory=ComponentSettings)

    @property
    def learning_s(self) -> float:
        return float(int(self.learning_window[:-1]) * _SECONDS[self.learning_window[-1]])


def check_detection(parts: Parts, source: Source) -> Iterator[Problem]:
    """What the section's shape cannot say."""
    detection = parts.detection
    if detection is None:
        return
    written = source.data.get(SECTION)
    if (
        detection.mode == "protecting"
        and isinstance(written, dict)
        and "learning_window" in written
    ):
        yield source.warning(
            (SECTION, "learning_window"),
            "mode protecting: learning_window has no effect (nothing is learned first)",
        )
