"""Thin adapter over wireguard-tools (`wg`) and wireguard-go, with a pure `wg show` parser.

`wg` speaks to the kernel module and to wireguard-go alike (over its UAPI socket,
`/var/run/wireguard/<ifname>.sock`), so everything after the interface exists goes through
it: `wg set` to configure, `wg show IFACE dump` to read. Keys never travel on a command
line: `wg set ... private-key FILE` reads a 0600 file, `wg pubkey` reads stdin.

`wg show IFACE dump` prints the interface's private key (and preshared keys) in clear;
`parse_dump` drops them on the spot, so nothing that leaves this module can carry a secret.

wireguard-go runs in the foreground (`-f`) as plantgated's child rather than daemonizing
with a pidfile: its supervisor learns of its death from the exit status (no polling of a
pidfile whose pid may be reused), its output goes to one log file, and a stop is a plain
SIGTERM. Its output goes to a file, not a pipe, so a wireguard-go that outlives a killed
plantgated does not die of SIGPIPE at its next log line; the next plantgated adopts it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

SYSTEM_PATH = "/usr/sbin:/sbin:/usr/bin:/bin"
SOCKET_DIR = Path("/var/run/wireguard")  # wireguard-go's and wg's compiled-in UAPI directory
NONE = "(none)"
TIMEOUT_S = 5.0


class WgError(RuntimeError):
    """`wg` or wireguard-go failed (the message never holds key material)."""


class NoInterfaceError(WgError):
    """No WireGuard interface of that name answers (missing, or its process is dead)."""


@dataclass(frozen=True)
class WgInterface:
    """The interface line of `wg show dump`, without its private key."""

    public_key: str | None
    listen_port: int
    fwmark: str | None


@dataclass(frozen=True)
class WgPeer:
    """One peer line of `wg show dump` (its preshared key reduced to whether there is one)."""

    public_key: str
    has_preshared_key: bool
    endpoint: str | None
    allowed_ips: tuple[str, ...]
    latest_handshake: int  # UNIX seconds; 0 = never
    rx_bytes: int
    tx_bytes: int
    keepalive: int | None  # seconds; None = off


@dataclass(frozen=True)
class PeerConfig:
    """What `wg set` should make of the one peer: the concentrator."""

    public_key: str
    endpoint: str | None  # "ADDR:PORT" ("[ADDR]:PORT" for IPv6); None = not known yet
    allowed_ips: tuple[str, ...]
    keepalive: int  # 0 = off


# ---------------------------------------------------------------- pure: parsing and argv


def parse_dump(text: str) -> tuple[WgInterface, tuple[WgPeer, ...]]:
    """`wg show IFACE dump` -> (interface, peers); ValueError naming the bad line.

    Interface line: private-key, public-key, listen-port, fwmark. Peer lines: public-key,
    preshared-key, endpoint, allowed-ips, latest-handshake, transfer-rx, transfer-tx,
    persistent-keepalive. `(none)` and `off` mean absent; a handshake of 0 means never.
    """
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("empty wg dump")
    interface = _interface(lines[0])
    peers = tuple(_peer(number, line) for number, line in enumerate(lines[1:], 2))
    return interface, peers


def _fields(line: str, count: int, what: str, number: int) -> list[str]:
    fields = line.split("\t")
    if len(fields) != count:
        raise ValueError(f"line {number}: {what} line has {len(fields)} fields, expected {count}")
    return fields


def _interface(line: str) -> WgInterface:
    _private, public, port, fwmark = _fields(line, 4, "interface", 1)
    return WgInterface(
        public_key=None if public == NONE else public,
        listen_port=_int(port, "listen-port", 1),
        fwmark=None if fwmark in ("off", "0") else fwmark,
    )


def _peer(number: int, line: str) -> WgPeer:
    public, psk, endpoint, allowed, handshake, rx, tx, keepalive = _fields(line, 8, "peer", number)
    return WgPeer(
        public_key=public,
        has_preshared_key=psk != NONE,
        endpoint=None if endpoint == NONE else endpoint,
        allowed_ips=() if allowed == NONE else tuple(a for a in allowed.split(",") if a),
        latest_handshake=_int(handshake, "latest-handshake", number),
        rx_bytes=_int(rx, "transfer-rx", number),
        tx_bytes=_int(tx, "transfer-tx", number),
        keepalive=None if keepalive == "off" else _int(keepalive, "persistent-keepalive", number),
    )


def _int(text: str, what: str, number: int) -> int:
    if not text.isdigit():
        raise ValueError(f"line {number}: {what} {text!r} is not a whole number")
    return int(text)


def endpoint_text(address: str, port: int) -> str:
    """ADDR:PORT, with brackets around an IPv6 address (pure)."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def set_argv(
    wg: str, ifname: str, private_key: Path, peer: PeerConfig, remove: Iterable[str] = ()
) -> list[str]:
    """`wg set` for the interface and its one peer, removing `remove` peers (pure).

    No listen-port: a new interface gets a random one, as an outbound-only client wants,
    and a reconfiguration (plantgated restarted, the endpoint re-resolved) must keep it:
    `listen-port 0` would move the tunnel to a new port, and the concentrator would keep
    sending to the old one until our next keepalive, cutting live support sessions.
    allowed-ips replaces the peer's list; persistent-keepalive 0 switches it off.
    """
    argv = [wg, "set", ifname, "private-key", str(private_key)]
    for stale in remove:
        argv += ["peer", stale, "remove"]
    argv += ["peer", peer.public_key]
    if peer.endpoint:
        argv += ["endpoint", peer.endpoint]
    argv += ["allowed-ips", ",".join(peer.allowed_ips)]
    argv += ["persistent-keepalive", str(peer.keepalive) if peer.keepalive else "off"]
    return argv


