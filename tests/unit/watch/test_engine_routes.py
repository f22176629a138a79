"""The engine's routing: a detector that declares `accepts` sees only those routes, and the
declaration is true — fed every kind of event directly, no detector triggers on an event
outside its routes. Without `accepts`, a detector sees everything."""

from __future__ import annotations

import datetime
import struct
from collections.abc import Sequence

import dns.message
import dns.rcode

from gateway.alerts.record import Trigger
from gateway.events import Event
from gateway.policy.detection import Detection
from gateway.watch.detectors.base import (
    ComponentEvent,
    FlowEvent,
    LinkEvent,
    PacketEvent,
    SiteView,
    TableEvent,
    WatchEvent,
    route_of,
)
from gateway.watch.engine import Engine
from gateway.watch.registry import build_detectors
from tests.unit.watch.netkit import (
    ALICE,
    GW_LAN,
    GW_WAN,
    HUB1,
    HUB2,
    T0,
    WORKSTATION,
    arp,
    flow,
    lab_site,
    learned,
    packet,
    syn,
    tcp,
    udp,
)

STAMP = datetime.datetime(2025, 3, 1, 12, tzinfo=datetime.UTC)


def component(kind: str, fields: dict[str, object], ts: float) -> ComponentEvent:
    return ComponentEvent(ts=ts, event=Event(kind, "test", fields, STAMP))


def dns_query(src: str, dst: str, name: str, ts: float) -> PacketEvent:
    wire = dns.message.make_query(name, "A").to_wire()
    return packet(udp(src, dst, 40000, 53, wire), "dns", ts, hook=None)


def dns_failure(client: str, ts: float) -> PacketEvent:
    query = dns.message.make_query("nowhere.test", "A")
    answer = dns.message.make_response(query)
    answer.set_rcode(dns.rcode.NXDOMAIN)
    return packet(udp("198.19.0.53", client, 53, 40000, answer.to_wire()), "dns", ts, hook=None)


def ntp(
    src: str, dst: str, mode: int, ts: float, stratum: int = 2, refid: bytes = b"GPS\0"
) -> PacketEvent:
    header = struct.pack("!BBbbII4s", (4 << 3) | mode, stratum, 6, -20, 0, 0, refid) + bytes(32)
    return packet(udp(src, dst, 123, 123, header), "ntp", ts, hook=None)


