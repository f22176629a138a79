"""`explain`: the pure model of the compiled ruleset, row by row, drop by drop.

The shipped policies' matrix rows must be accepted by the right rule at the right line; drops
must name the right default and the closest rule with readable reasons. The kernel side of
the same claims is tests/kernel/test_policy_test_kernel.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.cli import app
from gateway.policy.explain import (
    Context,
    Explainer,
    ExplainError,
    Explanation,
    Flow,
    explain,
)
from gateway.policy.load import load_file
from tests.unit.conftest import BASE, POLICIES, load

runner = CliRunner()
LAB = POLICIES / "lab.yaml"
SITE = POLICIES / "site.yaml"
LAB_SELF = {
    "lan0": ["198.18.10.1/24"],
    "wan0": ["198.18.20.1/24"],
    "wg-support": ["198.18.200.2/24"],
}
LAB_NAMES = {
    "ntp.upstream.test": ["198.19.0.123"],
    "account.upstream.test": ["198.19.0.43"],
    "vpn.support.test": ["198.19.0.51"],
}
SITE_SELF = {"lan0": ["172.31.0.1/24"], "wan0": ["10.20.0.2/16"], "wg-support": ["100.64.200.2/24"]}
SITE_NAMES = {
    "0.debian.pool.ntp.org": ["203.0.113.123"],
    "vpn.support.plantgate.example": ["203.0.113.51"],
    "accounts.plantgate.example": ["203.0.113.43"],
    "backups.plantgate.example": ["203.0.113.80"],
}
BASE_SELF = {"lan0": ["10.10.0.1/24"], "wan0": ["10.20.0.1/16"]}


@pytest.fixture(scope="module")
def lab() -> Explainer:
    return Explainer(load_file(LAB))


@pytest.fixture(scope="module")
def site() -> Explainer:
    return Explainer(load_file(SITE))


# Rules the time and support_vpn sections imply cite the line they come from.
DERIVED = {
    "time-serve": "serve:",
    "time-upstream": "upstreams:",
    "support-tunnel": "concentrator:",
    "support-ssh": "- {to: [self, hubs], allow: [ssh]}",
}


def rule_line(path: Path, name: str) -> int:
    """The line of `- name: NAME` in a shipped policy (what every nft comment carries), or of
    the time-section key a derived rule comes from."""
    lines = path.read_text().splitlines()
    wanted = DERIVED.get(name, f"- name: {name}")
    return next(
        i for i, line in enumerate(lines, 1) if line.split("#")[0].strip().startswith(wanted)
    )


def lab_ctx(*gates: tuple[str, str, str]) -> Context:
    return Context(LAB_SELF, LAB_NAMES, frozenset(gates))


def flow(src: str, dst: str, service: str, **kw: str | None) -> Flow:
    """'tcp/443', 'udp/123' or 'icmp' (echo-request) or 'icmp:TYPE'."""
    proto, _, rest = service.partition("/")
    if proto.startswith("icmp"):
        kind = proto.partition(":")[2] or "echo-request"
        return Flow(src, dst, "icmp", None, kind, kw.get("iif"), kw.get("oif"))
    return Flow(src, dst, proto, int(rest), None, kw.get("iif"), kw.get("oif"))  # type: ignore[arg-type]


def base(extra: str = "", replace: tuple[str, str] | None = None) -> Explainer:
    text = BASE.replace(*replace) if replace else BASE
    return Explainer(load(text + extra))


# ---------------------------------------------------------------- the matrix: accepted


LAB_ROWS = [
    ("198.18.10.11", "198.18.10.1", "tcp/443", "hubs-to-appliance", "input"),
    ("198.18.10.12", "198.18.10.1", "tcp/8443", "hubs-to-appliance", "input"),
    ("198.18.10.11", "198.18.10.1", "tcp/8140", "hubs-to-appliance", "input"),
    ("198.18.10.13", "198.18.10.1", "udp/123", "time-serve", "input"),
    ("198.18.10.1", "198.18.10.11", "tcp/9100", "appliance-to-hubs", "output"),
    ("198.18.20.10", "198.18.20.1", "tcp/443", "manage-page", "input"),
    ("198.18.20.1", "198.19.0.123", "udp/123", "time-upstream", "output"),
    ("198.18.20.1", "198.19.0.51", "udp/51820", "support-tunnel", "output"),
    ("198.18.20.1", "198.19.0.43", "tcp/443", "account-sync", "output"),
    ("198.18.20.1", "198.19.0.53", "udp/53", "name-resolution", "output"),
    ("198.18.20.1", "198.19.0.53", "tcp/53", "name-resolution", "output"),
]


@pytest.mark.parametrize(("src", "dst", "service", "rule", "hook"), LAB_ROWS)
def test_lab_matrix_rows_are_accepted_by_their_rule(
    lab: Explainer, src: str, dst: str, service: str, rule: str, hook: str
) -> None:
    result = lab.explain(flow(src, dst, service), lab_ctx())
    assert result.verdict == "accept"
    assert result.hook == hook
    assert result.decision.kind == "rule"
    assert result.decision.rule is not None
    assert result.decision.rule.name == rule
    assert result.decision.rule.line == rule_line(LAB, rule)
    assert result.decision.rule.file == str(LAB)
    assert result.closest is None


@pytest.mark.parametrize(("dst", "appliance"), [("198.18.10.11", False), ("198.18.200.2", True)])
def test_lab_support_ssh_is_accepted_while_the_gate_is_open(
    lab: Explainer, dst: str, appliance: bool
) -> None:
    result = lab.explain(
        flow("198.18.201.5", dst, "tcp/22"), lab_ctx(("support", "198.18.201.5", dst))
    )
    assert result.verdict == "accept"
    assert result.decision.rule is not None
    assert result.decision.rule.name == "support-ssh"
    assert result.decision.rule.line == rule_line(LAB, "support-ssh")
    assert result.hook == ("input" if appliance else "forward")
    assert "gate 'support' is open for 198.18.201.5 → " + dst in result.notes
    assert "each new connection is logged to NFLOG group 1" in result.notes


SITE_ROWS = [
    ("172.31.0.21", "172.31.0.1", "tcp/443", "hubs-to-appliance"),
    ("172.31.0.21", "172.31.0.1", "tcp/8443", "hubs-to-appliance"),
    ("172.31.0.22", "172.31.0.1", "tcp/8140", "hubs-to-appliance"),
    ("172.31.0.22", "172.31.0.1", "udp/123", "time-serve"),
    ("172.31.0.1", "172.31.0.21", "tcp/9100", "appliance-to-hubs"),
    ("10.20.4.17", "10.20.0.2", "tcp/443", "manage-page"),
    ("10.20.0.2", "203.0.113.123", "udp/123", "time-upstream"),
    ("10.20.0.2", "203.0.113.51", "udp/51820", "support-tunnel"),
    ("10.20.0.2", "203.0.113.43", "tcp/443", "account-sync"),
    ("10.20.0.2", "10.0.0.53", "udp/53", "name-resolution"),
    ("10.20.0.2", "203.0.113.80", "tcp/443", "backups"),
    ("10.20.0.2", "10.0.0.60", "tcp/6514", "alert-feed"),
]


@pytest.mark.parametrize(("src", "dst", "service", "rule"), SITE_ROWS)
def test_site_matrix_rows_are_accepted_by_their_rule(
    site: Explainer, src: str, dst: str, service: str, rule: str
) -> None:
    result = site.explain(flow(src, dst, service), Context(SITE_SELF, SITE_NAMES))
    assert result.verdict == "accept", result.summary()
    assert result.decision.rule is not None
    assert result.decision.rule.name == rule
    assert result.decision.rule.line == rule_line(SITE, rule)


def test_site_support_row(site: Explainer) -> None:
    grant = ("support", "100.64.201.10", "172.31.0.21")  # jane-doe, on the staff list
    ctx = Context(SITE_SELF, SITE_NAMES, frozenset({grant}))
    result = site.explain(flow("100.64.201.10", "172.31.0.21", "tcp/22"), ctx)
    assert result.decision.rule is not None
    assert (result.verdict, result.decision.rule.name) == ("accept", "support-ssh")


def test_an_address_not_on_the_staff_list_gets_nothing_even_with_a_grant(site: Explainer) -> None:
    grant = ("support", "100.64.201.7", "172.31.0.21")
    ctx = Context(SITE_SELF, SITE_NAMES, frozenset({grant}))
    result = site.explain(flow("100.64.201.7", "172.31.0.21", "tcp/22"), ctx)
    assert result.verdict == "drop"
    assert result.closest is not None
    assert result.closest.reasons == (
        "source 100.64.201.7 is not an address of endpoint 'support-staff' (100.64.201.10)",
    )


# ---------------------------------------------------------------- drops


def test_wrong_port_names_the_rule_and_its_services(lab: Explainer) -> None:
    result = lab.explain(flow("198.18.10.11", "198.18.10.1", "tcp/22"), lab_ctx())
    assert result.verdict == "drop"
    assert result.decision.kind == "default"
    assert result.decision.text == (
        "no rule allows zone 'hubs' → the appliance, tcp/22: default drop in input"
    )
    assert result.closest is not None
    assert result.closest.rule.name == "hubs-to-appliance"
    assert result.closest.reasons == (
        "tcp/22 is not in services https, hub-api, hub-enroll (tcp/443, tcp/8140, tcp/8443)",
    )


def test_plant_address_at_the_hub_rule_says_which_zone_it_is_in(lab: Explainer) -> None:
    result = lab.explain(flow("198.18.20.10", "198.18.20.1", "tcp/8443"), lab_ctx())
    assert result.verdict == "drop"
    assert result.source.zone == "plant"
    assert result.closest is not None
    # two rules miss by one criterion each; the earlier one in the file wins the tie
    assert result.closest.rule.name == "hubs-to-appliance"
    assert result.closest.reasons == (
        "source 198.18.20.10 is in zone 'plant' on wan0, the rule allows from 'hubs'",
    )


def test_hubs_to_plant_is_a_forward_drop(lab: Explainer) -> None:
    result = lab.explain(flow("198.18.10.11", "198.18.20.10", "tcp/443"), lab_ctx())
    assert (result.verdict, result.hook, result.iif, result.oif) == (
        "drop",
        "forward",
        "lan0",
        "wan0",
    )
    assert (result.source.zone, result.destination.zone) == ("hubs", "plant")
    assert result.decision.text.startswith("no rule allows zone 'hubs' → zone 'plant'")
    assert result.closest is not None
    assert result.closest.reasons == (
        "destination 198.18.20.10 is not the appliance; the rule allows to 'self'",
    )


def test_unknown_internet_host_misses_the_endpoint(lab: Explainer) -> None:
    result = lab.explain(flow("198.18.20.1", "198.19.7.7", "udp/123"), lab_ctx())
    assert result.verdict == "drop"
    assert result.destination.zone == "internet"
    assert result.closest is not None
    assert result.closest.rule.name == "time-upstream"
    assert result.closest.reasons == (
        "destination 198.19.7.7 is not an address of endpoint 'ntp-upstream' (198.19.0.123)",
    )


def test_unresolved_name_fails_closed_and_says_so(lab: Explainer) -> None:
    result = lab.explain(flow("198.18.20.1", "198.19.0.123", "udp/123"), Context(LAB_SELF))
    assert result.verdict == "drop"
    assert result.closest is not None
    assert result.closest.reasons == (
        "destination 198.19.0.123 is not an address of endpoint 'ntp-upstream' "
        "(ntp.upstream.test resolved to nothing)",
    )


def test_closed_gate_says_what_would_allow_it(lab: Explainer) -> None:
    result = lab.explain(flow("198.18.201.5", "198.18.10.11", "tcp/22"), lab_ctx())
    assert result.verdict == "drop"
    assert result.closest is not None
    assert result.closest.gate == "support"
    assert result.closest.reasons == ("gate 'support' is closed for 198.18.201.5 → 198.18.10.11",)
    assert result.summary().endswith(
        f"rule 'support-ssh' ({LAB}:{rule_line(LAB, 'support-ssh')}) would allow it while gate "
        "'support' is open for 198.18.201.5 → 198.18.10.11"
    )


def test_a_gate_opened_for_another_pair_does_not_count(lab: Explainer) -> None:
    other = ("support", "198.18.201.5", "198.18.10.12")
    result = lab.explain(flow("198.18.201.5", "198.18.10.11", "tcp/22"), lab_ctx(other))
    assert result.verdict == "drop"


def test_open_gate_grants_only_the_rules_services(lab: Explainer) -> None:
    grant = ("support", "198.18.201.5", "198.18.200.2")
    result = lab.explain(flow("198.18.201.5", "198.18.200.2", "tcp/9100"), lab_ctx(grant))
    assert result.verdict == "drop"
    assert result.closest is not None
    assert (result.closest.rule.name, result.closest.origin, result.closest.target) == (
        "support-ssh",
        "support-staff",
        "self",
    )
    assert result.closest.reasons == ("tcp/9100 is not in services ssh (tcp/22)",)


def test_ties_go_to_the_earlier_rule_in_the_file(lab: Explainer) -> None:
    grant = ("support", "198.18.201.5", "198.18.10.11")
    result = lab.explain(flow("198.18.201.5", "198.18.10.11", "tcp/9100"), lab_ctx(grant))
    assert result.closest is not None
    # appliance-to-hubs (line 73) and support-ssh (line 78) both miss by one criterion
    assert result.closest.rule.name == "appliance-to-hubs"
    assert result.closest.reasons == (
        "source 198.18.201.5 is not the appliance; the rule allows from 'self'",
    )


def test_support_to_the_plant_misses_on_the_destination_and_the_gate(lab: Explainer) -> None:
    # .99, not the workstation: that one is the SOC collector, which alert-feed targets
    result = lab.explain(flow("198.18.201.5", "198.18.20.99", "tcp/22"), lab_ctx())
    assert result.closest is not None
    assert result.closest.rule.name == "support-ssh"
    assert result.closest.reasons == (
        "destination 198.18.20.99 is not the appliance; the rule allows to 'self'",
        "gate 'support' is closed for 198.18.201.5 → 198.18.20.99",
    )


def test_strict_destination_drops_the_other_legs_address(lab: Explainer) -> None:
    result = lab.explain(flow("198.18.10.11", "198.18.20.1", "tcp/443"), lab_ctx())
    assert result.verdict == "drop"
    assert result.decision.kind == "strict-destination"
    assert result.decision.text == (
        "strict destination: 198.18.20.1 is the appliance's address on wan0, but the packet "
        "arrives on lan0"
    )
    assert result.closest is not None
    assert result.closest.rule.name == "hubs-to-appliance"
    assert result.closest.reasons == (result.decision.text,)


def test_without_strict_destination_the_arriving_interface_decides() -> None:
    policy = base("defaults:\n  strict_destination: false\n")
    result = policy.explain(flow("10.10.0.5", "10.20.0.1", "tcp/443"), Context(BASE_SELF))
    assert result.verdict == "accept"
    assert result.decision.rule is not None
    assert result.decision.rule.name == "hubs-in"


def test_reverse_path_filter_drops_a_hub_address_from_the_plant_side(lab: Explainer) -> None:
    result = lab.explain(flow("198.18.10.11", "198.18.20.1", "tcp/443", iif="wan0"), lab_ctx())
    assert result.verdict == "drop"
    assert result.decision.kind == "reverse-path"
    assert result.decision.text == (
        "reverse path filter: replies to 198.18.10.11 would leave through lan0 (zone 'hubs' "
        "and connected network 198.18.10.0/24), not wan0 where the packet arrives"
    )


def test_reverse_path_filter_routes_the_rest_by_the_catch_all(lab: Explainer) -> None:
    result = lab.explain(flow("198.19.0.123", "198.18.10.1", "udp/123", iif="lan0"), lab_ctx())
    assert result.decision.kind == "reverse-path"
    assert "through catch-all zone 'internet'" in result.decision.text


def test_spoofing_the_appliances_own_address(lab: Explainer) -> None:
    result = lab.explain(flow("198.18.10.1", "198.18.10.11", "tcp/9100", iif="lan0"), lab_ctx())
    assert (result.verdict, result.decision.kind) == ("drop", "reverse-path")
    assert "spoofed source: 198.18.10.1 is the appliance's own address" in result.decision.text
    martian = base("defaults:\n  reverse_path_filter: false\n")
    off = martian.explain(flow("10.10.0.1", "10.20.0.9", "tcp/443", iif="lan0"), Context(BASE_SELF))
    assert (off.verdict, off.decision.kind) == ("drop", "martian")


# ---------------------------------------------------------------- zones, any, endpoints


def test_catch_all_takes_what_the_network_zones_leave(lab: Explainer) -> None:
    plant = lab.explain(flow("198.18.20.10", "198.18.20.1", "tcp/443"), lab_ctx())
    internet = lab.explain(flow("198.18.255.2", "198.18.20.1", "tcp/443"), lab_ctx())
    assert (plant.source.zone, plant.verdict) == ("plant", "accept")
    assert (internet.source.zone, internet.verdict) == ("internet", "drop")
    assert internet.closest is not None
    assert internet.closest.reasons == (
        "source 198.18.255.2 is in zone 'internet' on wan0, the rule allows from 'hubs'",
    )


def test_a_zone_without_rules_still_claims_its_addresses() -> None:
    extra = """\
  - name: internet-in
    from: internet
    to: self
    allow: [https]
