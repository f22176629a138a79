"""Choosing chronyd's upstream addresses from the firewall's resolved sets (pure parts)."""

from __future__ import annotations

from gateway.ntp.keeper import set_members
from gateway.ntp.upstreams import choose, render_sources


def test_first_choice_is_stable_and_bounded() -> None:
    candidates = ["192.0.2.9", "192.0.2.1", "2001:db8::1", "192.0.2.5", "192.0.2.3"]
    assert choose(candidates, [], limit=4) == ["192.0.2.1", "192.0.2.3", "192.0.2.5", "192.0.2.9"]


def test_current_choices_stay_even_when_dns_rotates_them_away() -> None:
    assert choose(["192.0.2.7"], ["192.0.2.1", "192.0.2.2"], limit=3) == [
        "192.0.2.1",
        "192.0.2.2",
        "192.0.2.7",
    ]


def test_silent_servers_are_replaced() -> None:
    chosen = choose(
        ["192.0.2.1", "192.0.2.2", "192.0.2.8"],
        ["192.0.2.1", "192.0.2.2"],
        unreachable=["192.0.2.2"],
        limit=2,
    )
    assert chosen == ["192.0.2.1", "192.0.2.8"]


def test_nothing_resolved_yet_means_no_servers() -> None:
    assert choose([], []) == []


def test_sources_file_lists_one_server_per_address() -> None:
    text = render_sources(["192.0.2.1", "192.0.2.3"], "iburst")
    assert text.splitlines()[1:] == ["server 192.0.2.1 iburst", "server 192.0.2.3 iburst"]


def test_set_members_reads_single_addresses_from_nft_json() -> None:
    table = {
        "nftables": [
            {"metainfo": {}},
            {
                "set": {
                    "name": "ep_ntp_v4",
                    "elem": [
                        {"elem": {"val": "192.0.2.1", "timeout": 90, "expires": 80}},
                        "192.0.2.2",
                        {"prefix": {"addr": "10.0.0.0", "len": 8}},
                    ],
                }
            },
            {"set": {"name": "ep_ntp_v6"}},
        ]
    }
    assert set_members(table) == {"ep_ntp_v4": ["192.0.2.1", "192.0.2.2"], "ep_ntp_v6": []}
