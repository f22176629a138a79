"""Source decoders on bytes recorded from a real kernel: NFLOG (ARP, drops, the hardware
address) to watch events, ctnetlink to flow events; prefixes; nothing raises on bad input."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.watch.detectors.base import ArpEvent, PacketEvent
from gateway.watch.sources.conntrack import parse_ct_datagram
from gateway.watch.sources.nflog import NflogPacket, parse_datagram
from gateway.watch.sources.packets import Interfaces, Prefix, decode_arp, parse_prefix, to_event
from tests.unit.conftest import ROOT

RECORDED = json.loads((ROOT / "tests/unit/fixtures/watch/recorded.json").read_text())
NAMES = {2: "veth0"}


def names(index: int | None) -> str | None:
    return NAMES.get(index or 0)


@pytest.mark.parametrize(
    ("prefix", "parsed"),
    [
        ("pg drop input: ", Prefix("drop", hook="input")),
        ("pg drop rpf: ", Prefix("drop", hook="rpf")),
        ("pg new hubs-to-appliance: ", Prefix("new", rule="hubs-to-appliance")),
        ("pg accept support-ssh: ", Prefix("accept", rule="support-ssh")),
        ("pg dns: ", Prefix("dns")),
        ("pg ntp: ", Prefix("ntp")),
        ("pg tls: ", Prefix("tls")),
        ("pg arp: ", Prefix("arp")),
        ("pgtest drop: ", None),
        ("pg new : ", None),
        ("pg dns extra: ", None),
        ("", None),
    ],
)
def test_prefixes(prefix: str, parsed: Prefix | None) -> None:
    assert parse_prefix(prefix) == parsed


def test_recorded_arp_becomes_an_arp_event_with_the_sender() -> None:
    [packet] = parse_datagram(bytes.fromhex(RECORDED["nflog_arp"])).packets
    assert packet.hwaddr == "ee:e9:f6:18:d2:92" and packet.hw_protocol == 0x0806
    event = to_event(packet, names, 123.0)
    assert isinstance(event, ArpEvent)
    assert event.interface == "veth0" and event.op == "request"
    assert event.sender_mac == "ee:e9:f6:18:d2:92"
    assert (event.sender_ip, event.target_ip) == ("198.18.250.2", "198.18.250.1")
    assert packet.timestamp is not None and event.ts == packet.timestamp  # the kernel's time
    from dataclasses import replace

    unstamped = to_event(replace(packet, timestamp=None), names, 123.0)
    assert unstamped is not None and unstamped.ts == 123.0  # else the reader's clock


def test_recorded_drop_becomes_a_packet_event() -> None:
    [packet] = parse_datagram(bytes.fromhex(RECORDED["nflog_drop"])).packets
    event = to_event(packet, names, 5.0)
    assert isinstance(event, PacketEvent)
    assert event.kind == "drop" and event.hook == "input" and event.indev == "veth0"
    assert event.mac == "ee:e9:f6:18:d2:92"
    p = event.packet
    assert (p.src, p.dst, p.proto, p.dport, p.tcp_flags) == (
        "198.18.250.2",
        "198.18.250.1",
        "tcp",
        9,
        "S",
    )


def test_other_prefixes_and_undecodable_payloads_are_skipped() -> None:
    assert to_event(NflogPacket(group=1, prefix="someone else: ", payload=b"E"), names, 0) is None
    assert to_event(NflogPacket(group=1, prefix="pg arp: ", payload=b"\x00" * 10), names, 0) is None
    assert to_event(NflogPacket(group=1, prefix="pg drop input: ", payload=b""), names, 0) is None


def test_arp_for_other_link_types_is_not_decoded() -> None:
    good = bytes.fromhex(RECORDED["nflog_arp"])
    [packet] = parse_datagram(good).packets
    assert decode_arp(packet.payload) is not None
    assert decode_arp(b"\x00\x06" + packet.payload[2:]) is None  # IEEE 802 hardware
    assert decode_arp(packet.payload[:6] + b"\x00\x09" + packet.payload[8:]) is None  # opcode 9


@given(st.binary(max_size=64))
def test_decode_arp_never_raises(data: bytes) -> None:
    decode_arp(data)


def test_hwaddr_attribute_is_decoded_by_length() -> None:
    attr = struct.pack("=HH", 16, 8) + struct.pack("!H2x8s", 6, bytes.fromhex("0200000000aa0000"))
    body = struct.pack("!BBH", 2, 0, 1) + attr
    message = struct.pack("=IHHII", 16 + len(body), (4 << 8), 0, 0, 0) + body
    [packet] = parse_datagram(message).packets
    assert packet.hwaddr == "02:00:00:00:00:aa"


def test_interface_names_are_cached_and_unknown_ones_are_numbers() -> None:
    asked: list[int] = []

    def lookup(index: int) -> str:
        asked.append(index)
        if index == 9:
            raise OSError("no such device")
        return f"if{index}"

    interfaces = Interfaces(lookup)
    assert [interfaces.name(3), interfaces.name(3), interfaces.name(9)] == ["if3", "if3", "9"]
    assert interfaces.name(None) is None and interfaces.name(0) is None
    assert asked == [3, 9]


# ------------------------------------------------------------------ conntrack


def test_recorded_conntrack_starts() -> None:
    flows, bad = parse_ct_datagram(bytes.fromhex(RECORDED["ct_new_udp"]), 7.0)
    assert bad == 0 and len(flows) == 3
    first = flows[0].event
    assert (first.phase, first.proto, first.src, first.dst, first.dport) == (
        "start",
        "udp",
        "127.0.0.1",
        "127.0.0.1",
        10000,
    )
    assert first.ts == 7.0 and flows[0].ct_id == 3738977374


def test_recorded_conntrack_end_has_counters_and_state() -> None:
    [flow], bad = parse_ct_datagram(bytes.fromhex(RECORDED["ct_destroy_tcp"]), 8.0)
    event = flow.event
    assert bad == 0 and event.phase == "end" and event.proto == "tcp"
    assert (event.sport, event.dport, event.state) == (47100, 9, "CLOSE")
    assert (event.orig_packets, event.orig_bytes) == (1, 60)
    assert (event.reply_packets, event.reply_bytes) == (1, 40)


def test_conntrack_updates_only_on_request() -> None:
    data = bytearray(bytes.fromhex(RECORDED["ct_new_udp"]))
    length = struct.unpack_from("=I", data, 0)[0]
    struct.pack_into("=H", data, 6, 0)  # the first message without NLM_F_CREATE: an update
    flows, _ = parse_ct_datagram(bytes(data), 0.0)
    assert len(flows) == 2
    flows, _ = parse_ct_datagram(bytes(data), 0.0, updates=True)
    assert len(flows) == 3
    assert length > 0


@given(st.binary(max_size=512))
def test_conntrack_parser_never_raises(data: bytes) -> None:
    parse_ct_datagram(data, 0.0)


@pytest.mark.parametrize("index", range(0, 400, 7))
def test_corrupted_conntrack_recording_never_raises(index: int) -> None:
    data = bytearray(bytes.fromhex(RECORDED["ct_destroy_tcp"]))
    if index < len(data):
        data[index] ^= 0xFF
    parse_ct_datagram(bytes(data), 0.0)
