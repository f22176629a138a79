"""The namespace lab against the real kernel: build, reach, resolve, rebuild, tear down.

Labs here run without plantgated (no firewall table), so every path of DESIGN §3 forwards:
these tests check the topology and the lab machinery, not the policy.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import dns.message
import dns.query
import dns.rcode
import pytest
from typer.testing import CliRunner

from gateway.lab import lab as lab_ops
from gateway.lab import netns, services
from gateway.lab.cli import lab_app
from gateway.lab.lab import LabError
from gateway.lab.netns import NamespaceNet
from gateway.lab.probe import Probe, run_probes
from gateway.lab.topology import plan_lab

if TYPE_CHECKING:
    from tests.kernel.conftest import Lab

pytestmark = pytest.mark.kernel


def ns_inode(name: str) -> tuple[int, int]:
    return netns.namespace_inode(name)


def alive(pid: int) -> bool:
    return services.is_alive(pid)


# ---------------------------------------------------------------- topology


def test_up_builds_every_namespace_address_and_route(lab: Lab) -> None:
    plan = plan_lab(lab.prefix, 2)
    assert netns.list_namespaces(lab.prefix) == sorted(plan.namespaces)
    for host in plan.hosts:
        with NamespaceNet(host.namespace) as net:
            links = {link.ifname: link for link in net.links()}
            routes = {(r.dst, r.via) for r in net.routes()}
        assert links["lo"].admin_up, host.name
        for addr in host.addresses:
            assert addr.cidr in links[addr.ifname].addresses, (host.name, addr)
            assert links[addr.ifname].operstate == "UP", (host.name, addr.ifname)
        for route in host.routes:
            assert (route.dst, route.via) in routes, (host.name, route)
    assert lab_ops.compare(plan, lab_ops._observe(plan, netns.list_namespaces(lab.prefix))) == []


def test_bridge_is_in_the_switch_and_gw_has_none(lab: Lab) -> None:
    with NamespaceNet(lab.ns("hubsw")) as net:
        links = {link.ifname: link for link in net.links()}
    assert links["br0"].kind == "bridge"
    assert {n for n, link in links.items() if link.master == "br0"} == {
        "to-gw",
        "to-hub1",
        "to-hub2",
    }
    with NamespaceNet(lab.ns("gw")) as net:
        gw_links = net.links()
    assert not [link for link in gw_links if link.kind == "bridge"]
    assert {link.ifname for link in gw_links} == {"lo", "lan0", "wan0"}


def test_sysctls(lab: Lab) -> None:
    assert netns.get_sysctl(lab.ns("gw"), "net.ipv4.ip_forward") == "1"
    assert netns.get_sysctl(lab.ns("plant"), "net.ipv4.ip_forward") == "1"
    assert netns.get_sysctl(lab.ns("hub1"), "net.ipv4.ip_forward") == "0"
    assert netns.get_sysctl(lab.ns("hub1"), "net.ipv6.conf.eth0.disable_ipv6") == "1"


def test_no_lab_interface_in_the_root_namespace(lab: Lab) -> None:
    root_links = {name for _, name in socket.if_nameindex()}
    assert not root_links & {"lan0", "wan0", "up0", "br0", "to-gw", "to-hub1", "to-hub2"}


# ---------------------------------------------------------------- reachability and DNS


def test_bare_lab_forwards_hub_to_gw_and_plant_to_upstream(lab: Lab) -> None:
    probes = [
        Probe("hub1", "gw", "198.18.10.1", "tcp", 443, "accept", "hub1 to gw"),
        Probe("hub2", "gw", "198.18.10.1", "udp", 123, "accept", "hub2 to gw ntp"),
        Probe("gw", "hub2", "198.18.10.12", "tcp", 9100, "accept", "gw to hub2"),
        Probe("plant", "upstream", "198.19.0.43", "tcp", 443, "accept", "plant to account"),
        Probe("plant", "upstream", "198.19.0.123", "udp", 123, "accept", "plant to ntp"),
        Probe("plant", "gw", "198.18.20.1", "tcp", 443, "accept", "ws to gw", "198.18.20.10"),
        Probe("hub1", "upstream", "198.19.0.53", "tcp", 53, "accept", "hub1 via gw and plant"),
        Probe("upstream", "hub1", "198.18.10.11", "tcp", 22, "accept", "internet to hub1"),
    ]
    results = run_probes(lab.prefix, probes, timeout=2.0)
    assert [(r.probe.label, r.verdict) for r in results] == [(p.label, "accept") for p in probes]
    assert "real service" in results[6].detail  # dnsmasq owns tcp/53


def test_probes_tell_drop_and_refused_apart_and_run_concurrently(lab: Lab) -> None:
    rules = """
    table inet labtest {
        chain input {
            type filter hook input priority 0; policy accept;
            tcp dport 4401 drop
            udp dport 4402 drop
            tcp dport 4403 reject with tcp reset
        }
    }
    """
    loaded = subprocess.run(
        ["ip", "netns", "exec", lab.ns("upstream"), "nft", "-f", "-"],
        input=rules.encode(),
        capture_output=True,
        check=False,
    )
    assert loaded.returncode == 0, loaded.stderr
    try:
        dropped = [
            Probe("plant", "upstream", "198.19.0.43", "tcp", 4401, "drop", f"tcp {i}")
            for i in range(10)
        ] + [
            Probe("gw", "upstream", "198.19.0.51", "udp", 4402, "drop", f"udp {i}")
            for i in range(10)
        ]
        refused = Probe("plant", "upstream", "198.19.0.43", "tcp", 4403, "drop", "rst")
        started = time.monotonic()
        results = run_probes(lab.prefix, [*dropped, refused], timeout=1.0)
        elapsed = time.monotonic() - started
    finally:
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                lab.ns("upstream"),
                "nft",
                "delete",
                "table",
                "inet",
                "labtest",
            ],
            check=False,
        )
    assert [r.verdict for r in results[:-1]] == ["drop"] * 20
    assert results[-1].verdict == "refused"
    assert elapsed < 2.5, f"21 probes took {elapsed:.2f} s; they should run concurrently"


def test_dnsmasq_answers_lab_names_from_plant(lab: Lab) -> None:
    def ask(name: str) -> dns.message.Message:
        sock = netns.socket_in_netns(lab.ns("plant"), socket.AF_INET, socket.SOCK_DGRAM)
        sock.setblocking(False)
        with sock:
            query = dns.message.make_query(name, "A")
            return dns.query.udp(query, "198.19.0.53", timeout=2.0, sock=sock)

    reply = ask("ntp.upstream.test")
    assert reply.rcode() == dns.rcode.NOERROR
    (rrset,) = reply.answer
    assert [r.to_text() for r in rrset] == ["198.19.0.123"]
    assert rrset.ttl == 60
    assert ask("nothing.upstream.test").rcode() == dns.rcode.NXDOMAIN


def test_lab_hosts_resolve_through_their_own_resolv_conf(lab: Lab) -> None:
    conf = Path("/etc/netns") / lab.ns("plant") / "resolv.conf"
    assert "nameserver 198.19.0.53" in conf.read_text()
    assert not (Path("/etc/netns") / lab.ns("upstream")).exists()
    code = lab_ops.exec_in(lab.prefix, "hub1", ["getent", "hosts", "gw.plant.test"])
    assert code == 0


# ---------------------------------------------------------------- status, exec, cli


def test_status_reports_hosts_services_and_directory(lab: Lab) -> None:
    status = lab_ops.status(lab.prefix, root=lab.root)
    assert status.state == "up"
    assert status.problems == ()
    assert status.hubs == 2
    assert status.directory == str(lab.root / lab.prefix)
    assert [h.name for h in status.hosts] == ["gw", "hubsw", "hub1", "hub2", "plant", "upstream"]
    (dnsmasq,) = status.services
    assert dnsmasq.name == "dnsmasq" and dnsmasq.host == "upstream" and dnsmasq.running
    assert dnsmasq.pid in netns.pids_in_namespace(lab.ns("upstream"))
    json.dumps(status.to_dict())


def test_exec_returns_the_command_exit_code(lab: Lab) -> None:
    assert lab_ops.exec_in(lab.prefix, "hub1", ["sh", "-c", "exit 3"]) == 3
    with pytest.raises(LabError, match="no host 'hub9'"):
        lab_ops.exec_in(lab.prefix, "hub9", ["true"])
    with pytest.raises(ValueError, match="unknown lab host"):
        lab_ops.exec_in(lab.prefix, "router", ["true"])


def test_cli_status_json_and_bad_input(lab: Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PLANTGATE_LAB_ROOT", str(lab.root))
    runner = CliRunner()
    result = runner.invoke(lab_app, ["status", "--prefix", lab.prefix, "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["state"] == "up"
    bad = runner.invoke(lab_app, ["up", "--prefix", lab.prefix, "--hubs", "0"])
    assert bad.exit_code == 2
    assert bad.stderr.strip().splitlines() == [
        "plantgate lab: error: invalid hub count 0: expected a whole number from 1 to 200"
    ]
    code = runner.invoke(
        lab_app, ["exec", "hub1", "--prefix", lab.prefix, "--", "sh", "-c", "exit 4"]
    )
    assert code.exit_code == 4


# ---------------------------------------------------------------- idempotence


def test_up_twice_is_harmless_and_restarts_a_dead_service(lab: Lab) -> None:
    before = {ns: ns_inode(ns) for ns in netns.list_namespaces(lab.prefix)}
    pid = lab.status.services[0].pid
    assert pid is not None and alive(pid)

    again = lab_ops.up(lab.prefix, hubs=2, policy=None, root=lab.root)
    assert again.state == "up"
    assert {ns: ns_inode(ns) for ns in netns.list_namespaces(lab.prefix)} == before
    assert again.services[0].pid == pid

    os.kill(pid, signal.SIGKILL)
    restarted = lab_ops.up(lab.prefix, hubs=2, policy=None, root=lab.root)
    assert restarted.services[0].running and restarted.services[0].pid != pid
    assert {ns: ns_inode(ns) for ns in netns.list_namespaces(lab.prefix)} == before


def test_partial_lab_is_rebuilt(make_lab: Callable[..., Lab]) -> None:
    made = make_lab(hubs=2)
    netns.delete_namespace(made.ns("hub2"))
    assert lab_ops.status(made.prefix, root=made.root).state == "partial"
    rebuilt = lab_ops.up(made.prefix, hubs=2, policy=None, root=made.root)
    assert rebuilt.state == "up" and rebuilt.problems == ()
    # a different hub count is a different lab: rebuilt, not extended
    grown = lab_ops.up(made.prefix, hubs=3, policy=None, root=made.root)
    assert grown.state == "up" and grown.hubs == 3


# ---------------------------------------------------------------- down


def test_down_after_a_crash_leaves_no_namespace_and_no_process(
    make_lab: Callable[..., Lab],
) -> None:
    made = make_lab(hubs=1)
    dnsmasq = made.status.services[0].pid
    assert dnsmasq is not None
    stray = subprocess.Popen(["ip", "netns", "exec", made.ns("plant"), "sleep", "300"])
    try:
        deadline = time.monotonic() + 5
        while stray.pid not in netns.pids_in_namespace(made.ns("plant")):
            assert time.monotonic() < deadline, "stray process never entered the namespace"
            time.sleep(0.02)
        os.kill(dnsmasq, signal.SIGKILL)  # a crashed service: stale pidfile
        shutil.rmtree(made.root / made.prefix)  # and the lab directory is gone too

        report = lab_ops.down(made.prefix, root=made.root)
        assert stray.wait(timeout=5) is not None
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait()
    assert netns.list_namespaces(made.prefix) == []
    assert stray.pid in report.killed
    assert not alive(dnsmasq)
    assert not list(Path("/etc/netns").glob(f"{made.prefix}-*"))


def test_down_spares_labs_with_a_longer_prefix_and_foreign_names(
    make_lab: Callable[..., Lab],
) -> None:
    made = make_lab(hubs=1)
    others = [f"{made.prefix}x-gw", f"{made.prefix}-router"]
    for name in others:
        netns.create_namespace(name)
    try:
        lab_ops.down(made.prefix, root=made.root)
        assert netns.list_namespaces(made.prefix) == []
        assert all(netns.namespace_exists(name) for name in others)
    finally:
        for name in others:
            netns.delete_namespace(name)


def test_down_of_an_absent_lab_does_nothing(lab_prefix: str, lab_root: Path) -> None:
    report = lab_ops.down(lab_prefix, root=lab_root)
    assert report.namespaces == () and report.killed == ()
