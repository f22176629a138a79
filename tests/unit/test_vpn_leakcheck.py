"""Leak verdicts (gateway.vpn.leakcheck): what may appear on the physical side and in the tunnel.

Packets are built with scapy, an implementation independent of the decoder under test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPerror, UDPerror
from scapy.layers.inet6 import ICMPv6ND_NS, IPv6
from scapy.packet import Packet, Raw

from gateway.lab.leaks.findings import counts_since, kill_switch_counts
from gateway.policy.load import load_file, load_text
from gateway.vpn.leakcheck import (
    Facts,
    Markers,
    Seen,
    classify,
    facts_for,
    tally,
    vpn_on_at,
    wireguard_shaped,
)
from gateway.watch.sources.nflog import DecodedPacket, decode_ip

LAB = Path(__file__).resolve().parents[2] / "policies" / "lab.yaml"
GW, CONC, PLANT, DNS = "198.18.20.1", "198.19.0.51", "198.18.20.10", "198.19.0.53"
ALICE, GW_TUNNEL = "198.18.201.5", "198.18.200.2"
MARKERS = Markers("c0ffee01")
KEEPALIVE = b"\x04\0\0\0" + bytes(28)  # transport data, empty payload: 32 bytes


@pytest.fixture(scope="module")
def facts() -> Facts:
    return facts_for(
        load_file(LAB).policy,
        appliance=(GW, "2001:2:0:20::1"),
        concentrator=(CONC,),
        markers=MARKERS,
        extra_inner=("fd00:201::/64",),
    )


def physical(packet: Packet, facts: Facts, vpn_on: bool = True) -> tuple[str, str]:
    finding = classify(bytes(packet), facts, "physical", vpn_on=vpn_on)
    return finding.verdict, finding.reason


def tunnel(packet: Packet, facts: Facts) -> tuple[str, str]:
    finding = classify(bytes(packet), facts, "tunnel")
    return finding.verdict, finding.reason


def wg_out(payload: bytes = KEEPALIVE) -> Packet:
    return IP(src=GW, dst=CONC) / UDP(sport=40000, dport=51820) / Raw(payload)


# ---------------------------------------------------------------- the tunnel's own flow


def test_wireguard_with_the_concentrator_is_allowed_both_ways(facts: Facts) -> None:
    back = IP(src=CONC, dst=GW) / UDP(sport=51820, dport=40000) / Raw(KEEPALIVE)
    assert physical(wg_out(), facts)[0] == "wireguard"
    assert physical(back, facts)[0] == "wireguard"
    initiation = b"\x01\0\0\0" + bytes(144)
    assert physical(wg_out(initiation), facts)[0] == "wireguard"


def test_wireguard_leaving_while_the_vpn_is_off_is_a_leak(facts: Facts) -> None:
    verdict, reason = physical(wg_out(), facts, vpn_on=False)
    assert verdict == "leak" and "while the VPN is off" in reason
    back = IP(src=CONC, dst=GW) / UDP(sport=51820, dport=40000) / Raw(KEEPALIVE)
    assert physical(back, facts, vpn_on=False)[0] == "inbound"


def test_something_else_on_the_tunnels_flow_is_a_leak(facts: Facts) -> None:
    verdict, reason = physical(wg_out(b"hello, concentrator"), facts)
    assert (verdict, reason) == ("leak", "not WireGuard, yet on the tunnel's own flow")


def test_icmp_errors_about_the_tunnels_flow(facts: Facts) -> None:
    quoted = IPerror(src=CONC, dst=GW) / UDPerror(sport=51820, dport=40000) / Raw(KEEPALIVE)
    error = IP(src=GW, dst=CONC) / ICMP(type=3, code=3) / quoted
    assert physical(error, facts)[0] == "wireguard"
    verdict, reason = physical(error, facts, vpn_on=False)
    assert verdict == "leak" and reason.startswith("ICMP error about the tunnel's flow")
    unreachable = IP(src=CONC, dst=GW) / ICMP(type=3, code=3) / IPerror(src=GW, dst=CONC)
    unreachable = unreachable / UDPerror(sport=40000, dport=51820)
    assert physical(unreachable, facts)[0] == "wireguard"


def test_wireguard_shape_needs_its_sizes() -> None:
    assert wireguard_shaped(bytes(wg_out()), decode(wg_out()))
    for payload in (
        b"\x01\0\0\0" + bytes(145),
        b"\x04\0\0\0" + bytes(29),
        b"\x04\1\0\0" + bytes(28),
    ):
        assert not wireguard_shaped(bytes(wg_out(payload)), decode(wg_out(payload)))


def decode(packet: Packet) -> DecodedPacket:
    decoded = decode_ip(bytes(packet))
    assert decoded is not None
    return decoded


# ---------------------------------------------------------------- tunnel addresses, probes


@pytest.mark.parametrize(
    "packet",
    [
        IP(src=GW, dst=ALICE) / TCP(sport=40000, dport=22, flags="S"),
        IP(src=GW_TUNNEL, dst=DNS) / UDP(sport=40000, dport=53) / Raw(b"query"),
        IP(src=PLANT, dst=GW_TUNNEL) / TCP(sport=6514, dport=40000, flags="RA"),
        IP(src=PLANT, dst=GW) / ICMP(type=3, code=1) / IPerror(src=GW, dst=ALICE) / UDPerror(),
    ],
    ids=["to staff", "from the tunnel address", "to the tunnel address", "quoted"],
)
def test_a_tunnel_address_on_the_physical_side_is_a_leak(packet: Packet, facts: Facts) -> None:
    verdict, reason = physical(packet, facts)
    assert verdict == "leak" and reason.startswith("tunnel address")


def test_probes_are_leaks_and_the_control_is_counted(facts: Facts) -> None:
    for origin in ("site", "staff"):
        probe = IP(src=GW, dst=PLANT) / UDP(sport=5000, dport=9) / MARKERS.payload(origin, 7)
        assert physical(probe, facts) == ("leak", f"{origin} probe outside the tunnel")
    control = IP(src=PLANT, dst=GW) / UDP(sport=5000, dport=9) / MARKERS.payload("control", 1)
    assert physical(control, facts)[0] == "control"
    syn = IP(src=GW, dst=PLANT) / TCP(sport=21005, dport=22, flags="S")
    assert physical(syn, facts) == ("leak", "site probe (by its port) outside the tunnel")


def test_another_runs_marker_is_background(facts: Facts) -> None:
    other = Markers("deadbeef").payload("site", 1)
    packet = IP(src=GW, dst=PLANT) / UDP(sport=5000, dport=9) / Raw(other)
    assert physical(packet, facts)[0] == "background"
    assert MARKERS.origin_of(MARKERS.payload("staff", 3)) == "staff"
    assert MARKERS.origin_of(b"junk" + MARKERS.payload("site", 3)) == "site"


def test_other_traffic_with_the_concentrator_is_a_leak(facts: Facts) -> None:
    packet = IP(src=GW, dst=CONC) / TCP(sport=40000, dport=443, flags="S")
    assert physical(packet, facts) == ("leak", "traffic with the concentrator outside the tunnel")


def test_wireguard_to_another_endpoint_is_a_leak(facts: Facts) -> None:
    packet = IP(src=GW, dst="198.19.9.9") / UDP(sport=40000, dport=51820) / Raw(KEEPALIVE)
    verdict, reason = physical(packet, facts)
    assert verdict == "leak" and "not the concentrator" in reason


def test_background_is_ignored(facts: Facts) -> None:
    dns = IP(src=GW, dst=DNS) / UDP(sport=40000, dport=53) / Raw(b"\x12\x34\x01\x00" + bytes(8))
    ntp = IP(src=GW, dst="198.19.0.123") / UDP(sport=123, dport=123) / Raw(b"\x23" + bytes(47))
    nd = IPv6(src="fe80::1", dst="ff02::1:ff00:1") / ICMPv6ND_NS(tgt="fe80::2")
    for packet in (dns, ntp, nd):
        assert physical(packet, facts)[0] == "background"
    assert classify(b"\x00\x01 arp, say", facts, "physical").verdict == "background"


def test_ipv6_toward_the_support_path(facts: Facts) -> None:
    inner = IPv6(src="2001:2:0:20::1", dst="fd00:201::5") / UDP(sport=5000, dport=9)
    assert physical(inner, facts)[0] == "leak"
    port = IPv6(src="2001:2:0:20::1", dst="2001:2::9") / UDP(sport=5000, dport=51820)
    assert physical(port, facts) == ("leak", "IPv6 on the WireGuard port")


# ---------------------------------------------------------------- inside the tunnel


def test_inside_the_tunnel(facts: Facts) -> None:
    staff = IP(src=ALICE, dst=GW_TUNNEL) / TCP(sport=23010, dport=22, flags="S")
    assert tunnel(staff, facts)[0] == "background"
    site = IP(src="198.18.10.11", dst=ALICE) / UDP(sport=5000, dport=9)
    assert tunnel(site / MARKERS.payload("site", 2), facts)[0] == "leak"
    reply = IP(src="198.19.0.43", dst=GW_TUNNEL) / TCP(sport=443, dport=21001, flags="RA")
    assert tunnel(reply, facts) == ("leak", "probe from the site side inside the tunnel")
    v6 = IPv6(src="fe80::1", dst="ff02::16") / Raw(b"mld")
    assert tunnel(v6, facts)[0] == "leak"
    control = IP(src=ALICE, dst=GW_TUNNEL) / ICMP() / MARKERS.payload("control", 4)
    assert tunnel(control, facts)[0] == "control"


def test_ipv6_in_the_tunnel_is_fine_when_the_policy_allows_it() -> None:
    text = LAB.read_text().replace("  keepalive: 25\n", "  keepalive: 25\n  ipv6: true\n")
    allowing = facts_for(load_text(text, "lab.yaml").policy, (GW,), (CONC,), MARKERS)
    v6 = IPv6(src="fd00:200::2", dst="fd00:201::5") / Raw(b"x")
    assert classify(bytes(v6), allowing, "tunnel").verdict == "background"


# ---------------------------------------------------------------- facts, tallies, counters


def test_facts_come_from_the_policy(facts: Facts) -> None:
    assert facts.port == 51820
    assert facts.is_inner(ALICE) and facts.is_inner("198.18.200.1")
    assert facts.is_inner("fd00:201::9") and not facts.is_inner(GW)
    text = LAB.read_text()
    no_vpn = load_text(text[: text.index("support_vpn:")] + text[text.index("rules:") :], "x")
    with pytest.raises(ValueError, match="no support_vpn"):
        facts_for(no_vpn.policy, (GW,), (CONC,), MARKERS)


def test_tally_follows_the_vpn_switch(facts: Facts) -> None:
    seen = [Seen("gw:wan0", "physical", at, True, bytes(wg_out())) for at in (1.0, 5.0, 9.0)]
    result = tally(seen, facts, off=[(4.0, 6.0)])
    assert result.count("wireguard") == 2 and result.count("leak", "gw:wan0") == 1
    assert [leak.seen.at for leak in result.leaks] == [5.0]
    assert result.summary() == "gw:wan0 3 (leak 1, wireguard 2)"
    assert vpn_on_at(3.9, [(4.0, 6.0)]) and not vpn_on_at(4.0, [(4.0, 6.0)])


def test_kill_switch_counters_are_read_from_the_listing() -> None:
    listing = """table inet plantgate {
	chain output {
		ip daddr @support_inner_v4 oifname != { "lo", "wg-support" } counter packets 3 bytes 212 drop comment "support_vpn @ lab.yaml:76"
		counter packets 16 bytes 1492 drop comment "default: drop everything else"
	}
	chain input {
		udp sport 51820 counter packets 25 bytes 800 drop comment "support_vpn @ lab.yaml:76"
	}
}"""  # noqa: E501
    counts = kill_switch_counts(listing)
    assert counts == {
        'output: ip daddr @support_inner_v4 oifname != { "lo", "wg-support" } drop': 3,
        "input: udp sport 51820 drop": 25,
    }
    assert (
        counts_since({"input: udp sport 51820 drop": 20}, counts)["input: udp sport 51820 drop"]
        == 5
    )
    assert (
        counts_since({"input: udp sport 51820 drop": 30}, counts)["input: udp sport 51820 drop"]
        == 25
    )
