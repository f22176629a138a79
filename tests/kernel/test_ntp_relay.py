"""The NTP relay in the lab: hubs get time from gw, nothing else does, and losing the
internet's time server turns the relay into an orphan that keeps serving.

One lab (3 hubs) runs `plantgated` with policies/lab.yaml as `make run` does, except for a
5-second monitor interval so that the monitor's events arrive within the test's patience.
The lab's upstream chronyd (198.19.0.123, stratum 1) is the internet's time server.
Every chronyd here runs with -x (or -Q): the machine's clock is never touched.
"""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import ntplib
import pytest

from gateway.lab import lab as lab_ops
from gateway.lab import services, topology
from gateway.lab.netns import in_netns, socket_in_netns
from gateway.ntp.chronyc import Tracking, parse_tracking
from gateway.ntp.chronyd import ChronyError, chronyc
from gateway.ntp.config import ChronyPaths
from tests.kernel.conftest import Lab, new_prefix, teardown_lab
from tests.kernel.policy_lab import LAB_POLICY, plantgate

GW = topology.GW_LAN
LOCAL_REFID = 0x7F7F0101
UPSTREAM_REFID = 0xC613007B  # 198.19.0.123
NTP_REQUEST = bytes([0x23]) + bytes(39)  # NTPv4 client request, transmit stamp appended


def monitor_every_5s(policy: Path, into: Path) -> Path:
    text = policy.read_text()
    changed, count = re.subn(r"(?m)^(time:.*\n)", r"\1  monitor_interval: 5\n", text)
    assert count == 1, "the lab policy has no time section"
    into.write_text(changed)
    return into


@pytest.fixture(scope="module")
def relay_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    if os.geteuid() != 0:
        pytest.skip("kernel tests need root (network namespaces, nftables): run them with sudo")
    prefix, root = new_prefix(), tmp_path_factory.mktemp("lab")
    policy = monitor_every_5s(LAB_POLICY, root / "lab-ntp.yaml")
    try:
        made = Lab(prefix, root, lab_ops.up(prefix, hubs=3, policy=policy, root=root))
        assert wait_for(lambda: relay_tracking(made).stratum == 2, 30), "relay never synced"
        yield made
    finally:
        teardown_lab(prefix, root)


# ---------------------------------------------------------------- helpers


