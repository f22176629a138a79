"""The leak test's probe catalogue and what a probe's result means (gateway.lab.leaks.probes).

Pure: no namespace, no socket. What the kernel test and the chaos loop rely on: every kind
of probe from every origin, only the gate's grant counted as allowed, and every address
inside the lab.
"""

from __future__ import annotations

import ipaddress

import pytest

from gateway.lab import topology
from gateway.lab.leaks.probes import (
    ALICE,
    HUB1,
    MALLORY,
    LeakProbe,
    ProbeResult,
    control_probes,
    ipv6_probes,
    site_probes,
    staff_probes,
)

LAB_NETS = [
    ipaddress.ip_network(n) for n in ("198.18.0.0/15", "2001:2::/48", "fd00::/8", "fe80::/10")
]
ALL_NODES = ipaddress.ip_address("ff02::1")


def in_lab(address: str) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip == ALL_NODES or any(ip in net for net in LAB_NETS)


def test_site_probes_cover_every_kind_from_gw_and_the_hub_and_none_is_granted() -> None:
    probes = site_probes()
    for host in ("gw", "hub1"):
        for target in (ALICE, MALLORY, topology.CONC_TUNNEL):
            kinds = {p.proto for p in probes if p.src == host and p.dst == target}
            assert kinds == {"tcp", "udp", "icmp"}, (host, target)
    assert not any(p.granted for p in probes)
    assert {p.origin for p in probes} == {"site"}
    spoofed = [p for p in probes if p.spoof]
    assert {p.bind for p in spoofed} == {topology.GW_TUNNEL, ALICE}


def test_only_the_granted_staff_connection_is_allowed() -> None:
    assert not any(p.granted for p in staff_probes())
    granted = [p for p in staff_probes([(ALICE, HUB1, 22)]) if p.granted]
    assert [(p.bind, p.dst, p.proto, p.port) for p in granted] == [(ALICE, HUB1, "tcp", 22)]


def test_ipv6_probes_are_ipv6_sockets_and_scoped_where_needed() -> None:
    probes = ipv6_probes()
    assert all(p.family == 10 for p in probes)  # AF_INET6, IPv4-mapped included
    link_scoped = [p for p in probes if p.dst.startswith(("fe80:", "ff02:"))]
    assert link_scoped and all(p.device == "wg-support" for p in link_scoped)


@pytest.mark.parametrize("tunnel", [True, False])
def test_the_positive_control_goes_into_the_tunnel_only_when_asked(tunnel: bool) -> None:
    probes = control_probes(tunnel)
    assert {p.origin for p in probes} == {"control"}
    assert any(p.src == "staff" for p in probes) is tunnel


def test_every_probe_stays_inside_the_lab() -> None:
    everything = [
        *site_probes(),
        *staff_probes([(ALICE, HUB1, 22)]),
        *ipv6_probes(),
        *control_probes(True),
    ]
    outside = [p.text() for p in everything if not in_lab(p.dst) or (p.bind and not in_lab(p.bind))]
    assert not outside


def result(probe: LeakProbe, outcome: str) -> ProbeResult:
    return ProbeResult(probe, outcome, "", 0.0)  # type: ignore[arg-type]


def test_a_breach_is_a_forbidden_probe_that_got_an_answer() -> None:
    forbidden = LeakProbe("staff", "staff", HUB1, "tcp", "mallory to hub1", 22, bind=MALLORY)
    granted = LeakProbe("staff", "staff", HUB1, "tcp", "alice", 22, bind=ALICE, granted=True)
    control = LeakProbe("control", "plant", topology.GW_WAN, "udp", "control", 24901)
    assert result(forbidden, "answered").breach
    for outcome in ("silent", "blocked", "unreachable", "error"):
        assert not result(forbidden, outcome).breach
    assert not result(granted, "answered").breach
    assert not result(control, "answered").breach
