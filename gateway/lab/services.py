"""Processes the lab runs inside its namespaces: the outside world's DNS and time, and the
appliance daemon.

What: a generic `start_process`/`stop_process` pair (pidfile and log file per process in the lab
directory), the dnsmasq configuration for the lab's `.test` names (pure text), the internet's
time server (chronyd on 198.19.0.123, stratum 1, never touching the clock), the argv of
`plantgated` as the appliance image starts it, and the per-namespace resolv.conf that
`ip netns exec` binds over /etc/resolv.conf.

Why `ip netns exec` to run processes: besides entering the namespace it gives the process a
private mount namespace in which /etc/netns/<ns>/resolv.conf is bound over /etc/resolv.conf, so
programs on lab hosts resolve lab names exactly as the appliance would with its own resolver.

Processes are started in their own session, so they outlive the `plantgate lab up` that started
them; `lab down` finds them again by pidfile and, after a crash, by namespace.

Hosts that run WireGuard (`gw`, `upstream` in a lab with a policy) also have a mount namespace
of their own (`mountns.py`); `host_command` enters it before `ip netns exec`, so every process
there, and `plantgate lab exec`, meets that host's WireGuard control sockets and no other lab's.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import dns.exception
import dns.message
import dns.query
import dns.rcode

from gateway.lab import mountns, topology
from gateway.lab.netns import (
    namespace_exists,
    namespace_inode,
    pid_namespace_inode,
    socket_in_netns,
)
from gateway.state import ready_path

ETC_NETNS = Path("/etc/netns")
NTP_UPSTREAM = "chronyd-upstream"
NTP_PACKET = 48
STOP_GRACE = 2.0
RESOLVED_HOSTS = ("gw", "plant")  # plus every hub

DNS_RECORDS: tuple[tuple[str, str], ...] = (
    ("ntp.upstream.test", topology.NTP_ADDR),
    ("dns.upstream.test", topology.DNS_ADDR),
    ("vpn.support.test", topology.SUPPORT_ADDR),
    ("account.upstream.test", topology.ACCOUNT_ADDR),
    ("gw.plant.test", topology.GW_WAN),
    ("plant.test", topology.PLANT_WORKSTATION),
)

# Popen handles of processes this Python process started; kept so they can be reaped.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class ServiceError(RuntimeError):
    """A lab process could not be started or did not become ready."""


@dataclass(frozen=True)
class LabPaths:
    """Where one lab keeps its files, and how its hosts map to namespaces."""

    prefix: str
    directory: Path

    def namespace(self, host: str) -> str:
        return topology.namespace_name(self.prefix, host)

    def pidfile(self, name: str) -> Path:
        return self.directory / f"{name}.pid"

    def logfile(self, name: str) -> Path:
        return self.directory / f"{name}.log"

    @property
    def dnsmasq_conf(self) -> Path:
        return self.directory / "dnsmasq.conf"

    @property
    def gw_state(self) -> Path:
        return self.directory / "gw-state"

    @property
    def ntp_upstream_conf(self) -> Path:
        return self.directory / f"{NTP_UPSTREAM}.conf"

    @property
    def ntp_upstream_dir(self) -> Path:
        """chronyd's socket, pid and drift files: a private directory, as chronyd requires."""
        return self.directory / NTP_UPSTREAM

    @property
    def mnt_dir(self) -> Path:
        """The hosts' private mount namespaces (WireGuard sockets), one file per host."""
        return self.directory / "mnt"

    def mount_ns(self, host: str) -> Path | None:
        """The mount namespace file of `host` if it has one, else None."""
        path = self.mnt_dir / host
        return path if mountns.is_namespace_file(path) else None

    @property
    def ssh_dir(self) -> Path:
        """Lab-only ssh keys and sshd configurations."""
        return self.directory / "ssh"