"""
    policy = base(extra)
    plant = policy.explain(flow("10.20.5.5", "10.20.0.1", "tcp/443"), Context(BASE_SELF))
    outside = policy.explain(flow("192.0.2.5", "10.20.0.1", "tcp/443"), Context(BASE_SELF))
    assert (plant.source.zone, plant.verdict) == ("plant", "drop")
    assert (outside.source.zone, outside.verdict) == ("internet", "accept")


def test_any_matches_every_zone_but_never_the_appliance() -> None:
    extra = """\
  - name: ping-in
    from: any
    to: self
    allow: [ping]
"""
    policy = base(
        extra, ("  ntp: {udp: [123]}\n", "  ntp: {udp: [123]}\n  ping: {icmp: [echo-request]}\n")
    )
    for src in ("10.10.0.5", "10.20.9.9", "192.0.2.1"):
        result = policy.explain(
            flow(src, "10.20.0.1" if src != "10.10.0.5" else "10.10.0.1", "icmp"),
            Context(BASE_SELF),
        )
        assert result.verdict == "accept", result.summary()
        assert result.decision.rule is not None
        assert result.decision.rule.name == "ping-in"
    out = policy.explain(flow("10.10.0.1", "10.10.0.5", "icmp"), Context(BASE_SELF))
    assert out.verdict == "drop"
    assert out.closest is not None
    assert out.closest.reasons[0] == (
        "source 10.10.0.1 is the appliance; the rule allows from 'any' "
        "('any' never means the appliance)"
    )


def test_the_first_matching_rule_in_file_order_decides() -> None:
    extra = """\
  - name: https-from-anywhere
    from: any
    to: self
    allow: [https]