def wait_for(predicate: Callable[[], bool], timeout: float, every: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return True
        except (ChronyError, OSError, ValueError):
            pass
        time.sleep(every)
    return False


def relay_tracking(lab: Lab) -> Tracking:
    socket_path = ChronyPaths.under(lab_ops.lab_paths(lab.prefix, lab.root).gw_state).socket
    return parse_tracking(chronyc(socket_path, "tracking"))


def ntp_query(lab: Lab, host: str, address: str, timeout: float = 1.0) -> ntplib.NTPStats:
    """ntplib from inside `host` (its socket is made in a thread in that namespace)."""
    client = ntplib.NTPClient()
    stats: ntplib.NTPStats = in_netns(
        lab.ns(host), client.request, address, version=4, timeout=timeout
    )
    return stats


def answered(lab: Lab, host: str, address: str, source: str | None = None) -> bool:
    """Whether one NTP request from `host` (optionally from `source`) gets an answer."""
    sock = socket_in_netns(lab.ns(host), socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        if source:
            sock.bind((source, 0))
        sock.settimeout(1.0)
        stamp = os.urandom(8)
        sock.sendto(NTP_REQUEST + stamp, (address, 123))
        try:
            return sock.recv(1024)[24:32] == stamp
        except TimeoutError:
            return False


def burst(lab: Lab, host: str, count: int) -> tuple[int, list[int]]:
    """`count` requests from `host` to the relay as fast as possible; (answers, their sizes)."""
    sock = socket_in_netns(lab.ns(host), socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        sock.connect((GW, 123))
        sent = set()
        for _ in range(count):
            stamp = os.urandom(8)
            sent.add(stamp)
            sock.send(NTP_REQUEST + stamp)
        sizes: list[int] = []
        deadline = time.monotonic() + 1.5
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([sock], [], [], left)
            if not ready:
                break
            data = sock.recv(4096)
            if data[24:32] in sent:
                sizes.append(len(data))
    return len(sizes), sizes


def ntp_status(lab: Lab) -> subprocess.CompletedProcess[str]:
    state = lab_ops.lab_paths(lab.prefix, lab.root).gw_state
    return plantgate(lab.ns("gw"), "ntp", "status", "--state-dir", str(state))


def daemon_log(lab: Lab) -> str:
    return lab_ops.lab_paths(lab.prefix, lab.root).logfile("plantgated").read_text()


# ---------------------------------------------------------------- serving


def test_a_hub_gets_time_one_stratum_below_the_upstream(relay_lab: Lab) -> None:
    upstream = ntp_query(relay_lab, "gw", topology.NTP_ADDR)
    relay = ntp_query(relay_lab, "hub1", GW)
    assert relay.stratum == upstream.stratum + 1 == 2
    assert relay.ref_id == UPSTREAM_REFID
    assert relay.leap == 0
    assert abs(relay.offset) < 0.05  # one machine, one clock: the relay serves it faithfully


def test_an_independent_client_gets_time_from_the_relay(relay_lab: Lab, tmp_path: Path) -> None:
    """chronyd -Q, Debian's own client: one measurement, printed, the clock left alone."""
    private = tmp_path / "q"
    private.mkdir(mode=0o700)
    argv = [
        "ip", "netns", "exec", relay_lab.ns("hub2"),
        "chronyd", "-Q", "-x", "-t", "10", "-u", "root",
        f"server {GW} iburst maxsamples 1",
        f"pidfile {private}/chronyd.pid", "cmdport 0", "bindcmdaddress /",
        f"logdir {private}", "log measurements",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    assert done.returncode == 0, done.stderr
    wrong = re.search(r"System clock wrong by (-?[0-9.]+) seconds \(ignored\)", done.stderr)
    assert wrong is not None, done.stderr
    assert abs(float(wrong.group(1))) < 0.05
    measurement = (private / "measurements.log").read_text().splitlines()[-1].split()
    assert measurement[2] == GW
    assert measurement[4] == "2"  # the stratum column
    assert measurement[-4] == f"{UPSTREAM_REFID:08X}"


def test_a_hub_cannot_reach_the_internet_time_server(relay_lab: Lab) -> None:
    with pytest.raises(ntplib.NTPException):
        ntp_query(relay_lab, "hub1", topology.NTP_ADDR)
    assert answered(relay_lab, "gw", topology.NTP_ADDR)  # the server itself is up


def test_the_plant_and_the_internet_get_no_answer(relay_lab: Lab) -> None:
    workstation = topology.PLANT_WORKSTATION
    for address in (topology.GW_WAN, GW):
        assert not answered(relay_lab, "plant", address, workstation), address
    assert not answered(relay_lab, "upstream", topology.GW_WAN)
    assert answered(relay_lab, "hub3", GW)  # while a hub is answered


def test_a_burst_from_one_hub_is_rate_limited(relay_lab: Lab) -> None:
    count, sizes = burst(relay_lab, "hub3", 200)
    assert 8 <= count <= 120, f"{count} of 200 answered"  # burst 8, then ~1 in 4 leaks
    assert all(size <= len(NTP_REQUEST) + 8 for size in sizes)  # never larger than asked


def test_ntp_status_in_gw_shows_the_sources(relay_lab: Lab) -> None:
    done = ntp_status(relay_lab)
    assert done.returncode == 0, done.stderr
    assert "serving at stratum 2" in done.stdout
    assert "198.19.0.123" in done.stdout  # chosen from the firewall's set for ntp.upstream.test
    assert "of last 8" in done.stdout and "ORPHAN" not in done.stdout


# ---------------------------------------------------------------- losing the upstream


def test_without_upstream_the_relay_serves_as_an_orphan_and_recovers(relay_lab: Lab) -> None:
    paths = lab_ops.lab_paths(relay_lab.prefix, relay_lab.root)
    seen = len(daemon_log(relay_lab))

    def logged(kind: str) -> bool:
        return f"event {kind} from ntp" in daemon_log(relay_lab)[seen:]

    stopped = services.stop_service(paths, services.NTP_UPSTREAM)
    assert stopped is not None
    try:
        assert wait_for(lambda: logged("ntp.upstream_lost"), 40), "no ntp.upstream_lost"
        assert wait_for(lambda: relay_tracking(relay_lab).local, 120), "relay never orphaned"
        assert wait_for(lambda: ntp_query(relay_lab, "hub1", GW).stratum == 10, 20, every=3)
        orphan = ntp_query(relay_lab, "hub1", GW)
        assert orphan.ref_id == LOCAL_REFID and orphan.leap == 0
        assert wait_for(lambda: logged("ntp.orphan"), 30), "no ntp.orphan"
        status = ntp_status(relay_lab)
        assert "ORPHAN: serving at stratum 10 without upstream" in status.stdout
    finally:
        services.start_service(paths, services.upstream_chrony_spec(paths))
    assert wait_for(lambda: logged("ntp.upstream_restored"), 40), "no ntp.upstream_restored"
    assert wait_for(lambda: relay_tracking(relay_lab).stratum == 2, 60), "relay never resynced"
    assert wait_for(lambda: logged("ntp.orphan_cleared"), 30), "no ntp.orphan_cleared"