@dataclass(frozen=True)
class ServiceSpec:
    """A long-running lab process: its name (pidfile/log stem), host and command."""

    name: str
    host: str
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    description: str = ""
    ready: Literal["dns", "ntp", "policy", "alive", "wireguard", "tcp", "tls"] = "alive"
    target: str = ""  # "wireguard": the interface; "tcp": ADDR:PORT that must accept


# ---------------------------------------------------------------- pure: configuration


def dnsmasq_config(records: Iterable[tuple[str, str]] = DNS_RECORDS) -> str:
    """dnsmasq configuration for the lab's resolver on 198.19.0.53 (only this file is read)."""
    lines = [
        "# written by `plantgate lab up`; dnsmasq is started with --conf-file= this file only",
        "no-resolv",
        "no-hosts",
        f"listen-address={topology.DNS_ADDR}",
        "bind-dynamic",
        "port=53",
        "local=/test/",
        "local-ttl=60",
        "log-queries",
        "log-facility=-",
        "pid-file=",
        *(f"host-record={name},{addr}" for name, addr in records),
    ]
    return "\n".join(lines) + "\n"


def dnsmasq_spec(paths: LabPaths, binary: str) -> ServiceSpec:
    argv = (binary, "--keep-in-foreground", f"--conf-file={paths.dnsmasq_conf}")
    return ServiceSpec("dnsmasq", "upstream", argv, description="DNS for *.test", ready="dns")


def upstream_chrony_config(paths: LabPaths) -> str:
    """The internet's time server at 198.19.0.123: stratum 1 from its own clock, for anyone.

    Its command socket and files live in the lab directory (the default socket under /run
    is shared by every namespace); chronyd is started with -x, so it never sets the clock.
    """
    private = paths.ntp_upstream_dir
    lines = [
        "# written by `plantgate lab up`: the internet's NTP server for the lab (chronyd -x)",
        "local stratum 1",
        "allow all",
        f"bindaddress {topology.NTP_ADDR}",
        "cmdport 0",
        f"bindcmdaddress {private / 'chronyd.sock'}",
        f"pidfile {private / 'chronyd.pid'}",
        f"driftfile {private / 'chronyd.drift'}",
    ]
    return "\n".join(lines) + "\n"


def upstream_chrony_spec(paths: LabPaths, binary: str | None = None) -> ServiceSpec:
    argv = (
        binary or find_binary("chronyd"),
        "-d",
        "-x",
        "-u",
        "root",
        "-f",
        str(paths.ntp_upstream_conf),
    )
    return ServiceSpec(NTP_UPSTREAM, "upstream", argv, description="NTP server", ready="ntp")


def daemon_spec(paths: LabPaths, policy: Path) -> ServiceSpec:
    """`plantgated` with the lab policy and the lab's own state directory.

    `--ntp-lab-timing`: the relay polls the lab's upstream every 2 s and turns to orphan
    mode within a minute of losing it. The clock is never disciplined in the lab.
    """
    argv = (
        sys.executable,
        "-m",
        "gateway.daemon",
        "--policy",
        str(policy),
        "--state-dir",
        str(paths.gw_state),
        "--ntp-lab-timing",
    )
    package_root = str(Path(__file__).resolve().parents[2])
    pythonpath = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    env = (("PLANTGATE_STATE_DIR", str(paths.gw_state)), ("PYTHONPATH", pythonpath))
    return ServiceSpec("plantgated", "gw", argv, env, "the appliance daemon", ready="policy")


MES_BINDS = (f"{topology.GW_LAN}:443", f"{topology.GW_WAN}:443")


