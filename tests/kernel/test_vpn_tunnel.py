"""The support tunnel for real: wireguard-go in gw under plantgated, the lab's concentrator in
upstream, staff behind it, and real sshd targets.

One lab (2 hubs) comes up as `make run` brings it: tunnel in gated mode, gate closed. The
tests then open the gate by hand (an nft element, as the gate does), switch the VPN off and
on, restart plantgated, kill wireguard-go, and run a second lab beside the first.
"""

from __future__ import annotations

import datetime
import json
import os
import queue
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gateway.lab import lab as lab_ops
from gateway.lab import netns, services, support, topology
from gateway.lab.probe import Probe, run_probes
from gateway.lab.services import LabPaths
from tests.kernel.conftest import Lab, new_prefix, teardown_lab
from tests.kernel.policy_lab import LAB_POLICY, open_gate, run_in, set_elements

ALICE = topology.STAFF_ADDRESSES[0]
GW_TUNNEL = topology.GW_TUNNEL
HUB1 = topology.hub_address(1)


@pytest.fixture(scope="module")
def vpn_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("kernel tests need root (network namespaces, nftables): run them with sudo")
    prefix, root = new_prefix(), tmp_path_factory.mktemp("lab")
    try:
        yield Lab(prefix, root, lab_ops.up(prefix, hubs=2, policy=LAB_POLICY, root=root))
    finally:
        teardown_lab(prefix, root)


# ---------------------------------------------------------------- helpers


def paths_of(lab: Lab) -> LabPaths:
    return lab_ops.lab_paths(lab.prefix, lab.root)


def cli(lab: Lab, *args: str) -> tuple[int, str, str]:
    """`plantgate ARGS` on gw, inside gw's mount namespace (as `lab exec gw` runs it)."""
    paths = paths_of(lab)
    argv = [sys.executable, "-m", "gateway.cli", *args, "--state-dir", str(paths.gw_state)]
    done = services.run_on(paths, "gw", argv, timeout=60)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


def vpn_status(lab: Lab) -> dict[str, Any]:
    _, out, _ = cli(lab, "vpn", "status", "--json")
    record: dict[str, Any] = json.loads(out)
    return record


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def ssh(lab: Lab, address: str, timeout: float = 3.0) -> tuple[int, str]:
    """A real ssh login from the staff host (alice's address) to `address`."""
    paths = paths_of(lab)
    done = services.run_on(
        paths, "staff", support.ssh_argv(paths, address, timeout=timeout), timeout=30
    )
    return done.returncode, done.stdout + done.stderr


def gw_interfaces(lab: Lab) -> list[str]:
    out = services.run_on(paths_of(lab), "gw", ["ip", "-o", "link", "show"]).stdout
    return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]


def daemon_log(lab: Lab) -> str:
    return (lab.root / lab.prefix / "plantgated.log").read_text()


def handshake_at_concentrator(lab: Lab) -> bool:
    peer = support.concentrator_peer(paths_of(lab))
    return peer is not None and peer.latest_handshake > 0


def restart_daemon(lab: Lab) -> None:
    paths = paths_of(lab)
    services.stop_service(paths, "plantgated")
    services.start_service(paths, services.daemon_spec(paths, LAB_POLICY))


# ---------------------------------------------------------------- tests


def test_lab_up_brings_the_tunnel_up_with_a_handshake(vpn_lab: Lab) -> None:
    assert handshake_at_concentrator(vpn_lab)
    record = vpn_status(vpn_lab)
    assert (record["state"], record["mode"]) == ("up", "gated")
    assert record["endpoint"] == f"{topology.SUPPORT_ADDR}:51820"
    assert record["handshake_age_s"] is not None and record["handshake_age_s"] < 60
    assert record["daemon"]["state"] == "up" and record["daemon"]["backend"] == "wireguard-go"
    assert vpn_lab.status.tunnel is not None and vpn_lab.status.tunnel.state == "up"
    assert "event vpn.tunnel_state from plantgated.vpn: {'state': 'up'" in daemon_log(vpn_lab)


