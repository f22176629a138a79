"""The lab's support side: the vendor's concentrator, its staff, and real ssh targets.

In `upstream` (the internet) the concentrator is wireguard-go on `wg-conc`, 198.18.200.1/24,
listening on UDP 51820; the appliance reaches it as `vpn.support.test` (198.19.0.51).
wireguard-go binds the port on every address of `upstream`; the one the appliance uses is
the one its firewall allows. The concentrator has one peer, the appliance, whose public key
comes from the key `lab up` makes in gw's state directory before plantgated starts (the
daemon then finds it and keeps it), with allowed IPs 198.18.200.2/32 (the appliance inside
the tunnel) and 198.18.10.0/24 (the hubs, which staff reach through the appliance).

The staff live in their own namespace, `staff` (alice 198.18.201.5, bob .6, mallory .66, as
in policies/lab.yaml), whose router is upstream's `staff0` (198.18.201.1). In upstream a
policy rule sends what arrives from the staff (`from 198.18.201.0/24 iif staff0`) to table
201, whose default route is `wg-conc`; the replies come back out of the tunnel and reach the
staff by the connected route. So `plantgate lab exec staff -- ssh root@198.18.200.2` is what
a support engineer does, and nothing of the internet's own routing changes.

The targets are real sshd processes (Debian's openssh-server), on gw (lan0, wan0 and the
tunnel address) and on the first `SSH_HUBS` hubs, each listening on its host's lab addresses
only, with host keys made in the lab directory. One lab-only client key logs in as root with
a forced command that only prints `plantgate-lab-ssh HOST`: a connection proves the path,
and nobody gets a shell on the machine through the lab.

The concentrator's private key below is a lab-only test key, published with the lab policy.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from gateway.lab import services, topology
from gateway.lab.netns import NamespaceNet
from gateway.lab.services import LabPaths, ServiceError, ServiceSpec
from gateway.vpn import keys, wg

CONC_IFNAME = "wg-conc"
CONC_SERVICE = "wg-conc"
CONC_PORT = 51820
# Lab-only test key of the lab concentrator; its public key is in policies/lab.yaml.
# It is published in this repository: never use it for anything but the namespace lab.
CONC_PRIVATE_KEY = "OJC+1R29fV/41QT+w6qCIOOJhSfzSSEBGwKb96dH3Vk="
CONC_PUBLIC_KEY = "kN0jCgWbDUSBsBs6o2aQHsISjENoOJYOM+uSc8NLTFI="
APPLIANCE_ALLOWED = (f"{topology.GW_TUNNEL}/32", topology.HUB_NET)
STAFF_TABLE = 201
STAFF_RULE_PRIORITY = 1000
HANDSHAKE_TIMEOUT = 20.0
SSH_HUBS = 4  # sshd on hub1..hub4 only: a 200-hub lab does not need 200 of them
SSH_PORT = 22
SSH_USER = "root"
SSH_BANNER = "plantgate-lab-ssh"
PRIVSEP_DIR = Path("/run/sshd")  # sshd's compiled-in privilege separation directory


# ---------------------------------------------------------------- the concentrator


def concentrator_key_file(paths: LabPaths) -> Path:
    return paths.directory / f"{CONC_SERVICE}.key"


def concentrator_spec(paths: LabPaths) -> ServiceSpec:
    """wireguard-go for `wg-conc` in upstream, in the foreground (its pidfile is its own pid)."""
    argv = (services.find_binary("wireguard-go"), "-f", CONC_IFNAME)
    env = (("WG_PROCESS_FOREGROUND", "1"), ("LOG_LEVEL", "error"))
    return ServiceSpec(
        CONC_SERVICE,
        "upstream",
        argv,
        env,
        "the support concentrator",
        ready="wireguard",
        target=CONC_IFNAME,
    )


def concentrator_set_argv(wg_binary: str, key_file: Path, appliance_key: str) -> list[str]:
    """`wg set` for the concentrator: its key, port and the appliance as its peer (pure)."""
    return [
        wg_binary,
        "set",
        CONC_IFNAME,
        "listen-port",
        str(CONC_PORT),
        "private-key",
        str(key_file),
        "peer",
        appliance_key,
        "allowed-ips",
        ",".join(APPLIANCE_ALLOWED),
    ]


def write_concentrator_key(paths: LabPaths) -> Path:
    path = concentrator_key_file(paths)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, (CONC_PRIVATE_KEY + "\n").encode())
    finally:
        os.close(fd)
    os.chmod(path, 0o600)
    return path


def appliance_public_key(paths: LabPaths) -> str:
    """The appliance's public key, made now in gw's state directory if it has none yet."""
    paths.gw_state.mkdir(mode=0o700, parents=True, exist_ok=True)
    keys.ensure_private_key(paths.gw_state)
    public = keys.public_key(paths.gw_state)
    if public is None:
        raise ServiceError(f"cannot read the appliance's key in {paths.gw_state}")
    return public


def configure_concentrator(paths: LabPaths) -> None:
    """Key, port and peer by `wg set`; address, route and staff rule by netlink."""
    key_file = write_concentrator_key(paths)
    argv = concentrator_set_argv(services.find_binary("wg"), key_file, appliance_public_key(paths))
    done = services.run_on(paths, "upstream", argv)
    if done.returncode != 0:
        raise ServiceError(f"configuring {CONC_IFNAME} failed: {done.stderr.strip()}")
    with NamespaceNet(paths.namespace("upstream")) as net:
        net.ensure_address(CONC_IFNAME, f"{topology.CONC_TUNNEL}/24")
        net.set_up(CONC_IFNAME)
        net.replace_device_route("default", CONC_IFNAME, table=STAFF_TABLE)
        net.ensure_rule(topology.STAFF_NET, topology.STAFF_LINK, STAFF_TABLE, STAFF_RULE_PRIORITY)


def start_concentrator(paths: LabPaths) -> int:
    """Start (again) the concentrator and configure it; returns its pid."""
    pid = services.start_service(paths, concentrator_spec(paths))
    configure_concentrator(paths)
    return pid


def concentrator_peer(paths: LabPaths) -> wg.WgPeer | None:
    """The appliance as the concentrator sees it (None: no concentrator, or no such peer)."""
    done = services.run_on(
        paths, "upstream", [services.find_binary("wg"), "show", CONC_IFNAME, "dump"]
    )
    if done.returncode != 0:
        return None
    try:
        _, peers = wg.parse_dump(done.stdout)
    except ValueError:
        return None
    public = keys.public_key(paths.gw_state)
    return next((p for p in peers if p.public_key == public), None)


def wait_handshake(paths: LabPaths, timeout: float = HANDSHAKE_TIMEOUT) -> float:
    """Wait until the appliance has shaken hands with the concentrator; seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        peer = concentrator_peer(paths)
        if peer is not None and peer.latest_handshake > 0:
            return time.monotonic() - started
        time.sleep(0.05)
    raise ServiceError(
        f"the support tunnel did not come up within {timeout:.0f} s (no handshake at the "
        f"concentrator):\n{services.log_tail(paths, 'plantgated')}"
    )


