"""The traffic watcher in the lab: real packets through gw's ruleset, alerts out of the feed.

One lab (3 hubs, policies/lab.yaml) comes up as `make run` brings it, with plantgated, and
so the watcher, running in gw. Each test sends real traffic (nmap, sockets, ssh, a new
namespace on the hub switch) and reads what the feed API on gw's `alerts.sock` delivers, in
ECS, from the cursor it had before the traffic: no fixed sleeps, every wait polls the feed
with a deadline.

Roles in the lab: hub1 and hub3 run the allowed port matrix (`matrix_probes` samples the
first and last hub); hub2 only opens the operator screens (tcp/443) before it scans the
appliance, so the scan's count of distinct ports is exactly nmap's 1000.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.alerts.feed import feed_socket
from gateway.alerts.sinks.spool import SpoolReader, spool_dir
from gateway.lab import collector, netns, services, support, topology
from gateway.lab import lab as lab_ops
from gateway.lab.probe import Probe, ProbeResult, matrix_probes, run_probes
from gateway.lab.services import LabPaths
from gateway.watch.status import read_status
from tests.kernel.conftest import Lab, new_prefix, teardown_lab
from tests.kernel.policy_lab import LAB_POLICY, set_elements

HUBS = 3
GW_LAN = topology.GW_LAN
GW_TUNNEL = topology.GW_TUNNEL
ALICE = topology.STAFF_ADDRESSES[0]
WORKSTATION = topology.PLANT_WORKSTATION
SCANNER = "hub2"  # not in the matrix sample: its only traffic before the scan is tcp/443
NEW_HOST = "newhost"  # the extra namespace of the new-asset test
NEW_HOST_LINK = "newhost0"  # its switch port in hubsw
NEW_HOST_ADDR = "198.18.10.200"
WAIT_S = 30.0


# ---------------------------------------------------------------- the feed


@dataclass
class Feed:
    """The alerts gw's feed API delivers (ECS documents), read page by page by cursor."""

    socket: Path
    docs: list[dict[str, Any]] = field(default_factory=list)
    cursor: int = 0

    def poll(self) -> list[dict[str, Any]]:
        """Fetch everything after the cursor; returns the new documents."""
        new: list[dict[str, Any]] = []
        transport = httpx.HTTPTransport(uds=str(self.socket))
        with httpx.Client(transport=transport, base_url="http://feed", timeout=10) as client:
            while True:
                page = client.get(
                    "/alerts", params={"after": self.cursor, "limit": 1000, "format": "ecs"}
                )
                page.raise_for_status()
                docs = page.json()
                new += docs
                self.cursor = int(page.headers["PlantGate-Cursor"])
                if len(docs) < 1000:
                    break
        self.docs += new
        return new

    def since(self, cursor: int) -> list[dict[str, Any]]:
        self.poll()
        return [d for d in self.docs if d["event"]["sequence"] > cursor]

    def wait(
        self, match: Callable[[dict[str, Any]], bool], after: int, timeout: float = WAIT_S
    ) -> dict[str, Any]:
        """The first document after cursor `after` that `match`es; fails at the deadline."""
        deadline = time.monotonic() + timeout
        while True:
            for doc in self.since(after):
                if match(doc):
                    return doc
            if time.monotonic() >= deadline:
                shown = "\n".join(brief(d) for d in self.since(after)) or "(none)"
                pytest.fail(f"no matching alert within {timeout:g} s; the feed had:\n{shown}")
            time.sleep(0.2)


def rule(doc: dict[str, Any]) -> str:
    return str(doc["rule"]["id"])


def src(doc: dict[str, Any]) -> str | None:
    return doc.get("source", {}).get("ip")


def dst(doc: dict[str, Any]) -> str | None:
    return doc.get("destination", {}).get("ip")


def brief(doc: dict[str, Any]) -> str:
    state = doc["plantgate"]["alert"]["status"]
    return f"{doc['event']['sequence']} {state} {rule(doc)} {doc['message']}"


