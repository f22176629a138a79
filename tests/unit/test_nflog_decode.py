"""Pure parts of the NFLOG source: IP header decoding and nfnetlink_log message parsing.

Packets are built here with struct (and cross-checked against scapy); the netlink fixture is
a datagram recorded from the kernel (6.x, nft ``log group 7 prefix "pgtest drop: "``, a TCP
SYN from 198.18.250.2 to 198.18.250.1:9 arriving on ifindex 2).
"""

from __future__ import annotations

import socket
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.watch.sources.nflog import (
    MSG_TYPE_CONFIG,
    MSG_TYPE_PACKET,
    NFULA_CFG_CMD,
    NFULA_CFG_MODE,
    NFULA_CFG_QTHRESH,
    NFULA_CFG_TIMEOUT,
    NFULNL_CFG_CMD_BIND,
    NLM_F_ACK,
    NLM_F_REQUEST,
    NLMSG_DONE,
    NLMSG_ERROR,
    DecodedPacket,
    NflogAck,
    NflogPacket,
    NflogStats,
    decode_ip,
    encode_config,
    estimate_lost_packets,
    parse_datagram,
    parse_messages,
    tcp_flags_text,
)

# --- builders (independent of the module under test) -------------------------------------

SRC4, DST4 = "198.18.250.2", "198.18.250.1"
SRC6, DST6 = "2001:db8::2", "2001:db8::1"


def ipv4(proto: int, l4: bytes, *, ttl: int = 64, frag: int = 0, options: bytes = b"") -> bytes:
    ihl = 5 + len(options) // 4
    total = ihl * 4 + len(l4)
    header = struct.pack(
        "!BBHHHBBH4s4s",
        0x40 | ihl,
        0,
        total,
        0x1234,
        frag,
        ttl,
        proto,
        0,
        socket.inet_aton(SRC4),
        socket.inet_aton(DST4),
    )
    return header + options + l4


def ipv6(next_header: int, rest: bytes, *, hlim: int = 63) -> bytes:
    return (
        struct.pack("!IHBB", 6 << 28, len(rest), next_header, hlim)
        + socket.inet_pton(socket.AF_INET6, SRC6)
        + socket.inet_pton(socket.AF_INET6, DST6)
        + rest
    )


def tcp(sport: int, dport: int, flags: int, *, offset_words: int = 5) -> bytes:
    head = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, offset_words << 4, flags, 512, 0, 0)
    return head + b"\0" * (offset_words * 4 - 20)


def udp(sport: int, dport: int, data: bytes = b"hello") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data


def icmp(icmp_type: int, code: int) -> bytes:
    return struct.pack("!BBHHH", icmp_type, code, 0, 1, 1) + b"ping"


def ext(next_header: int, length_units: int = 0) -> bytes:
    """An IPv6 extension header of (length_units + 1) * 8 bytes (hop-by-hop/routing/dstopts)."""
    size = (length_units + 1) * 8
    return bytes([next_header, length_units]) + b"\x01" * (size - 2)


def frag6(next_header: int, offset: int, more: bool) -> bytes:
    return struct.pack("!BBHI", next_header, 0, (offset << 3) | int(more), 0xABCD)


def nla(atype: int, value: bytes) -> bytes:
    length = 4 + len(value)
    return struct.pack("=HH", length, atype) + value + b"\0" * (-length % 4)


def nlmsg(mtype: int, body: bytes, *, seq: int = 0, flags: int = 0) -> bytes:
    length = 16 + len(body)
    return struct.pack("=IHHII", length, mtype, flags, seq, 0) + body + b"\0" * (-length % 4)


def nflog_msg(group: int, *attrs: bytes, family: int = socket.AF_INET) -> bytes:
    return nlmsg(MSG_TYPE_PACKET, struct.pack("!BBH", family, 0, group) + b"".join(attrs))


SYN = ipv4(6, tcp(40000, 22, 0x02))

# --- decode_ip -----------------------------------------------------------------------------


def test_ipv4_tcp_syn() -> None:
    d = decode_ip(SYN)
    assert d == DecodedPacket(
        version=4,
        src=SRC4,
        dst=DST4,
        proto="tcp",
        proto_num=6,
        ttl=64,
        length=40,
        sport=40000,
        dport=22,
        tcp_flags="S",
        fragment=False,
        truncated=False,
    )