"""
    result = base(extra).explain(flow("10.10.0.5", "10.10.0.1", "tcp/443"), Context(BASE_SELF))
    assert result.decision.rule is not None
    assert result.decision.rule.name == "hubs-in"  # both land in in_hubs; file order decides


def test_any_means_any_zone_so_an_unnamed_interface_gets_nothing() -> None:
    floating = "  floating: {networks: [10.99.0.0/16]}\nservices:\n"
    rules = (
        "  - {name: any-ntp, from: any, to: self, allow: [ntp]}\n"
        "  - {name: floating-in, from: floating, to: self, allow: [https]}\n"
    )
    policy = Explainer(load(BASE.replace("services:\n", floating) + rules))
    ctx = Context({**BASE_SELF, "eth9": ["10.50.0.1/24"]})
    from_hubs = policy.explain(flow("10.10.0.5", "10.10.0.1", "udp/123"), ctx)
    assert (from_hubs.verdict, from_hubs.source.zone) == ("accept", "hubs")
    ntp = policy.explain(flow("10.50.0.7", "10.50.0.1", "udp/123"), ctx)
    assert (ntp.iif, ntp.source.zone, ntp.verdict) == ("eth9", None, "drop")
    assert ntp.closest is not None
    assert ntp.closest.reasons[0].startswith("source 10.50.0.7 is in no zone on eth9")
    moved = policy.explain(flow("10.99.1.1", "10.50.0.1", "tcp/443", iif="eth9"), ctx)
    assert moved.source.zone is None  # a zone bound to no interface: named interfaces only
    assert moved.verdict == "drop"


def test_any_rule_reason_names_the_missing_zone() -> None:
    policy = Explainer(load(BASE.replace("from: hubs", "from: any")))
    ctx = Context({**BASE_SELF, "eth9": ["10.50.0.1/24"]})
    result = policy.explain(flow("10.50.0.7", "10.50.0.1", "udp/123"), ctx)
    assert result.verdict == "drop"
    assert result.closest is not None
    assert result.closest.reasons == (
        "source 10.50.0.7 is in no zone on eth9; 'any' means any zone",
    )


def test_endpoint_without_zone_matches_on_any_interface() -> None:
    extra = """\
