"""`wg show IFACE dump` parsing, on output recorded from a real lab run (no root).

`fixtures/wg/gw-wg-support.dump` is the appliance's side (wireguard-go in gw) and
`upstream-wg-conc.dump` the lab concentrator's, both taken right after the first handshake.
The appliance's private-key column was replaced by a throwaway key made for the fixture; the
concentrator's is the lab-only key published with the lab policy.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.vpn.wg import PeerConfig, endpoint_text, parse_dump, set_argv

FIXTURES = Path(__file__).parent / "fixtures" / "wg"
CONCENTRATOR = "kN0jCgWbDUSBsBs6o2aQHsISjENoOJYOM+uSc8NLTFI="
APPLIANCE = "U6rbceJCOXcNNPTihMTVY/R8JEyv00Zy/0+RfBYID1o="


def dump(name: str) -> str:
    return (FIXTURES / name).read_text()


def test_appliance_side_of_a_live_tunnel() -> None:
    interface, peers = parse_dump(dump("gw-wg-support.dump"))
    assert interface.public_key == APPLIANCE
    assert interface.listen_port == 54054
    assert interface.fwmark is None
    (peer,) = peers
    assert peer.public_key == CONCENTRATOR
    assert not peer.has_preshared_key
    assert peer.endpoint == "198.19.0.51:51820"
    assert peer.allowed_ips == ("198.18.200.0/24", "198.18.201.0/24")
    assert peer.latest_handshake == 1796180028
    assert (peer.rx_bytes, peer.tx_bytes) == (284, 180)
    assert peer.keepalive == 25


def test_concentrator_side_sees_the_appliance_roaming_from_its_wan_address() -> None:
    interface, (peer,) = parse_dump(dump("upstream-wg-conc.dump"))
    assert interface.public_key == CONCENTRATOR
    assert interface.listen_port == 51820
    assert peer.public_key == APPLIANCE
    assert peer.endpoint == "198.18.20.1:54054"
    assert peer.allowed_ips == ("198.18.200.2/32", "198.18.10.0/24")
    assert peer.keepalive is None  # "off"
    assert (peer.rx_bytes, peer.tx_bytes) == (180, 284)  # the mirror of the appliance's


def test_private_and_preshared_keys_never_leave_the_parser() -> None:
    text = dump("gw-wg-support.dump")
    private = text.split("\t", 1)[0]
    psk = "7nL1o4wzvQ1gxbT1v7sO0nAqB1pUKzXFU9rYjJcX0Gk="
    text = text.replace("\t(none)\t", f"\t{psk}\t", 1)
    interface, peers = parse_dump(text)
    assert peers[0].has_preshared_key
    for thing in (interface, *peers):
        assert private not in repr(thing)
        assert psk not in repr(thing)


def test_a_peer_that_never_shook_hands() -> None:
    """A fresh interface: no endpoint learned, no allowed IPs yet, handshake 0 = never."""
    text = f"(none)\t(none)\t0\toff\n{CONCENTRATOR}\t(none)\t(none)\t(none)\t0\t0\t0\toff\n"
    interface, (peer,) = parse_dump(text)
    assert interface.public_key is None
    assert interface.listen_port == 0
    assert peer.endpoint is None
    assert peer.allowed_ips == ()
    assert peer.latest_handshake == 0
    assert peer.keepalive is None


def test_an_interface_without_peers_and_with_a_fwmark() -> None:
    interface, peers = parse_dump(f"(none)\t{APPLIANCE}\t51820\t0xca6c\n")
    assert peers == ()
    assert interface.fwmark == "0xca6c"


def test_ipv6_endpoint_keeps_its_brackets() -> None:
    line = f"{CONCENTRATOR}\t(none)\t[2001:db8::51]:51820\t::/0\t1796180028\t1\t2\t25"
    _, (peer,) = parse_dump(f"(none)\t{APPLIANCE}\t0\toff\n{line}\n")
    assert peer.endpoint == "[2001:db8::51]:51820"
    assert endpoint_text("2001:db8::51", 51820) == "[2001:db8::51]:51820"
    assert endpoint_text("198.19.0.51", 51820) == "198.19.0.51:51820"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty wg dump"),
        ("a\tb\tc\n", "line 1: interface line has 3 fields, expected 4"),
        ("k\tp\tnot-a-port\toff\n", "line 1: listen-port 'not-a-port' is not a whole number"),
        ("k\tp\t0\toff\nonly\tthree\tfields\n", "line 2: peer line has 3 fields, expected 8"),
        (
            f"k\tp\t0\toff\n{CONCENTRATOR}\t(none)\t(none)\t(none)\tsoon\t0\t0\toff\n",
            "line 2: latest-handshake 'soon' is not a whole number",
        ),
    ],
)
def test_malformed_dumps_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_dump(text)


def test_wg_set_passes_the_key_by_file_and_replaces_allowed_ips() -> None:
    peer = PeerConfig(CONCENTRATOR, "198.19.0.51:51820", ("198.18.200.0/24", "198.18.201.0/24"), 25)
    argv = set_argv("wg", "wg-support", Path("/state/vpn/private.key"), peer, ["OLDKEY="])
    assert argv == [
        "wg",
        "set",
        "wg-support",
        "private-key",
        "/state/vpn/private.key",
        "peer",
        "OLDKEY=",
        "remove",
        "peer",
        CONCENTRATOR,
        "endpoint",
        "198.19.0.51:51820",
        "allowed-ips",
        "198.18.200.0/24,198.18.201.0/24",
        "persistent-keepalive",
        "25",
    ]


def test_wg_set_without_an_endpoint_yet_and_keepalive_off() -> None:
    peer = PeerConfig(CONCENTRATOR, None, ("198.18.200.0/24",), 0)
    argv = set_argv("wg", "wg-support", Path("/k"), peer)
    assert "endpoint" not in argv
    assert argv[-2:] == ["persistent-keepalive", "off"]