def test_staff_ssh_is_dropped_while_the_gate_is_closed(vpn_lab: Lab) -> None:
    probes = [
        Probe("staff", "gw", GW_TUNNEL, "tcp", 22, "drop", "gate closed", ALICE),
        Probe("staff", "hub1", HUB1, "tcp", 22, "drop", "gate closed", ALICE),
    ]
    results = run_probes(vpn_lab.prefix, probes, timeout=0.7)
    assert [r.verdict for r in results] == ["drop", "drop"], [r.detail for r in results]
    code, said = ssh(vpn_lab, GW_TUNNEL, timeout=2)
    assert code == 255 and "timed out" in said


def test_a_gate_element_lets_a_real_ssh_login_through_the_tunnel(vpn_lab: Lab) -> None:
    gw = vpn_lab.ns("gw")
    open_gate(gw, ALICE, GW_TUNNEL, seconds=30)
    open_gate(gw, ALICE, HUB1, seconds=30)
    try:
        assert ssh(vpn_lab, GW_TUNNEL) == (0, f"{support.SSH_BANNER} gw\n")
        assert ssh(vpn_lab, HUB1) == (0, f"{support.SSH_BANNER} hub1\n")
    finally:
        run_in(gw, "nft", "flush", "set", "inet", "plantgate", "gate_support_v4")


def gate(lab: Lab, *args: str) -> dict[str, Any]:
    """`plantgate gate ARGS --json` on gw, as the plant's people run it."""
    code, out, err = cli(lab, "gate", *args, "--json")
    assert code == 0, err
    record: dict[str, Any] = json.loads(out)
    return record


def test_an_approved_gate_expires_in_the_kernel_with_plantgated_sigkilled(vpn_lab: Lab) -> None:
    """Issue 5: the gate opened through `plantgate gate` (request, approval by someone else,
    open) lets alice log in to hub1 through the real tunnel; plantgated is SIGKILLed before
    the window ends; the kernel closes the gate within a second of the end, and the session
    alice holds open to hub1's sshd at that moment ends (its next segment is reset)."""
    paths = paths_of(vpn_lab)
    assert wait_for(lambda: vpn_status(vpn_lab)["state"] == "up", 15)
    made = gate(
        vpn_lab, "request", "alice", "--to", f"{HUB1}:ssh", "--for", "10s",
        "--reason", "expiry with plantgated dead", "--as", "carol",
    )  # fmt: skip
    gate(vpn_lab, "approve", str(made["id"]), "--as", "dave")
    opened = gate(vpn_lab, "open", str(made["id"]), "--as", "erin")
    end = datetime.datetime.fromisoformat(opened["end"])

    def until() -> float:
        return (end - datetime.datetime.now(datetime.UTC)).total_seconds()

    session = netns.socket_in_netns(vpn_lab.ns("staff"))
    daemon = services.running_pid(paths, "plantgated", [vpn_lab.ns("gw")])
    try:
        assert ssh(vpn_lab, HUB1) == (0, f"{support.SSH_BANNER} hub1\n")
        session.bind((ALICE, 0))
        session.settimeout(3)
        session.connect((HUB1, 22))
        assert session.recv(64).startswith(b"SSH-")  # sshd's greeting, through the tunnel
        assert daemon is not None
        os.kill(daemon, signal.SIGKILL)
        assert wait_for(lambda: not services.is_alive(daemon), 5)
        time.sleep(max(0.0, until() - 1.0))
        assert set_elements(vpn_lab.ns("gw"), "gate_support_v4") and until() > 0, (
            "the gate closed early"
        )
        time.sleep(max(0.0, until() + 1.0))  # one second after the end of the window
        assert set_elements(vpn_lab.ns("gw"), "gate_support_v4") == []
        assert services.running_pid(paths, "plantgated", [vpn_lab.ns("gw")]) is None
        try:
            session.sendall(b"SSH-2.0-expiry-test\r\n")
            time.sleep(0.3)
            session.sendall(b"still there?")
            ended = session.recv(64) == b""
        except (ConnectionResetError, BrokenPipeError):
            ended = True
        except TimeoutError:
            ended = False
        assert ended, "alice's session to hub1 outlived the gate"
        code, said = ssh(vpn_lab, HUB1, timeout=2)
        assert code == 255 and "timed out" in said
    finally:
        session.close()
        if services.running_pid(paths, "plantgated", [vpn_lab.ns("gw")]) is None:
            services.start_service(paths, services.daemon_spec(paths, LAB_POLICY))
    listed = gate(vpn_lab, "list", "--all")
    assert [(r["status"], r["closed_by"]) for r in listed] == [("closed", "expiry")]
    assert wait_for(lambda: vpn_status(vpn_lab)["state"] == "up", 15)