def expects_tunnel(paths: LabPaths, policy: Path | None) -> bool:
    """Whether plantgated should bring the tunnel up: the policy's support_vpn is on and
    `plantgate vpn disable` is not in force in the lab's state."""
    if policy is None:
        return False
    from gateway.policy.errors import PolicyError
    from gateway.policy.load import load_file
    from gateway.policy.operations import vpn_override

    try:
        support = load_file(policy).policy.support_vpn
    except (PolicyError, OSError):
        return False
    return (
        support is not None and support.mode != "disabled" and vpn_override(paths.gw_state) is None
    )


# ---------------------------------------------------------------- sshd targets


def ssh_hosts(plan: topology.LabPlan) -> dict[str, tuple[str, ...]]:
    """Host -> the addresses its sshd listens on: gw (both legs and the tunnel), hubs."""
    hosts: dict[str, tuple[str, ...]] = {
        "gw": (topology.GW_LAN, topology.GW_WAN, topology.GW_TUNNEL)
    }
    for index in range(1, min(plan.hubs, SSH_HUBS) + 1):
        hosts[topology.hub_name(index)] = (topology.hub_address(index),)
    return hosts


def sshd_name(host: str) -> str:
    return f"sshd-{host}"


def sshd_config(paths: LabPaths, host: str, addresses: Sequence[str]) -> str:
    """sshd_config for one lab host: its lab addresses only, lab keys only, no shell (pure)."""
    folder = paths.ssh_dir
    lines = [
        f"# written by `plantgate lab up`: the ssh target on lab host {host} (lab-only keys)",
        *(f"ListenAddress {address}:{SSH_PORT}" for address in addresses),
        f"HostKey {folder / f'host-{host}'}",
        f"PidFile {folder / f'sshd-{host}.pid'}",
        f"AuthorizedKeysFile {folder / 'authorized_keys'}",
        "StrictModes no",  # the lab directory may sit under /tmp (tests); it is root's own
        "UsePAM no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "PermitRootLogin forced-commands-only",
        f"ForceCommand echo {SSH_BANNER} {host}",
        "PermitTTY no",
        "AllowTcpForwarding no",
        "AllowAgentForwarding no",
        "AllowStreamLocalForwarding no",
        "X11Forwarding no",
        "PermitTunnel no",
        "UseDNS no",
        "PrintMotd no",
        "LogLevel INFO",
    ]
    return "\n".join(lines) + "\n"