@pytest.mark.parametrize(
    ("bits", "text"),
    [(0x02, "S"), (0x12, "SA"), (0x10, "A"), (0x19, "FPA"), (0x04, "R"), (0x14, "RA"), (0, "")],
)
def test_tcp_flags(bits: int, text: str) -> None:
    assert tcp_flags_text(bits) == text
    d = decode_ip(ipv4(6, tcp(1, 2, bits)))
    assert d is not None and d.tcp_flags == text


def test_tcp_ns_bit() -> None:
    segment = bytearray(tcp(1, 2, 0x02))
    segment[12] |= 0x01
    d = decode_ip(ipv4(6, bytes(segment)))
    assert d is not None and d.tcp_flags == "SN"


def test_ipv4_udp_with_options() -> None:
    d = decode_ip(ipv4(17, udp(5353, 53), ttl=3, options=b"\x01\x01\x01\x00"))
    assert d is not None
    assert (d.proto, d.sport, d.dport, d.ttl, d.length) == ("udp", 5353, 53, 3, 24 + 13)
    assert not d.truncated


def test_ipv4_icmp_echo() -> None:
    d = decode_ip(ipv4(1, icmp(8, 0)))
    assert d is not None
    assert (d.proto, d.icmp_type, d.icmp_code, d.sport, d.tcp_flags) == ("icmp", 8, 0, None, None)
    assert not d.truncated


def test_ipv4_first_fragment_has_ports() -> None:
    d = decode_ip(ipv4(17, udp(1000, 2000), frag=0x2000))  # MF, offset 0
    assert d is not None and d.fragment and (d.sport, d.dport) == (1000, 2000)
    assert not d.truncated


def test_ipv4_later_fragment_has_no_ports() -> None:
    d = decode_ip(ipv4(17, b"\xff" * 16, frag=185))  # offset 185*8, last fragment
    assert d is not None and d.fragment and d.proto == "udp"
    assert (d.sport, d.dport, d.truncated) == (None, None, False)


def test_ipv4_unknown_protocol() -> None:
    d = decode_ip(ipv4(253, b"experimental"))
    assert d is not None and (d.proto, d.proto_num, d.sport) == ("253", 253, None)
    assert not d.truncated


def test_ipv4_l4_limited_to_total_length() -> None:
    packet = bytearray(ipv4(6, tcp(1, 2, 0x02)))
    packet[2:4] = struct.pack("!H", 30)  # claims only 10 bytes of TCP
    d = decode_ip(bytes(packet))
    assert d is not None and d.truncated and (d.sport, d.dport) == (1, 2) and d.tcp_flags is None


def test_ipv6_tcp() -> None:
    d = decode_ip(ipv6(6, tcp(50000, 8443, 0x12)))
    assert d is not None
    assert (d.version, d.src, d.dst, d.proto, d.ttl, d.length) == (6, SRC6, DST6, "tcp", 63, 60)
    assert (d.sport, d.dport, d.tcp_flags, d.truncated) == (50000, 8443, "SA", False)


def test_ipv6_icmpv6_echo() -> None:
    d = decode_ip(ipv6(58, icmp(128, 0)))
    assert d is not None and (d.proto, d.proto_num, d.icmp_type, d.icmp_code) == (
        "icmpv6",
        58,
        128,
        0,
    )


def test_ipv6_skips_known_extension_headers() -> None:
    chain = ext(43, 1) + ext(60) + ext(17, 2) + udp(123, 123)  # hop-by-hop, routing, dstopts
    d = decode_ip(ipv6(0, chain))
    assert d is not None
    assert (d.proto, d.proto_num, d.sport, d.dport, d.truncated) == ("udp", 17, 123, 123, False)


def test_ipv6_first_fragment() -> None:
    d = decode_ip(ipv6(44, frag6(17, 0, True) + udp(7, 9)))
    assert d is not None and d.fragment and (d.proto, d.sport, d.dport) == ("udp", 7, 9)


def test_ipv6_later_fragment() -> None:
    d = decode_ip(ipv6(0, ext(44) + frag6(6, 100, False) + b"\x00" * 24))
    assert d is not None and d.fragment and d.proto == "tcp"
    assert (d.sport, d.tcp_flags, d.truncated) == (None, None, False)


def test_ipv6_no_next_header() -> None:
    d = decode_ip(ipv6(59, b""))
    assert d is not None and (d.proto, d.truncated) == ("ipv6-nonxt", False)