endpoints:
  printer: {addresses: [10.20.7.7]}
  ops: {zone: plant, addresses: [10.20.8.0/24]}
"""
    rules = """\
  - {name: print, from: hubs, to: printer, allow: [https]}
  - {name: ops-in, from: ops, to: self, allow: [ntp]}
"""
    text = BASE.replace("services:\n", extra + "services:\n").replace(
        "rules:\n", "rules:\n" + rules
    )
    policy = Explainer(load(text))
    ctx = Context(BASE_SELF)
    printed = policy.explain(flow("10.10.0.5", "10.20.7.7", "tcp/443"), ctx)
    assert (printed.verdict, printed.destination.endpoints) == ("accept", ("printer",))
    ops = policy.explain(flow("10.20.8.9", "10.20.0.1", "udp/123"), ctx)
    assert ops.verdict == "accept"
    miss = policy.explain(flow("10.20.9.9", "10.20.0.1", "udp/123"), ctx)
    assert miss.closest is not None
    assert miss.closest.reasons == (
        "source 10.20.9.9 is not an address of endpoint 'ops' (10.20.8.0/24)",
    )


def test_port_ranges() -> None:
    policy = base(replace=("https: {tcp: [443]}", "https: {tcp: [443, '8000-8010']}"))
    ctx = Context(BASE_SELF)
    assert policy.explain(flow("10.10.0.5", "10.10.0.1", "tcp/8010"), ctx).verdict == "accept"
    miss = policy.explain(flow("10.10.0.5", "10.10.0.1", "tcp/8011"), ctx)
    assert miss.closest is not None
    assert miss.closest.reasons == (
        "tcp/8011 is not in services https, ntp (tcp/443, tcp/8000-8010, udp/123)",
    )


# ---------------------------------------------------------------- ICMP and IPv6


def test_icmp_types_are_matched_by_name() -> None:
    ping = "  ntp: {udp: [123]}\n  ping: {icmp: [echo-request]}\n"
    rule = "rules:\n  - {name: ping-in, from: hubs, to: self, allow: [ping]}\n"
    policy = Explainer(load(BASE.replace("  ntp: {udp: [123]}\n", ping).replace("rules:\n", rule)))
    ctx = Context(BASE_SELF)
    assert policy.explain(flow("10.10.0.5", "10.10.0.1", "icmp"), ctx).verdict == "accept"
    other = policy.explain(flow("10.10.0.5", "10.10.0.1", "icmp:timestamp-request"), ctx)
    assert other.verdict == "drop"
    assert other.closest is not None
    assert other.closest.reasons == (
        "icmp timestamp-request is not in services ping (icmp echo-request)",
    )


SIX = """\
version: 1
site: {name: six}
interfaces: {inside: lan0, outside: wan0}
zones:
  hubs: {interfaces: [inside], networks: ["2001:db8:10::/64", 10.10.0.0/24]}
  internet: {interfaces: [outside]}
