"""Packet sender for the watcher benchmark, run inside the sending namespace (a child process).

    python -m bench.watchsend burst  --dst A --rate R --seconds S [--sources N --ports N]
    python -m bench.watchsend probes --dst A --count N --rate R --first-source A

Both write one JSON object on stdout. TCP SYNs go out through a raw socket (the IP header
is ours, so the source address can be any of the benchmarking range: the appliance routes
the whole range back to this namespace, and nothing answers a dropped SYN).

* `burst`: `rate` packets a second for `seconds`, paced in 1 ms slices, cycling through a
  pool of prebuilt SYNs from `sources` addresses to `ports` ports (a scan-like flood that
  the detectors must track). Answers how many were sent and over how long; a rate the
  sender cannot reach shows as a lower achieved rate, not as loss.
* `probes`: `count` SYNs, each from its own source address (so that each opens a new
  alert), `rate` a second; answers each probe's source and the wall-clock time just before
  it was handed to the kernel (`time.time()`, the clock every namespace shares).

Standard library only; bounded by count and time.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import socket
import struct
import sys
import time

SPORT = 40000
PROBE_PORT = 9999


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def syn(src: str, dst: str, sport: int, dport: int) -> bytes:
    """An IPv4 TCP SYN with a valid TCP checksum (conntrack marks a bad one invalid, and
    the ruleset drops invalid packets before it logs); the kernel fills in the IP checksum
    (IP_HDRINCL)."""
    header = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, 0x02, 64240, 0, 0)
    pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, 6, 20)
    tcp = header[:16] + struct.pack("!H", _checksum(pseudo + header)) + header[18:]
    ip = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(tcp),
        0,
        0x4000,
        64,
        socket.IPPROTO_TCP,
        0,
        socket.inet_aton(src),
        socket.inet_aton(dst),
    )
    return ip + tcp


def _raw() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    return sock


def burst(
    dst: str, rate: float, seconds: float, sources: int, ports: int, first: str
) -> dict[str, object]:
    base = int(ipaddress.IPv4Address(first))
    pool = [
        syn(str(ipaddress.IPv4Address(base + s)), dst, SPORT + s % 20000, 1 + p)
        for s in range(sources)
        for p in range(ports)
    ]
    sock = _raw()
    target = (dst, 0)
    total = int(rate * seconds)
    sent = errors = 0
    start = time.perf_counter()
    index = 0
    while sent + errors < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        while sent + errors < due:
            try:
                sock.sendto(pool[index], target)
                sent += 1
            except OSError:
                errors += 1  # a full send buffer: not sent, not the watcher's loss
            index = (index + 1) % len(pool)
        ahead = (sent + errors) / rate - (time.perf_counter() - start)
        if ahead > 0:
            time.sleep(min(ahead, 0.001))
    took = time.perf_counter() - start
    return {"sent": sent, "errors": errors, "seconds": took, "rate": sent / took}


def probes(dst: str, count: int, rate: float, first: str) -> dict[str, object]:
    base = int(ipaddress.IPv4Address(first))
    sock = _raw()
    out = []
    start = time.perf_counter()
    for i in range(count):
        src = str(ipaddress.IPv4Address(base + i))
        packet = syn(src, dst, SPORT, PROBE_PORT)
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        sent_at = time.time()
        sock.sendto(packet, (dst, 0))
        out.append([src, sent_at])
    return {"probes": out, "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.watchsend")
    parser.add_argument("mode", choices=("burst", "probes"))
    parser.add_argument("--dst", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, default=1.0)
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--sources", type=int, default=64)
    parser.add_argument("--ports", type=int, default=256)
    parser.add_argument("--first-source", default="198.18.128.1")
    args = parser.parse_args(argv)
    if (
        not 0 < args.rate <= 2_000_000
        or not 0 < args.seconds <= 30
        or not 0 < args.count <= 100_000
    ):
        parser.error("rate, seconds or count out of bounds")
    if args.mode == "burst":
        result = burst(
            args.dst, args.rate, args.seconds, args.sources, args.ports, args.first_source
        )
    else:
        result = probes(args.dst, args.count, args.rate, args.first_source)
    json.dump(result, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
