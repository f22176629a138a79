"""The pure parts of apply: script building, carried elements, refusals mapped to YAML."""

from __future__ import annotations

from typing import Any

from gateway.dns.lookup import refresh_script
from gateway.policy.apply import build_script, merge, refusal_problems
from gateway.policy.compile import compile_policy
from gateway.policy.nft import Element, NftError, _locate, set_types, timed_elements
from tests.unit.conftest import BASE, load

LIVE: dict[str, Any] = {
    "nftables": [
        {"metainfo": {"version": "1.0.6"}},
        {
            "set": {
                "name": "gate_support_v4",
                "type": ["ipv4_addr", "ipv4_addr"],
                "elem": [
                    {
                        "elem": {
                            "val": {"concat": ["198.18.201.5", "198.18.10.11"]},
                            "timeout": 1800,
                            "expires": 1500,
                        }
                    }
                ],
            }
        },
        {
            "set": {
                "name": "ep_ntp_v4",
                "type": "ipv4_addr",
                "elem": [
                    {"prefix": {"addr": "10.0.0.0", "len": 8}},
                    {"elem": {"val": "192.0.2.1", "timeout": 330, "expires": 200}},
                    {"elem": {"val": "192.0.2.2", "timeout": 330, "expires": 0}},
                ],
            }
        },
        {
            "set": {
                "name": "other",
                "type": "ipv4_addr",
                "elem": [{"elem": {"val": "192.0.2.3", "timeout": 9, "expires": 5}}],
            }
        },
    ]
}


def test_timed_elements_keep_their_remaining_time() -> None:
    found = timed_elements(LIVE, {"gate_support_v4", "ep_ntp_v4"})
    assert found == {
        "gate_support_v4": [Element("198.18.201.5 . 198.18.10.11", 1500)],
        "ep_ntp_v4": [Element("192.0.2.1", 200)],  # static and expired ones are not carried
    }


def test_set_types_of_the_live_table() -> None:
    assert set_types(LIVE)["gate_support_v4"] == "ipv4_addr . ipv4_addr"


def test_script_is_the_table_then_runtime_elements() -> None:
    compiled = compile_policy(load(BASE))
    script = build_script(compiled, {"b": [Element("192.0.2.1", 60)], "a": [Element("x")]})
    assert script.startswith(compiled.text)
    assert script.endswith(
        "add element inet plantgate a { x }\n"
        "add element inet plantgate b { 192.0.2.1 timeout 60s }\n"
    )


def test_fresh_resolution_wins_over_carried_element() -> None:
    merged = merge({"s": [Element("192.0.2.1", 5)]}, {"s": [Element("192.0.2.1", 300)]})
    assert merged == {"s": [Element("192.0.2.1", 300)]}


def test_refresh_resets_timeouts_without_failing_on_expired_elements() -> None:
    script = refresh_script({"ep_v4": [Element("192.0.2.1", 90)]})
    assert script.splitlines() == [
        "add element inet plantgate ep_v4 { 192.0.2.1 timeout 90s }",
        "delete element inet plantgate ep_v4 { 192.0.2.1 }",
        "add element inet plantgate ep_v4 { 192.0.2.1 timeout 90s }",
    ]


def test_refusal_of_a_rule_points_at_its_yaml_line() -> None:
    compiled = compile_policy(load(BASE))
    lines = compiled.text.splitlines()
    rule_line = next(i for i, line in enumerate(lines, 1) if "hubs-in @ p.yaml:20" in line)
    stderr = f"/tmp/x.nft:{rule_line}:5-10: Error: Could not process rule: Too many links\n"
    problems = refusal_problems(
        NftError(stderr, _locate(stderr, "/tmp/x.nft")), compiled.text, "policies/p.yaml"
    )
    assert [p.render() for p in problems] == [
        "policies/p.yaml:20:1: error: nftables refused hubs-in: Could not process rule: "
        "Too many links"
    ]


def test_refusal_inside_a_set_points_at_the_zone() -> None:
    compiled = compile_policy(load(BASE))
    lines = compiled.text.splitlines()
    element = next(i for i, line in enumerate(lines, 1) if "10.10.0.0/24" in line)
    stderr = f"/tmp/x.nft:{element}:17-28: Error: interval overlaps with an existing one\n"
    problems = refusal_problems(
        NftError(stderr, _locate(stderr, "/tmp/x.nft")), compiled.text, "p.yaml"
    )
    assert [p.render() for p in problems] == [
        "p.yaml:8:1: error: nftables refused zone hubs: interval overlaps with an existing one"
    ]


def test_refusal_without_position_still_reads_clearly() -> None:
    problems = refusal_problems(NftError("Error: Operation not permitted\n", []), "", "p.yaml")
    assert (
        problems[0]
        .render()
        .startswith(
            "p.yaml:1:1: error: nftables refused the ruleset: Error: Operation not permitted"
        )
    )