def latest_by_id(docs: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Alert id -> its latest emission (new, update or close)."""
    out: dict[str, dict[str, Any]] = {}
    for doc in docs:
        out[doc["event"]["id"]] = doc
    return out


# ---------------------------------------------------------------- the lab


@dataclass(frozen=True)
class WatchLab:
    lab: Lab
    paths: LabPaths
    feed: Feed

    @property
    def state(self) -> Path:
        return self.paths.gw_state

    def ns(self, host: str) -> str:
        return self.lab.ns(host)


def remove_new_host(prefix: str) -> None:
    """The new-asset test's namespace (its veth pair goes with it); harmless when absent."""
    netns.delete_namespace(f"{prefix}-{NEW_HOST}")


def watcher_state(paths: LabPaths) -> str | None:
    report = read_status(paths.gw_state)
    return report["state"] if report else None


def daemon_log(paths: LabPaths) -> str:
    return paths.logfile("plantgated").read_text(errors="replace")


def wait_until(predicate: Callable[[], bool], timeout: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return predicate()


@pytest.fixture(scope="module")
def watch_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WatchLab]:
    if os.geteuid() != 0:
        pytest.skip("kernel tests need root (network namespaces, nftables): run them with sudo")
    prefix, root = new_prefix(), tmp_path_factory.mktemp("lab")
    try:
        status = lab_ops.up(prefix, hubs=HUBS, policy=LAB_POLICY, root=root)
        paths = lab_ops.lab_paths(prefix, root)
        assert wait_until(lambda: watcher_state(paths) == "running"), daemon_log(paths)[-3000:]
        feed = Feed(feed_socket(paths.gw_state))
        assert wait_until(lambda: feed.socket.exists())
        feed.poll()
        yield WatchLab(Lab(prefix, root, status), paths, feed)
    finally:
        try:
            remove_new_host(prefix)
        finally:
            teardown_lab(prefix, root)


# ---------------------------------------------------------------- traffic helpers


def run_in(namespace: str, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", namespace, *argv],
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )


def connect(namespace: str, address: str, port: int, timeout: float = 0.5) -> None:
    """One TCP connection attempt from inside `namespace` (whatever comes of it)."""
    code = (
        "import socket, sys\n"
        "s = socket.socket()\n"
        f"s.settimeout({timeout})\n"
        f"s.connect_ex(({address!r}, {port}))\n"
    )
    done = run_in(namespace, sys.executable, "-c", code)
    assert done.returncode == 0, done.stderr


def allowed_matrix() -> list[Probe]:
    """The allowed rows of the port matrix (hub1 and hub3), and hub2's operator screens."""
    probes = [p for p in matrix_probes(HUBS) if p.expect == "accept"]
    probes.append(Probe(SCANNER, "gw", GW_LAN, "tcp", 443, "accept", "operator screens"))
    return probes


def run_matrix(wl: WatchLab) -> list[ProbeResult]:
    results = run_probes(wl.lab.prefix, allowed_matrix(), timeout=1.0)
    wrong = [
        f"{r.probe.src} -> {r.probe.addr} {r.probe.service}: {r.verdict}, {r.detail}"
        for r in results
        if not r.matched
    ]
    assert wrong == []
    return results


def baseline(wl: WatchLab) -> dict[str, Any]:
    argv = [sys.executable, "-m", "gateway.cli", "baseline", "show", "--all", "--json"]
    done = services.run_on(wl.paths, "gw", [*argv, "--state-dir", str(wl.state)])
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def learned_assets(wl: WatchLab) -> dict[str, Any]:
    """MAC -> record of the devices in the baseline plantgated last saved."""
    assets: dict[str, Any] = baseline(wl)["baseline"]["assets"]
    return assets


def hub_macs(wl: WatchLab) -> dict[str, str]:
    """Hub address -> the MAC of its eth0, as the kernel has it."""
    out: dict[str, str] = {}
    for i in range(1, HUBS + 1):
        link = run_in(wl.ns(topology.hub_name(i)), "cat", "/sys/class/net/eth0/address")
        out[topology.hub_address(i)] = link.stdout.strip()
    return out


def protecting(wl: WatchLab) -> None:
    """Learn the allowed matrix, then freeze the baseline (once per lab): protecting."""
    if daemon_log(wl.paths).count("baseline freeze by the CLI: taken over"):
        return
    run_matrix(wl)
    macs = set(hub_macs(wl).values())
    argv = [sys.executable, "-m", "gateway.cli", "baseline", "freeze"]
    done = services.run_on(wl.paths, "gw", [*argv, "--state-dir", str(wl.state)])
    assert done.returncode == 0, done.stderr
    assert wait_until(lambda: "baseline freeze by the CLI: taken over" in daemon_log(wl.paths))
    assert wait_until(lambda: macs <= set(learned_assets(wl))), learned_assets(wl)


def sentinel(wl: WatchLab, hub: str, address: str, port: int) -> dict[str, Any]:
    """A forbidden connection from `hub`; returns its egress alert once the feed has it.

    Sent after other traffic, it marks the point in the feed by which the watcher has
    judged that traffic: events reach the detectors in order, and each detector's first
    trigger for a key is an alert at once.
    """
    before = wl.feed.cursor
    connect(wl.ns(hub), address, port)
    hub_addr = topology.hub_address(int(hub.removeprefix("hub")))
    return wl.feed.wait(
        lambda d: rule(d) == "PG-EGRESS-HUB" and src(d) == hub_addr and dst(d) == address,
        before,
    )


# ---------------------------------------------------------------- tests


def test_lab_up_runs_the_watcher_in_plantgated(watch_lab: WatchLab) -> None:
    """`lab up` starts plantgated, and the watcher runs inside it with every source open;
    `lab status` says so."""
    status = lab_ops.status(watch_lab.lab.prefix, watch_lab.lab.root)
    watcher = status.watcher
    assert watcher is not None and watcher.state == "running", watcher
    assert watcher.mode == "learning" and watcher.detectors == 14 and watcher.lost == 0
    report = read_status(watch_lab.state)
    assert report is not None
    daemon = next(s.pid for s in status.services if s.name == "plantgated")
    assert report["pid"] == daemon  # in plantgated itself, not beside it
    assert report["nflog_groups"] == {"nflog-drop": 1, "nflog-watch": 2}
    assert "traffic watcher running: 14 detectors, mode learning" in daemon_log(watch_lab.paths)
    shown = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "lab", "status", "--prefix", watch_lab.lab.prefix],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PLANTGATE_LAB_ROOT": str(watch_lab.lab.root), "COLUMNS": "200"},
    )
    assert "traffic watcher: running (learning), 14 detectors" in shown.stdout, shown.stdout
    # The lab's own traffic so far (chrony's upstream polls, at least) has reached it.
    assert wait_until(
        lambda: sum((read_status(watch_lab.state) or {}).get("events", {}).values()) > 0
    )


