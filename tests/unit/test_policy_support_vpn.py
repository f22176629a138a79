"""The support_vpn section: located errors, and the rules it implies."""

from __future__ import annotations

import pytest

from tests.unit.conftest import POLICIES, load, problems

LAB = (POLICIES / "lab.yaml").read_text()


def lab(*edits: tuple[str, str]) -> str:
    text = LAB
    for old, new in edits:
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    return text


def test_shipped_lab_policy_derives_tunnel_and_access_rules() -> None:
    loaded = load(LAB, "lab.yaml")
    rules = {r.name: r for r in loaded.policy.rules}
    assert (rules["support-tunnel"].from_, rules["support-tunnel"].to) == (
        ["self"],
        ["support-concentrator"],
    )
    access = rules["support-ssh"]
    assert (access.from_, access.to, access.allow, access.gate, access.log) == (
        ["support-staff"],
        ["self", "hubs"],
        ["ssh"],
        "support",
        True,
    )
    staff = loaded.policy.endpoints["support-staff"]
    assert (staff.zone, staff.addresses) == (
        "support",
        ["198.18.201.5", "198.18.201.6", "198.18.201.66"],
    )
    assert loaded.policy.services["support-wireguard"].udp == [51820]


def test_no_staff_means_no_access_rule() -> None:
    text = LAB[: LAB.index("  staff:\n")] + LAB[LAB.index("\nrules:\n") :]
    names = [r.name for r in load(text, "lab.yaml").policy.rules]
    assert "support-tunnel" in names and "support-ssh" not in names


CASES = {
    "undefined interface role": (
        ("  interface: support-tunnel\n", "  interface: support-tunel\n"),
        "lab.yaml:78:14: error: undefined interface role 'support-tunel' (did you mean "
        "'support-tunnel'?)",
    ),
    "undefined concentrator": (
        ("  concentrator: support-concentrator\n", "  concentrator: concentrator\n"),
        "lab.yaml:80:17: error: undefined endpoint 'concentrator' (did you mean "
        "'support-concentrator'?)",
    ),
    "staff outside the inner networks": (
        ("address: 198.18.201.6,", "address: 198.18.202.6,"),
        "lab.yaml:90:28: error: 198.18.202.6 is outside inner_networks: it can never arrive "
        "through the tunnel",
    ),
    "staff listed twice": (
        ("{name: bob,", "{name: alice,"),
        "lab.yaml:90:14: error: staff name 'alice' is listed twice (also at staff[0])",
    ),
    "two staff, one address": (
        ("address: 198.18.201.6,", "address: 198.18.201.5,"),
        "lab.yaml:90:28: error: 198.18.201.5 is already staff[0]'s address: each person needs "
        "their own",
    ),
    "target service with ICMP": (
        ("allow: [ssh]}", "allow: [ssh, ping]}"),
        "lab.yaml:88:39: error: service 'ping' has ICMP types: a gate grants tcp/udp ports only",
    ),
    "target zone undefined": (
        ("{to: [self, hubs],", "{to: [self, hbus],"),
        "lab.yaml:87:19: error: undefined zone 'hbus' (did you mean 'hubs'?)",
    ),
    "not a WireGuard key": (
        ("public_key: kN0jCgWbDUSBsBs6o2aQHsISjENoOJYOM+uSc8NLTFI=", "public_key: not-a-key"),
        "lab.yaml:82:15: error: support_vpn.public_key: 'not-a-key' is not a WireGuard public "
        "key (44 characters of base64 ending in '=')",
    ),
    "appliance address without a prefix": (
        ("  address: 198.18.200.2/24 ", "  address: 198.18.200.2 "),
        "lab.yaml:79:12: error: support_vpn.address: '198.18.200.2' needs a prefix length, like "
        "'198.18.200.2/24'",
    ),
    "bad window": (
        ("max_window: 1h}", "max_window: 1 hour}"),
        "lab.yaml:90:71: error: support_vpn.staff[1].max_window: '1 hour' is not a duration: "
        "write it like '90s', '15m', '4h' or '2d'",
    ),
    "a rule named like the derived one": (
        ("  - name: manage-page\n", "  - name: support-ssh\n"),
        "lab.yaml:104:11: error: rule name 'support-ssh' is reserved: the support_vpn section "
        "makes that rule",
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_support_vpn_errors_are_located(case: str) -> None:
    edit, expected = CASES[case]
    text = lab(edit)
    if "ping" in edit[1]:
        text = text.replace(
            "  ssh: {tcp: [22]}\n", "  ssh: {tcp: [22]}\n  ping: {icmp: [echo-request]}\n"
        )
    assert expected in problems(text, "lab.yaml")


def test_always_on_is_a_warning() -> None:
    loaded = load(lab(("  mode: gated ", "  mode: always-on ")), "lab.yaml")
    assert [w.message for w in loaded.warnings] == [
        "mode always-on: listed staff reach the targets at any time, without a gate"
    ]
