"""Flood child of the watcher benchmark: `python -m bench.watchflood SOURCES`.

Builds what plantgated's watcher holds for the lab policy (all detectors from the registry,
the site view, the baseline while learning, the alert aggregator the triggers go to), then
sends it one logged packet from each of SOURCES distinct source addresses, as raw NFLOG
datagrams through the real decoder, at a simulated 50,000 a second (ticking every
simulated second, as the engine does). The packets are in memory only, so the addresses may
be anything: 10.0.0.0 upward. Each source sends one of: a dropped SYN to the appliance, a
dropped SYN to a hub's agent port, a sampled new connection, a DNS query with a long random
label to an outside resolver, an NTP request, a TLS port's first packet, an ARP claim from
its own MAC.

Prints one JSON object: events, triggers, open alerts, each detector's state size, the
site view's cache sizes, and VmRSS/VmHWM before and after. The benchmark runs it under
bench/peakrss.py, which reports its peak RSS from outside.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from bench import nflogmix as mix
from gateway.alerts.aggregate import Aggregator
from gateway.alerts.record import Observer
from gateway.policy.load import load_file
from gateway.watch.baseline import Baseline, Learned
from gateway.watch.engine import Engine
from gateway.watch.registry import build_detectors
from gateway.watch.site import PolicySite
from gateway.watch.sources.nflog import parse_datagram
from gateway.watch.sources.packets import Interfaces, to_event

POLICY = Path(__file__).resolve().parents[1] / "policies" / "lab.yaml"
RATE = 50_000.0
FIRST = 0x0A000000  # 10.0.0.0
_ALPHABET = b"abcdefghijklmnopqrstuvwxyz0123456789"


def memory() -> dict[str, int]:
    """VmRSS and VmHWM of this process, KiB."""
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


def _label(i: int) -> str:
    chars = []
    for _ in range(40):
        i = (i * 1103515245 + 12345) & 0x7FFFFFFF
        chars.append(_ALPHABET[i % len(_ALPHABET)])
    return bytes(chars).decode()


def flood(count: int) -> Iterator[mix.Logged]:
    """One logged packet from each of `count` distinct sources."""
    hub = mix.HUBS[0]
    for i in range(count):
        src = socket.inet_ntoa((FIRST + i).to_bytes(4, "big"))
        kind = i % 10
        port = 40000 + i % 20000
        if kind < 4:
            pkt = mix.tcp(src, mix.GW_WAN, port, 1 + i % 1024)
            yield mix.Logged(1, "pg drop input: ", "input", pkt, 128, "wan0", None, mix.mac_of(src))
        elif kind == 4:
            pkt = mix.tcp(src, hub, port, 9100)
            yield mix.Logged(1, "pg drop forward: ", "forward", pkt, 128, "wan0", "lan0")
        elif kind == 5:
            pkt = mix.tcp(src, mix.GW_WAN, port, 443)
            yield mix.Logged(2, "pg new manage-page: ", "input", pkt, 128, "wan0")
        elif kind == 6:
            query = mix.dns_query(f"{_label(i)}.example", i & 0xFFFF)
            pkt = mix.udp(src, mix.ROGUE_RESOLVER, port, 53, query)
            yield mix.Logged(2, "pg dns: ", "prerouting", pkt, 512, "wan0")
        elif kind == 7:
            pkt = mix.udp(src, mix.GW_WAN, 123, 123, mix.ntp(3, 0, b"\0" * 4))
            yield mix.Logged(2, "pg ntp: ", "prerouting", pkt, 512, "wan0")
        elif kind == 8:
            pkt = mix.tcp(src, mix.GW_WAN, port, 443, "PA", b"GET / HTTP/1.1\r\n\r\n")
            yield mix.Logged(2, "pg tls: ", "input", pkt, 128, "wan0")
        else:
            mac = b"\x02\x01" + (FIRST + i).to_bytes(4, "big")
            pkt = mix.arp(mac, src, mix.GW_LAN)
            yield mix.Logged(2, "pg arp: ", "input", pkt, 64, "lan0", None, mac, arp=True)


def run(count: int) -> dict[str, object]:
    before = memory()
    policy = load_file(POLICY).policy
    learned = Learned(Baseline(started=mix.T0), "learning", policy.detection.learning_s)
    aggregator = Aggregator(Observer("bench", "gw", "0"))
    counts = {"triggers": 0, "alerts": 0}

    def submit(trigger: object) -> None:
        counts["triggers"] += 1
        counts["alerts"] += len(aggregator.observe(trigger))  # type: ignore[arg-type]

    engine = Engine(
        build_detectors(policy.detection, learned),
        PolicySite(policy, [mix.GW_LAN, mix.GW_WAN]),
        submit,
        queue_size=1 << 20,
    )
    names = Interfaces(lambda index: mix.NAMES[index] if index in mix.NAMES else _missing(index))
    ready = memory()
    started = time.perf_counter()
    events = 0
    next_tick = mix.T0 + 1.0
    for datagram in mix.datagrams(flood(count), RATE):
        ts = mix.T0
        for packet in parse_datagram(datagram).packets:
            event = to_event(packet, names.name, 0.0)
            if event is not None:
                engine.offer("nflog", event)
                ts = event.ts
                events += 1
        engine.process(1 << 20)
        if ts >= next_tick:
            engine.tick(ts)
            counts["alerts"] += len(aggregator.due())
            next_tick = ts + 1.0
    seconds = time.perf_counter() - started
    site = engine.site
    assert isinstance(site, PolicySite)
    return {
        "sources": count,
        "events": events,
        "seconds": round(seconds, 2),
        "triggers": counts["triggers"],
        "alerts_emitted": counts["alerts"],
        "alerts_open": len(aggregator),
        "state": engine.state_size(),
        "site_cache": len(site._zone_cache) + len(site._role_cache),
        "baseline": {
            "pairs": len(learned.baseline.pairs),
            "assets": len(learned.baseline.assets),
            "overflow": learned.baseline.overflow,
        },
        "kib_start": before,
        "kib_ready": ready,
        "kib_after": memory(),
    }


def _missing(index: int) -> str:
    raise OSError(f"no interface {index}")


def main(argv: list[str]) -> int:
    count = int(argv[1]) if len(argv) > 1 else 1_000_000
    if not 0 <= count <= 10_000_000:
        print("SOURCES must be 0..10,000,000", file=sys.stderr)
        return 2
    json.dump(run(count), sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
