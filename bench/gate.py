"""Measurement: the support gate, from command to kernel effect.

A throwaway trio of namespaces (`<prefix>-ggw` with the lab policy applied, `-gstaff` holding
alice's tunnel address, `-ghub` with a TCP listener on hub1:22). Each repetition takes an
approved request (made beforehand, without the kernel) and measures:

* open  — from the call to the first TCP connection alice -> hub1:22 that the kernel accepts;
* close — from the call to the first connection attempt the kernel drops. The call also
          dumps alice's conntrack entries, the prober's finished ones included (about 0.7 ms
          each through pyroute2), to delete the live ones; their number is kept;

each both ways a person can do it:

* in-process — `GateService.open/close` in a thread inside gw (load the current revision's
               policy, lock and read the store, one libnftables transaction, conntrack
               dump and delete on close, the audit entry);
* CLI        — `plantgate gate open|close ID` as a child process in gw (interpreter start
               and imports on top).

A prober process in `staff` starts a fresh connection 1 ms after the last one ended
(waiting 2 ms for an answer while it expects one, 50 ms while it expects a drop), so an
effect is seen within about 3 ms of happening (probing five times as often gave the same
in-process figures and only more conntrack entries). Every gate call, whatever the path,
runs inside gw. Also measured: expiry, the time from a window's end to the first refused
attempt, with no process involved (2 s windows). Connections the prober leaves are flushed
from conntrack between repetitions.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import spaces
from bench.stats import Summary, summarize
from gateway.lab import netns
from gateway.vpn.gateservice import GateService

ALICE, HUB1, GW_LAN, GW_TUNNEL = "198.18.201.5", "198.18.10.11", "198.18.10.1", "198.18.200.2"
PROBE_TIMEOUT = {"accept": 0.002, "drop": 0.05}  # a late SYN-ACK only delays an accept
PROBE_GAP = 0.001
EFFECT_DEADLINE = 10.0
CLI_TIMEOUT = 60.0


@dataclass(frozen=True)
class GateResult:
    key: str
    label: str
    open_effect: Summary  # call -> first accepted connection
    close_effect: Summary  # call -> first dropped attempt
    open_call: Summary  # how long the call itself took
    close_call: Summary
    flows: Summary  # alice's conntrack entries after the close (the prober's, all finished)

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.key,
            "open_to_first_accept_s": self.open_effect.to_dict(),
            "close_to_first_drop_s": self.close_effect.to_dict(),
            "open_call_s": self.open_call.to_dict(),
            "close_call_s": self.close_call.to_dict(),
            "alice_conntrack_entries_after_close": self.flows.to_dict(),
        }


@dataclass(frozen=True)
class GateRun:
    results: list[GateResult]
    expiry_lateness: Summary  # window end -> first dropped attempt, no process running

    def to_dict(self) -> dict[str, object]:
        return {
            "paths": [r.to_dict() for r in self.results],
            "expiry_end_to_first_drop_s": self.expiry_lateness.to_dict(),
            "probe_timeout_s": PROBE_TIMEOUT,
            "probe_gap_s": PROBE_GAP,
        }


class Trio:
    """gw, staff and hub namespaces, the lab policy applied in gw, a listener on hub1:22."""

    def __init__(self, prefix: str, state: Path, repo: Path) -> None:
        self.gw, self.staff, self.hub = (f"{prefix}-{h}" for h in ("ggw", "gstaff", "ghub"))
        self.state, self.repo = state, repo

    def build(self) -> None:
        for name in (self.gw, self.staff, self.hub):
            netns.create_namespace(name)
        with netns.NamespaceNet(self.gw) as net:
            net.set_up("lo")
            net.add_veth("lan0", "eth0", self.hub)
            net.add_address("lan0", f"{GW_LAN}/24")
            net.set_up("lan0")
            net.add_veth("wg-support", "tun0", self.staff)
            net.add_address("wg-support", f"{GW_TUNNEL}/24")
            net.set_up("wg-support")
            net.add_route("198.18.201.0/24", "198.18.200.1")
        with netns.NamespaceNet(self.staff) as net:
            net.set_up("lo")
            net.add_address("tun0", "198.18.200.1/24")
            net.add_address("tun0", f"{ALICE}/24")
            net.set_up("tun0")
            net.add_route("default", GW_TUNNEL)
        with netns.NamespaceNet(self.hub) as net:
            net.set_up("lo")
            net.add_address("eth0", f"{HUB1}/24")
            net.set_up("eth0")
            net.add_route("default", GW_LAN)
        netns.set_sysctls(self.gw, (("net.ipv4.ip_forward", "1"),))
        spaces.run_in(self.gw, _apply, self.repo / "policies" / "lab.yaml", self.state)

    def remove(self) -> None:
        for name in (self.gw, self.staff, self.hub):
            spaces.kill_inside(name)
            netns.delete_namespace(name)


def _apply(policy: Path, state: Path) -> None:
    from gateway.policy.operations import apply_file

    apply_file(policy, state, user="bench", resolve=False)  # its Nft is made in this thread


def run(repo: Path, prefix: str, reps: int, progress: Callable[[str], None]) -> GateRun:
    """The whole measurement in namespaces of its own (created and removed here)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="plantgate-bench-gate-") as tmp:
        trio = Trio(prefix, Path(tmp) / "state", repo)
        try:
            trio.build()
            with _listening(trio.hub):
                return _measure(trio, reps, progress)
        finally:
            trio.remove()