def test_the_allowed_matrix_raises_no_alert_while_learning_or_protecting(
    watch_lab: WatchLab,
) -> None:
    """No false positives: the allowed rows of the port matrix, run while the watcher
    learns and again once the baseline is frozen, raise no alert at all; the only alerts
    up to the sentinel (a forbidden connection sent after them) are the sentinel's own."""
    feed = watch_lab.feed
    for mode, (address, port) in (
        ("learning", (WORKSTATION, 8443)),
        ("protecting", (topology.ACCOUNT_ADDR, 8443)),
    ):
        if mode == "protecting":
            protecting(watch_lab)
        feed.poll()
        start = feed.cursor
        run_matrix(watch_lab)
        mark = sentinel(watch_lab, "hub3", address, port)
        upto = mark["event"]["sequence"]
        window = [d for d in feed.since(start) if d["event"]["sequence"] <= upto]
        others = [
            brief(d)
            for d in window
            if not (src(d) == topology.hub_address(3) and dst(d) == address)
        ]
        assert others == [], f"{mode}: the allowed matrix raised alerts"
        assert mark["plantgate"]["observer"]["mode"] == mode


def test_an_nmap_port_scan_is_one_vertical_scan_alert_with_the_port_count(
    watch_lab: WatchLab,
) -> None:
    """`nmap -sS -p 1-1000` from a hub: one PG-SCAN-VERTICAL alert (new, then updates of
    the same id), whose distinct-port count is what nmap probed: the 999 ports the ruleset
    dropped (its first-drop set) and the one it let through (443)."""
    feed = watch_lab.feed
    connect(watch_lab.ns(SCANNER), GW_LAN, 443)  # as in the matrix: hub2's one conversation
    start = feed.cursor
    scanner = topology.hub_address(2)
    done = run_in(
        watch_lab.ns(SCANNER),
        "nmap",
        "-sS",
        "-Pn",
        "-n",
        "-p",
        "1-1000",
        "--max-retries",
        "1",
        "--host-timeout",
        "60s",
        "-oX",
        "-",
        GW_LAN,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = ET.fromstring(done.stdout)
    scanned = int(report.find("scaninfo").get("numservices"))
    ports = report.find("host/ports")
    assert ports is not None
    states = {int(p.get("portid", 0)): p.find("state").get("state") for p in ports.iter("port")}
    filtered = sum(
        int(e.get("count", 0)) for e in ports.iter("extraports") if e.get("state") == "filtered"
    )
    assert scanned == 1000 and states == {443: "open"} and filtered == 999
    # What the ruleset dropped: one remembered (source, destination, tcp, port) per port.
    dropped = {
        e["elem"]["val"]["concat"][3]
        for e in set_elements(watch_lab.ns("gw"), "watch_drops_v4")
        if e["elem"]["val"]["concat"][:3] == [scanner, GW_LAN, "tcp"]
    }
    assert len(dropped) == filtered

    def counted(doc: dict[str, Any]) -> bool:
        return (
            rule(doc) == "PG-SCAN-VERTICAL"
            and src(doc) == scanner
            and doc.get("labels", {}).get("distinct_ports") == str(scanned)
        )

    final = feed.wait(counted, start)
    scans = [d for d in feed.since(start) if rule(d) == "PG-SCAN-VERTICAL"]
    assert len(latest_by_id(scans)) == 1, [brief(d) for d in scans]  # one alert, updated
    assert final["plantgate"]["alert"]["key"] == f"{scanner}>{GW_LAN}"
    assert final["destination"]["ip"] == GW_LAN
    assert final["plantgate"]["source"]["role"] == "hub"
    assert final["plantgate"]["destination"]["role"] == "appliance"
    assert final["event"]["action"] == "denied"
    assert {t for t in final["threat"]["technique"]["id"]} == {"T0846"}
    assert not [d for d in feed.since(start) if rule(d) == "PG-SCAN-HORIZONTAL"]


def test_a_hub_reaching_for_the_plant_or_the_internet_is_an_egress_alert(
    watch_lab: WatchLab,
) -> None:
    """hub1 tries the plant workstation and the account server upstream: a PG-EGRESS-HUB
    alert for each, toward the right zone, denied."""
    feed = watch_lab.feed
    hub1 = topology.hub_address(1)
    for address, zone in ((WORKSTATION, "plant"), (topology.ACCOUNT_ADDR, "internet")):
        start = feed.cursor
        connect(watch_lab.ns("hub1"), address, 443)
        doc = feed.wait(
            lambda d, a=address: rule(d) == "PG-EGRESS-HUB" and src(d) == hub1 and dst(d) == a,
            start,
        )
        assert doc["labels"]["toward"] == zone
        assert doc["event"]["action"] == "denied"
        assert doc["plantgate"]["source"]["role"] == "hub"
        assert doc["plantgate"]["destination"]["zone"] == zone


def random_label() -> str:
    """56 characters of base32: random data, as a DNS tunnel packs it into a label."""
    return base64.b32encode(secrets.token_bytes(35)).decode().lower()


def test_dns_queries_with_long_random_labels_are_a_dns_alert(watch_lab: WatchLab) -> None:
    """A hub queries the outside resolver for 56-character base32 labels (a DNS tunnel's
    shape): PG-DNS-ENTROPY and PG-DNS-LONG-NAME, from the packets the ruleset logs."""
    feed = watch_lab.feed
    start = feed.cursor
    names = [f"{random_label()}.exfil.test" for _ in range(3)]
    code = (
        "import socket, sys\n"
        "import dns.message\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "for name in sys.argv[1:]:\n"
        "    s.sendto(dns.message.make_query(name, 'TXT').to_wire(), "
        f"({topology.DNS_ADDR!r}, 53))\n"
    )
    done = run_in(watch_lab.ns("hub1"), sys.executable, "-c", code, *names)
    assert done.returncode == 0, done.stderr
    hub1 = topology.hub_address(1)
    doc = feed.wait(lambda d: rule(d) == "PG-DNS-ENTROPY" and src(d) == hub1, start)
    assert doc["labels"]["query"] in names
    assert doc["destination"]["ip"] == topology.DNS_ADDR and doc["destination"]["port"] == 53
    assert doc["network"]["protocol"] == "dns"
    long = feed.wait(lambda d: rule(d) == "PG-DNS-LONG-NAME" and src(d) == hub1, start)
    assert long["labels"]["query"] in names


def ssh_from_alice(wl: WatchLab, address: str) -> subprocess.CompletedProcess[str]:
    argv = support.ssh_argv(wl.paths, address, timeout=2)
    argv[-1:-1] = ["-o", f"BindAddress={ALICE}"]
    return services.run_on(wl.paths, "staff", argv, timeout=30)


def test_staff_ssh_with_the_gate_closed_is_a_support_alert(watch_lab: WatchLab) -> None:
    """alice, through the real support tunnel, ssh to gw and to hub1 with the gate closed:
    one PG-SSH-OUTSIDE-GATE per target (and no second alert from the support rule), with
    the staff member's and the target's zones and roles."""
    feed = watch_lab.feed
    start = feed.cursor
    targets = {GW_TUNNEL: ("appliance", "support"), topology.hub_address(1): ("hub", "hubs")}
    for address in targets:
        done = ssh_from_alice(watch_lab, address)
        assert done.returncode == 255 and "timed out" in done.stderr, done.stderr
    for address, (role, zone) in targets.items():
        doc = feed.wait(
            lambda d, a=address: rule(d) == "PG-SSH-OUTSIDE-GATE" and dst(d) == a, start
        )
        assert src(doc) == ALICE and doc["destination"]["port"] == 22
        assert doc["event"]["action"] == "denied"
        assert doc["plantgate"]["source"]["role"] == "support-staff"
        assert doc["plantgate"]["source"]["zone"] == "support"
        assert doc["plantgate"]["destination"]["role"] == role
        assert doc["plantgate"]["destination"]["zone"] == zone
        assert {t for t in doc["threat"]["technique"]["id"]} == {"T0822"}
    # One attempt, one alert: the support detector leaves SSH to the SSH rule.
    assert not [d for d in feed.since(start) if rule(d) == "PG-SUPPORT-OUTSIDE-GATE"]


@pytest.fixture
def new_host(watch_lab: WatchLab) -> Iterator[tuple[str, str]]:
    """A namespace on the hub switch with a fresh MAC and address; removed whatever happens."""
    prefix = watch_lab.lab.prefix
    name = f"{prefix}-{NEW_HOST}"
    mac = "02:" + ":".join(f"{b:02x}" for b in secrets.token_bytes(5))
    try:
        netns.create_namespace(name)
        with netns.NamespaceNet(watch_lab.ns("hubsw")) as switch:
            switch.add_veth(NEW_HOST_LINK, "eth0", name)
            switch.set_master(NEW_HOST_LINK, topology.BRIDGE)
            switch.set_up(NEW_HOST_LINK)
        done = run_in(name, "ip", "link", "set", "dev", "eth0", "address", mac)
        assert done.returncode == 0, done.stderr
        with netns.NamespaceNet(name) as net:
            net.set_up("lo")
            net.add_address("eth0", f"{NEW_HOST_ADDR}/24")
            net.set_up("eth0")
        yield name, mac
    finally:
        remove_new_host(prefix)
    assert not netns.namespace_exists(name)


def test_a_new_host_on_the_hub_segment_is_a_new_asset_alert(
    watch_lab: WatchLab, new_host: tuple[str, str]
) -> None:
    """Once protecting, a namespace joining the hub switch with a fresh MAC and address is
    a PG-ASSET-NEW alert for that MAC; the learned hubs are not."""
    protecting(watch_lab)
    feed = watch_lab.feed
    start = feed.cursor
    name, mac = new_host
    connect(name, GW_LAN, 443)
    doc = feed.wait(lambda d: rule(d) == "PG-ASSET-NEW" and d["labels"]["mac"] == mac, start)
    assert doc["source"]["ip"] == NEW_HOST_ADDR
    assert doc["labels"]["interface"] == "lan0"
    assert doc["plantgate"]["observer"]["mode"] == "protecting"
    known = set(hub_macs(watch_lab).values())
    assets = [d for d in feed.since(start) if rule(d).startswith("PG-ASSET-")]
    assert not [brief(d) for d in assets if d["labels"]["mac"] in known]


def collected_seqs(wl: WatchLab) -> set[int]:
    """Feed sequence numbers of the alerts the lab's rsyslog collector received from gw."""
    out: set[int] = set()
    for item in collector.received(wl.paths):
        found = re.search(r' seq="(\d+)"', item.get("sd", ""))
        if found and item.get("peer") == topology.GW_WAN:
            out.add(int(found.group(1)))
    return out


def test_plantgated_sigkilled_and_restarted_loses_no_alert_and_resumes_its_feeds(
    watch_lab: WatchLab,
) -> None:
    """Last in the module (it kills plantgated): every alert spooled before a SIGKILL is
    still in the spool after the restart with its id and sequence, the sequence goes on
    without a gap, the feed API resumes from the reader's cursor, and the syslog sink
    resumes from its own: the collector ends up with every sequence number, none missing."""
    wl, feed = watch_lab, watch_lab.feed
    connect(wl.ns("hub1"), WORKSTATION, 5020)  # at least one fresh alert before the kill
    start = feed.cursor
    feed.wait(lambda d: dst(d) == WORKSTATION, start - 50)
    spool = SpoolReader(spool_dir(wl.state))
    before = {r.seq: r.alert.id for r in spool.read(0, 1_000_000)}
    assert sorted(before) == list(range(1, len(before) + 1))
    cursor = feed.cursor

    daemon = services.running_pid(wl.paths, "plantgated", [wl.ns("gw")])
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)
    assert wait_until(lambda: not services.is_alive(daemon), 5)
    restarted = services.start_service(wl.paths, services.daemon_spec(wl.paths, LAB_POLICY))
    assert wait_until(lambda: (read_status(wl.state) or {}).get("pid") == restarted)
    assert wait_until(lambda: watcher_state(wl.paths) == "running")

    connect(wl.ns("hub3"), topology.ACCOUNT_ADDR, 8443)  # an alert after the restart
    new = feed.wait(lambda d: src(d) == topology.hub_address(3), cursor)
    after = {r.seq: r.alert.id for r in spool.read(0, 1_000_000)}
    assert sorted(after) == list(range(1, len(after) + 1)), "a gap in the spool"
    assert {seq: after[seq] for seq in before} == before, "a spooled alert changed or went"
    assert new["event"]["sequence"] > max(before)
    assert [d["event"]["sequence"] for d in feed.since(cursor)] == list(
        range(cursor + 1, feed.cursor + 1)
    ), "the feed skipped or repeated after the restart"
    top = new["event"]["sequence"]
    assert wait_until(lambda: set(range(1, top + 1)) <= collected_seqs(wl), 60), (
        f"the collector misses {sorted(set(range(1, top + 1)) - collected_seqs(wl))[:20]}"
    )
