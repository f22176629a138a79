"""The support gate against a real kernel, driven through `plantgate gate` as people use it.

Three throwaway namespaces: `gw` (the appliance: the lab policy applied, `lan0` and a
stand-in `wg-support` veth), `staff` (the concentrator's side: 198.18.200.1 and the staff
addresses alice .5, bob .6, mallory .66) and `hub` (198.18.10.11 and .12 behind `lan0`).
No plantgated runs anywhere: the kernel alone must enforce the gate, its expiry included.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyroute2.netlink import NETLINK_NETFILTER

from gateway.lab import netns
from gateway.lab.probe import Probe, ProbeResult, run_probes
from gateway.vpn.connections import Directory, enable_accounting, watch_support_connections
from tests.kernel.conftest import new_prefix
from tests.kernel.policy_lab import LAB_POLICY, plantgate, run_in, set_elements

GW_LAN, GW_TUNNEL, CONCENTRATOR = "198.18.10.1", "198.18.200.2", "198.18.200.1"
ALICE, BOB, MALLORY = "198.18.201.5", "198.18.201.6", "198.18.201.66"
HUB1, HUB2 = "198.18.10.11", "198.18.10.12"
HOSTS = ("gw", "staff", "hub")


@dataclass(frozen=True)
class Site:
    prefix: str

    def ns(self, host: str) -> str:
        return f"{self.prefix}-{host}"


def build(prefix: str) -> Site:
    site = Site(prefix)
    gw, staff, hub = site.ns("gw"), site.ns("staff"), site.ns("hub")
    for host in HOSTS:
        netns.create_namespace(site.ns(host))
    with netns.NamespaceNet(gw) as net:
        net.set_up("lo")
        net.add_veth("lan0", "eth0", hub)
        net.add_address("lan0", f"{GW_LAN}/24")
        net.set_up("lan0")
        net.add_veth("wg-support", "tun0", staff)
        net.add_address("wg-support", f"{GW_TUNNEL}/24")
        net.set_up("wg-support")
        net.add_route("198.18.201.0/24", CONCENTRATOR)
    with netns.NamespaceNet(staff) as net:
        net.set_up("lo")
        for address in (CONCENTRATOR, ALICE, BOB, MALLORY):
            net.add_address("tun0", f"{address}/24")
        net.set_up("tun0")
        net.add_route("default", GW_TUNNEL)
    with netns.NamespaceNet(hub) as net:
        net.set_up("lo")
        net.add_address("eth0", f"{HUB1}/24")
        net.add_address("eth0", f"{HUB2}/24")
        net.set_up("eth0")
        net.add_route("default", GW_LAN)
    netns.set_sysctls(gw, (("net.ipv4.ip_forward", "1"),))
    return site


@pytest.fixture(scope="module")
def site() -> Iterator[Site]:
    prefix = new_prefix()
    try:
        yield build(prefix)
    finally:
        for host in HOSTS:
            netns.delete_namespace(Site(prefix).ns(host))


class Gate:
    """`plantgate` in gw with one state directory; the lab policy applied there."""

    def __init__(self, site: Site, state: Path) -> None:
        self.site, self.gw, self.state = site, site.ns("gw"), state
        applied = self.cli("policy", "apply", str(LAB_POLICY), "--no-resolve")
        assert applied.returncode == 0, applied.stderr

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return plantgate(self.gw, *args, "--state-dir", str(self.state))

    def ok(self, *args: str) -> dict[str, Any]:
        done = self.cli("gate", *args, "--json")
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def opened(self, staff: str, *targets: str, window: str = "10m") -> dict[str, Any]:
        to = [arg for target in targets for arg in ("--to", target)]
        made = self.ok("request", staff, *to, "--for", window, "--reason", "test", "--as", "carol")
        self.ok("approve", str(made["id"]), "--as", "dave")
        return self.ok("open", str(made["id"]), "--as", "erin")


@pytest.fixture
def gate(site: Site, tmp_path: Path) -> Iterator[Gate]:
    try:
        yield Gate(site, tmp_path / "state")
    finally:
        gw = site.ns("gw")
        run_in(gw, "nft", "flush", "set", "inet", "plantgate", "gate_support_v4", check=False)
        netns.in_netns(gw, _flush_conntrack)


def _flush_conntrack() -> None:
    from pyroute2 import Conntrack

    conntrack = Conntrack()
    try:
        conntrack.flush()
    finally:
        conntrack.close()


def _staff_flows(site: Site, staff: str) -> list[Any]:
    def dump() -> list[Any]:
        from pyroute2 import Conntrack
        from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

        conntrack = Conntrack()
        try:
            return list(conntrack.dump_entries(tuple_orig=NFCTAttrTuple(saddr=staff)))
        finally:
            conntrack.close()

    return netns.in_netns(site.ns("gw"), dump)


def probe(src_addr: str, host: str, addr: str, port: int, expect: str, label: str) -> Probe:
    return Probe("staff", host, addr, "tcp", port, expect, label, src_addr)  # type: ignore[arg-type]


def mismatches(results: list[ProbeResult]) -> list[str]:
    return [
        f"{r.probe.label}: {r.probe.src_addr} -> {r.probe.addr}:{r.probe.port} expected "
        f"{r.probe.expect}, got {r.verdict} ({r.detail})"
        for r in results
        if not r.matched
    ]


class Session:
    """A TCP session staff -> target through the gate, with the server end kept in hand."""

    def __init__(self, site: Site, staff: str, host: str, addr: str, port: int = 22) -> None:
        self.listener = netns.socket_in_netns(site.ns(host))
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((addr, port))
        self.listener.listen()
        self.client = netns.socket_in_netns(site.ns("staff"))
        self.client.bind((staff, 0))
        self.client.settimeout(2)
        self.client.connect((addr, port))
        self.server, _ = self.listener.accept()
        self.server.settimeout(2)

    def exchange(self) -> None:
        """Data both ways, or an exception."""
        self.client.sendall(b"ping")
        assert self.server.recv(16) == b"ping"
        self.server.sendall(b"pong")
        assert self.client.recv(16) == b"pong"

    def dead_from(self, end: str) -> bool:
        """After sending from `end`, does that end learn the session is over?"""
        sock = self.client if end == "client" else self.server
        try:
            sock.sendall(b"are you there")
            time.sleep(0.3)
            sock.sendall(b"hello?")
            return sock.recv(16) == b""
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        for sock in (self.client, self.server, self.listener):
            sock.close()


def test_an_opened_gate_lets_the_named_staff_reach_the_named_port_and_nothing_else(
    site: Site, gate: Gate
) -> None:
    closed = [probe(ALICE, "hub", HUB1, 22, "drop", "before the gate opens")]
    assert mismatches(run_probes(site.prefix, closed, timeout=0.7)) == []

    opened = gate.opened("alice", f"{HUB1}:ssh")
    assert opened["status"] == "open"
    element = set_elements(site.ns("gw"), "gate_support_v4")[0]["elem"]
    assert element["val"]["concat"] == [ALICE, HUB1, "tcp", 22]
    assert 590 <= element["expires"] <= 600

    probes = [
        probe(ALICE, "hub", HUB1, 22, "accept", "the granted flow"),
        probe(BOB, "hub", HUB1, 22, "drop", "another staff address"),
        probe(MALLORY, "hub", HUB1, 22, "drop", "staff without US-person attestation"),
        probe(ALICE, "hub", HUB1, 9100, "drop", "another port"),
        probe(ALICE, "hub", HUB2, 22, "drop", "another hub"),
        probe(ALICE, "gw", GW_TUNNEL, 22, "drop", "the appliance (not granted)"),
    ]
    assert mismatches(run_probes(site.prefix, probes, timeout=0.7)) == []

    gate.ok("close", str(opened["id"]), "--as", "erin")
    assert set_elements(site.ns("gw"), "gate_support_v4") == []
    assert mismatches(run_probes(site.prefix, closed, timeout=0.7)) == []
    audit = gate.cli("audit", "show", "--json")
    actions = [json.loads(line)["action"] for line in audit.stdout.splitlines()]
    assert actions[-4:] == ["gate.requested", "gate.approved", "gate.opened", "gate.closed"]
    assert gate.cli("audit", "verify").returncode == 0


def test_closing_the_gate_ends_an_open_session(site: Site, gate: Gate) -> None:
    opened = gate.opened("alice", f"{HUB1}:ssh")
    session = Session(site, ALICE, "hub", HUB1)
    try:
        session.exchange()
        assert len(_staff_flows(site, ALICE)) == 1
        closed = gate.ok("close", str(opened["id"]), "--as", "erin")
        assert closed["status"] == "closed"
        assert _staff_flows(site, ALICE) == []  # its conntrack entry was deleted
        assert session.dead_from("client"), "the staff end kept talking after close"
        assert session.dead_from("server"), "the hub end kept talking after close"
    finally:
        session.close()


def test_the_kernel_closes_the_gate_at_expiry_with_no_process_running(
    site: Site, gate: Gate
) -> None:
    opened = gate.opened("alice", f"{HUB1}:ssh", window="8s")
    end = datetime.datetime.fromisoformat(opened["end"])
    assert netns.pids_in_namespace(site.ns("gw")) == []  # no plantgated, no helper: the kernel

    def until(moment: datetime.datetime) -> float:
        return (moment - datetime.datetime.now(datetime.UTC)).total_seconds()

    session = Session(site, ALICE, "hub", HUB1)
    try:
        time.sleep(max(0.0, until(end) - 1.0))
        session.exchange()  # still open one second before the end
        early = run_probes(site.prefix, [probe(ALICE, "hub", HUB1, 22, "accept", "")], 0.3)
        assert mismatches(early) == [] and until(end) > 0, "the gate closed early"

        time.sleep(max(0.0, until(end) + 1.0))  # one second after the end of the window
        assert set_elements(site.ns("gw"), "gate_support_v4") == []
        late = run_probes(site.prefix, [probe(ALICE, "hub", HUB1, 22, "drop", "expired")], 0.5)
        assert mismatches(late) == []
        assert session.dead_from("client"), "the session outlived the gate"
        assert session.dead_from("server"), "the hub end outlived the gate"
    finally:
        session.close()
    listed = gate.ok("list", "--all")
    assert [(r["status"], r["closed_by"]) for r in listed] == [("closed", "expiry")]


def _refused(gate: Gate, code: int, *args: str) -> str:
    done = gate.cli("gate", *args)
    assert done.returncode == code, (args, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done.stderr.strip()


def test_refusals_are_clear_and_change_nothing(site: Site, gate: Gate) -> None:
    def request(staff: str, window: str = "30m") -> list[str]:
        return ["request", staff, "--to", f"{HUB1}:ssh", "--for", window, "--reason", "r"]

    made = gate.ok(*request("alice"), "--as", "carol")
    number = str(made["id"])
    assert _refused(gate, 1, "approve", number, "--as", "carol") == (
        f"plantgate gate: error: carol cannot approve request {number}: they requested it "
        "(an approver must be someone else)"
    )
    assert _refused(gate, 1, "open", number, "--as", "carol") == (
        f"plantgate gate: error: request {number} needs 1 approval, has 0"
    )
    assert _refused(gate, 1, *request("bob", "2h"), "--as", "carol") == (
        "plantgate gate: error: bob may get at most 1h; asked for 2h"
    )
    assert _refused(gate, 2, *request("eve"), "--as", "carol") == (
        "plantgate gate: error: not on the staff list: eve"
    )
    assert _refused(gate, 1, *request("mallory"), "--as", "carol") == (
        "plantgate gate: error: mallory has no US-person attestation: support access needs one"
    )
    assert "is not a duration" in _refused(gate, 2, *request("alice", "2 hours"))
    assert "no gate request 99" in _refused(gate, 2, "open", "99")
    assert set_elements(site.ns("gw"), "gate_support_v4") == []
    waiting = gate.ok("list")
    assert [(r["id"], r["status"]) for r in waiting] == [(made["id"], "requested")]


def test_support_connections_are_recorded_with_staff_target_and_times(
    site: Site, gate: Gate
) -> None:
    gw = site.ns("gw")
    netns.in_netns(gw, enable_accounting)
    records: list[dict[str, Any]] = []
    opened = gate.opened("alice", f"{HUB1}:ssh")
    directory = Directory({ALICE: "alice", BOB: "bob"}, {})

    async def scenario() -> None:
        raw = netns.socket_in_netns(gw, socket.AF_NETLINK, socket.SOCK_DGRAM, NETLINK_NETFILTER)
        stop = asyncio.Event()
        watcher = asyncio.create_task(
            watch_support_connections(lambda: directory, records.append, stop, use_socket=raw)
        )
        await asyncio.sleep(0.2)
        session = await asyncio.to_thread(Session, site, ALICE, "hub", HUB1)
        try:
            await asyncio.to_thread(session.exchange)
            # closing the gate deletes the live flow: conntrack reports its end at once
            await asyncio.to_thread(gate.ok, "close", str(opened["id"]), "--as", "erin")
            for _ in range(50):
                if len(records) >= 2:
                    break
                await asyncio.sleep(0.1)
        finally:
            session.close()
            stop.set()
            await watcher

    asyncio.run(scenario())
    assert [r["state"] for r in records] == ["started", "ended"]
    started, ended = records
    assert (started["staff"], started["target"], started["proto"], started["port"]) == (
        "alice",
        HUB1,
        "tcp",
        22,
    )
    assert ended["start"] == started["start"] and ended["end"] is not None
    assert ended["bytes_from_staff"] > 4 and ended["bytes_to_staff"] > 4


def test_sessions_of_a_gate_are_independent_of_other_staff(site: Site, gate: Gate) -> None:
    """Closing bob's gate leaves alice's session alone (only bob's flows are deleted)."""
    alice = gate.opened("alice", f"{HUB1}:ssh")
    bob = gate.opened("bob", f"{HUB1}:ssh", window="30m")
    session = Session(site, ALICE, "hub", HUB1)
    try:
        gate.ok("close", str(bob["id"]), "--as", "erin")
        session.exchange()
        assert len(_staff_flows(site, ALICE)) == 1
    finally:
        session.close()
    gate.ok("close", str(alice["id"]), "--as", "erin")
