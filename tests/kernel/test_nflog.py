"""NflogReader against the real kernel: packets dropped by an nft ``log group`` rule.

Each test builds two throwaway network namespaces joined by a veth pair (198.18.250.1/30 in
the logging namespace, .2/30 in the peer), loads ``table inet t`` in the first, sends real
packets from the peer and reads them back through NFLOG. The root namespace's network is
never touched, and the namespaces are deleted in ``finally`` even when a test fails.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from gateway.watch.sources.nflog import NflogError, NflogPacket, NflogReader

pytestmark = [
    pytest.mark.kernel,
    pytest.mark.skipif(
        not hasattr(os, "geteuid") or os.geteuid() != 0,
        reason="NFLOG kernel tests need root (network namespaces, nft)",
    ),
    pytest.mark.skipif(
        shutil.which("ip") is None or shutil.which("nft") is None,
        reason="NFLOG kernel tests need iproute2 (ip) and nftables (nft)",
    ),
]

LOG_ADDR, PEER_ADDR = "198.18.250.1", "198.18.250.2"
GROUP = 7
PREFIX = "pgtest drop: "
RULESET = f"""
table inet t {{
    chain input {{
        type filter hook input priority 0; policy accept;
        tcp dport 9 log group {GROUP} prefix "{PREFIX}" drop
        udp dport 9 log group {GROUP} prefix "{PREFIX}" drop
    }}
}}
"""
NF_INET_LOCAL_IN = 1
REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Pair:
    ns: str  # the namespace with the nft table and the reader
    peer: str  # the namespace sending packets
    ifindex: int  # index of the veth in `ns`


def run(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({done.returncode}): {done.stderr}")
    return done.stdout


def in_ns(ns: str, *args: str, stdin: str | None = None) -> str:
    return run("ip", "netns", "exec", ns, *args, stdin=stdin)


@pytest.fixture
def pair() -> Iterator[Pair]:
    suffix = secrets.token_hex(3)
    ns, peer = f"tnflog{suffix}", f"tnflogp{suffix}"
    created: list[str] = []
    try:
        for name in (ns, peer):
            run("ip", "netns", "add", name)
            created.append(name)
        run("ip", "-n", ns, "link", "add", "veth0", "type", "veth", "peer", "veth1", "netns", peer)
        run("ip", "-n", ns, "addr", "add", f"{LOG_ADDR}/30", "dev", "veth0")
        run("ip", "-n", peer, "addr", "add", f"{PEER_ADDR}/30", "dev", "veth1")
        for name, dev in ((ns, "veth0"), (peer, "veth1")):
            run("ip", "-n", name, "link", "set", dev, "up")
            run("ip", "-n", name, "link", "set", "lo", "up")
        in_ns(ns, "nft", "-f", "-", stdin=RULESET)
        [link] = json.loads(run("ip", "-n", ns, "-j", "link", "show", "dev", "veth0"))
        yield Pair(ns=ns, peer=peer, ifindex=int(link["ifindex"]))
    finally:
        for name in created:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


def send_from_peer(pair: Pair, code: str) -> str:
    """Run a short Python snippet in the peer namespace (it has `socket` and ADDR)."""
    prelude = f"import socket\nADDR = {LOG_ADDR!r}\n"
    return in_ns(pair.peer, sys.executable, "-c", prelude + code)


SEND_SYN = """
s = socket.socket()
s.settimeout(0.3)
try:
    s.connect((ADDR, 9))
except OSError:
    pass
"""


def read_until(reader: NflogReader, want: int, deadline: float = 5.0) -> list[NflogPacket]:
    packets: list[NflogPacket] = []
    end = time.monotonic() + deadline
    while len(packets) < want and (left := end - time.monotonic()) > 0:
        packets.extend(reader.read(timeout=left))
    return packets


def test_dropped_syn_is_read_with_prefix_addresses_and_indev(pair: Pair) -> None:
    with NflogReader(GROUP, netns=pair.ns) as reader:
        send_from_peer(pair, SEND_SYN)
        packets = read_until(reader, 1)
        assert packets, "no NFLOG packet for the dropped SYN"
        packet = packets[0]
        assert packet.group == GROUP and packet.prefix == PREFIX
        assert (packet.indev, packet.outdev) == (pair.ifindex, None)
        assert (packet.hook, packet.hw_protocol) == (NF_INET_LOCAL_IN, 0x0800)
        d = packet.decoded
        assert d is not None and not d.truncated
        assert (d.src, d.dst, d.proto, d.dport, d.tcp_flags) == (
            PEER_ADDR,
            LOG_ADDR,
            "tcp",
            9,
            "S",
        )
        assert reader.stats.packets >= 1 and reader.stats.bytes >= len(packet.payload)
        assert reader.stats.overruns == 0 and reader.stats.malformed == 0


def test_snaplen_limits_the_copy(pair: Pair) -> None:
    with NflogReader(GROUP, netns=pair.ns, snaplen=28) as reader:
        send_from_peer(
            pair, "socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b'x' * 500, (ADDR, 9))"
        )
        [packet] = read_until(reader, 1)
        assert len(packet.payload) == 28
        d = packet.decoded
        assert d is not None and (d.proto, d.dport, d.length, d.truncated) == (
            "udp",
            9,
            528,
            False,
        )


SEND_TIMED_UDP = """
import time
print(time.monotonic(), flush=True)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(COUNT):
    s.sendto(b"x", (ADDR, 9))