@pytest.mark.parametrize(
    "payload",
    [
        b"\x45",
        SYN[:19],
        ipv6(6, b"")[:39],
    ],
)
def test_short_ip_header_is_truncated(payload: bytes) -> None:
    d = decode_ip(payload)
    assert d is not None and d.truncated and d.src is None and d.dst is None


def test_short_tcp_keeps_ports() -> None:
    d = decode_ip(SYN[:26])  # 6 bytes of TCP
    assert d is not None and d.truncated and (d.src, d.sport, d.dport) == (SRC4, 40000, 22)
    assert d.tcp_flags is None


def test_bad_ihl_is_truncated() -> None:
    packet = bytearray(SYN)
    packet[0] = 0x44  # ihl 4 words < 20 bytes
    d = decode_ip(bytes(packet))
    assert d is not None and d.truncated and d.src == SRC4 and d.sport is None
    packet[0] = 0x4F  # ihl 60 bytes > captured
    d = decode_ip(bytes(packet))
    assert d is not None and d.truncated and d.sport is None


def test_bad_tcp_data_offset_is_truncated() -> None:
    d = decode_ip(ipv4(6, tcp(1, 2, 0x02, offset_words=2) + b"\0" * 12))
    assert d is not None and d.truncated and d.tcp_flags == "S"


def test_ipv6_extension_cut_short() -> None:
    d = decode_ip(ipv6(0, ext(17, 3)[:20]))
    assert d is not None and d.truncated and (d.proto, d.sport) == ("hopopt", None)
    assert d.src == SRC6


@pytest.mark.parametrize("payload", [b"", b"\x00" * 40, b"\x50" * 40, b"\xff", b"\x20abc"])
def test_non_ip_is_none(payload: bytes) -> None:
    assert decode_ip(payload) is None


PACKETS = [
    SYN,
    ipv4(17, udp(1, 2)),
    ipv4(1, icmp(3, 3)),
    ipv6(0, ext(44) + frag6(6, 0, True) + tcp(1, 2, 0x12)),
    ipv6(58, icmp(1, 4)),
]


@pytest.mark.parametrize("packet", PACKETS)
def test_every_prefix_decodes_and_header_cuts_are_truncated(packet: bytes) -> None:
    full = decode_ip(packet)
    assert full is not None and not full.truncated
    for cut in range(1, len(packet)):
        d = decode_ip(packet[:cut])
        assert d is not None and d.version == full.version
        if not d.truncated:  # a cut only past the headers: same header facts
            assert (d.sport, d.dport, d.tcp_flags, d.icmp_type) == (
                full.sport,
                full.dport,
                full.tcp_flags,
                full.icmp_type,
            )


@given(st.binary(max_size=200))
@settings(max_examples=500)
def test_decode_never_raises(data: bytes) -> None:
    result = decode_ip(data)
    assert result is None or isinstance(result, DecodedPacket)


@given(st.sampled_from([0x45, 0x46, 0x4F, 0x60]), st.binary(max_size=120))
@settings(max_examples=500)
def test_decode_ip_like_never_raises(first: int, rest: bytes) -> None:
    result = decode_ip(bytes([first]) + rest)
    assert result is not None and result.version == first >> 4


def test_matches_scapy() -> None:
    scapy = pytest.importorskip("scapy.all")
    cases = [
        scapy.IP(src=SRC4, dst=DST4, ttl=9) / scapy.TCP(sport=1234, dport=443, flags="SA"),
        scapy.IP(src=SRC4, dst=DST4) / scapy.UDP(sport=5000, dport=123) / (b"x" * 48),
        scapy.IP(src=SRC4, dst=DST4) / scapy.ICMP(type=0, code=0),
        scapy.IPv6(src=SRC6, dst=DST6)
        / scapy.IPv6ExtHdrHopByHop()
        / scapy.IPv6ExtHdrDestOpt()
        / scapy.TCP(sport=2, dport=8140, flags="FPA"),
        scapy.IPv6(src=SRC6, dst=DST6) / scapy.ICMPv6EchoRequest(),
    ]
    for pkt in cases:
        raw = bytes(pkt)
        d = decode_ip(raw)
        assert d is not None and not d.truncated
        ref = scapy.IP(raw) if d.version == 4 else scapy.IPv6(raw)
        assert (d.src, d.dst) == (ref.src, ref.dst)
        if ref.haslayer(scapy.TCP):
            layer = ref[scapy.TCP]
            assert (d.sport, d.dport, d.tcp_flags) == (layer.sport, layer.dport, str(layer.flags))
        if ref.haslayer(scapy.UDP):
            assert (d.sport, d.dport) == (ref[scapy.UDP].sport, ref[scapy.UDP].dport)