def _measure(trio: Trio, reps: int, progress: Callable[[str], None]) -> GateRun:
    service = GateService(trio.state)
    paths = [
        ("inprocess", "in-process GateService", _in_process(trio, service)),
        ("cli", "CLI plantgate gate", _cli(trio)),
    ]
    results = []
    for key, label, call in paths:
        progress(f"gate: {label}, open and close x {reps}")
        results.append(_path(trio, service, key, label, call, reps))
    progress(f"gate: expiry in the kernel x {reps} (2 s windows)")
    lateness = [_expiry(trio, service) for _ in range(reps)]
    return GateRun(results, summarize(lateness))


def _path(
    trio: Trio,
    service: GateService,
    key: str,
    label: str,
    call: Callable[[str, int], None],
    reps: int,
) -> GateResult:
    samples: dict[str, list[float]] = {"oe": [], "ce": [], "oc": [], "cc": [], "fl": []}
    for _ in range(reps):
        number = _approved(trio, service)
        effect, took = _timed(trio, functools.partial(call, "open", number), want="accept")
        samples["oe"].append(effect)
        samples["oc"].append(took)
        effect, took = _timed(trio, functools.partial(call, "close", number), want="drop")
        samples["ce"].append(effect)
        samples["cc"].append(took)
        samples["fl"].append(spaces.run_in(trio.gw, _flush_conntrack))
    summaries = (summarize(samples[k]) for k in ("oe", "ce", "oc", "cc", "fl"))
    return GateResult(key, label, *summaries)


def _approved(trio: Trio, service: GateService, window: str = "10m") -> int:
    """A request made and approved, in gw like every gate call here."""

    def make() -> int:
        made = service.request("alice", [f"{HUB1}:ssh"], window, reason="bench", requester="b")
        service.approve(made.id, "bench-approver")
        return made.id

    return spaces.run_in(trio.gw, make)


def _in_process(trio: Trio, service: GateService) -> Callable[[str, int], None]:
    def call(action: str, number: int) -> None:
        operation = service.open if action == "open" else service.close
        spaces.run_in(trio.gw, operation, number, "bench")

    return call


def _cli(trio: Trio) -> Callable[[str, int], None]:
    def call(action: str, number: int) -> None:
        argv = [sys.executable, "-m", "gateway.cli", "gate", action, str(number), "--as", "bench"]
        argv += ["--state-dir", str(trio.state)]
        env, cwd = spaces.child_env(trio.repo), str(trio.repo)
        spaces.run_timed(trio.gw, argv, timeout=CLI_TIMEOUT, env=env, cwd=cwd).check()

    return call


