"""Private mount namespaces for the lab hosts that run WireGuard (`gw` and `upstream`).

Why: wireguard-go and `wg` find each other through `/var/run/wireguard/<ifname>.sock`, a
path compiled into both. Network namespaces do not separate `/run`, so two labs, each with
`wg-support` in its `gw` and `wg-conc` in its `upstream` (a test lab beside a developer's
`pg` lab), would take each other's sockets. Renaming interfaces per lab would make the lab
differ from the appliance, whose policy names the interface.

How: at `lab up` each such host gets a persistent mount namespace, a file in the lab
directory (`<labdir>/mnt/<host>`), made by `unshare --mount=FILE --propagation slave` with a
small tmpfs mounted on `/run/wireguard` inside it. Every process that needs the socket is
started through `nsenter --mount=FILE -- ip netns exec <ns> ...`: the lab's wireguard-go for
the concentrator, `plantgated` in gw (whose wireguard-go and `wg` children inherit it),
`plantgate lab exec gw|upstream`, and the lab's own `wg` calls. `ip netns exec` then makes
its usual private copy for /etc/netns; a copy shares the tmpfs, so they all meet there.

- `slave` propagation: mounts made in the machine's namespace still arrive (a network
  namespace added later under /run/netns is visible inside), while the tmpfs stays inside.
- `unshare --mount=FILE` needs FILE on a mount that does not propagate (else the namespace
  would contain a reference to itself), so `<labdir>/mnt` is bound onto itself and made
  private first. That bind mount and the namespace files are the only mounts a lab adds to
  the machine's mount table; `lab down` removes them (`remove_all`), whatever is left.

The appliance needs none of this: it has one instance and uses the default paths.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

WG_RUN = Path("/run/wireguard")  # /var/run is a symlink to /run
SYSTEM_PATH = "/usr/sbin:/sbin:/usr/bin:/bin"
TMPFS_OPTIONS = "mode=0700,size=1m"


class MountNamespaceError(RuntimeError):
    """A mount namespace could not be made or removed (the message says which command)."""


def _program(name: str) -> str:
    found = shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + SYSTEM_PATH)
    if found is None:
        raise MountNamespaceError(f"{name} not found (install the Debian package util-linux)")
    return found


def _run(argv: Sequence[str]) -> None:
    done = subprocess.run(list(argv), capture_output=True, text=True, check=False, timeout=30)
    if done.returncode != 0:
        message = done.stderr.strip() or f"exit status {done.returncode}"
        raise MountNamespaceError(f"`{' '.join(argv)}` failed: {message}")


# ---------------------------------------------------------------- pure


def unescape(field: str) -> str:
    """A mountinfo path field with its octal escapes (\\040 for a space) decoded."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def mounts_under(mountinfo: str, directory: Path) -> list[str]:
    """Mount points at or below `directory` in /proc/self/mountinfo text, deepest first."""
    root = str(directory).rstrip("/")
    found = []
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if len(fields) < 5:
            continue
        point = unescape(fields[4])
        if point == root or point.startswith(root + "/"):
            found.append(point)
    return sorted(set(found), key=lambda p: (-p.count("/"), p))


def lab_mounts(mountinfo: str, prefix: str, hosts: Sequence[str]) -> list[str]:
    """Mount points of lab `prefix` wherever its lab directory is (`.../<prefix>/mnt` and
    `.../<prefix>/mnt/<host>`), deepest first: `lab down` trusts the kernel, not a path."""
    ends = (f"/{prefix}/mnt", *(f"/{prefix}/mnt/{host}" for host in hosts))
    found = []
    for line in mountinfo.splitlines():
        fields = line.split(" ")
        if len(fields) >= 5 and unescape(fields[4]).endswith(ends):
            found.append(unescape(fields[4]))
    return sorted(set(found), key=lambda p: (-p.count("/"), p))


def enter_argv(
    namespace_file: Path | None, argv: Sequence[str], wd: Path | None = None
) -> list[str]:
    """`argv` run inside the mount namespace `namespace_file` (as it is without one)."""
    if namespace_file is None:
        return list(argv)
    prefix = [_program("nsenter"), f"--mount={namespace_file}"]
    if wd is not None:
        prefix.append(f"--wd={wd}")
    return [*prefix, "--", *argv]


# ---------------------------------------------------------------- side effects


def is_namespace_file(path: Path) -> bool:
    """True when `path` is a mount namespace bound to a file (an nsfs mount), not a plain file."""
    try:
        return os.stat(path).st_dev == os.stat("/proc/self/ns/mnt").st_dev
    except OSError:
        return False


def _mount_points(directory: Path) -> list[str]:
    return mounts_under(Path("/proc/self/mountinfo").read_text(), directory)


def _private_directory(directory: Path) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    if str(directory) in _mount_points(directory):
        return
    _run([_program("mount"), "--bind", str(directory), str(directory)])
    _run([_program("mount"), "--make-private", str(directory)])


def create(directory: Path, host: str) -> Path:
    """The mount namespace for `host` (made if missing): a private tmpfs on /run/wireguard."""
    path = directory / host
    if is_namespace_file(path):
        return path
    _private_directory(directory)
    path.touch(mode=0o600)
    WG_RUN.mkdir(mode=0o755, exist_ok=True)  # the mount point; what wireguard-go would make
    mount = [_program("mount"), "-t", "tmpfs", "-o", TMPFS_OPTIONS, "plantgate-wg", str(WG_RUN)]
    _run([_program("unshare"), f"--mount={path}", "--propagation", "slave", "--", *mount])
    return path


def remove_all(directory: Path, prefix: str = "", hosts: Sequence[str] = ()) -> list[str]:
    """Unmount every namespace file under `directory` and its private bind, and (with
    `prefix`) those of lab `prefix` under any other lab root; returns the mount points."""
    info = Path("/proc/self/mountinfo").read_text()
    points = mounts_under(info, directory)
    if prefix:
        points = sorted(
            set(points) | set(lab_mounts(info, prefix, hosts)),
            key=lambda p: (-p.count("/"), p),
        )
    for point in points:
        _run([_program("umount"), "--lazy", point])
    for folder in {directory, *(Path(p) for p in points if p.endswith("/mnt"))}:
        if folder.is_dir():
            for entry in folder.iterdir():
                entry.unlink(missing_ok=True)
    return points