def client_key(paths: LabPaths) -> Path:
    return paths.ssh_dir / "staff"


def _keygen(path: Path, comment: str) -> None:
    if path.exists():
        return
    argv = [services.find_binary("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-C", comment]
    done = subprocess.run([*argv, "-f", str(path)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ServiceError(f"ssh-keygen failed: {done.stderr.strip()}")


def write_ssh_files(paths: LabPaths, plan: topology.LabPlan) -> None:
    """Host keys, the staff client key, authorized_keys and one sshd_config per host."""
    paths.ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    _keygen(client_key(paths), f"plantgate lab {paths.prefix} staff (lab only)")
    public = client_key(paths).with_suffix(".pub").read_text().strip()
    options = f'command="echo {SSH_BANNER}",no-pty,no-port-forwarding,no-agent-forwarding'
    (paths.ssh_dir / "authorized_keys").write_text(f"{options} {public}\n")
    for host, addresses in ssh_hosts(plan).items():
        _keygen(paths.ssh_dir / f"host-{host}", f"plantgate lab {paths.prefix} {host}")
        (paths.ssh_dir / f"{host}.conf").write_text(sshd_config(paths, host, addresses))


def sshd_specs(paths: LabPaths, plan: topology.LabPlan) -> list[ServiceSpec]:
    sshd = services.find_binary("sshd")  # sshd insists on an absolute path (it re-executes)
    return [
        ServiceSpec(
            sshd_name(host),
            host,
            (sshd, "-D", "-e", "-f", str(paths.ssh_dir / f"{host}.conf")),
            description=f"ssh target on {host}",
            ready="tcp",
            target=f"{addresses[0]}:{SSH_PORT}",
        )
        for host, addresses in ssh_hosts(plan).items()
    ]


def ssh_argv(paths: LabPaths, address: str, *, timeout: float = 5.0) -> list[str]:
    """The ssh client command a support engineer runs (from `staff`) to reach `address`."""
    return [
        services.find_binary("ssh"),
        "-i",
        str(client_key(paths)),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "LogLevel=ERROR",
        "-o",
        f"ConnectTimeout={timeout:g}",
        f"{SSH_USER}@{address}",
    ]