def _timed(trio: Trio, command: Callable[[], None], want: str) -> tuple[float, float]:
    """(call start -> first probe with the wanted outcome, call duration)."""
    prober = _Prober(trio.staff, trio.repo, want)
    prober.start()
    start = time.monotonic()
    command()
    called = time.monotonic() - start
    seen = prober.result(start)
    return seen - start, called


def _expiry(trio: Trio, service: GateService) -> float:
    opened = spaces.run_in(trio.gw, service.open, _approved(trio, service, "2s"), "bench")
    left = (opened.end - datetime.datetime.now(datetime.UTC)).total_seconds()
    time.sleep(max(0.0, left - 1.5))  # the prober process needs ~0.5 s to start
    prober = _Prober(trio.staff, trio.repo, "drop")
    prober.start()
    seen = prober.result(time.monotonic())
    lateness = time.time() - (time.monotonic() - seen) - opened.end.timestamp()
    spaces.run_in(trio.gw, service.expire_due)
    spaces.run_in(trio.gw, _flush_conntrack)
    return lateness


class _Prober:
    """Connection attempts alice -> hub1:22 from `staff` until one has the wanted outcome.

    A process of its own (this file's `probe` entry point), so that the gate call, which may
    run in a thread of this process, never delays the probes through the GIL. Times are
    CLOCK_MONOTONIC, which both processes share.
    """

    def __init__(self, staff: str, repo: Path, want: str) -> None:
        self.staff, self.repo, self.want = staff, repo, want
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        argv = [sys.executable, "-m", "bench.gate", "probe", self.want]
        env, cwd = spaces.child_env(self.repo), str(self.repo)
        self.proc = spaces.run_in(
            self.staff,
            subprocess.Popen,
            argv,
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"ready":
            raise RuntimeError("the gate prober did not start")

    def result(self, start: float) -> float:
        assert self.proc is not None and self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        self.proc.wait(EFFECT_DEADLINE + 5)
        if not line:
            raise RuntimeError(f"the gate had no effect ({self.want}) within {EFFECT_DEADLINE} s")
        return max(float(line), start)


def probe_main(want: str) -> None:
    """`python -m bench.gate probe accept|drop`, run inside `staff`: print 'ready', then the
    monotonic time of the first attempt with that outcome."""
    print("ready", flush=True)
    deadline = time.monotonic() + EFFECT_DEADLINE
    while time.monotonic() < deadline:
        began = time.monotonic()
        if _attempt(PROBE_TIMEOUT[want]) == want:
            print(f"{began:.6f}", flush=True)
            return
        time.sleep(PROBE_GAP)


def _attempt(timeout: float) -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # close with a reset: the entry leaves conntrack's live states at once
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.bind((ALICE, 0))
        sock.settimeout(timeout)
        try:
            sock.connect((HUB1, 22))
        except (TimeoutError, OSError):
            return "drop"
        return "accept"


@contextlib.contextmanager
def _listening(hub: str) -> Iterator[None]:
    listener = netns.socket_in_netns(hub)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((HUB1, 22))
    listener.listen(512)
    listener.settimeout(0.05)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(2)
        listener.close()


def _flush_conntrack() -> int:
    """Empty gw's conntrack table; returns how many entries alice had in it."""
    from pyroute2 import Conntrack
    from pyroute2.netlink.nfnetlink.nfctsocket import NFCTAttrTuple

    conntrack: Any = Conntrack()
    try:
        alice = len(list(conntrack.dump_entries(tuple_orig=NFCTAttrTuple(saddr=ALICE))))
        conntrack.flush()
    finally:
        conntrack.close()
    return alice


if __name__ == "__main__":
    if sys.argv[1:2] == ["probe"] and sys.argv[2:3] in (["accept"], ["drop"]):
        probe_main(sys.argv[2])