def mes_spec(paths: LabPaths) -> ServiceSpec:
    """The MES (`plantgate mes serve`) on the appliance's hub and plant addresses, port 443,
    with the lab's gw state (its CA is `gw-state/mes/ca/ca.crt`). Ready once it answers TLS."""
    argv = [sys.executable, "-m", "mes.cli_serve", "--state-dir", str(paths.gw_state)]
    for bind in MES_BINDS:
        argv += ["--bind", bind]
    argv += ["--name", "gw.plant.test"]
    package_root = str(Path(__file__).resolve().parents[2])
    pythonpath = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    env = (("PLANTGATE_STATE_DIR", str(paths.gw_state)), ("PYTHONPATH", pythonpath))
    return ServiceSpec(
        "mes", "gw", tuple(argv), env, "the MES (HTTPS)", ready="tls", target=MES_BINDS[0]
    )


def mes_ca(paths: LabPaths) -> Path:
    return paths.gw_state / "mes" / "ca" / "ca.crt"


def tls_answers(lab: LabPaths, host: str, addr: str, port: int, ca: Path) -> bool:
    """Whether a TLS server at addr:port completes a handshake trusted by `ca`, from `host`."""
    try:
        context = ssl.create_default_context(cafile=str(ca))
    except (OSError, ssl.SSLError):
        return False
    context.check_hostname = False  # the certificate names the address; trust is the CA
    sock = socket_in_netns(lab.namespace(host), socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(1.0)
        sock.connect((addr, port))
        with context.wrap_socket(sock) as tls:
            return tls.version() is not None
    except (OSError, ssl.SSLError):
        return False
    finally:
        sock.close()


def wait_tls(lab: LabPaths, spec: ServiceSpec, pid: int, timeout: float = 30.0) -> None:
    """Wait until `spec.target` (ADDR:PORT) answers TLS with the lab MES CA."""
    addr, _, port = spec.target.rpartition(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid):
            raise ServiceError(f"{spec.name} exited at start:\n{log_tail(lab, spec.name)}")
        if tls_answers(lab, spec.host, addr, int(port), mes_ca(lab)):
            return
        time.sleep(0.05)
    raise ServiceError(
        f"{spec.name} did not answer TLS on {spec.target} within {timeout:.0f} s:\n"
        f"{log_tail(lab, spec.name)}"
    )


def resolv_conf() -> str:
    return f"# lab resolver (plantgate lab)\nnameserver {topology.DNS_ADDR}\nsearch test\n"


def resolved_hosts(plan: topology.LabPlan) -> list[str]:
    """Hosts that get /etc/netns/<ns>/resolv.conf: gw, hubs and plant."""
    return [h.name for h in plan.hosts if h.name in RESOLVED_HOSTS or h.role == "hub"]


# ---------------------------------------------------------------- side effects


def find_binary(name: str) -> str:
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin:/usr/bin:/bin"
    found = shutil.which(name, path=path)
    if found is None:
        raise ServiceError(f"{name} not found (install the Debian package that provides it)")
    return found


def write_resolv_confs(namespaces: Iterable[str]) -> None:
    for ns in namespaces:
        target = ETC_NETNS / ns
        target.mkdir(parents=True, exist_ok=True)
        (target / "resolv.conf").write_text(resolv_conf())


def remove_resolv_confs(prefix: str) -> list[str]:
    """Remove /etc/netns/<prefix>-<host> directories of lab `prefix`; returns their names."""
    removed: list[str] = []
    if not ETC_NETNS.is_dir():
        return removed
    for entry in sorted(ETC_NETNS.iterdir()):
        if entry.is_dir() and topology.parse_namespace(prefix, entry.name) is not None:
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry.name)
    return removed


def write_dnsmasq_config(paths: LabPaths) -> None:
    paths.dnsmasq_conf.write_text(dnsmasq_config())


def write_upstream_chrony_config(paths: LabPaths) -> None:
    paths.ntp_upstream_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(paths.ntp_upstream_dir, 0o700)
    paths.ntp_upstream_conf.write_text(upstream_chrony_config(paths))


