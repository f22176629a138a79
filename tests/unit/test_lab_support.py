"""The lab's support side as pure data: staff plan, concentrator, sshd targets, mounts."""

from __future__ import annotations

import os
from pathlib import Path

from gateway.lab import mountns, services, support
from gateway.lab.services import LabPaths
from gateway.lab.topology import Address, Endpoint, Route, is_lab_host, plan_lab
from gateway.watch.status import write_status

PATHS = LabPaths("pg", Path("/run/plantgate/lab/pg"))


def test_support_adds_the_staff_host_behind_the_concentrator() -> None:
    plan = plan_lab("pg", 3, support=True)
    staff = plan.host("staff")
    assert staff.namespace == "pg-staff"
    assert staff.addresses == (
        Address("eth0", "198.18.201.5/24"),
        Address("eth0", "198.18.201.6/24"),
        Address("eth0", "198.18.201.66/24"),
    )
    assert staff.routes == (Route("default", "198.18.201.1"),)
    assert Address("staff0", "198.18.201.1/24") in plan.host("upstream").addresses
    sysctls = {s.key: s.value for s in plan.host("upstream").sysctls}
    assert sysctls["net.ipv4.ip_forward"] == "1"
    assert sysctls["net.ipv4.conf.all.rp_filter"] == "0"
    pairs = {(v.a, v.b) for v in plan.veths}
    assert (Endpoint("upstream", "staff0"), Endpoint("staff", "eth0")) in pairs
    assert is_lab_host("staff")


def test_without_support_the_plan_is_unchanged() -> None:
    plain = plan_lab("pg", 3)
    assert "staff" not in plain.host_names
    assert not plain.support
    assert {s.key: s.value for s in plain.host("upstream").sysctls}["net.ipv4.ip_forward"] == "0"


def test_concentrator_peers_with_the_appliance_for_its_tunnel_address_and_the_hubs() -> None:
    argv = support.concentrator_set_argv("wg", Path("/lab/wg-conc.key"), "APPLIANCE=")
    assert argv == [
        "wg",
        "set",
        "wg-conc",
        "listen-port",
        "51820",
        "private-key",
        "/lab/wg-conc.key",
        "peer",
        "APPLIANCE=",
        "allowed-ips",
        "198.18.200.2/32,198.18.10.0/24",
    ]
    assert _concentrator_key_is_the_policys()


def _concentrator_key_is_the_policys() -> bool:
    policy = (Path(__file__).resolve().parents[2] / "policies" / "lab.yaml").read_text()
    return f"public_key: {support.CONC_PUBLIC_KEY}" in policy


def test_sshd_listens_on_lab_addresses_only_and_gives_no_shell() -> None:
    plan = plan_lab("pg", 6, support=True)
    hosts = support.ssh_hosts(plan)
    assert hosts["gw"] == ("198.18.10.1", "198.18.20.1", "198.18.200.2")
    assert list(hosts) == ["gw", "hub1", "hub2", "hub3", "hub4"]  # SSH_HUBS
    lines = support.sshd_config(PATHS, "hub2", hosts["hub2"]).splitlines()
    assert [ln for ln in lines if ln.startswith("ListenAddress")] == [
        "ListenAddress 198.18.10.12:22"
    ]
    for line in (
        "UsePAM no",
        "PasswordAuthentication no",
        "PermitRootLogin forced-commands-only",
        "ForceCommand echo plantgate-lab-ssh hub2",
        "PermitTTY no",
        "AllowTcpForwarding no",
        f"HostKey {PATHS.ssh_dir / 'host-hub2'}",
        f"PidFile {PATHS.ssh_dir / 'sshd-hub2.pid'}",
    ):
        assert line in lines


def test_mountinfo_lists_mounts_under_a_directory_deepest_first() -> None:
    info = "\n".join(
        [
            "22 1 0:21 / /run rw shared:5 - tmpfs tmpfs rw",
            "90 22 0:21 /plantgate/lab/pg/mnt /run/plantgate/lab/pg/mnt rw - tmpfs tmpfs rw",
            "91 90 0:4 mnt:[4026532] /run/plantgate/lab/pg/mnt/gw rw - nsfs nsfs rw",
            "92 90 0:4 mnt:[4026533] /run/plantgate/lab/pg/mnt/upstream rw - nsfs nsfs rw",
            "93 22 0:4 mnt:[4026534] /run/plantgate/lab/pgx/mnt/gw rw - nsfs nsfs rw",
            r"94 22 0:4 x /tmp/with\040space/mnt rw - nsfs nsfs rw",
        ]
    )
    assert mountns.mounts_under(info, Path("/run/plantgate/lab/pg/mnt")) == [
        "/run/plantgate/lab/pg/mnt/gw",
        "/run/plantgate/lab/pg/mnt/upstream",
        "/run/plantgate/lab/pg/mnt",
    ]
    assert mountns.mounts_under(info, Path("/tmp/with space")) == ["/tmp/with space/mnt"]


def test_lab_down_finds_its_mounts_under_any_lab_root() -> None:
    info = "\n".join(
        [
            "90 22 0:21 /x /tmp/labroot/pg/mnt rw - ext4 /dev/vda rw",
            "91 90 0:4 mnt:[1] /tmp/labroot/pg/mnt/gw rw - nsfs nsfs rw",
            "92 90 0:4 mnt:[2] /tmp/labroot/pg/mnt/upstream rw - nsfs nsfs rw",
            "93 22 0:4 mnt:[3] /tmp/labroot/xpg/mnt/gw rw - nsfs nsfs rw",
            "94 22 0:4 mnt:[4] /run/plantgate/lab/pgx/mnt/gw rw - nsfs nsfs rw",
        ]
    )
    assert mountns.lab_mounts(info, "pg", ("gw", "upstream")) == [
        "/tmp/labroot/pg/mnt/gw",
        "/tmp/labroot/pg/mnt/upstream",
        "/tmp/labroot/pg/mnt",
    ]


def test_commands_enter_the_mount_namespace_only_when_there_is_one() -> None:
    assert mountns.enter_argv(None, ["wg", "show"]) == ["wg", "show"]
    argv = mountns.enter_argv(Path("/lab/mnt/gw"), ["wg", "show"], wd=Path("/lab"))
    assert argv[1:] == ["--mount=/lab/mnt/gw", "--wd=/lab", "--", "wg", "show"]
    assert argv[0].endswith("nsenter")


def test_lab_up_waits_for_the_watcher_of_this_plantgated_only(tmp_path: Path) -> None:
    lab = LabPaths("t", tmp_path)
    assert not services.wait_watcher(lab, os.getpid(), timeout=0.1)  # no report yet
    write_status(lab.gw_state, {"state": "running", "pid": os.getpid() + 1})
    assert not services.wait_watcher(lab, os.getpid(), timeout=0.1)  # an older daemon's
    write_status(lab.gw_state, {"state": "waiting", "pid": os.getpid()})
    assert not services.wait_watcher(lab, os.getpid(), timeout=0.1)  # no policy yet
    write_status(lab.gw_state, {"state": "running", "pid": os.getpid()})
    assert services.wait_watcher(lab, os.getpid(), timeout=0.1)
