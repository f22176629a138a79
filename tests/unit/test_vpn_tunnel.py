"""The tunnel's pure parts: what the policy asks for, routes, endpoint choice, `vpn status`."""

from __future__ import annotations

from pathlib import Path

from gateway.policy.load import load_file
from gateway.vpn.cli_vpn import render_lines, status_record
from gateway.vpn.tunnel import (
    Desired,
    choose_endpoint,
    describe_exit,
    desired_tunnel,
    host_addresses,
    tunnel_routes,
)

LAB = Path(__file__).resolve().parents[2] / "policies" / "lab.yaml"
CONC = "kN0jCgWbDUSBsBs6o2aQHsISjENoOJYOM+uSc8NLTFI="
NOW = 1_796_180_100.0


def test_the_lab_policy_wants_a_gated_tunnel_to_its_concentrator() -> None:
    want = desired_tunnel(load_file(LAB).policy)
    assert want == Desired(
        mode="gated",
        ifname="wg-support",
        address="198.18.200.2/24",
        peer_key=CONC,
        port=51820,
        allowed_ips=("198.18.200.0/24", "198.18.201.0/24"),
        routes=("198.18.201.0/24",),
        keepalive=25,
        concentrator="support-concentrator",
        static_endpoints=(),  # a name: the address comes from the firewall's set
    )
    assert want.active


def test_disabled_and_absent_sections_want_no_tunnel() -> None:
    loaded = load_file(LAB)
    assert not desired_tunnel(loaded.with_vpn_mode("disabled").policy).active
    assert desired_tunnel(loaded.with_vpn_mode("always-on").policy).active
    policy = loaded.policy.model_copy(update={"support_vpn": None})
    assert desired_tunnel(policy) == Desired("none")


def test_routes_skip_what_the_interface_address_already_connects() -> None:
    assert tunnel_routes("198.18.200.2/24", ["198.18.200.0/24", "198.18.201.0/24"]) == (
        "198.18.201.0/24",
    )
    assert tunnel_routes("198.18.200.2/24", ["198.18.200.0/23"]) == ("198.18.200.0/23",)
    assert tunnel_routes("10.9.0.2/24", ["10.9.0.128/25", "fd00:9::/64"]) == ("fd00:9::/64",)


def test_endpoint_stays_while_allowed_and_prefers_ipv4() -> None:
    assert choose_endpoint(["198.19.0.52", "198.19.0.51"], None) == "198.19.0.51"
    assert choose_endpoint(["198.19.0.51", "198.19.0.52"], "198.19.0.52") == "198.19.0.52"
    assert choose_endpoint(["2001:db8::1", "198.19.0.60"], "198.19.0.52") == "198.19.0.60"
    assert choose_endpoint([], "198.19.0.52") is None
    assert host_addresses(["198.19.0.51", "198.19.0.52/32", "198.19.1.0/24"]) == [
        "198.19.0.51",
        "198.19.0.52",
    ]


def test_exit_status_in_words() -> None:
    assert describe_exit(-9) == "was killed by SIGKILL"
    assert describe_exit(1) == "exited with status 1"


def _policy(mode: str = "gated", override: str | None = None) -> dict[str, object]:
    return {
        "revision": 3,
        "mode": mode,
        "policy_mode": "gated",
        "override": override,
        "interface": "wg-support",
        "address": "198.18.200.2/24",
        "concentrator_key": CONC,
        "public_key": "APPLIANCEPUBLICKEY=",
    }


def test_status_of_a_live_tunnel() -> None:
    live = {
        "interface_up": True,
        "public_key": "APPLIANCEPUBLICKEY=",
        "peer": {
            "endpoint": "198.19.0.51:51820",
            "latest_handshake": int(NOW - 12),
            "rx_bytes": 284,
            "tx_bytes": 180,
            "keepalive": 25,
        },
    }
    daemon = {"state": "up", "since": "x", "updated": "2026-11-01T00:00:00+00:00", "restarts": 0}
    record = status_record(_policy(), live, daemon, NOW)
    assert (record["state"], record["handshake_age_s"]) == ("up", 12.0)
    assert record["endpoint"] == "198.19.0.51:51820"
    assert record["daemon"]["current"] is False  # that report is a month old
    text = "\n".join(render_lines(record))
    assert "state:        up (handshake 12 s ago)" in text
    assert "284 B received, 180 B sent" in text
    assert "old report" in text


def test_status_with_the_off_switch_says_who_decided() -> None:
    record = status_record(_policy("disabled", "disabled"), {"interface_up": False}, None, NOW)
    assert record["state"] == "disabled"
    lines = render_lines(record)
    assert any("`plantgate vpn disable` in force; the policy says gated" in ln for ln in lines)
    assert lines[-1] == "plantgated:   no report yet"


def test_status_of_a_dead_tunnel_is_down_with_the_reason() -> None:
    live = {"interface_up": False, "error": "wg-support: Unable to access interface"}
    record = status_record(_policy(), live, None, NOW)
    assert (record["state"], record["reason"]) == (
        "down",
        "wg-support: Unable to access interface",
    )