def host_command(
    lab: LabPaths, host: str, argv: Sequence[str], wd: Path | None = None
) -> list[str]:
    """`argv` as run on lab host `host`: in its network namespace, and in its mount
    namespace when it has one (the hosts with WireGuard), in directory `wd` (default: the
    current one; entering a mount namespace would otherwise start it in /)."""
    command = [find_binary("ip"), "netns", "exec", lab.namespace(host), *argv]
    return mountns.enter_argv(lab.mount_ns(host), command, wd=wd or Path.cwd())


def run_on(
    lab: LabPaths, host: str, argv: Sequence[str], timeout: float = 30.0
) -> subprocess.CompletedProcess[str]:
    """Run a short command on a lab host and collect its output (no check)."""
    return subprocess.run(
        host_command(lab, host, argv), capture_output=True, text=True, timeout=timeout, check=False
    )


def start_process(
    lab: LabPaths,
    host: str,
    argv: Sequence[str],
    name: str,
    env: Mapping[str, str] | None = None,
) -> int:
    """Run `argv` inside host `host`'s namespace, detached; returns its pid.

    stdout and stderr go to LABDIR/NAME.log (appended), the pid to LABDIR/NAME.pid.
    """
    if not argv:
        raise ValueError("start_process: empty command")
    lab.directory.mkdir(parents=True, exist_ok=True)
    command = host_command(lab, host, argv, wd=lab.directory)
    full_env = {**os.environ, **(env or {})}
    with lab.logfile(name).open("ab") as log:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        log.write(f"--- {stamp} start in {host}: {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=lab.directory,
            env=full_env,
            start_new_session=True,
            close_fds=True,
        )
    _CHILDREN[proc.pid] = proc
    _write_pidfile(lab.pidfile(name), proc.pid)
    return proc.pid


def _write_pidfile(path: Path, pid: int) -> None:
    tmp = path.with_suffix(".pid.tmp")
    tmp.write_text(f"{pid}\n")
    tmp.replace(path)


def read_pid(lab: LabPaths, name: str) -> int | None:
    try:
        text = lab.pidfile(name).read_text().strip()
    except (FileNotFoundError, NotADirectoryError):
        return None
    return int(text) if text.isdigit() else None


