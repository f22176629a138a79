"""ICMP echo probes: request bytes and reply parsing, checked against scapy."""

from __future__ import annotations

from scapy.layers.inet import ICMP, IP, TCP  # type: ignore[import-untyped]

from gateway.lab.probe import icmp_answer, icmp_echo


def test_echo_request_has_a_valid_checksum() -> None:
    raw = icmp_echo(0x1234, 1, b"token")
    parsed = ICMP(raw)
    assert (parsed.type, parsed.id, parsed.seq, bytes(parsed.payload)) == (8, 0x1234, 1, b"token")
    recomputed = ICMP(raw)
    del recomputed.chksum  # scapy recomputes a deleted checksum when building
    assert parsed.chksum == ICMP(bytes(recomputed)).chksum


def test_matching_echo_reply_is_accept() -> None:
    reply = bytes(IP(src="198.19.0.123", dst="198.18.20.10") / ICMP(type=0, id=7) / b"tok")
    assert icmp_answer(reply, "198.19.0.123", 7, b"tok") == "accept"
    assert icmp_answer(reply, "198.19.0.123", 8, b"tok") is None  # someone else's ping
    assert icmp_answer(reply, "198.19.0.1", 7, b"tok") is None


def test_unreachable_quoting_our_echo_is_refused() -> None:
    quoted = IP(src="198.18.20.10", dst="198.19.0.123") / ICMP(type=8, id=7) / b"tok"
    error = bytes(IP(src="198.18.20.1", dst="198.18.20.10") / ICMP(type=3, code=13) / quoted)
    assert icmp_answer(error, "198.19.0.123", 7, b"tok") == "refused"


def test_garbage_is_ignored() -> None:
    assert icmp_answer(b"", "1.2.3.4", 1, b"") is None
    assert icmp_answer(bytes(IP() / TCP()), "127.0.0.1", 1, b"") is None
