"""What the ruleset hands the traffic watcher besides drops: rate-limited samples via NFLOG.

* every accept rule is preceded by a sampling rule with the same matches and no verdict:
  `limit name "watch_new" log group G prefix "pg new <rule>: "`, so a sample of new accepted
  connections reaches the watcher with the rule that let them in (the shared limit bounds
  the total; over the limit the packet simply goes on to its accept rule);
* DNS (udp/53) and NTP (udp/123) packets, both directions, with a snaplen large enough to
  decode them, from prerouting (what arrives or is forwarded) and output (what the
  appliance sends);
* ARP on the hubs' interfaces, from a small `arp plantgate` table.

* the 2nd to 4th packet a client sends on an established TCP connection to the TLS ports
  (`detection.tls.ports`, by default 443, 8443, 8140), from input and forward:
  `ct original packets 2-4` is the handshake's ACK and the first data, which the watcher
  checks for a TLS ClientHello (PG-TLS-NOT-TLS). Needs conntrack accounting
  (`nf_conntrack_acct`), which plantgated turns on; without it the rule matches nothing.

Drops (`pg drop <hook>: ` on the drop group) are logged in two tiers, so that the watcher's
counts are right without letting a flood through to it:

* the *first* drop of each TCP/UDP (source, destination, protocol, destination port) is
  logged, and the tuple remembered for a minute in a dynamic set (`watch_drops_v4/_v6`,
  65,535 tuples, `limit name "watch_drops"` at `defaults.log_first_rate`). A port scan is
  then one log line per port probed whatever nmap retransmits, and the vertical-scan
  count is the number of ports; before this, the whole drop log was limited to
  `log_rate` (10/s, burst 20), and a 1000-port scan showed up as a few dozen ports;
* a repeat of a remembered tuple takes the default verdict at once, unlogged;
* everything else (ICMP, other protocols, tuples that found the set full or the limit
  spent) keeps the old `log_rate`/`log_burst` trickle.

Prefixes: `pg new <rule>: `, `pg dns: `, `pg ntp: `, `pg tls: `, `pg arp: `, `pg drop <hook>: `.
None of it changes a verdict.
"""

from __future__ import annotations

from gateway.policy.model import Defaults, Policy
from gateway.policy.ruleset import NftChain, NftSet, Table

NEW_LIMIT = "watch_new"
DNS_NTP_LIMIT = "watch_dns_ntp"
TLS_LIMIT = "watch_tls"
DROPS_LIMIT = "watch_drops"
DROPS_SET = "watch_drops_v{}"
DROPS_SIZE = 65535
DROPS_TIMEOUT = "1m"
_ADDR = {4: ("ip", "ipv4_addr"), 6: ("ip6", "ipv6_addr")}


def enabled(defaults: Defaults) -> bool:
    return defaults.watch_logging


def declare_limits(table: Table, defaults: Defaults) -> None:
    table.limits[NEW_LIMIT] = f"rate {defaults.watch_sample_rate}"
    table.limits[DNS_NTP_LIMIT] = f"rate {defaults.watch_dns_ntp_rate}"
    table.limits[TLS_LIMIT] = f"rate {defaults.watch_dns_ntp_rate}"


def tls_sample_rule(chain: NftChain, policy: Policy) -> None:
    """Log the first client packets of connections to the TLS ports (no verdict)."""
    tls = policy.detection.tls
    if not tls.enabled:
        return
    ports = ", ".join(str(p) for p in sorted(set(tls.ports)))
    chain.add(
        f"tcp dport {{ {ports} }} ct state established ct original packets 2-4 "
        f'limit name "{TLS_LIMIT}" log prefix "pg tls: " '
        f"group {policy.defaults.watch_group} snaplen 128",
        note="watcher: first client packets on the TLS ports",
    )


def drop_log_rules(
    table: Table, chain: NftChain, hook: str, defaults: Defaults, final: str
) -> None:
    """The two-tier drop log at the end of a base chain (see the module docstring);
    `final` is the chain's default verdict, which repeats take unlogged."""
    table.limits[DROPS_LIMIT] = (
        f"rate {defaults.log_first_rate} burst {defaults.log_first_rate.split('/')[0]} packets"
    )
    log = f'log prefix "pg drop {hook}: " group {defaults.log_group} snaplen {defaults.log_snaplen}'
    keys = {}
    for version, (ip, addr) in _ADDR.items():
        name = DROPS_SET.format(version)
        table.add_set(
            NftSet(
                name,
                f"{addr} . {addr} . inet_proto . inet_service",
                ("dynamic", "timeout"),
                size=DROPS_SIZE,
                timeout=DROPS_TIMEOUT,
            )
        )
        keys[name] = f"{ip} saddr . {ip} daddr . meta l4proto . th dport"
    for name, key in keys.items():
        chain.add(
            f"meta l4proto {{ tcp, udp }} {key} != @{name} "
            f'limit name "{DROPS_LIMIT}" add @{name} {{ {key} }} {log}'
        )
    for name, key in keys.items():
        chain.add(
            f"meta l4proto {{ tcp, udp }} {key} @{name} counter {final}",
            note="default: a repeat of a drop logged in the last minute",
        )
    chain.add(f"limit rate {defaults.log_rate} burst {defaults.log_burst} packets {log}")


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