def is_alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie (a zombie we started is reaped here)."""
    _reap(pid)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def _reap(pid: int) -> None:
    """Collect the exit status of a process we started (other zombies are left alone)."""
    proc = _CHILDREN.get(pid)
    if proc is not None and proc.poll() is not None:
        del _CHILDREN[pid]


def running_pid(lab: LabPaths, name: str, namespaces: Iterable[str]) -> int | None:
    """The pid in NAME.pid if that process is alive inside one of `namespaces`, else None.

    Checking the namespace guards against a stale pidfile whose pid was reused.
    """
    pid = read_pid(lab, name)
    if pid is None or not is_alive(pid):
        return None
    inodes = {namespace_inode(ns) for ns in namespaces if namespace_exists(ns)}
    return pid if pid_namespace_inode(pid) in inodes else None


def terminate(pids: Iterable[int], grace: float = STOP_GRACE) -> tuple[list[int], list[int]]:
    """SIGTERM `pids`, SIGKILL what is left after `grace` seconds.

    Returns (pids signalled, pids still alive after SIGKILL — e.g. stuck in the kernel).
    """
    targets = [p for p in dict.fromkeys(pids) if p != os.getpid() and is_alive(p)]
    for pid in targets:
        _signal(pid, signal.SIGTERM)
    remaining = _wait_gone(targets, grace)
    for pid in remaining:
        _signal(pid, signal.SIGKILL)
    return targets, _wait_gone(remaining, 1.0)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _wait_gone(pids: list[int], timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    remaining = [p for p in pids if is_alive(p)]
    while remaining and time.monotonic() < deadline:
        time.sleep(0.02)
        remaining = [p for p in remaining if is_alive(p)]
    return remaining


def stop_process(lab: LabPaths, name: str, namespaces: Iterable[str]) -> int | None:
    """Stop the process of NAME.pid if it still runs in the lab; remove the pidfile."""
    pid = running_pid(lab, name, namespaces)
    if pid is not None:
        _, survivors = terminate([pid])
        if survivors:
            raise ServiceError(f"{name} (pid {pid}) survived SIGKILL")
    with contextlib.suppress(FileNotFoundError):
        lab.pidfile(name).unlink()
    return pid


def stop_service(lab: LabPaths, name: str) -> int | None:
    """Stop lab service `name` (e.g. `chronyd-upstream`) if it runs; returns its pid."""
    namespaces = [lab.namespace(h) for h in topology.FIXED_HOSTS]
    return stop_process(lab, name, namespaces)


def start_service(lab: LabPaths, spec: ServiceSpec) -> int:
    """Start a lab service again (after `stop_service`) and wait until it is ready."""
    pid = start_process(lab, spec.host, spec.argv, spec.name, dict(spec.env))
    wait_ready(lab, spec, pid)
    return pid


def log_tail(lab: LabPaths, name: str, lines: int = 8) -> str:
    try:
        text = lab.logfile(name).read_text(errors="replace")
    except FileNotFoundError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


def dns_answers(lab: LabPaths, host: str, qname: str, timeout: float = 0.5) -> list[str]:
    """A-record answers for `qname` from the lab resolver, asked from inside `host`."""
    query = dns.message.make_query(qname, "A")
    sock = socket_in_netns(lab.namespace(host), socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)  # dnspython requires a non-blocking socket when given one
    try:
        reply = dns.query.udp(query, topology.DNS_ADDR, timeout=timeout, sock=sock)
    finally:
        sock.close()
    if reply.rcode() != dns.rcode.NOERROR:
        return []
    return [item.to_text() for rrset in reply.answer for item in rrset]


def wait_dns_ready(lab: LabPaths, pid: int, timeout: float = 5.0) -> None:
    """Wait until dnsmasq answers inside `upstream`; ServiceError with its log if it does not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid):
            raise ServiceError(f"dnsmasq exited at start:\n{log_tail(lab, 'dnsmasq')}")
        try:
            if dns_answers(lab, "upstream", "dns.upstream.test", timeout=0.2):
                return
        except (OSError, dns.exception.DNSException):
            time.sleep(0.05)
    raise ServiceError(
        f"dnsmasq did not answer within {timeout:.0f} s:\n{log_tail(lab, 'dnsmasq')}"
    )


