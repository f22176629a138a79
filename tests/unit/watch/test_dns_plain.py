"""The DNS detector's fast question reader agrees with dnspython wherever it answers, and
leaves everything unusual (escapes, compression, other opcodes, junk) to dnspython."""

from __future__ import annotations

import struct

import dns.exception
import dns.message
import dns.name
import dns.opcode
import dns.rdatatype
from hypothesis import given
from hypothesis import strategies as st

from gateway.watch.detectors.dns import DnsDetector, plain_question


def by_dnspython(wire: bytes) -> tuple[str, tuple[bytes, ...], str] | None:
    try:
        message = dns.message.from_wire(wire, question_only=True, ignore_trailing=True)
    except (dns.exception.DNSException, ValueError, IndexError, UnicodeError):
        return None
    if not message.question:
        return None
    rrset = message.question[0]
    labels = tuple(x.lower() for x in rrset.name.labels if x)
    text = rrset.name.to_text(omit_final_dot=True)[:300]
    return text, labels, dns.rdatatype.to_text(rrset.rdtype)


def query(name: str, qtype: str = "A") -> bytes:
    return dns.message.make_query(name, qtype).to_wire()


def test_plain_names_read_as_dnspython_reads_them() -> None:
    for name, qtype in [
        ("ntp.upstream.test", "A"),
        ("Account.UPSTREAM.test", "AAAA"),
        ("_ldap._tcp.dc.example", "SRV"),
        ("a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61, "TXT"),
        ("x-1.y_2.z", "TYPE65280"),
    ]:
        wire = query(name, qtype)
        assert plain_question(wire) is not None
        assert plain_question(wire) == by_dnspython(wire)


def test_what_is_left_to_dnspython() -> None:
    escaped = query("we.ird\\ name.example")  # a space in a label: dnspython escapes it
    root = query(".")
    update = bytearray(query("zone.example"))
    update[2] |= dns.opcode.UPDATE << 3
    two = bytearray(query("one.example"))
    two[5] = 2  # two questions
    pointer = query("x.example")[:12] + b"\xc0\x0c" + struct.pack("!HH", 1, 1)
    for wire in (escaped, root, bytes(update), bytes(two), pointer, b"", b"\0" * 12):
        assert plain_question(wire) is None


label = st.text(alphabet="abcXYZ09-_.\\ \x00\xff", min_size=1, max_size=70)


@given(st.lists(label, min_size=1, max_size=6), st.binary(max_size=6))
def test_fast_reader_never_disagrees(labels: list[str], tail: bytes) -> None:
    try:
        name = dns.name.Name([x.encode("latin-1") for x in labels])
        wire = dns.message.make_query(name, "A").to_wire()
    except (dns.exception.DNSException, ValueError):
        return
    for variant in (wire, wire + tail, wire[: len(wire) - len(tail)]):
        fast = plain_question(variant)
        if fast is not None:
            assert fast == by_dnspython(variant)


def test_the_detector_reads_questions_either_way() -> None:
    detector = DnsDetector()
    assert detector._question(query("plain.example")) == by_dnspython(query("plain.example"))
    odd = query("we.ird\\ name.example")
    assert detector._question(odd) == by_dnspython(odd) is not None