# --- parse_messages / parse_datagram -------------------------------------------------------

# Recorded from the kernel: one NFULNL_MSG_PACKET with PACKET_HDR, PREFIX, IFINDEX_INDEV,
# HWADDR, HWTYPE, HWLEN, HWHEADER, TIMESTAMP and a 60-byte PAYLOAD (the TCP SYN).
RECORDED_SYN = bytes.fromhex(
    "c000000000040000000000000000000002000007080001000800010012000a00"
    "7067746573742064726f703a2000000008000400000000021000080000060000"
    "c2acd95a3236000006000f000001000006001100000e000012001000ee87e50d"
    "5b07c2acd95a32360800000014000300000000006b0f6bc500000000000996ba"
    "400009004500003c38ed4000400681a5c612fa02c612fa01d720000900fc09a7"
    "00000000a002faf080580000020405b40402080a260ef898000000000103030a"
)


def test_recorded_datagram() -> None:
    [packet] = parse_messages(RECORDED_SYN)
    assert packet.group == 7 and packet.family == socket.AF_INET
    assert packet.prefix == "pgtest drop: "
    assert (packet.indev, packet.outdev) == (2, None)
    assert (packet.hook, packet.hw_protocol, packet.mark) == (1, 0x0800, 0)
    assert packet.timestamp == pytest.approx(1796172741.62841)
    assert (packet.uid, packet.gid) == (None, None)
    assert len(packet.payload) == 60
    d = packet.decoded
    assert d is not None
    assert (d.src, d.dst, d.proto, d.dport, d.tcp_flags) == (
        "198.18.250.2",
        "198.18.250.1",
        "tcp",
        9,
        "S",
    )


def test_multiple_messages_in_one_datagram() -> None:
    second = nflog_msg(
        3,
        nla(1, struct.pack("!HBx", 0x86DD, 3)),
        nla(2, struct.pack("!I", 0xBEEF)),
        nla(5, struct.pack("!I", 4)),
        nla(10, b"pg out\0"),
        nla(11, struct.pack("!I", 1000)),
        nla(14, struct.pack("!I", 1001)),
        nla(9, ipv6(58, icmp(128, 0))),
        family=socket.AF_INET6,
    )
    done = nlmsg(NLMSG_DONE, struct.pack("=i", 0))
    ack = nlmsg(NLMSG_ERROR, struct.pack("=i", -16) + b"\0" * 16, seq=42)
    parsed = parse_datagram(RECORDED_SYN + second + done + ack)
    assert parsed.malformed == 0
    assert [p.group for p in parsed.packets] == [7, 3]
    out = parsed.packets[1]
    assert out == NflogPacket(
        group=3,
        family=socket.AF_INET6,
        prefix="pg out",
        outdev=4,
        hook=3,
        hw_protocol=0x86DD,
        mark=0xBEEF,
        payload=ipv6(58, icmp(128, 0)),
        uid=1000,
        gid=1001,
    )
    assert out.decoded is not None and out.decoded.icmp_type == 128
    assert parsed.acks == [NflogAck(seq=42, error=16)]


def test_attribute_flag_bits_are_masked() -> None:
    nested, net_order = 1 << 15, 1 << 14
    [packet] = parse_messages(
        nflog_msg(1, nla(2 | net_order, struct.pack("!I", 7)), nla(10 | nested, b"x\0"))
    )
    assert (packet.mark, packet.prefix) == (7, "x")


def test_unknown_attributes_and_messages_are_skipped() -> None:
    data = nlmsg(0x0100, b"\0" * 8) + nflog_msg(1, nla(99, b"\1\2\3"), nla(10, b"ok\0"))
    parsed = parse_datagram(data)
    assert [p.prefix for p in parsed.packets] == ["ok"] and parsed.malformed == 0


def test_empty_datagram() -> None:
    assert parse_datagram(b"") == parse_datagram(b"")
    assert parse_datagram(b"").packets == [] and parse_datagram(b"").malformed == 0