def ntp_answers(lab: LabPaths, host: str, addr: str, timeout: float = 0.5) -> bool:
    """Whether an NTP server at `addr` answers a client request sent from inside `host`."""
    stamp = os.urandom(8)
    sock = socket_in_netns(lab.namespace(host), socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.settimeout(timeout)
        sock.sendto(bytes([0x23]) + bytes(39) + stamp, (addr, 123))
        data = sock.recv(1024)
    except OSError:
        return False
    finally:
        sock.close()
    return len(data) >= NTP_PACKET and data[24:32] == stamp


def wait_ntp_ready(lab: LabPaths, spec: ServiceSpec, pid: int, timeout: float = 5.0) -> None:
    """Wait until the upstream chronyd answers NTP on 198.19.0.123."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid):
            raise ServiceError(f"{spec.name} exited at start:\n{log_tail(lab, spec.name)}")
        if ntp_answers(lab, spec.host, topology.NTP_ADDR, timeout=0.2):
            return
        time.sleep(0.05)
    raise ServiceError(
        f"{spec.name} did not answer within {timeout:.0f} s:\n{log_tail(lab, spec.name)}"
    )


def wait_alive(lab: LabPaths, spec: ServiceSpec, pid: int, settle: float = 0.3) -> None:
    """Generic readiness for services without a probe: still running after `settle` seconds."""
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        if not is_alive(pid):
            raise ServiceError(f"{spec.name} exited at start:\n{log_tail(lab, spec.name)}")
        time.sleep(0.02)


def wait_policy_loaded(lab: LabPaths, spec: ServiceSpec, pid: int, timeout: float = 15.0) -> None:
    """Wait until the daemon says it is ready: policy loaded, names resolved a first time.

    Probes run right after `up` must meet the firewall as it will be, not the moment before
    it exists or before its FQDN sets are filled.
    """
    ready = ready_path(lab.gw_state)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid):
            raise ServiceError(f"{spec.name} exited at start:\n{log_tail(lab, spec.name)}")
        with contextlib.suppress(OSError):
            if ready.read_text().strip() == str(pid):
                return
        time.sleep(0.05)
    raise ServiceError(
        f"{spec.name} was not ready within {timeout:.0f} s:\n{log_tail(lab, spec.name)}"
    )


def wait_watcher(lab: LabPaths, pid: int, timeout: float = 10.0) -> bool:
    """Wait until plantgated's traffic watcher reads its sources (`running` in its status
    report, written by this pid), so a scan right after `lab up` is seen. False on timeout:
    the lab is usable, the watcher is late (`lab status` shows it)."""
    from gateway.watch.status import read_status

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        report = read_status(lab.gw_state)
        if report is not None and report.get("pid") == pid and report["state"] == "running":
            return True
        if not is_alive(pid):
            return False
        time.sleep(0.05)
    return False


def wait_wireguard(lab: LabPaths, spec: ServiceSpec, pid: int, timeout: float = 5.0) -> None:
    """Wait until `wg show IFACE` answers on the host (wireguard-go made its socket)."""
    deadline = time.monotonic() + timeout
    argv = [find_binary("wg"), "show", spec.target, "listen-port"]
    while time.monotonic() < deadline:
        if not is_alive(pid):
            raise ServiceError(f"{spec.name} exited at start:\n{log_tail(lab, spec.name)}")
        if run_on(lab, spec.host, argv, timeout=2.0).returncode == 0:
            return
        time.sleep(0.02)
    raise ServiceError(
        f"{spec.name} did not answer within {timeout:.0f} s:\n{log_tail(lab, spec.name)}"
    )


def tcp_accepts(lab: LabPaths, host: str, addr: str, port: int, timeout: float = 0.3) -> bool:
    """Whether something accepts TCP at addr:port, asked from inside `host`."""
    sock = socket_in_netns(lab.namespace(host), socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((addr, port))
    except OSError:
        return False
    finally:
        sock.close()
    return True


def wait_tcp(lab: LabPaths, spec: ServiceSpec, pid: int, timeout: float = 5.0) -> None:
    """Wait until the service accepts connections at `spec.target` (ADDR:PORT) on its host."""
    addr, _, port = spec.target.rpartition(":")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(pid):
            raise ServiceError(f"{spec.name} exited at start:\n{log_tail(lab, spec.name)}")
        if tcp_accepts(lab, spec.host, addr, int(port)):
            return
        time.sleep(0.02)
    raise ServiceError(
        f"{spec.name} did not accept on {spec.target} within {timeout:.0f} s:\n"
        f"{log_tail(lab, spec.name)}"
    )


def wait_ready(lab: LabPaths, spec: ServiceSpec, pid: int) -> None:
    """Block until `spec`'s process is ready in its own terms (see `ServiceSpec.ready`)."""
    if spec.ready == "wireguard":
        wait_wireguard(lab, spec, pid)
    elif spec.ready == "tcp":
        wait_tcp(lab, spec, pid)
    elif spec.ready == "tls":
        wait_tls(lab, spec, pid)
    elif spec.ready == "dns":
        wait_dns_ready(lab, pid)
    elif spec.ready == "ntp":
        wait_ntp_ready(lab, spec, pid)
    elif spec.ready == "policy":
        wait_policy_loaded(lab, spec, pid)
    else:
        wait_alive(lab, spec, pid)
