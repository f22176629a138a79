"""What the ruleset hands the traffic watcher besides drops: rate-limited samples via NFLOG.

* every accept rule is preceded by a sampling rule with the same matches and no verdict:
  `limit name "watch_new" log group G prefix "pg new <rule>: "`, so a sample of new accepted
  connections reaches the watcher with the rule that let them in (the shared limit bounds
  the total; over the limit the packet simply goes on to its accept rule);
* DNS (udp/53) and NTP (udp/123) packets, both directions, with a snaplen large enough to
  decode them, from prerouting (what arrives or is forwarded) and output (what the
  appliance sends);
* ARP on the hubs' interfaces, from a small `arp plantgate` table.

Prefixes: `pg new <rule>: `, `pg dns: `, `pg ntp: `, `pg arp: ` (drops stay `pg drop <hook>: `
on the drop group). None of it changes a verdict.
"""

from __future__ import annotations

from gateway.policy.model import Defaults, Policy
from gateway.policy.ruleset import NftChain, Table

NEW_LIMIT = "watch_new"
DNS_NTP_LIMIT = "watch_dns_ntp"


def enabled(defaults: Defaults) -> bool:
    return defaults.watch_logging


def declare_limits(table: Table, defaults: Defaults) -> None:
    table.limits[NEW_LIMIT] = f"rate {defaults.watch_sample_rate}"
    table.limits[DNS_NTP_LIMIT] = f"rate {defaults.watch_dns_ntp_rate}"


def sample_statement(defaults: Defaults, rule_name: str) -> str:
    """The tail of the sampling rule placed before an accept rule."""
    return (
        f'limit name "{NEW_LIMIT}" log prefix "pg new {rule_name}: " '
        f"group {defaults.watch_group} snaplen 128"
    )


def dns_ntp_rules(chain: NftChain, defaults: Defaults) -> None:
    """Log DNS and NTP packets in both directions (no verdict)."""
    group, snaplen = defaults.watch_group, defaults.watch_snaplen
    for proto, port in (("dns", 53), ("ntp", 123)):
        for direction in ("dport", "sport"):
            chain.add(
                f'udp {direction} {port} limit name "{DNS_NTP_LIMIT}" log prefix "pg {proto}: " '
                f"group {group} snaplen {snaplen}",
                note=f"watcher: {proto} packets",
            )


def arp_table(policy: Policy) -> str:
    """`table arp plantgate`: ARP on the hubs' interfaces to the watcher ('' if none)."""
    defaults = policy.defaults
    roles = {r for z in policy.zones.values() if z.kind == "hubs" for r in z.interfaces}
    names = sorted(policy.interfaces[r] for r in roles if r in policy.interfaces)
    if not enabled(defaults) or not names:
        return ""
    interfaces = ", ".join(f'"{n}"' for n in names)
    return (
        "table arp plantgate\n"
        "delete table arp plantgate\n"
        "table arp plantgate {\n"
        '\tcomment "PlantGate: ARP on the hub segment for the traffic watcher"\n\n'
        "\tchain input {\n"
        "\t\ttype filter hook input priority filter; policy accept;\n"
        f"\t\tiifname {{ {interfaces} }} limit rate {defaults.watch_dns_ntp_rate} "
        f'log prefix "pg arp: " group {defaults.watch_group} snaplen 64\n'
        "\t}\n"
        "}\n"
    )