@pytest.mark.parametrize(
    ("data", "good"),
    [
        # nlmsg_len shorter than the header: framing lost
        (RECORDED_SYN + struct.pack("=IHHII", 8, MSG_TYPE_PACKET, 0, 0, 0), 1),
        # nlmsg_len past the end of the datagram
        (RECORDED_SYN + struct.pack("=IHHII", 400, MSG_TYPE_PACKET, 0, 0, 0) + b"\0" * 8, 1),
        # a few trailing bytes, shorter than a netlink header
        (RECORDED_SYN + b"\1\2\3\4\5", 1),
        # the recorded message cut in the middle
        (RECORDED_SYN[:100], 0),
    ],
)
def test_bad_netlink_lengths(data: bytes, good: int) -> None:
    parsed = parse_datagram(data)
    assert len(parsed.packets) == good and parsed.malformed == 1


@pytest.mark.parametrize(
    "body",
    [
        struct.pack("=HH", 2, 10) + b"xx",  # attribute length < 4
        struct.pack("=HH", 40, 10) + b"short",  # attribute past the message end
        nla(1, b"\x08"),  # short packet header
        nla(3, b"\0" * 8),  # short timestamp
        nla(4, b"\0\0"),  # short ifindex
    ],
)
def test_bad_attribute_skips_only_that_message(body: bytes) -> None:
    bad = nlmsg(MSG_TYPE_PACKET, struct.pack("!BBH", 2, 0, 5) + body)
    parsed = parse_datagram(bad + RECORDED_SYN)
    assert [p.group for p in parsed.packets] == [7] and parsed.malformed == 1


def test_message_without_nfgenmsg_is_malformed() -> None:
    parsed = parse_datagram(nlmsg(MSG_TYPE_PACKET, b"") + nlmsg(NLMSG_ERROR, b"\0\0"))
    assert parsed.packets == [] and parsed.acks == [] and parsed.malformed == 2


@given(st.binary(max_size=300))
@settings(max_examples=500)
def test_parse_never_raises(data: bytes) -> None:
    parsed = parse_datagram(data)
    assert parsed.malformed >= 0


@given(st.integers(0, len(RECORDED_SYN)), st.integers(0, 255))
def test_corrupted_recording_never_raises(index: int, value: int) -> None:
    data = bytearray(RECORDED_SYN)
    if index < len(data):
        data[index] = value
    for packet in parse_messages(bytes(data)):
        assert packet.decoded is None or isinstance(packet.decoded, DecodedPacket)


# --- encode_config -------------------------------------------------------------------------


def test_encode_bind_and_mode() -> None:
    message = encode_config(9, 7, command=NFULNL_CFG_CMD_BIND, snaplen=256)
    length, mtype, flags, seq, pid = struct.unpack_from("=IHHII", message)
    assert (length, mtype, flags, seq, pid) == (
        len(message),
        MSG_TYPE_CONFIG,
        NLM_F_REQUEST | NLM_F_ACK,
        9,
        0,
    )
    assert struct.unpack_from("!BBH", message, 16) == (socket.AF_UNSPEC, 0, 7)
    attrs = message[20:]
    assert attrs[:8] == struct.pack("=HH", 5, NFULA_CFG_CMD) + bytes([NFULNL_CFG_CMD_BIND, 0, 0, 0])
    assert attrs[8:] == struct.pack("=HH", 10, NFULA_CFG_MODE) + struct.pack("!IBx", 256, 2) + (
        b"\0\0"
    )


def test_encode_without_ack() -> None:
    message = encode_config(1, 2, family=socket.AF_INET6, command=4, ack=False)
    assert struct.unpack_from("=H", message, 6)[0] == NLM_F_REQUEST
    assert message[16] == socket.AF_INET6


def test_encode_batch_settings() -> None:
    message = encode_config(3, 7, qthreshold=1, flush_timeout=0.25)
    assert message[20:] == (
        struct.pack("=HH", 8, NFULA_CFG_TIMEOUT)
        + struct.pack("!I", 25)
        + struct.pack("=HH", 8, NFULA_CFG_QTHRESH)
        + struct.pack("!I", 1)
    )


def test_lost_datagrams_are_reported_as_the_packets_they_likely_carried() -> None:
    batched = NflogStats(packets=2_100, datagrams=100)  # 21 packets a datagram so far
    assert estimate_lost_packets(10, batched) == 210
    assert estimate_lost_packets(0, batched) == 0
    assert estimate_lost_packets(3, NflogStats()) == 3  # nothing read yet: one each
    assert estimate_lost_packets(3, NflogStats(packets=5, datagrams=10)) == 3  # never fewer