def wireguard_go_argv(binary: str, ifname: str) -> list[str]:
    """wireguard-go in the foreground under plantgated (pure)."""
    return [binary, "-f", ifname]


# ---------------------------------------------------------------- wg


def find_program(name: str, package: str) -> str:
    path = os.environ.get("PATH", "") + os.pathsep + SYSTEM_PATH
    found = shutil.which(name, path=path)
    if found is None:
        raise WgError(f"{name} not found (install the Debian package {package})")
    return found


def wg_program() -> str:
    return find_program("wg", "wireguard-tools")


def _run(argv: Sequence[str], stdin: str | None = None) -> str:
    try:
        done = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise WgError(f"{argv[0]} {argv[1]} did not answer within {TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        message = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no message"
        raise WgError(f"`wg {argv[1]}` failed: {message}")
    return done.stdout


def show_dump(ifname: str) -> tuple[WgInterface, tuple[WgPeer, ...]]:
    """The live interface; NoInterfaceError when nothing answers for it."""
    argv = [wg_program(), "show", ifname, "dump"]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        raise NoInterfaceError(
            f"{ifname}: wg show did not answer within {TIMEOUT_S:.0f} s"
        ) from None
    if done.returncode != 0:
        reason = done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "no answer"
        raise NoInterfaceError(f"{ifname}: {reason}")
    try:
        return parse_dump(done.stdout)
    except ValueError as exc:
        raise WgError(f"{ifname}: unexpected wg show output ({exc})") from None


def configure(ifname: str, private_key: Path, peer: PeerConfig, remove: Iterable[str] = ()) -> None:
    _run(set_argv(wg_program(), ifname, private_key, peer, remove))


def genkey() -> str:
    """A new private key (base64), from `wg genkey`."""
    return _run([wg_program(), "genkey"]).strip()


def pubkey(private: str) -> str:
    """The public key of a private key, through stdin (never the command line)."""
    return _run([wg_program(), "pubkey"], stdin=private + "\n").strip()


# ---------------------------------------------------------------- wireguard-go


async def start_wireguard_go(ifname: str, log_path: Path) -> asyncio.subprocess.Process:
    """wireguard-go for `ifname` in the foreground, its output appended to `log_path`."""
    binary = find_program("wireguard-go", "wireguard-go")
    log_path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        return await asyncio.create_subprocess_exec(
            *wireguard_go_argv(binary, ifname),
            stdin=subprocess.DEVNULL,
            stdout=fd,
            stderr=fd,
            env={**os.environ, "WG_PROCESS_FOREGROUND": "1", "LOG_LEVEL": "error"},
            start_new_session=True,  # a signal meant for plantgated's group is not for it
        )
    finally:
        os.close(fd)


def log_tail(log_path: Path, lines: int = 3) -> str:
    """The last non-empty lines wireguard-go wrote (for 'it said ...' in logs and events)."""
    try:
        text = log_path.read_text(errors="replace")
    except OSError:
        return ""
    kept = [line.strip() for line in text.splitlines() if line.strip() and "│" not in line]
    kept = [line for line in kept if not set(line) <= set("┌─┐└┘")]
    return " / ".join(kept[-lines:])
