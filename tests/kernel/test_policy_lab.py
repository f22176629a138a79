"""The lab policy enforced by the real kernel, checked with real packets.

One lab (2 hubs) runs `plantgated` in gw with policies/lab.yaml, exactly as `make run` does,
with its real support tunnel (wireguard-go) to the lab's concentrator and staff behind it.
Every row of the port matrix must be accepted and the forbidden flows dropped; drops must
reach NFLOG; a refused load must leave the old table; established connections must survive
an apply; the daemon's death must change nothing.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.alerts.record import Alert
from gateway.alerts.sinks.spool import SpoolReader, spool_dir
from gateway.audit import AuditLog
from gateway.lab import lab as lab_ops
from gateway.lab import netns, topology
from gateway.lab.probe import Probe, ProbeResult, matrix_probes, run_probes
from gateway.policy.apply import ApplyError, apply_compiled
from gateway.policy.compile import compile_policy
from gateway.policy.load import load_file
from gateway.policy.nft import Nft
from gateway.policy.operations import _load_as_revision
from gateway.policy.revisions import RevisionStore
from tests.kernel.conftest import Lab, new_prefix, teardown_lab
from tests.kernel.policy_lab import (
    GW_TUNNEL,
    LAB_POLICY,
    STAFF_ADDR,
    open_gate,
    plantgate,
    refused_by_the_kernel,
    run_in,
    set_elements,
    table_text,
)

HUB1 = topology.hub_address(1)


@pytest.fixture(scope="module")
def policed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("kernel tests need root (network namespaces, nftables): run them with sudo")
    prefix, root = new_prefix(), tmp_path_factory.mktemp("lab")
    try:
        yield Lab(prefix, root, lab_ops.up(prefix, hubs=2, policy=LAB_POLICY, root=root))
    finally:
        teardown_lab(prefix, root)


def _mismatches(results: list[ProbeResult]) -> list[str]:
    return [
        f"{r.probe.label}: {r.probe.src} -> {r.probe.addr} {r.probe.service} expected "
        f"{r.probe.expect}, got {r.verdict} ({r.detail})"
        for r in results
        if not r.matched
    ]


def _wait_for(predicate: object, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.2)
    return False


def test_fqdn_endpoints_are_resolved_into_their_sets(policed: Lab) -> None:
    gw = policed.ns("gw")

    def resolved() -> bool:
        values = [e.get("elem", {}).get("val") for e in set_elements(gw, "ep_ntp-upstream_v4")]
        return topology.NTP_ADDR in values

    assert _wait_for(resolved), "plantgated never resolved ntp.upstream.test into its set"
    # (the NTP relay pins the upstream it uses, so the account server shows the plain TTL)
    assert _wait_for(lambda: set_elements(gw, "ep_account-server_v4"))
    element = set_elements(gw, "ep_account-server_v4")[0]["elem"]
    assert element["val"] == topology.ACCOUNT_ADDR
    assert 60 <= element["timeout"] <= 90  # dnsmasq's local-ttl 60 s plus 30 s of grace


def test_every_matrix_row_is_accepted_and_forbidden_flows_dropped(policed: Lab) -> None:
    extra = [
        Probe("gw", "upstream", topology.SUPPORT_ADDR, "udp", 51820, "accept", "support tunnel"),
        Probe("gw", "upstream", topology.NTP_ADDR, "udp", 53, "drop", "appliance, wrong port"),
        Probe("gw", "plant", topology.PLANT_WORKSTATION, "tcp", 22, "drop", "appliance to plant"),
        Probe("gw", topology.hub_name(1), HUB1, "tcp", 22, "drop", "appliance ssh to hub"),
        Probe("hub1", "gw", topology.GW_LAN, "tcp", 22, "drop", "hub ssh to appliance"),
        Probe("hub1", "gw", topology.GW_WAN, "tcp", 443, "drop", "hub to the plant leg"),
        Probe("hub1", "upstream", topology.ACCOUNT_ADDR, "tcp", 443, "drop", "hub to internet"),
        Probe("upstream", "gw", topology.GW_WAN, "udp", 123, "drop", "internet to NTP relay"),
        Probe(
            "plant",
            "gw",
            topology.GW_WAN,
            "udp",
            123,
            "drop",
            "plant to NTP relay",
            topology.PLANT_WORKSTATION,
        ),
    ]
    assert _wait_for(lambda: set_elements(policed.ns("gw"), "ep_support-concentrator_v4"))
    results = run_probes(policed.prefix, [*matrix_probes(2), *extra], timeout=1.0)
    assert _mismatches(results) == []
    assert sum(r.probe.expect == "accept" for r in results) >= 14


PORT_CLASSES = [
    ("tcp", 22),
    ("tcp", 80),
    ("tcp", 443),
    ("tcp", 445),
    ("tcp", 8443),
    ("tcp", 9100),
    ("tcp", 33000),
    ("udp", 53),
    ("udp", 123),
    ("udp", 161),
    ("udp", 514),
    ("udp", 40000),
    ("icmp", 8),
]


def test_hubs_reach_nothing_beyond_the_appliance_on_any_port_class(policed: Lab) -> None:
    targets = [
        ("plant", topology.PLANT_WORKSTATION),
        ("plant", topology.PLANT_ROUTER),
        ("upstream", topology.NTP_ADDR),
        ("upstream", topology.ACCOUNT_ADDR),
    ]
    probes = [
        Probe("hub2", host, addr, proto, port, "drop", "hub leaves its segment")  # type: ignore[arg-type]
        for host, addr in targets
        for proto, port in PORT_CLASSES
    ]
    assert _mismatches(run_probes(policed.prefix, probes, timeout=0.8)) == []


def test_nothing_from_outside_reaches_hubs_or_the_appliance_unasked(policed: Lab) -> None:
    workstation = topology.PLANT_WORKSTATION
    probes = [
        Probe(src, "hub1", HUB1, proto, port, "drop", "into the hub segment", addr)  # type: ignore[arg-type]
        for src, addr in (("plant", workstation), ("upstream", None))
        for proto, port in PORT_CLASSES
    ] + [
        Probe("upstream", "gw", topology.GW_WAN, proto, port, "drop", "internet to appliance")  # type: ignore[arg-type]
        for proto, port in PORT_CLASSES
    ]
    assert _mismatches(run_probes(policed.prefix, probes, timeout=0.8)) == []


def test_icmp_probe_sees_replies_when_nothing_filters(policed: Lab) -> None:
    """Positive control for the ICMP drops above: plant and upstream answer each other."""
    probe = Probe("plant", "upstream", topology.NTP_ADDR, "icmp", 8, "accept", "control")
    assert _mismatches(run_probes(policed.prefix, [probe], timeout=1.0)) == []


def test_drops_are_logged_to_nflog_and_become_a_policy_denied_alert(policed: Lab) -> None:
    """The drop log's NFLOG group is read by the watcher in plantgated (one reader per group
    and namespace): the dropped SYN must come out of it as a PG-POLICY-DENIED alert, with the
    hook from the log prefix and the addresses from the packet. A port no other test uses:
    the ruleset logs only the first drop of a (source, destination, port) in a minute."""
    port = 4443
    spool = SpoolReader(spool_dir(lab_ops.lab_paths(policed.prefix, policed.root).gw_state))
    seen = max((r.seq for r in spool.read(0, 100_000)), default=0)
    probe = Probe("hub1", "plant", topology.PLANT_WORKSTATION, "tcp", port, "drop", "hub to plant")
    assert _mismatches(run_probes(policed.prefix, [probe], timeout=0.5)) == []

    def denied() -> list[Alert]:
        return [
            r.alert
            for r in spool.read(seen, 100_000)
            if r.alert.rule.id == "PG-POLICY-DENIED"
            and r.alert.source is not None
            and r.alert.source.address == HUB1
            and r.alert.destination is not None
            and (r.alert.destination.address, r.alert.destination.port)
            == (topology.PLANT_WORKSTATION, port)
        ]

    deadline = time.monotonic() + 30  # a new alert at once, an update within report_every_s
    while time.monotonic() < deadline and not denied():
        time.sleep(0.2)
    found = denied()
    assert found, "the dropped SYN never became a policy-denied alert"
    assert found[0].labels.get("hook") == "forward"  # from the prefix "pg drop forward: "


def _staff_probe(dst: str, addr: str, expect: str) -> Probe:
    return Probe(
        "staff",
        dst,
        addr,
        "tcp",
        22,
        expect,
        f"support ssh ({expect})",  # type: ignore[arg-type]
        STAFF_ADDR,
    )


def test_support_ssh_only_while_the_gate_is_open_and_expiry_is_in_the_kernel(policed: Lab) -> None:
    gw = policed.ns("gw")
    closed = [_staff_probe("gw", GW_TUNNEL, "drop"), _staff_probe("hub1", HUB1, "drop")]
    assert _mismatches(run_probes(policed.prefix, closed, timeout=0.7)) == []

    open_gate(gw, STAFF_ADDR, GW_TUNNEL, seconds=4)
    open_gate(gw, STAFF_ADDR, HUB1, seconds=4)
    opened = [_staff_probe("gw", GW_TUNNEL, "accept"), _staff_probe("hub1", HUB1, "accept")]
    other_port = Probe(
        "staff", "hub1", HUB1, "tcp", 9100, "drop", "gate grants ssh only", STAFF_ADDR
    )
    assert _mismatches(run_probes(policed.prefix, [*opened, other_port], timeout=0.7)) == []

    time.sleep(4.5)  # no PlantGate process closes the gate: the kernel expires the elements
    assert _mismatches(run_probes(policed.prefix, closed, timeout=0.7)) == []


def test_staff_address_spoofed_from_the_plant_is_dropped(policed: Lab) -> None:
    plant = policed.ns("plant")
    gw = policed.ns("gw")
    open_gate(gw, STAFF_ADDR, HUB1, seconds=30)
    with netns.NamespaceNet(plant) as net:
        net.add_address("eth0", f"{STAFF_ADDR}/32")
    try:
        spoof = Probe("plant", "hub1", HUB1, "tcp", 22, "drop", "spoofed staff", STAFF_ADDR)
        assert _mismatches(run_probes(policed.prefix, [spoof], timeout=0.7)) == []
    finally:
        run_in(plant, "ip", "addr", "del", f"{STAFF_ADDR}/32", "dev", "eth0", check=False)
        run_in(gw, "nft", "flush", "set", "inet", "plantgate", "gate_support_v4")


def test_open_gate_survives_a_reapply_with_its_expiry(policed: Lab) -> None:
    gw = policed.ns("gw")
    open_gate(gw, STAFF_ADDR, HUB1, seconds=600)
    try:
        assert (
            plantgate(
                gw, "policy", "apply", str(LAB_POLICY), "--state-dir", str(policed.root / "reapply")
            ).returncode
            == 0
        )
        elements = set_elements(gw, "gate_support_v4")
        assert len(elements) == 1
        assert 590 <= elements[0]["elem"]["timeout"] <= 600  # carried, not extended
    finally:
        run_in(gw, "nft", "flush", "set", "inet", "plantgate", "gate_support_v4")


def test_refused_load_leaves_the_previous_table_and_names_the_yaml_line(policed: Lab) -> None:
    gw = policed.ns("gw")
    before = table_text(gw)
    loaded = load_file(LAB_POLICY)
    broken = refused_by_the_kernel(compile_policy(loaded))

    def attempt() -> ApplyError:
        with pytest.raises(ApplyError) as info:
            apply_compiled(broken, Nft(), str(LAB_POLICY))
        return info.value

    error = netns.in_netns(gw, attempt)
    assert table_text(gw) == before
    rendered = [p.render() for p in error.problems]
    assert any("Too many links" in line for line in rendered), rendered
    rule_line = loaded.rule_line([r.name for r in loaded.policy.rules].index("manage-page"))
    assert any(
        line.startswith(f"{LAB_POLICY}:{rule_line}:1: error: nftables refused manage-page")
        for line in rendered
    ), rendered


def test_a_refused_apply_is_audited_and_announced_for_the_watcher(
    policed: Lab, tmp_path: Path
) -> None:
    loaded = load_file(LAB_POLICY)
    broken = refused_by_the_kernel(compile_policy(loaded))
    state = tmp_path / "state"
    store = RevisionStore(state)

    def attempt() -> None:
        with store.locked(), pytest.raises(ApplyError):
            _load_as_revision(
                store, loaded, broken, Nft(), user="alice", message="", kind="apply", resolve=False
            )

    netns.in_netns(policed.ns("gw"), attempt)
    [entry] = AuditLog(state).entries()
    assert (entry.actor, entry.action) == ("alice", "policy.apply_failed")
    assert entry.details["kind"] == "apply" and "Too many links" in entry.details["error"]
    assert store.all() == []  # no revision was recorded


def test_invalid_policy_changes_nothing(policed: Lab, tmp_path: Path) -> None:
    gw = policed.ns("gw")
    bad = tmp_path / "bad.yaml"
    bad.write_text(LAB_POLICY.read_text().replace("allow: [hub-agent]", "allow: [hub-agnet]"))
    before = table_text(gw)
    result = plantgate(gw, "policy", "apply", str(bad), "--state-dir", str(tmp_path))
    assert result.returncode == 2
    assert "error: undefined service 'hub-agnet' (did you mean 'hub-agent'?)" in result.stderr
    assert "Traceback" not in result.stderr
    assert table_text(gw) == before


def test_other_tables_are_untouched_by_apply(policed: Lab) -> None:
    gw = policed.ns("gw")
    run_in(gw, "nft", "add", "table", "inet", "neighbour")
    run_in(gw, "nft", "add", "set", "inet", "neighbour", "keep", "{ type ipv4_addr; }")
    run_in(gw, "nft", "add", "element", "inet", "neighbour", "keep", "{ 198.18.99.1 }")
    try:
        assert (
            plantgate(
                gw, "policy", "apply", str(LAB_POLICY), "--state-dir", str(policed.root / "other")
            ).returncode
            == 0
        )
        kept = run_in(gw, "nft", "list", "set", "inet", "neighbour", "keep").stdout
        assert "198.18.99.1" in kept
    finally:
        run_in(gw, "nft", "delete", "table", "inet", "neighbour", check=False)


def test_established_connection_survives_an_apply_that_closes_its_port(
    policed: Lab, tmp_path: Path
) -> None:
    gw, hub = policed.ns("gw"), policed.ns("hub1")
    listener = netns.socket_in_netns(gw, socket.AF_INET, socket.SOCK_STREAM)
    client = netns.socket_in_netns(hub, socket.AF_INET, socket.SOCK_STREAM)
    narrowed = tmp_path / "lab.yaml"
    original = LAB_POLICY.read_text()
    narrowed.write_text(
        original.replace("allow: [https, hub-api, hub-enroll]", "allow: [https, hub-enroll]")
    )
    assert narrowed.read_text() != original, "the edit no longer applies to lab.yaml"
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT of probes
        listener.bind((topology.GW_LAN, 8443))
        listener.listen()
        client.settimeout(2)
        client.connect((topology.GW_LAN, 8443))
        server, _ = listener.accept()
        server.settimeout(2)
        client.sendall(b"before")
        assert server.recv(16) == b"before"

        applied = plantgate(gw, "policy", "apply", str(narrowed), "--state-dir", str(tmp_path))
        assert applied.returncode == 0, applied.stderr

        client.sendall(b"after")
        assert server.recv(16) == b"after"  # conntrack was not flushed
        server.sendall(b"reply")
        assert client.recv(16) == b"reply"
        fresh = [Probe("hub1", "gw", topology.GW_LAN, "tcp", 8443, "drop", "closed by apply")]
        listener.close()
        assert _mismatches(run_probes(policed.prefix, fresh, timeout=0.7)) == []
        server.close()
    finally:
        client.close()
        listener.close()
        restored = plantgate(
            gw, "policy", "apply", str(LAB_POLICY), "--state-dir", str(policed.root / "restore")
        )
        assert restored.returncode == 0, restored.stderr


def test_daemon_follows_an_apply_made_in_the_lab_and_resolves_its_names(
    policed: Lab, tmp_path: Path
) -> None:
    gw = policed.ns("gw")
    extended = tmp_path / "lab.yaml"
    text = LAB_POLICY.read_text()
    text = text.replace(
        "\nservices:\n",
        "\n  dns-name:\n    zone: internet\n    fqdn: [dns.upstream.test]\n\nservices:\n",
    )
    text = text.replace(
        "\ndefaults:\n",
        "\n  - {name: dns-by-name, from: self, to: dns-name, allow: [dns]}\n\ndefaults:\n",
    )
    extended.write_text(text)
    argv = [sys.executable, "-m", "gateway.cli", "policy", "apply", "--no-resolve", str(extended)]
    try:
        assert lab_ops.exec_in(policed.prefix, "gw", argv, root=policed.root) == 0

        def resolved() -> bool:
            values = [e.get("elem", {}).get("val") for e in set_elements(gw, "ep_dns-name_v4")]
            return topology.DNS_ADDR in values

        assert _wait_for(resolved), "plantgated did not pick up the new policy's FQDN endpoint"
        daemon_log = policed.root / policed.prefix / "plantgated.log"
        assert "event policy.applied from plantgate:" in daemon_log.read_text()
    finally:
        restore = [*argv[:-2], str(LAB_POLICY)]
        assert lab_ops.exec_in(policed.prefix, "gw", restore, root=policed.root) == 0


def _gone(pid: int) -> bool:
    try:
        return "zombie" in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return True


def test_ruleset_holds_when_the_daemon_dies(policed: Lab) -> None:
    status = lab_ops.status(policed.prefix, root=policed.root)
    daemon = next(s for s in status.services if s.name == "plantgated")
    assert daemon.running
    assert daemon.pid is not None
    os.kill(daemon.pid, signal.SIGKILL)
    assert _wait_for(lambda: _gone(daemon.pid))
    probes = [
        Probe("hub1", "gw", topology.GW_LAN, "tcp", 443, "accept", "operator screens"),
        Probe("hub1", "plant", topology.PLANT_WORKSTATION, "tcp", 443, "drop", "hub to plant"),
    ]
    assert _mismatches(run_probes(policed.prefix, probes, timeout=0.7)) == []
