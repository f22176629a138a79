"""Thin adapter: where the traffic benchmarks run — the namespace lab, or a minimal stand-in.

The preferred topology is the real lab (`plantgate lab up --hubs 1 --no-daemon`): hub1 reaches
gw's `lan0` through the hub switch, exactly as in every other lab test. `lab up` runs as a
child process with a deadline, so a lab that hangs cannot hang the benchmark; if it fails, the
benchmark builds the two hosts it needs itself (gw with `lan0` 198.18.10.1/24, hub1 with `eth0`
198.18.10.11/24, one veth between them) and says so in the report. Both use the lab's
namespace names (`<prefix>-gw`, `<prefix>-hub1`), so `lab.down` removes either.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import spaces
from gateway.lab import lab, netns, topology

LAB_UP_TIMEOUT = 25.0
IPV6_OFF = (("net.ipv6.conf.all.disable_ipv6", "1"), ("net.ipv6.conf.default.disable_ipv6", "1"))


@dataclass(frozen=True)
class Hosts:
    kind: str  # "lab" or "veth pair"
    gw: str  # namespace of the appliance
    hub: str  # namespace of the hub that sends
    gw_addr: str
    note: str = ""


@contextlib.contextmanager
def hosts(prefix: str, root: Path, repo: Path) -> Iterator[Hosts]:
    """gw and hub1 for `prefix`, torn down afterwards whatever happens."""
    try:
        yield _lab_or_pair(prefix, root, repo)
    finally:
        lab.down(prefix, root=root)


def _lab_or_pair(prefix: str, root: Path, repo: Path) -> Hosts:
    gw, hub = topology.namespace_name(prefix, "gw"), topology.namespace_name(prefix, "hub1")
    problem = _lab_up(prefix, root, repo)
    if problem is None:
        return Hosts("lab", gw, hub, topology.GW_LAN)
    lab.down(prefix, root=root)
    _pair(gw, hub)
    return Hosts("veth pair", gw, hub, topology.GW_LAN, note=f"lab unavailable: {problem}")


def _lab_up(prefix: str, root: Path, repo: Path) -> str | None:
    """None when the lab came up, else a one-line reason."""
    argv = [sys.executable, "-m", "gateway.cli", "lab", "up", "--hubs", "1"]
    argv += ["--prefix", prefix, "--no-daemon", "--json"]
    env = {**spaces.child_env(repo), lab.ROOT_ENV: str(root)}
    try:
        done = subprocess.run(
            argv,
            env=env,
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=LAB_UP_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"`plantgate lab up` did not finish within {LAB_UP_TIMEOUT:.0f} s"
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        return f"`plantgate lab up` exited {done.returncode}: {lines[-1][:160]}"
    return None


def _pair(gw: str, hub: str) -> None:
    for name in (gw, hub):
        netns.create_namespace(name)
        netns.set_sysctls(name, IPV6_OFF)
    with netns.NamespaceNet(gw) as gw_net, netns.NamespaceNet(hub) as hub_net:
        gw_net.add_veth("lan0", "eth0", hub)
        for net, ifname, cidr in (
            (gw_net, "lan0", f"{topology.GW_LAN}/24"),
            (hub_net, "eth0", f"{topology.hub_address(1)}/24"),
        ):
            net.set_up("lo")
            net.set_up(ifname)
            net.add_address(ifname, cidr)