def everything() -> list[WatchEvent]:
    """Events of every route, each something a detector could fire on."""
    out: list[WatchEvent] = []
    ts = T0 + 10
    for port in range(1, 41):  # a vertical scan, and a sweep of port 502
        out.append(syn(WORKSTATION, GW_WAN, port, ts))
        out.append(syn(WORKSTATION, f"198.18.10.{100 + port}", 502, ts))
    for i in range(15):  # SSH brute force, and a staff member outside a gate
        out.append(syn("198.19.7.7", GW_WAN, 22, ts + i, sport=41000 + i))
        out.append(syn(ALICE, HUB1, 22, ts + i, sport=42000 + i))
    out.append(syn(ALICE, HUB1, 80, ts))
    out.append(syn(HUB1, "198.19.9.9", 443, ts))  # egress
    out.append(syn(WORKSTATION, HUB2, 9100, ts))  # the hub agent port
    for kind, hub in (("new", HUB1), ("accept", HUB2)):
        out.append(packet(tcp(hub, GW_LAN, 40001, 8443), kind, ts, rule="hubs-to-appliance"))
        out.append(packet(tcp(WORKSTATION, hub, 40002, 9100), kind, ts, rule="x"))
        out.append(packet(tcp(hub, "198.19.9.9", 40003, 443), kind, ts, rule="x"))
    long_label = "q8z3x0v9w7k2m4n6b1c5d8f0g3h7j2l4p9r6s1t5"
    out.append(dns_query(HUB1, "198.19.0.99", f"{long_label}.{'a' * 60}.example", ts))
    out += [dns_failure(HUB1, ts + i * 0.1) for i in range(25)]
    out.append(ntp(HUB1, "198.19.0.123", 3, ts))
    out.append(ntp("198.19.0.123", GW_WAN, 4, ts, stratum=0, refid=b"DENY"))
    http = tcp(HUB1, GW_LAN, 40010, 443, "PA", b"GET / HTTP/1.1\r\n\r\n")
    out.append(packet(http, "tls", ts, hook=None))
    out.append(arp("02:00:00:00:00:99", "198.18.10.99", ts))
    out.append(arp("02:00:00:00:00:98", "198.18.10.99", ts + 1, op="reply"))
    for i in range(2100):  # a SYN flood (conntrack starts)
        out.append(flow(f"198.19.{i // 250}.{i % 250 + 1}", GW_WAN, 443, ts + i / 1000))
    out.append(flow(ALICE, HUB1, 22, ts))
    big = FlowEvent(ts=ts + 5, phase="end", proto="tcp", src=ALICE, dst=HUB1, sport=40000,
                    dport=22, orig_bytes=200 << 20, reply_bytes=1 << 20)  # fmt: skip
    out.append(big)
    out.append(TableEvent(ts, 990, 1000))
    out.append(LinkEvent(ts, "wg-support", False, "wireguard"))
    out.append(LinkEvent(ts + 120, "wg-support", False, "wireguard"))  # down past the grace
    out.append(
        component("vpn.tunnel_state", {"state": "stale", "interface": "wg-support"}, ts + 200)
    )
    out.append(component("ntp.kod", {"code": "RATE", "address": "198.19.0.123"}, ts))
    out.append(component("ntp.offset", {"offset": 2.0, "level": "high", "threshold": 1.0}, ts))
    out.append(component("policy.drift", {"revision": "3", "table_missing": True}, ts))
    out += [component("mes.login_failed", {"source_ip": HUB2}, ts + i) for i in range(12)]
    out += [component("mes.lockout", {"employee_number": str(i)}, ts + i) for i in range(4)]
    out.sort(key=lambda e: e.ts)
    return out


def run(detector_observe: Sequence[WatchEvent], detector: object, site: SiteView) -> set[str]:
    """The routes of the events on which `detector` triggered."""
    fired: set[str] = set()
    for event in detector_observe:
        if detector.observe(event, site):  # type: ignore[attr-defined]
            fired.add(route_of(event))
    if detector.tick(T0 + 3600):  # type: ignore[attr-defined]
        fired.add("tick")
    return fired


def test_every_detector_declares_its_routes_and_keeps_to_them() -> None:
    events = everything()
    site = lab_site()
    fired_anywhere: set[str] = set()
    for detector in build_detectors(Detection(), learned("protecting", started=T0 - 86400 * 30)):
        accepts = getattr(detector, "accepts", None)
        assert accepts is not None, f"{detector.name} declares no routes"
        fired = run(events, detector, site)
        assert fired - {"tick"} <= accepts, f"{detector.name} fired outside {sorted(accepts)}"
        fired_anywhere |= fired
    # the events are not a vacuous test: every route made some detector fire
    assert {route_of(e) for e in events} <= fired_anywhere


class Everything:
    """A detector without `accepts`: it sees every event."""

    name = "everything"

    def __init__(self) -> None:
        self.seen: list[WatchEvent] = []

    def observe(self, event: WatchEvent, site: SiteView) -> Sequence[Trigger]:
        self.seen.append(event)
        return ()

    def tick(self, ts: float) -> Sequence[Trigger]:
        return ()

    def state_size(self) -> int:
        return 0


class OnlyArp(Everything):
    name = "only-arp"
    accepts = frozenset({"arp"})


def test_the_engine_hands_each_detector_its_routes_in_order() -> None:
    events = everything()
    every, only_arp = Everything(), OnlyArp()
    engine = Engine([only_arp, every], lab_site(), lambda _t: None)
    for event in events:
        engine.observe(event)
    assert every.seen == events
    assert only_arp.seen == [e for e in events if route_of(e) == "arp"]
    drop = syn(WORKSTATION, GW_WAN, 22)
    assert [d.name for d in engine.detectors_for(drop)] == ["everything"]
    odd = PacketEvent(ts=T0, kind="arp", packet=drop.packet)  # a kind with no detector
    assert [d.name for d in engine.detectors_for(odd)] == ["everything"]
