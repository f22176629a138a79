"""The support tunnel leaks nothing, whatever state it is in: a leak test in Mullvad's manner.

One lab (one hub) comes up as `make run` brings it: plantgated in gw with the tunnel up in
gated mode and the gate closed, the concentrator in upstream, staff behind it. Captures run
for the whole module on gw's `wan0`, the plant's `eth0` and `up0` (the physical side) and on
the concentrator's `wg-conc` (inside the tunnel). Then, in this order:

1. the positive control: marked packets the captures must see (plant to gw's wan0, plant to
   the internet, alice into the tunnel), and a planted leak (a site-marked packet sent on
   the plant network) that the verdicts must call a leak: the test can see and can fail;
2. each state, entered from the known baseline: tunnel up with the gate closed; the gate
   open for alice -> hub1 ssh (which must then work: the tunnel is real); the concentrator
   stopped; wireguard-go SIGKILLed (probed before plantgated restarts it, and while it
   does); plantgated SIGKILLed, then its orphaned wireguard-go too; `plantgate vpn
   disable` (probed before and after plantgated removes the interface); the same after the
   concentrator's address has left the firewall's endpoint set, with plantgated alive and
   with it dead (its wireguard-go orphaned); reconnecting (the concentrator back, the
   handshake in progress); IPv6 on in gw, the hub and the plant, on the tunnel too, with
   WireGuard allowing it at both ends.

In every state TCP, UDP and ICMP probes go from gw and hub1 toward alice, mallory and the
concentrator's inner address (also forced out of wan0, and from gw's tunnel address toward
services the policy allows), and from alice and mallory toward gw and hub1. Each state
asserts: no leak on any capture (`gateway.vpn.leakcheck`), no forbidden probe answered,
the positive control seen. The last test checks the whole run, transitions included, and
that no capture dropped a packet. `pytest -s` prints the figures per state.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gateway.lab import lab as lab_ops
from gateway.lab import services, topology
from gateway.lab.leaks import (
    ALICE,
    HUB1,
    LeakLab,
    LeakProbe,
    LeakRun,
    ProbeResult,
    Window,
)
from gateway.vpn.leakcheck import Seen, tally
from tests.kernel.conftest import new_prefix, teardown_lab
from tests.kernel.policy_lab import LAB_POLICY

PHYSICAL = ("gw:wan0", "plant:eth0", "plant:up0")
TUNNEL = "upstream:wg-conc"
WINDOWS: list[Window] = []
PLANTED: list[tuple[float, float]] = []


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LeakRun]:
    if os.geteuid() != 0:
        pytest.skip("kernel tests need root (network namespaces, nftables): run them with sudo")
    prefix, root = new_prefix(), tmp_path_factory.mktemp("lab")
    try:
        lab_ops.up(prefix, hubs=1, policy=LAB_POLICY, root=root)
        lab = LeakLab(lab_ops.lab_paths(prefix, root), LAB_POLICY, vpn_via="cli")
        with LeakRun(lab, timeout=0.5) as leak_run:
            yield leak_run
    finally:
        teardown_lab(prefix, root)


def controls_seen(run: LeakRun, start: float, tunnel: bool) -> dict[str, int]:
    """Send the positive control now; how many control packets each capture point saw."""
    run.control(tunnel=tunnel)
    seen = run.verdicts(start)
    points = [*PHYSICAL, *([TUNNEL] if tunnel else [])]
    return {point: seen.count("control", point) for point in points}


def check(run: LeakRun, name: str, enter: Callable[[LeakRun], list[ProbeResult]]) -> Window:
    """Baseline, then the state: probes, the control, and the verdicts on its window."""
    run.lab.baseline()
    with run.window(name) as results:
        results += enter(run)
        conc_running = run.lab.concentrator_pid() is not None
        controls = controls_seen(run, time.time() - 0.1, tunnel=conc_running)
    window = run.last
    assert window is not None
    WINDOWS.append(window)
    print(f"\n{window.line()}\n  kill switch dropped: {window.stopped_text()}")
    leaks = [leak.text() for leak in window.tally.leaks]
    assert not leaks, f"{name}: {len(leaks)} leaked packets:\n" + "\n".join(leaks)
    breaches = [r.text() for r in window.breaches]
    assert not breaches, f"{name}: forbidden probes answered:\n" + "\n".join(breaches)
    missing = [point for point, count in controls.items() if count == 0]
    assert not missing, f"{name}: the positive control was not seen on {missing}"
    return window


# ---------------------------------------------------------------- the positive control first


def test_positive_control_is_seen_on_every_capture(run: LeakRun) -> None:
    start = time.time()
    results = run.control(tunnel=True)
    seen = run.verdicts(start)
    print(f"\npositive control: {seen.summary()}")
    for point in [*PHYSICAL, TUNNEL]:
        assert seen.count("control", point) > 0, (
            f"the capture on {point} saw none of the positive control's marked packets: "
            f"the leak test cannot see anything there ({[r.text() for r in results]})"
        )
    assert not seen.leaks, [leak.text() for leak in seen.leaks]


def test_a_planted_leak_is_called_a_leak(run: LeakRun) -> None:
    """A site-marked datagram from the plant to gw's wan0: on the physical side, where no
    probe may ever appear. The captures see it and the verdicts call it a leak."""
    start = time.time()
    planted = LeakProbe(
        "site", "plant", topology.GW_WAN, "udp", "planted leak", 24902,
        bind=topology.PLANT_WORKSTATION,
    )  # fmt: skip
    run.prober.run([planted], timeout=0.2)
    seen = run.verdicts(start)
    PLANTED.append((start, time.time()))
    assert seen.count("leak", "gw:wan0") >= 1 and seen.count("leak", "plant:eth0") >= 1
    assert all("site probe outside the tunnel" in leak.finding.reason for leak in seen.leaks)


# ---------------------------------------------------------------- the states


def tunnel_up_gate_closed(run: LeakRun) -> list[ProbeResult]:
    return run.burst()


def gate_open_for_alice(run: LeakRun) -> list[ProbeResult]:
    run.lab.open_gate(ALICE, HUB1, 22, seconds=60)
    results = run.burst()
    granted = [r for r in results if r.probe.granted]
    assert granted and all(r.outcome == "answered" for r in granted), (
        "the gate is open for alice -> hub1 ssh, yet it did not connect: the tunnel under "
        f"test does not work ({[r.text() for r in granted]})"
    )
    return results


def concentrator_stopped(run: LeakRun) -> list[ProbeResult]:
    run.lab.stop_concentrator()
    return run.burst()


def wireguard_killed(run: LeakRun) -> list[ProbeResult]:
    killed_at = time.time()
    assert run.lab.kill_wireguard(), "no wireguard-go in gw to kill"
    first = run.burst()  # plantgated waits 1 s (at least) before it restarts it
    assert first[0].at - killed_at < 1.0
    wait_for(run.lab.tunnel_exists, 15.0)
    return first + run.burst()  # while it comes back


def daemon_killed(run: LeakRun) -> list[ProbeResult]:
    assert run.lab.kill_daemon() is not None, "plantgated was not running"
    first = run.burst()  # the tunnel as plantgated left it
    run.lab.kill_wireguard()  # and now nobody restarts it
    wait_for(lambda: not run.lab.tunnel_exists(), 5.0)  # its TUN device goes with it
    return first + run.burst()


def vpn_disabled(run: LeakRun) -> list[ProbeResult]:
    run.lab.set_vpn(False)
    first = run.burst()  # the ruleset says disabled; plantgated may not have acted yet
    wait_for(lambda: not run.lab.tunnel_exists(), 10.0)
    return first + run.burst()


def vpn_disabled_endpoint_expired(run: LeakRun) -> list[ProbeResult]:
    """The concentrator's address has left the firewall's endpoint set (its name stopped
    resolving, say), then the off switch: plantgated removes the tunnel, the concentrator
    still sends to the closed port (staff traffic for a session it believes alive)."""
    run.lab.expire_endpoint()
    run.lab.set_vpn(False)
    wait_for(lambda: not run.lab.tunnel_exists(), 10.0)
    return run.burst() + run.burst()


def vpn_disabled_orphaned_tunnel(run: LeakRun) -> list[ProbeResult]:
    """plantgated killed, then the off switch: its wireguard-go runs on. An hour later the
    endpoint pin and DNS TTL have run out and the concentrator's address has left the
    firewall's set (emptied here); the orphaned WireGuard shakes hands again (provoked here
    at once, as a rekey or keepalive would)."""
    run.lab.kill_daemon()
    run.lab.set_vpn(False)
    run.lab.expire_endpoint()
    assert run.lab.tunnel_exists() and run.lab.wireguard_pids()
    run.lab.kick()
    time.sleep(0.3)
    return run.burst()


def reconnecting(run: LeakRun) -> list[ProbeResult]:
    run.lab.stop_concentrator()
    run.lab.kill_wireguard()  # plantgated restarts it: handshakes retried every 5 s, no answer
    wait_for(run.lab.tunnel_exists, 15.0)
    connecting = run.burst()
    run.lab.start_concentrator()
    back = run.burst()  # in the first second: the handshake is still to come
    run.lab.wait_up()
    return connecting + back + run.burst()


def ipv6_on(run: LeakRun) -> list[ProbeResult]:
    run.lab.ipv6_on()
    assert run.lab.ensure_tunnel_ipv6(), "IPv6 could not be set up on the tunnel"
    first = run.burst(ipv6=True)
    run.lab.kill_wireguard()  # the IPv6 route into the tunnel goes with it
    second = run.burst(ipv6=True)
    run.lab.wait_up()  # plantgated brings it back (IPv4 only, as the policy says)
    assert run.lab.ensure_tunnel_ipv6(), "IPv6 could not be set up on the new tunnel"
    return first + second + run.burst(ipv6=True)


STATES: list[tuple[str, Callable[[LeakRun], list[ProbeResult]]]] = [
    ("tunnel up, gate closed", tunnel_up_gate_closed),
    ("gate open for alice to hub1 ssh", gate_open_for_alice),
    ("concentrator stopped", concentrator_stopped),
    ("wireguard-go killed", wireguard_killed),
    ("plantgated killed, then wireguard-go", daemon_killed),
    ("vpn disable", vpn_disabled),
    ("vpn disable, endpoint expired", vpn_disabled_endpoint_expired),
    ("vpn disable, plantgated dead, endpoint expired", vpn_disabled_orphaned_tunnel),
    ("reconnecting", reconnecting),
    ("IPv6 on", ipv6_on),
]


@pytest.mark.parametrize("name", [name for name, _ in STATES])
def test_nothing_leaks_and_nothing_gets_in(run: LeakRun, name: str) -> None:
    enter = dict(STATES)[name]
    check(run, name, enter)


def wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout:.0f} s")


# ---------------------------------------------------------------- the whole run


def outside_planted(packets: list[Seen]) -> list[Seen]:
    return [p for p in packets if not any(a <= p.at <= b for a, b in PLANTED)]


def test_the_whole_run_leaked_nothing_and_lost_nothing(run: LeakRun) -> None:
    run.lab.baseline()
    time.sleep(0.2)
    packets = outside_planted(run.captures.all())
    verdicts = tally(packets, run.facts, run.lab.off_intervals())
    print(f"\nwhole run: {verdicts.summary()}")
    for window in WINDOWS:
        print(f"  {window.line()}")
    assert not verdicts.leaks, "\n".join(leak.text() for leak in verdicts.leaks)
    assert verdicts.count("control") > 0
    assert verdicts.count("wireguard", "gw:wan0") > 0  # the tunnel was there to watch
    drops = run.captures.drops()
    assert not any(drops.values()) and not run.captures.overflowed(), drops


def test_lab_processes_are_back(run: LeakRun) -> None:
    """After the run the lab is as `lab up` left it (what `finally` relies on)."""
    assert run.lab.daemon_pid() is not None and run.lab.concentrator_pid() is not None
    assert run.lab.tunnel_up()
    assert services.read_pid(run.lab.paths, "plantgated") is not None
    assert Path(run.lab.paths.gw_state).is_dir()
