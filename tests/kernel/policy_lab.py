"""Helpers for policy kernel tests: a policed lab, a stand-in support tunnel, nft in a host.

A lab with a policy has the real support tunnel (WireGuard to the lab's concentrator, with a
`staff` host behind it). Where no lab runs and only the *ruleset's* treatment of traffic on
`wg-support` matters, the stand-in is a plain veth named `wg-support` in `gw` whose other end
sits in a `staff` namespace holding the staff address 198.18.201.5, routed as the tunnel is.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from gateway.lab import netns
from gateway.policy.compile import Compiled

ROOT = Path(__file__).resolve().parents[2]
LAB_POLICY = ROOT / "policies" / "lab.yaml"
STAFF_ADDR = "198.18.201.5"
GW_TUNNEL = "198.18.200.2"
CONC_TUNNEL = "198.18.200.1"


def add_support_standin(prefix: str) -> str:
    """Namespace `<prefix>-staff` linked to gw's `wg-support`; returns its name."""
    staff, gw = f"{prefix}-staff", f"{prefix}-gw"
    netns.create_namespace(staff)
    with netns.NamespaceNet(gw) as net:
        net.add_veth("wg-support", "tun0", staff)
        net.add_address("wg-support", f"{GW_TUNNEL}/24")
        net.set_up("wg-support")
        net.add_route("198.18.201.0/24", CONC_TUNNEL)
    with netns.NamespaceNet(staff) as net:
        net.set_up("lo")
        net.add_address("tun0", f"{CONC_TUNNEL}/24")
        net.add_address("tun0", f"{STAFF_ADDR}/24")
        net.set_up("tun0")
        net.add_route("0.0.0.0/0", GW_TUNNEL)
    return staff


def run_in(namespace: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """A command inside a lab namespace (ip netns exec also binds its resolv.conf)."""
    return subprocess.run(
        ["ip", "netns", "exec", namespace, *argv],
        capture_output=True,
        text=True,
        check=check,
        timeout=60,
    )


def plantgate(namespace: str, *args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    """The `plantgate` CLI, run inside a namespace with this interpreter."""
    return run_in(namespace, sys.executable, "-m", "gateway.cli", *args, check=check)


def nft_json(namespace: str, *what: str) -> dict[str, Any]:
    out = run_in(namespace, "nft", "-j", "list", *what).stdout
    data: dict[str, Any] = json.loads(out)
    return data


def set_elements(namespace: str, name: str) -> list[Any]:
    for item in nft_json(namespace, "set", "inet", "plantgate", name)["nftables"]:
        if "set" in item:
            elements: list[Any] = item["set"].get("elem", [])
            return elements
    return []


def table_text(namespace: str) -> str:
    """The table without what changes by itself (counters, expiry countdowns)."""
    text = run_in(namespace, "nft", "-s", "list", "table", "inet", "plantgate").stdout
    return re.sub(r" expires \S+", "", text)


def open_gate(
    namespace: str, source: str, target: str, seconds: int, port: int = 22, proto: str = "tcp"
) -> None:
    """Grant `source` -> `target` on one port, as the gate does, expiring in the kernel."""
    element = f"{{ {source} . {target} . {proto} . {port} timeout {seconds}s }}"
    run_in(namespace, "nft", "add", "element", "inet", "plantgate", "gate_support_v4", element)


def refused_by_the_kernel(compiled: Compiled) -> Compiled:
    """A jump loop: it passes `nft --check` but the kernel refuses it ("Too many links")."""
    looped = compiled.text.replace(
        'accept comment "manage-page @ lab.yaml',
        'jump in_if_plant-lan comment "manage-page @ lab.yaml',
    ).replace("\tchain in_if_plant-lan {\n", "\tchain in_if_plant-lan {\n\t\tjump in_plant\n")
    return replace(compiled, text=looped)