"""


def test_kernel_batches_by_default(pair: Pair) -> None:
    """Default kernel settings: packets are held up to 1 s and come several per datagram."""
    with NflogReader(GROUP, netns=pair.ns) as reader:
        sent_at = float(send_from_peer(pair, SEND_TIMED_UDP.replace("COUNT", "5")))
        packets = read_until(reader, 5)
        assert len(packets) == 5
        assert time.monotonic() - sent_at >= 0.5
        assert reader.stats.datagrams < reader.stats.packets


def test_qthreshold_one_delivers_at_once(pair: Pair) -> None:
    with NflogReader(GROUP, netns=pair.ns, qthreshold=1) as reader:
        sent_at = float(send_from_peer(pair, SEND_TIMED_UDP.replace("COUNT", "1")))
        assert read_until(reader, 1)
        assert time.monotonic() - sent_at < 0.5


def test_read_times_out_empty(pair: Pair) -> None:
    with NflogReader(GROUP, netns=pair.ns) as reader:
        started = time.monotonic()
        assert reader.read(timeout=0.2) == []
        assert 0.15 <= time.monotonic() - started < 2
        assert reader.read(timeout=0) == []


def test_second_reader_on_same_group_is_refused(pair: Pair) -> None:
    """One reader per group per namespace: the kernel answers EPERM to a second socket."""
    with NflogReader(GROUP, netns=pair.ns) as first:
        with pytest.raises(NflogError) as caught:
            NflogReader(GROUP, netns=pair.ns)
        assert caught.value.errno == errno.EPERM
        assert f"group {GROUP}" in str(caught.value)
        assert "already has a reader" in str(caught.value)
        send_from_peer(pair, SEND_SYN)
        assert read_until(first, 1), "the first reader must keep working"
    with NflogReader(GROUP, netns=pair.ns) as again:  # released on close
        assert not again.closed


def test_same_group_in_another_namespace_is_independent(pair: Pair) -> None:
    with NflogReader(GROUP, netns=pair.ns), NflogReader(GROUP, netns=pair.peer) as other:
        assert other.read(timeout=0) == []


def test_default_open_leaves_the_namespace_logger_alone(pair: Pair) -> None:
    def ipv4_logger() -> str:
        lines = in_ns(pair.ns, "cat", "/proc/net/netfilter/nf_log").splitlines()
        return next(line for line in lines if line.split()[0] == "2").split()[1]

    before = ipv4_logger()
    with NflogReader(GROUP, netns=pair.ns):
        assert ipv4_logger() == before
    with NflogReader(GROUP, netns=pair.ns, bind_pf=True) as reader:  # the ACKs are all OK
        assert ipv4_logger() == "nfnetlink_log"
        send_from_peer(pair, SEND_SYN)
        assert read_until(reader, 1)


def test_overrun_is_counted_not_silent(pair: Pair) -> None:
    sent = 3000
    with NflogReader(GROUP, netns=pair.ns, rcvbuf=4096) as reader:
        send_from_peer(
            pair,
            f"s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
            f"for _ in range({sent}):\n    s.sendto(b'x' * 100, (ADDR, 9))\n",
        )
        got: list[NflogPacket] = []
        while batch := reader.read(timeout=0.5):
            got.extend(batch)
        assert reader.stats.overruns >= 1
        assert len(got) < sent and reader.stats.packets == len(got)


def test_closed_reader_refuses_use(pair: Pair) -> None:
    reader = NflogReader(GROUP, netns=pair.ns)
    reader.close()
    reader.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        reader.read(0)
    with pytest.raises(ValueError, match="closed"):
        reader.fileno()


def test_reader_without_netns_uses_the_current_namespace(pair: Pair) -> None:
    """Run inside the namespace (so the root namespace's groups are never touched)."""
    code = (
        "from gateway.watch.sources.nflog import NflogReader\n"
        f"with NflogReader({GROUP}, qthreshold=1) as reader:\n"
        "    print('ready', flush=True)\n"
        "    packets = []\n"
        "    while not packets:\n"
        "        packets = reader.read(timeout=5)\n"
        "    print(packets[0].prefix, packets[0].decoded.dport)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with subprocess.Popen(
        ["ip", "netns", "exec", pair.ns, sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as child:
        try:
            assert child.stdout is not None
            assert child.stdout.readline().strip() == "ready"
            send_from_peer(pair, SEND_SYN)
            out, _ = child.communicate(timeout=10)
        finally:
            child.kill()
    assert out == f"{PREFIX} 9\n"


def test_missing_namespace_is_a_clear_error() -> None:
    with pytest.raises(FileNotFoundError):
        NflogReader(GROUP, netns=f"tnflog-absent-{secrets.token_hex(3)}")
