"""Measurement: the support tunnel, from its start to the first handshake and the first staff
connection that gets through.

A lab with one hub comes up as `make run` brings it (plantgated in gw, the concentrator in
upstream, staff behind it, sshd on gw). An open gate element for alice -> gw 198.18.200.2
tcp/22 is in place throughout, so what is measured is the tunnel, not the gate. Each
repetition starts from a tunnel that is off, with the concentrator's peer entry reset
(removed and added again: no endpoint, no handshake), and measures, from the moment the
start is asked for:

* first handshake  — the concentrator records the appliance's handshake (a watcher process
                     inside upstream's mount namespace reads wg-conc's UAPI socket every
                     2 ms and reports the monotonic time it first sees one);
* first connection — a prober in `staff` connects to gw:22 every few milliseconds (20 ms
                     timeout); the first accepted connection is the answer;

for three ways the tunnel starts:

* in-process `vpn enable` — `operations.set_vpn_enabled` in a thread inside gw (one
                            libnftables transaction, revision and audit), then plantgated
                            follows (it is woken by the `policy.applied` event);
* CLI `vpn enable`        — `plantgate vpn enable` as a child process in gw (interpreter
                            start and imports on top);
* plantgated start        — the daemon started with the VPN on, as at boot (interpreter,
                            policy load, first round, then the tunnel).

The call's own duration is recorded too (for plantgated: until its ready file).
"""

from __future__ import annotations

import argparse
import contextlib
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import spaces
from bench.stats import Summary, summarize
from gateway.lab import lab, netns, services, support, topology
from gateway.lab.services import LabPaths
from gateway.state import ready_path

ALICE = topology.STAFF_ADDRESSES[0]
PROBE_TIMEOUT = 0.02
PROBE_GAP = 0.002
DEADLINE = 20.0
WATCH_EVERY = 0.002


@dataclass(frozen=True)
class StartResult:
    key: str
    label: str
    call: Summary  # how long the start call took (plantgated: until ready)
    handshake: Summary  # start -> concentrator sees the handshake
    connection: Summary  # start -> first staff TCP connection to gw:22 accepted

    def to_dict(self) -> dict[str, object]:
        return {
            "path": self.key,
            "call_s": self.call.to_dict(),
            "start_to_handshake_s": self.handshake.to_dict(),
            "start_to_first_connection_s": self.connection.to_dict(),
        }


@dataclass(frozen=True)
class VpnRun:
    results: list[StartResult]

    def to_dict(self) -> dict[str, object]:
        return {"results": [r.to_dict() for r in self.results]}


@dataclass(frozen=True)
class Sample:
    call: float
    handshake: float
    connection: float


PATHS: tuple[tuple[str, str], ...] = (
    ("in-process", "in-process `vpn enable` (set_vpn_enabled in gw)"),
    ("cli", "CLI `plantgate vpn enable` in gw"),
    ("daemon", "plantgated start with the VPN on (as at boot)"),
)


# ---------------------------------------------------------------- the watcher (child process)


def watch_handshake(socket_path: str, public_hex: str, deadline: float) -> None:
    """Print the monotonic time at which `public_hex` first has a handshake (UAPI `get`)."""
    print("ready", flush=True)
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        if _handshake_seen(socket_path, public_hex):
            print(f"{time.monotonic():.6f}", flush=True)
            return
        time.sleep(WATCH_EVERY)
    print("timeout", flush=True)