# A second address of hub1 (inside the hubs zone, so a gate may grant it) for the ticker:
# hub1's sshd holds port 22 on hub1's own address.
TICKER = "198.18.10.111"
TICKER_SCRIPT = """
import socket, sys, time
server = socket.socket()
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind((sys.argv[1], 22))
server.listen(1)
server.settimeout(30)
print("listening", flush=True)
conn, peer = server.accept()
print("accepted", peer[0], flush=True)
ticks = 0
try:
    while ticks < 300:
        conn.sendall(b"tick\\n")
        ticks += 1
        time.sleep(0.1)
    print("still open after", ticks, "ticks", flush=True)
except OSError as exc:
    print("ended", type(exc).__name__, "after", ticks, "ticks", flush=True)
"""


class Lines:
    """What a process prints, line by line, read by a thread so that waits can time out."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self.thread.start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.queue.put(line.strip())

    def next(self, timeout: float) -> str:
        try:
            return self.queue.get(timeout=timeout)
        except queue.Empty:
            return f"(nothing within {timeout} s)"


def _ended(session: socket.socket, timeout: float = 3.0) -> str:
    """How the staff end learns that its session is over: it speaks, and reads until the
    reset (or end of stream) comes; ticks sent before the close may still be queued."""
    deadline = time.monotonic() + timeout
    try:
        session.sendall(b"still there?")
        while time.monotonic() < deadline:
            session.settimeout(max(0.05, deadline - time.monotonic()))
            if session.recv(4096) == b"":
                return "closed"
            session.sendall(b"still there?")
            time.sleep(0.1)
    except (ConnectionResetError, BrokenPipeError) as exc:
        return type(exc).__name__
    except TimeoutError:
        pass
    return "open"


def test_closing_the_gate_resets_the_hub_end_of_a_session_through_the_tunnel(
    vpn_lab: Lab,
) -> None:
    """A server on hub1 that speaks unprompted (a tick every 100 ms: the lab's sshd only
    answers, so its end of a session could not show this) serves alice through the real
    tunnel. `plantgate gate close` must end the session at both ends: the hub's next tick
    meets the grant guard, whose reset from alice's address must get back to the hub (the
    kill switch's one exception to "nothing leaves with a tunnel source"), and alice's
    next segment is reset too."""
    paths = paths_of(vpn_lab)
    assert wait_for(lambda: vpn_status(vpn_lab)["state"] == "up", 15)
    added = services.run_on(paths, "hub1", ["ip", "addr", "add", f"{TICKER}/24", "dev", "eth0"])
    assert added.returncode == 0, added.stderr
    ticker = subprocess.Popen(
        services.host_command(paths, "hub1", [sys.executable, "-c", TICKER_SCRIPT, TICKER]),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    said = Lines(ticker)
    session = netns.socket_in_netns(vpn_lab.ns("staff"))
    try:
        assert said.next(10) == "listening"
        made = gate(
            vpn_lab, "request", "alice", "--to", f"{TICKER}:ssh", "--for", "10m",
            "--reason", "hub end of a closed session", "--as", "carol",
        )  # fmt: skip
        gate(vpn_lab, "approve", str(made["id"]), "--as", "dave")
        gate(vpn_lab, "open", str(made["id"]), "--as", "erin")
        session.bind((ALICE, 0))
        session.settimeout(3)
        session.connect((TICKER, 22))
        assert said.next(5) == f"accepted {ALICE}"
        received = b""
        while received.count(b"tick\n") < 3:  # the hub's ticks come through the tunnel
            received += session.recv(64)

        closed = gate(vpn_lab, "close", str(made["id"]), "--as", "erin")
        assert closed["status"] == "closed"
        ended = said.next(2.0)  # a tick every 100 ms: the reset comes with the next one
        assert ended.startswith(("ended ConnectionResetError", "ended BrokenPipeError")), (
            f"the hub's end of the session outlived the gate: {ended}"
        )
        assert _ended(session) in ("ConnectionResetError", "BrokenPipeError", "closed")
    finally:
        session.close()
        ticker.kill()
        ticker.wait(timeout=5)
        services.run_on(paths, "hub1", ["ip", "addr", "del", f"{TICKER}/24", "dev", "eth0"])
        run_in(vpn_lab.ns("gw"), "nft", "flush", "set", "inet", "plantgate", "gate_support_v4")


def listen_port(lab: Lab) -> int:
    out = services.run_on(paths_of(lab), "gw", ["wg", "show", "wg-support", "listen-port"])
    return int(out.stdout.strip())


def test_a_plantgated_restart_keeps_the_tunnels_port(vpn_lab: Lab) -> None:
    """Reconfiguring a live interface must not move it to a new UDP port: the concentrator
    would keep sending to the old one until our next keepalive, cutting support sessions."""
    assert wait_for(lambda: vpn_status(vpn_lab)["state"] == "up", 15)
    before = listen_port(vpn_lab)
    paths = paths_of(vpn_lab)
    daemon = services.running_pid(paths, "plantgated", [vpn_lab.ns("gw")])
    assert daemon is not None
    os.kill(daemon, signal.SIGKILL)  # wireguard-go lives on; the new plantgated adopts it
    assert wait_for(lambda: not services.is_alive(daemon), 5)
    services.start_service(paths, services.daemon_spec(paths, LAB_POLICY))
    assert wait_for(lambda: vpn_status(vpn_lab)["state"] == "up", 15)
    assert listen_port(vpn_lab) == before


def test_vpn_disable_removes_the_tunnel_and_it_stays_off_across_a_restart(vpn_lab: Lab) -> None:
    code, out, err = cli(vpn_lab, "vpn", "disable")
    assert code == 0, err
    assert "support VPN disabled" in out
    try:
        assert wait_for(lambda: "wg-support" not in gw_interfaces(vpn_lab), 5)
        record = vpn_status(vpn_lab)
        assert (record["state"], record["override"], record["policy_mode"]) == (
            "disabled",
            "disabled",
            "gated",
        )
        assert "'state': 'disabled', 'previous': 'up'" in daemon_log(vpn_lab)
        dropped = run_probes(
            vpn_lab.prefix,
            [Probe("gw", "upstream", topology.SUPPORT_ADDR, "udp", 51820, "drop", "off")],
            timeout=0.7,
        )
        assert dropped[0].verdict == "drop"  # the kill switch drops the concentrator

        restart_daemon(vpn_lab)
        time.sleep(2.5)  # a round or more of the new plantgated
        assert "wg-support" not in gw_interfaces(vpn_lab)
        assert vpn_status(vpn_lab)["state"] == "disabled"
    finally:
        code, _, err = cli(vpn_lab, "vpn", "enable")
        assert code == 0, err
    assert wait_for(lambda: vpn_status(vpn_lab)["state"] == "up", 15)
    assert "wg-support" in gw_interfaces(vpn_lab)


def test_a_killed_wireguard_go_is_reported_down_and_restarted(vpn_lab: Lab) -> None:
    before = vpn_status(vpn_lab)["daemon"]
    pid = before["pid"]
    assert pid is not None
    logged = len(daemon_log(vpn_lab))
    os.kill(pid, signal.SIGKILL)
    # Reported down (the reason is whichever plantgated noticed first: the process's exit or
    # the interface gone), and the supervisor says what happened to the process.
    assert wait_for(
        lambda: (
            "'state': 'down', 'previous': 'up'" in daemon_log(vpn_lab)[logged:]
            and "wireguard-go was killed by SIGKILL" in daemon_log(vpn_lab)[logged:]
        ),
        10,
    )
    assert wait_for(lambda: vpn_status(vpn_lab)["state"] == "up", 15)
    after = vpn_status(vpn_lab)["daemon"]
    assert after["pid"] not in (None, pid)
    assert after["restarts"] == before["restarts"] + 1


def test_an_interface_of_that_name_that_is_not_wireguard_is_reported_not_fought(
    vpn_lab: Lab,
) -> None:
    gw = vpn_lab.ns("gw")
    assert cli(vpn_lab, "vpn", "disable")[0] == 0
    try:
        assert wait_for(lambda: "wg-support" not in gw_interfaces(vpn_lab), 5)
        run_in(gw, "ip", "link", "add", "wg-support", "type", "veth", "peer", "name", "not-wg")
        assert cli(vpn_lab, "vpn", "enable")[0] == 0
        assert wait_for(lambda: vpn_status(vpn_lab)["daemon"]["state"] == "down", 10)
        record = vpn_status(vpn_lab)
        assert record["state"] == "down" and "wg-support" in record["reason"]
        assert "wg-support" in gw_interfaces(vpn_lab)  # someone else's: left alone
    finally:
        run_in(gw, "ip", "link", "del", "wg-support", check=False)
        cli(vpn_lab, "vpn", "enable")
    assert wait_for(lambda: vpn_status(vpn_lab)["state"] == "up", 15)


def test_the_private_key_is_0600_and_never_shown(vpn_lab: Lab) -> None:
    paths = paths_of(vpn_lab)
    key_file = paths.gw_state / "vpn" / "private.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.parent.stat().st_mode) == 0o700
    private = key_file.read_text().strip()
    assert len(private) == 44
    _, status_json, _ = cli(vpn_lab, "vpn", "status", "--json")
    _, status_text, _ = cli(vpn_lab, "vpn", "status")
    lab_json = json.dumps(lab_ops.status(vpn_lab.prefix, vpn_lab.root).to_dict(), default=str)
    logs = [p.read_text(errors="replace") for p in (vpn_lab.root / vpn_lab.prefix).glob("*.log")]
    tunnel_json = (paths.gw_state / "vpn" / "tunnel.json").read_text()
    wg_log = (paths.gw_state / "vpn" / "wireguard-go.log").read_text(errors="replace")
    for text in (status_json, status_text, lab_json, tunnel_json, wg_log, *logs):
        assert private not in text
    assert json.loads(status_json)["public_key"] in status_text


def test_nothing_of_the_tunnel_is_in_the_machines_own_namespaces(vpn_lab: Lab) -> None:
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        names = {str(link.get_attr("IFLA_IFNAME")) for link in ipr.get_links()}
    assert not {"wg-support", "wg-conc"} & names
    sockets = set(os.listdir("/run/wireguard")) if Path("/run/wireguard").is_dir() else set()
    assert not {"wg-support.sock", "wg-conc.sock"} & sockets


def test_two_labs_with_tunnels_run_side_by_side(vpn_lab: Lab, tmp_path: Path) -> None:
    prefix = new_prefix()
    try:
        other = Lab(prefix, tmp_path, lab_ops.up(prefix, hubs=1, policy=LAB_POLICY, root=tmp_path))
        assert handshake_at_concentrator(vpn_lab) and handshake_at_concentrator(other)
        mine, theirs = vpn_status(vpn_lab), vpn_status(other)
        assert mine["state"] == theirs["state"] == "up"
        assert mine["public_key"] != theirs["public_key"]  # each gw its own key and socket
        for lab in (vpn_lab, other):
            conc = support.concentrator_peer(paths_of(lab))
            assert conc is not None
            assert conc.public_key == vpn_status(lab)["public_key"]
        open_gate(other.ns("gw"), ALICE, GW_TUNNEL, seconds=30)
        assert ssh(other, GW_TUNNEL) == (0, f"{support.SSH_BANNER} gw\n")
        code, _ = ssh(vpn_lab, GW_TUNNEL, timeout=2)  # the first lab's gate stays closed
        assert code == 255
    finally:
        teardown_lab(prefix, tmp_path)
    assert vpn_status(vpn_lab)["state"] == "up"  # the other lab's down left ours alone
    assert handshake_at_concentrator(vpn_lab)
