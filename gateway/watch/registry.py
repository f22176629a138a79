"""Every detector the watcher runs, built from the policy's `detection` section.

One place lists them, in the order the engine calls them; the benchmark and the service
both build from here, so "all detectors" means the same thing everywhere.
"""

from __future__ import annotations

from gateway.policy.detection import Detection
from gateway.watch.baseline import Learned
from gateway.watch.detectors.assets import AssetDetector
from gateway.watch.detectors.base import Detector
from gateway.watch.detectors.components import ComponentDetector
from gateway.watch.detectors.denied import DeniedFlowDetector
from gateway.watch.detectors.dns import DnsDetector
from gateway.watch.detectors.egress import EgressDetector
from gateway.watch.detectors.flood import FloodDetector
from gateway.watch.detectors.hubport import HubAgentDetector
from gateway.watch.detectors.ntp import NtpDetector
from gateway.watch.detectors.pairs import NewPairDetector
from gateway.watch.detectors.scan import HorizontalScanDetector, VerticalScanDetector
from gateway.watch.detectors.ssh import SshDetector
from gateway.watch.detectors.support import SupportDetector
from gateway.watch.detectors.tls import NonTlsDetector


def build_detectors(detection: Detection, learned: Learned) -> list[Detector]:
    """The detectors for `detection`; the new-pair and asset detectors share `learned`."""
    return [
        DeniedFlowDetector(detection.denied),
        VerticalScanDetector(detection.scan_vertical),
        HorizontalScanDetector(detection.scan_horizontal),
        AssetDetector(detection.assets, learned),
        NewPairDetector(detection.pairs, learned),
        HubAgentDetector(detection.hub_agent),
        EgressDetector(detection.egress),
        FloodDetector(detection.flood),
        NonTlsDetector(detection.tls),
        DnsDetector(detection.dns),
        NtpDetector(detection.ntp),
        SshDetector(detection.ssh),
        SupportDetector(detection.support),
        ComponentDetector(detection.components),
    ]
