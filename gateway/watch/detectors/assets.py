"""Assets on the hub segment: new devices, IP/MAC binding changes, duplicate addresses.

Input: `ArpEvent`s — the ruleset logs ARP arriving on the hubs' interfaces (a small
`arp plantgate` table, gateway/policy/watchlog.py). Every IPv4 host on the segment must
ARP to talk to the appliance (and must answer the appliance's ARP to be answered), so ARP
sees every device, whatever it then sends.

Rules:
* `PG-ASSET-NEW` (key: the MAC, or `mac ip` for a known device's new address) — a hardware
  address, or an address of a known device, that the baseline does not have, while
  *protecting*. While *learning* it is added silently. Medium: a plant's hub segment changes
  only when someone installs something. No ATT&CK technique: a new device is an observed
  fact, not yet a technique (what it does next is what the other rules judge).
* `PG-ASSET-BINDING-CHANGE` (key: the IP) — an address the baseline binds to one MAC is
  claimed by another: a replaced device, or ARP spoofing to get in the middle (T0830
  Adversary-in-the-Middle). High, in either mode.
* `PG-ASSET-DUPLICATE-IP` (key: the IP) — two MACs claim one address within
  `duplicate_window_s` of each other: an address conflict, or spoofing racing the owner.
  High, in either mode.

ARP probes (sender address 0.0.0.0, RFC 5227) name a MAC but claim no address. The asset
table lives in the baseline (persisted, `max_assets`); the recent claims that tell a
duplicate from a change are at most `max_tracked` (LRU).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from gateway.alerts import attack
from gateway.alerts.record import Endpoint, Evidence, Rule, Severity, Trigger, normalize_mac
from gateway.watch.baseline import Learned
from gateway.watch.detectors.base import ArpEvent, SiteView, WatchEvent, trigger_time
from gateway.watch.detectors.bounded import DetectorSettings, Recent, Reporter

NEW_ASSET = Rule("PG-ASSET-NEW", "New asset on the hub segment")
BINDING = Rule("PG-ASSET-BINDING-CHANGE", "IP address moved to another MAC")
DUPLICATE = Rule("PG-ASSET-DUPLICATE-IP", "Duplicate IP address on the hub segment")
NO_TRIGGERS: tuple[Trigger, ...] = ()
UNSPECIFIED = "0.0.0.0"


class AssetSettings(DetectorSettings):
    """Devices on the hub segment (PG-ASSET-NEW, -BINDING-CHANGE, -DUPLICATE-IP)."""

    enabled: bool = True
    duplicate_window_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="Two MACs claiming one IP within this many seconds is a duplicate; "
        "further apart, a binding change.",
    )
    max_assets: int = Field(default=4096, ge=1, le=1_000_000, description="Devices held.")
    max_tracked: int = Field(default=10_000, ge=1, le=1_000_000, description="Recent claims.")
    report_every_s: float = Field(default=10.0, gt=0, le=3600)
    ignore_macs: list[str] = Field(
        default_factory=list, description="Hardware addresses never reported (aa:bb:cc:dd:ee:ff)."
    )


class AssetDetector:
    name = "assets"
    accepts = frozenset({"arp"})

    def __init__(self, settings: AssetSettings, learned: Learned) -> None:
        self.settings = settings
        self.learned = learned
        learned.baseline.max_assets = settings.max_assets
        self._ignored = frozenset(normalize_mac(m) for m in settings.ignore_macs)
        # ip -> (mac, time) of the latest claim: what tells a duplicate from a move
        self._claims: Recent[str, tuple[str, float]] = Recent(
            settings.max_tracked, settings.duplicate_window_s
        )
        self._reporter = Reporter(settings.report_every_s, settings.max_tracked, 3600.0)

    def state_size(self) -> int:
        baseline = self.learned.baseline
        return len(baseline.assets) + len(self._claims) + len(self._reporter)

    def observe(self, event: WatchEvent, site: SiteView) -> Sequence[Trigger]:
        if not isinstance(event, ArpEvent) or not self.settings.enabled:
            return NO_TRIGGERS
        try:
            mac = normalize_mac(event.sender_mac)
        except ValueError:
            return NO_TRIGGERS
        if mac in self._ignored or mac in ("00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff"):
            return NO_TRIGGERS
        ts, ip = event.ts, event.sender_ip
        learning = self.learned.mode(ts) == "learning"
        baseline = self.learned.baseline
        out: list[Trigger] = []
        record = baseline.asset(mac)
        if record is None:
            record = baseline.add_asset(mac, ts, learned=learning)
            if record is not None and not learning:
                out += self._report(NEW_ASSET, mac, ts, site, event, f"new device {mac}")
        if ip == UNSPECIFIED or site.is_appliance(ip):
            return out
        bound = baseline.bindings.get(ip)
        if bound is None:
            if record is not None and not learning and record.ips and ip not in record.ips:
                text = f"device {mac} took a new address {ip}"
                out += self._report(NEW_ASSET, f"{mac} {ip}", ts, site, event, text)
        elif bound != mac:
            claim = self._claims.get(ip)
            recent = (
                claim is not None
                and claim[0] == bound
                and ts - claim[1] <= (self.settings.duplicate_window_s)
            )
            rule = DUPLICATE if recent else BINDING
            text = (
                f"{ip} claimed by {mac} and {bound}"
                if recent
                else f"{ip} moved from {bound} to {mac}"
            )
            out += self._report(rule, ip, ts, site, event, text, previous=bound)
        self._claims.put(ip, (mac, ts), ts)
        baseline.bind(ip, mac, ts)
        return out

    def tick(self, ts: float) -> Sequence[Trigger]:
        self._claims.expire(ts)
        return self._reporter.flush(ts)

    def _report(
        self,
        rule: Rule,
        key: str,
        ts: float,
        site: SiteView,
        event: ArpEvent,
        summary: str,
        previous: str | None = None,
    ) -> list[Trigger]:
        def make() -> Trigger:
            return self._trigger(rule, key, ts, site, event, summary, previous)

        trigger = self._reporter.add(f"{rule.id} {key}", ts, make)
        return [trigger] if trigger is not None else []

    def _trigger(
        self,
        rule: Rule,
        key: str,
        ts: float,
        site: SiteView,
        event: ArpEvent,
        summary: str,
        previous: str | None,
    ) -> Trigger:
        ip = event.sender_ip
        source = (
            Endpoint(ip, zone=site.zone_of(ip), role=site.role_of(ip), mac=event.sender_mac)
            if ip != UNSPECIFIED
            else None
        )
        labels: dict[str, str] = {"interface": event.interface, "mac": event.sender_mac}
        if previous is not None:
            labels["previous_mac"] = previous
        new_device = rule is NEW_ASSET
        return Trigger(
            rule=rule,
            key=key,
            severity=Severity.MEDIUM if new_device else Severity.HIGH,
            summary=f"{summary} on {event.interface}",
            ts=trigger_time(ts),
            technique=None if new_device else attack.ADVERSARY_IN_THE_MIDDLE,
            source=source,
            evidence=(
                Evidence(window_s=self.settings.duplicate_window_s) if rule is DUPLICATE else None
            ),
            labels=labels,
        )