endpoints:
  mirror: {zone: internet, addresses: ["2001:db8:99::80"]}
services:
  https: {tcp: [443]}
  ping: {icmp: [echo-request], icmpv6: [echo-request]}
rules:
  - {name: hubs-in, from: hubs, to: self, allow: [https, ping]}
  - {name: mirror-out, from: self, to: mirror, allow: [https]}
"""
SIX_SELF = {"lan0": ["2001:db8:10::1/64", "10.10.0.1/24"], "wan0": ["2001:db8:ff::2/64"]}


def test_ipv6_flows_and_icmpv6() -> None:
    policy = Explainer(load(SIX))
    ctx = Context(SIX_SELF)
    assert (
        policy.explain(flow("2001:db8:10::5", "2001:db8:10::1", "tcp/443"), ctx).verdict == "accept"
    )
    pinged = policy.explain(flow("2001:db8:10::5", "2001:db8:10::1", "icmp"), ctx)
    assert (pinged.verdict, pinged.version) == ("accept", 6)
    assert pinged.flow.service_text(6) == "icmpv6 echo-request"
    out = policy.explain(flow("2001:db8:ff::2", "2001:db8:99::80", "tcp/443"), ctx)
    assert (out.verdict, out.oif) == ("accept", "wan0")
    nd = policy.explain(flow("2001:db8:10::5", "2001:db8:10::1", "icmp:nd-neighbor-solicit"), ctx)
    assert (nd.verdict, nd.decision.kind) == ("accept", "neighbour-discovery")


def test_mixed_ip_versions_are_bad_input() -> None:
    with pytest.raises(ExplainError, match="is IPv4 but destination 2001:db8:10::1 is IPv6"):
        Explainer(load(SIX)).explain(
            flow("10.10.0.5", "2001:db8:10::1", "tcp/443"), Context(SIX_SELF)
        )


# ---------------------------------------------------------------- interfaces, loopback, input


TWO_CATCH_ALLS = BASE.replace(
    "  internet:\n    interfaces: [plant-lan]\n",
    "  internet:\n    interfaces: [plant-lan]\n  guests:\n    interfaces: [hub-lan]\n",
).replace("    networks: [10.10.0.0/24]\n", "    networks: [10.10.0.0/24]\n", 1)


def test_interface_inference_ambiguity_lists_the_choices() -> None:
    policy = Explainer(load(TWO_CATCH_ALLS))
    with pytest.raises(ExplainError) as info:
        policy.explain(flow("192.0.2.5", "10.10.0.1", "tcp/443"), Context(BASE_SELF))
    assert info.value.field == "iif"
    assert info.value.message == (
        "cannot tell which interface 192.0.2.5 arrives on: it could be lan0 or wan0 (the "
        "default route, through catch-all zones 'guests' and 'internet')"
    )
    given = policy.explain(
        flow("192.0.2.5", "10.10.0.1", "tcp/443", iif="lan0"), Context(BASE_SELF)
    )
    assert given.source.zone == "guests"


def test_no_interface_for_an_address_outside_every_zone() -> None:
    policy = base(replace=("  internet:\n    interfaces: [plant-lan]\n", ""))
    with pytest.raises(
        ExplainError, match="it is in no zone's networks and no interface has a catch-all"
    ):
        policy.explain(flow("10.20.0.1", "192.0.2.9", "tcp/443"), Context(BASE_SELF))


@pytest.mark.parametrize(
    ("changes", "field", "message"),
    [
        ({"src": "10.10.0.300"}, "src", "source '10.10.0.300' is not an IP address"),
        ({"dport": None}, "dport", "tcp needs a destination port"),
        ({"dport": 70000}, "dport", "port 70000 is out of range (1-65535)"),
        ({"iif": "lan9"}, "iif", "unknown interface 'lan9' (did you mean 'lan0'?)"),
        (
            {"oif": "wan0"},
            "oif",
            "oif does not apply: the destination 10.10.0.1 is the appliance (input)",
        ),
    ],
)
def test_bad_flows_are_explain_errors(changes: dict[str, object], field: str, message: str) -> None:
    values: dict[str, object] = {
        "src": "10.10.0.5",
        "dst": "10.10.0.1",
        "proto": "tcp",
        "dport": 443,
    }
    values.update(changes)
    with pytest.raises(ExplainError) as info:
        explain(load(BASE), Flow(**values), Context(BASE_SELF))  # type: ignore[arg-type]
    assert (info.value.field, info.value.message) == (field, message)


def test_icmp_with_a_port_and_unknown_icmp_type() -> None:
    loaded = load(BASE)
    with pytest.raises(ExplainError, match="a port applies to tcp and udp only"):
        explain(loaded, Flow("10.10.0.5", "10.10.0.1", "icmp", 8), Context(BASE_SELF))
    with pytest.raises(
        ExplainError, match="unknown ICMP type 'echo-requets' \\(did you mean 'echo-request'\\?\\)"
    ):
        explain(
            loaded, Flow("10.10.0.5", "10.10.0.1", "icmp", None, "echo-requets"), Context(BASE_SELF)
        )


def test_loopback_is_always_accepted() -> None:
    loaded = load(BASE)
    own = explain(loaded, flow("10.10.0.1", "10.20.0.1", "tcp/22"), Context(BASE_SELF))
    local = explain(loaded, flow("10.10.0.1", "127.0.0.1", "tcp/22"), Context(BASE_SELF))
    for result in (own, local):
        assert (result.verdict, result.decision.kind) == ("accept", "loopback")


def test_rate_limit_and_reject_are_noted() -> None:
    limit = "    rate_limit: {rate: 50/second, burst: 100, per_source: true}\n"
    text = BASE.replace("    allow: [https, ntp]\n", "    allow: [https, ntp]\n" + limit)
    text += "defaults:\n  input: reject\n"
    loaded = load(text)
    accepted = explain(loaded, flow("10.10.0.5", "10.10.0.1", "tcp/443"), Context(BASE_SELF))
    assert accepted.verdict == "accept"
    assert any("rate-limited to 50/second, burst 100 per source" in n for n in accepted.notes)
    refused = explain(loaded, flow("10.10.0.5", "10.10.0.1", "tcp/22"), Context(BASE_SELF))
    assert refused.decision.text.endswith("default reject in input")
    assert "the sender is told: ICMP administratively prohibited" in refused.notes


def test_rendering_and_json(lab: Explainer) -> None:
    result: Explanation = lab.explain(flow("198.18.10.11", "198.18.20.10", "tcp/443"), lab_ctx())
    text = result.render()
    assert "hook         forward (in on lan0, out on wan0)" in text
    assert "source       198.18.10.11 on lan0: zone 'hubs'" in text
    assert "verdict      DROP" in text
    line = rule_line(LAB, "hubs-to-appliance")
    assert f"closest rule 'hubs-to-appliance' at {LAB}:{line} (from hubs to self)" in text
    data = json.loads(json.dumps(result.to_dict()))
    assert data["verdict"] == "drop"
    assert data["decision"]["kind"] == "default"
    assert data["closest"]["rule"] == {"name": "hubs-to-appliance", "file": str(LAB), "line": line}
    assert data["source"]["zone"] == "hubs"


# ---------------------------------------------------------------- the command


SELF_ARGS = ["--self", "198.18.10.1/24@lan0", "--self", "198.18.20.1/24@wan0"]


def test_cli_explain_answers_with_exit_0_for_a_drop() -> None:
    args = ["policy", "explain", str(LAB), "--src", "198.18.10.11", "--dst", "198.18.20.10"]
    result = runner.invoke(app, [*args, "--proto", "tcp", "--dport", "443", *SELF_ARGS])
    assert result.exit_code == 0, result.stderr
    assert "verdict      DROP" in result.stdout


def test_cli_explain_json() -> None:
    args = ["policy", "explain", str(LAB), "--src", "198.18.10.11", "--dst", "198.18.10.1"]
    result = runner.invoke(app, [*args, "--proto", "tcp", "--dport", "8140", *SELF_ARGS, "--json"])
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["ok"] is True
    assert data["decision"]["rule"]["name"] == "hubs-to-appliance"


def test_cli_explain_gate_open() -> None:
    args = ["policy", "explain", str(LAB), "--src", "198.18.201.5", "--dst", "198.18.10.11"]
    args += ["--proto", "tcp", "--dport", "22", *SELF_ARGS, "--self", "198.18.200.2/24@wg-support"]
    closed = runner.invoke(app, args)
    opened = runner.invoke(app, [*args, "--gate-open"])
    assert "would allow while gate 'support' is open" in closed.stdout
    assert "verdict      ACCEPT" in opened.stdout


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        (
            ["--src", "1.2.3.999", "--proto", "tcp", "--dport", "443"],
            "--src: source '1.2.3.999' is not an IP address",
        ),
        (
            ["--src", "198.18.10.11", "--proto", "icmp", "--dport", "443"],
            "--dport: a port applies to tcp and udp only, not icmp",
        ),
        (["--src", "198.18.10.11", "--proto", "sctp"], "--proto: 'sctp' is not tcp, udp or icmp"),
        (
            ["--src", "198.18.10.11", "--proto", "tcp", "--dport", "http"],
            "--dport: 'http' is not a port number",
        ),
        (
            ["--src", "198.18.10.11", "--proto", "tcp", "--dport", "443", "--iif", "lan9"],
            "--iif: unknown interface 'lan9' (did you mean 'lan0'?)",
        ),
        (
            ["--src", "192.0.2.1", "--proto", "tcp", "--dport", "443", "--self", "198.18.10.1"],
            "--self: '198.18.10.1' is not ADDRESS@INTERFACE (e.g. 198.18.10.1/24@lan0)",
        ),
    ],
)
def test_cli_explain_bad_input_is_one_line_and_exit_2(extra: list[str], line: str) -> None:
    result = runner.invoke(
        app, ["policy", "explain", str(LAB), "--dst", "198.18.10.1", *extra, *SELF_ARGS]
    )
    assert result.exit_code == 2
    assert result.stderr == f"plantgate policy explain: error: {line}\n"
    assert "Traceback" not in result.stdout + result.stderr


def test_cli_explain_inference_error_names_the_option(tmp_path: Path) -> None:
    policy = tmp_path / "two.yaml"
    policy.write_text(TWO_CATCH_ALLS)
    args = ["policy", "explain", str(policy), "--src", "192.0.2.5", "--dst", "10.10.0.1"]
    result = runner.invoke(
        app, [*args, "--proto", "tcp", "--dport", "443", "--self", "10.10.0.1/24@lan0"]
    )
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "plantgate policy explain: error: --iif: cannot tell which interface"
    )
    assert result.stderr.rstrip().endswith("(give --iif)")


def test_cli_explain_invalid_policy_is_located(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.replace("from: hubs", "from: hbus"))
    args = ["policy", "explain", str(bad), "--src", "10.10.0.5", "--dst", "10.10.0.1"]
    result = runner.invoke(
        app, [*args, "--proto", "tcp", "--dport", "443", "--self", "10.10.0.1@lan0"]
    )
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"{bad}:21:11: error: undefined zone or endpoint 'hbus' (did you mean 'hubs'?)\n"
    )


# ---------------------------------------------------------------- the support kill switch


def test_tunnel_addresses_arriving_elsewhere_are_dropped(lab: Explainer) -> None:
    result = lab.explain(flow("198.18.201.5", "198.18.10.11", "tcp/22", iif="wan0"), lab_ctx())
    assert (result.verdict, result.decision.kind) == ("drop", "kill-switch")
    assert "198.18.201.5 is a support-tunnel address but arrives on wan0" in result.decision.text


def test_inner_addresses_never_leave_by_another_interface(lab: Explainer) -> None:
    result = lab.explain(flow("198.18.10.1", "198.18.201.5", "tcp/22", oif="wan0"), lab_ctx())
    assert (result.verdict, result.decision.kind) == ("drop", "kill-switch")
    assert "reached only through wg-support, never wan0" in result.decision.text


def test_nothing_is_forwarded_into_the_tunnel(lab: Explainer) -> None:
    result = lab.explain(flow("198.18.10.11", "198.18.201.5", "tcp/443"), lab_ctx())
    assert (result.verdict, result.decision.kind) == ("drop", "kill-switch")


def test_disabled_vpn_drops_the_concentrator(lab_text_disabled: Explainer) -> None:
    result = lab_text_disabled.explain(flow("198.18.20.1", "198.19.0.51", "udp/51820"), lab_ctx())
    assert (result.verdict, result.decision.kind) == ("drop", "kill-switch")
    assert "the support VPN is disabled" in result.decision.text


@pytest.fixture
def lab_text_disabled() -> Explainer:
    text = LAB.read_text().replace("  mode: gated ", "  mode: disabled ")
    return Explainer(load(text, "lab.yaml"))
