"""The compiler: golden renderings of the shipped policies, determinism, and shape rules."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from gateway.policy.compile import compile_policy
from gateway.policy.load import LoadedPolicy, load_file, load_text
from tests.unit.conftest import BASE, POLICIES, load

GOLDEN = Path(__file__).parent / "golden"


@pytest.mark.parametrize("name", ["site", "lab"])
def test_golden_rendering(name: str) -> None:
    """The shipped policies render exactly as reviewed (UPDATE_GOLDEN=1 rewrites them)."""
    text = compile_policy(load_file(POLICIES / f"{name}.yaml")).text
    golden = GOLDEN / f"{name}.nft"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


def test_same_policy_gives_byte_identical_text() -> None:
    first = compile_policy(load_file(POLICIES / "site.yaml")).text
    second = compile_policy(load_file(POLICIES / "site.yaml")).text
    assert first == second


def _rules(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip().endswith(("accept", '"'))]


def test_every_policy_rule_is_traceable_and_counted() -> None:
    compiled = compile_policy(load_file(POLICIES / "lab.yaml"))
    accepts = [r for r in _rules(compiled.text) if re.search(r' accept comment ".* @ ', r)]
    assert accepts, "no accept rules generated"
    for rule in accepts:
        assert "counter" in rule
        assert re.search(r'comment "[a-z0-9-]+ @ lab\.yaml:\d+"$', rule), rule
    names = {re.search(r'comment "([a-z0-9-]+) @', r)[1] for r in accepts}  # type: ignore[index]
    assert names == {r.name for r in load_file(POLICIES / "lab.yaml").policy.rules}


def test_comment_line_is_the_rules_yaml_line() -> None:
    compiled = compile_policy(load(BASE))
    assert 'comment "hubs-in @ p.yaml:20"' in compiled.text


def test_table_is_replaced_atomically_and_nothing_else() -> None:
    text = compile_policy(load(BASE)).text
    commands = [line for line in text.splitlines() if line.startswith(("table", "delete", "flush"))]
    assert commands == [
        "table inet plantgate",
        "delete table inet plantgate",
        "table inet plantgate {",
    ]


def test_base_chains_drop_by_default_and_log_rate_limited() -> None:
    text = compile_policy(load(BASE)).text
    for hook in ("input", "forward", "output"):
        assert f"type filter hook {hook} priority filter; policy drop;" in text
        assert re.search(
            rf'limit rate 10/second burst 20 packets log prefix "pg drop {hook}: " '
            r"group 1 snaplen 128",
            text,
        )
    assert text.index("ct state established,related accept") < text.index("jump in_classify")


def test_hosts_scale_by_sets_not_rules() -> None:
    """Adding 500 hub addresses adds set elements, not rules."""
    small = compile_policy(load(BASE)).text
    hosts = ", ".join(f"10.30.{i // 250}.{i % 250 + 1}" for i in range(500))
    big = compile_policy(load(BASE.replace("[10.10.0.0/24]", f"[10.10.0.0/24, {hosts}]"))).text
    assert len(_rules(big)) == len(_rules(small))
    assert "10.30.1.250" in big


def test_zone_dispatch_uses_verdict_maps() -> None:
    text = compile_policy(
        load(BASE + "  - {name: mp, from: plant, to: self, allow: [https]}\n")
    ).text
    assert 'elements = { "lan0" : goto in_if_hub-lan, "wan0" : goto in_if_plant-lan }' in text
    assert "iifname vmap @in_iifname" in text
    assert "jump fwd_classify" not in text, "nothing is forwarded: no forward classification"


def test_catch_all_zone_cannot_claim_another_zones_addresses() -> None:
    policy = BASE + "  - {name: out, from: self, to: internet, allow: [https]}\n"
    text = compile_policy(load(policy)).text
    chain = text[text.index("chain out_if_plant-lan") :]
    assert chain.index("ip daddr @zone_plant_v4 return") < chain.index("goto out_internet")


def test_gate_rules_match_the_gate_set_pairs() -> None:
    text = compile_policy(load_file(POLICIES / "lab.yaml")).text
    gated = "ip saddr . ip daddr . meta l4proto . th dport @gate_support_v4"
    assert f"ip saddr @ep_support-staff_v4 {gated} meta l4proto . th dport @svc_support-ssh" in text
    assert (
        "set gate_support_v4 {\n\t\ttype ipv4_addr . ipv4_addr . inet_proto . inet_service\n"
        "\t\tflags timeout" in text
    )


def test_fqdn_endpoints_are_timeout_sets_filled_at_run_time() -> None:
    compiled = compile_policy(load_file(POLICIES / "lab.yaml"))
    bindings = {b.endpoint: b for b in compiled.fqdn}
    assert bindings["ntp-upstream"].names == ("ntp.upstream.test",)
    assert bindings["ntp-upstream"].sets == {4: "ep_ntp-upstream_v4", 6: "ep_ntp-upstream_v6"}
    assert "ep_ntp-upstream_v4" in compiled.dynamic_sets
    assert "gate_support_v4" in compiled.dynamic_sets
    assert compiled.table.sets["ep_ntp-upstream_v4"].flags == ("interval", "timeout")


def test_rate_limits_and_logging() -> None:
    policy = BASE.replace(
        "    allow: [https, ntp]\n",
        "    allow: [https, ntp]\n    log: true\n    rate_limit: {rate: 20/second, burst: 40}\n",
    )
    policy += (
        "  - name: per-src\n    from: plant\n    to: self\n    allow: [https]\n"
        "    rate_limit: {rate: 5/minute, per_source: true}\n"
    )
    text = compile_policy(load(policy)).text
    assert "limit lim_hubs-in { rate 20/second burst 40 packets }" in text
    assert (
        'limit name "lim_hubs-in" counter log prefix "pg accept hubs-in: " group 1 accept' in text
    )
    assert "update @rl_per-src_v4 { ip saddr limit rate 5/minute }" in text


def test_overlapping_addresses_are_collapsed_for_interval_sets() -> None:
    policy = BASE.replace("[10.10.0.0/24]", "[10.10.0.0/24, 10.10.0.7]")
    text = compile_policy(load(policy)).text
    assert "elements = { 10.10.0.0/24 }" in text


def test_ipv6_networks_get_their_own_sets() -> None:
    policy = BASE.replace("[10.10.0.0/24]", "[10.10.0.0/24, 'fd00:10::/64']")
    text = compile_policy(load(policy)).text
    assert "set zone_hubs_v6 {\n\t\ttype ipv6_addr" in text
    assert "ip6 saddr @zone_hubs_v6 goto in_hubs" in text


def test_reject_default() -> None:
    text = compile_policy(load(BASE + "defaults: {input: reject}\n")).text
    assert "counter reject with icmpx admin-prohibited" in text


def test_drop_logging_can_be_turned_off() -> None:
    text = compile_policy(load(BASE + "defaults: {log_drops: false}\n")).text
    assert "pg drop" not in text
    quiet = compile_policy(load(BASE + "defaults: {log_drops: false, watch_logging: false}\n"))
    assert "log prefix" not in quiet.text
    assert "counter drop comment" in text


def test_any_is_compiled_as_every_zone_and_never_reaches_unzoned_interfaces() -> None:
    text = compile_policy(
        load(BASE + "  - {name: any-ntp, from: any, to: self, allow: [ntp]}\n")
    ).text
    assert "in_any" not in text
    for zone in ("hubs", "plant", "internet"):
        chain = text[text.index(f"chain in_{zone} {{") :]
        assert 'accept comment "any-ntp @ p.yaml:24"' in chain[: chain.index("\t}")]
    # only the policy's interfaces are dispatched; anything else falls to the default drop
    assert 'elements = { "lan0" : goto in_if_hub-lan, "wan0" : goto in_if_plant-lan }' in text


def test_zone_less_endpoint_is_matched_within_each_zone() -> None:
    policy = BASE + "endpoints:\n  laptop: {addresses: [10.20.1.5]}\n"
    policy = policy.replace(
        "rules:\n", "rules:\n  - {name: ops, from: laptop, to: self, allow: [https]}\n"
    )
    text = compile_policy(load(policy)).text
    assert text.count("ip saddr @ep_laptop_v4 meta l4proto . th dport @svc_ops counter accept") == 3


def _lab(**replacements: str) -> str:
    text = (POLICIES / "lab.yaml").read_text()
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new)
    return compile_policy(load_file_text(text)).text


def load_file_text(text: str) -> LoadedPolicy:
    return load_text(text, "lab.yaml")


def _chain(text: str, name: str) -> list[str]:
    body = text[text.index(f"\tchain {name} {{") :]
    return [line.strip() for line in body[: body.index("\n\t}")].splitlines()[2:]]


def test_kill_switch_drops_come_before_the_conntrack_fast_path() -> None:
    output = _chain(_lab(), "output")
    established = output.index("ct state established,related accept")
    before = output[:established]
    assert any(
        r.startswith('ip daddr @support_inner_v4 oifname != { "wg-support", "lo" } counter drop')
        for r in before
    )
    assert any(r.startswith('oifname "wg-support" meta nfproto ipv6 counter drop') for r in before)
    forward = _chain(_lab(), "forward")
    after = forward[forward.index("ct state established,related accept") :]
    assert any(r.startswith('oifname "wg-support" counter drop') for r in after)
    prerouting = _chain(_lab(), "prerouting")
    spoof = 'ip saddr @support_inner_v4 iifname != "wg-support" counter drop'
    assert any(r.startswith(spoof) for r in prerouting[:6])


def _support_line() -> int:
    lines = (POLICIES / "lab.yaml").read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.startswith("support_vpn:"))


def test_disabled_vpn_has_no_tunnel_rule_and_drops_the_concentrator() -> None:
    text = _lab(**{"  mode: gated ": "  mode: disabled "})
    origin = f'comment "support_vpn @ lab.yaml:{_support_line()}"'
    assert "support-tunnel @" not in text and "support-ssh @" not in text
    output = _chain(text, "output")
    established = output.index("ct state established,related accept")
    assert f"ip daddr @ep_support-concentrator_v4 counter drop {origin}" in output[:established]
    assert f'oifname "wg-support" counter drop {origin}' in output


def test_always_on_access_has_no_gate_but_only_for_listed_staff() -> None:
    text = _lab(**{"  mode: gated ": "  mode: always-on "})
    rule = next(line for line in text.splitlines() if "support-ssh @" in line and "accept" in line)
    assert "@gate_support" not in rule
    assert "ip saddr @ep_support-staff_v4" in rule


def test_ipv6_on_the_support_path_when_allowed() -> None:
    text = _lab(**{"  keepalive: 25\n": "  keepalive: 25\n  ipv6: true\n"})
    assert "meta nfproto ipv6 counter drop" not in text


def test_the_watcher_gets_samples_without_any_verdict() -> None:
    text = compile_policy(load(BASE)).text
    sample = next(line.strip() for line in text.splitlines() if 'prefix "pg new hubs-in: "' in line)
    assert sample.startswith('meta l4proto . th dport @svc_hubs-in limit name "watch_new" log')
    assert " accept" not in sample and " drop" not in sample
    assert (
        'udp dport 53 limit name "watch_dns_ntp" log prefix "pg dns: " group 2 snaplen 512' in text
    )
    assert "limit watch_new { rate 50/second }" in text
    assert "table arp plantgate" not in text  # BASE's zones have no kind: no hub segment


def test_arp_on_the_hub_segment_goes_to_the_watcher() -> None:
    text = compile_policy(load_file(POLICIES / "lab.yaml")).text
    assert (
        'iifname { "lan0" } limit rate 200/second log prefix "pg arp: " group 2 snaplen 64' in text
    )