def _handshake_seen(socket_path: str, public_hex: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.connect(socket_path)
        sock.sendall(b"get=1\n\n")
        data = b""
        while not data.endswith(b"\n\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    peer = None
    for line in data.decode().splitlines():
        key, _, value = line.partition("=")
        if key == "public_key":
            peer = value
        elif key == "last_handshake_time_sec" and peer == public_hex and value != "0":
            return True
    return False


@contextlib.contextmanager
def handshake_watcher(paths: LabPaths, public_key: str) -> Iterator[Callable[[], float]]:
    """A watcher in upstream's mount namespace; yields a function that waits for its time."""
    import base64

    public_hex = base64.b64decode(public_key).hex()
    argv = [sys.executable, "-m", "bench.vpn", "--watch-handshake", public_hex]
    command = services.host_command(paths, "upstream", argv, wd=Path(__file__).parents[1])
    proc = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        text=True,
        env=spaces.child_env(Path(__file__).parents[1]),
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError("the handshake watcher did not start")

        def result() -> float:
            assert proc.stdout is not None
            line = proc.stdout.readline().strip()
            if line in ("", "timeout"):
                raise RuntimeError(f"no handshake within {DEADLINE:.0f} s")
            return float(line)

        yield result
    finally:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait()


# ---------------------------------------------------------------- the prober


class Prober:
    """Connects from staff (alice) to gw:22 until one connection is accepted."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.accepted_at: float | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Prober:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=5)

    def _run(self) -> None:
        end = time.monotonic() + DEADLINE
        while not self.stop.is_set() and time.monotonic() < end:
            sock = netns.socket_in_netns(self.namespace, socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((ALICE, 0))
                sock.settimeout(PROBE_TIMEOUT)
                sock.connect((topology.GW_TUNNEL, support.SSH_PORT))
                self.accepted_at = time.monotonic()
                return
            except OSError:
                time.sleep(PROBE_GAP)
            finally:
                sock.close()

    def wait(self) -> float:
        self.thread.join(timeout=DEADLINE + 1)
        if self.accepted_at is None:
            raise RuntimeError(f"no staff connection within {DEADLINE:.0f} s")
        return self.accepted_at


# ---------------------------------------------------------------- one repetition


def _set_vpn(paths: LabPaths, enabled: bool) -> None:
    from gateway.policy.operations import set_vpn_enabled

    netns.in_netns(paths.namespace("gw"), set_vpn_enabled, paths.gw_state, enabled, user="bench")


def _tunnel_gone(paths: LabPaths) -> bool:
    with netns.NamespaceNet(paths.namespace("gw")) as net:
        try:
            net.index("wg-support")
        except LookupError:
            return True
    return False


def _wait(predicate: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.01)
    raise RuntimeError(f"timed out waiting for {what}")


def _reset_concentrator_peer(paths: LabPaths, public_key: str) -> None:
    wg = services.find_binary("wg")
    services.run_on(
        paths, "upstream", [wg, "set", support.CONC_IFNAME, "peer", public_key, "remove"]
    )
    support.configure_concentrator(paths)


def _open_gate(paths: LabPaths) -> None:
    element = f"{{ {ALICE} . {topology.GW_TUNNEL} . tcp . 22 timeout 1h }}"
    argv = ["nft", "add", "element", "inet", "plantgate", "gate_support_v4", element]
    done = services.run_on(paths, "gw", argv)
    if done.returncode != 0:
        raise RuntimeError(f"cannot open the gate element: {done.stderr.strip()}")


def _start(paths: LabPaths, key: str, policy: Path) -> float:
    """Start the tunnel the `key` way; returns the call's own duration."""
    started = time.monotonic()
    if key == "in-process":
        _set_vpn(paths, True)
    elif key == "cli":
        argv = [sys.executable, "-m", "gateway.cli", "vpn", "enable"]
        argv += ["--state-dir", str(paths.gw_state)]
        done = services.run_on(paths, "gw", argv, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"plantgate vpn enable failed: {done.stderr.strip()}")
    else:
        spec = services.daemon_spec(paths, policy)
        pid = services.start_process(paths, spec.host, spec.argv, spec.name, dict(spec.env))
        _wait(lambda: ready_path(paths.gw_state).is_file(), "plantgated ready")
        del pid
    return time.monotonic() - started


def _stop(paths: LabPaths, key: str) -> None:
    """Bring the tunnel down the way `key` will bring it up."""
    if key == "daemon":
        _set_vpn(paths, True)  # on, but with plantgated stopped (it takes the tunnel down)
        services.stop_service(paths, "plantgated")
    else:
        _set_vpn(paths, False)
    _wait(lambda: _tunnel_gone(paths), "the tunnel to go")


def repetition(paths: LabPaths, key: str, public_key: str, policy: Path) -> Sample:
    _stop(paths, key)
    _reset_concentrator_peer(paths, public_key)
    _open_gate(paths)
    with handshake_watcher(paths, public_key) as handshake_time:
        with Prober(paths.namespace("staff")) as prober:
            started = time.monotonic()
            call = _start(paths, key, policy)
            connected = prober.wait()
        shaken = handshake_time()
    return Sample(call, shaken - started, connected - started)


def run(repo: Path, prefix: str, reps: int, progress: Callable[[str], None]) -> VpnRun:
    reps = max(1, reps)
    policy = repo / "policies" / "lab.yaml"
    progress("vpn: lab with plantgated, the concentrator and staff")
    with tempfile.TemporaryDirectory(prefix="vpnlab-") as root:
        paths = lab.lab_paths(prefix, Path(root))
        try:
            lab.up(prefix, hubs=1, policy=policy, root=Path(root))
            public_key = support.appliance_public_key(paths)
            samples: dict[str, list[Sample]] = {key: [] for key, _ in PATHS}
            for turn in range(reps):
                for key, _ in PATHS:
                    progress(f"vpn: {key} start, repetition {turn + 1} of {reps}")
                    samples[key].append(repetition(paths, key, public_key, policy))
        finally:
            lab.down(prefix, root=Path(root))
    return VpnRun(
        [
            StartResult(
                key,
                label,
                summarize([s.call for s in samples[key]]),
                summarize([s.handshake for s in samples[key]]),
                summarize([s.connection for s in samples[key]]),
            )
            for key, label in PATHS
        ]
    )


def _main() -> None:
    parser = argparse.ArgumentParser(description="helper of bench/vpn.py")
    parser.add_argument("--watch-handshake", metavar="PUBLIC_KEY_HEX", required=True)
    args = parser.parse_args()
    path = f"/var/run/wireguard/{support.CONC_IFNAME}.sock"
    watch_handshake(path, args.watch_handshake, DEADLINE)


if __name__ == "__main__":
    _main()
    sys.exit(0)
