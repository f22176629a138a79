"""Run code and create sockets inside a named network namespace, from a helper thread.

`setns(CLONE_NEWNET)` is per thread on Linux: a short-lived thread that enters the namespace
can create a socket (which keeps its namespace for life) or write `/proc/sys/net/...`, while
the process's main thread never leaves its own namespace. The lab, the NFLOG reader and the
tests all go through here.
"""

from __future__ import annotations

import errno
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

NETNS_DIR = Path("/run/netns")

P = ParamSpec("P")
T = TypeVar("T")


class NamespaceMissingError(FileNotFoundError):
    """The named network namespace does not exist."""


def namespace_path(name: str) -> Path:
    """/run/netns/NAME for a name; an absolute path is taken as it is."""
    if name.startswith("/"):
        return Path(name)
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"bad network namespace name {name!r}")
    return NETNS_DIR / name


def _enter(fd: int, name: str) -> None:
    """setns(2) the calling thread into the namespace open at `fd`."""
    from pyroute2 import netns as pr_netns  # here: pyroute2 costs ~0.2 s to import

    try:
        pr_netns.setns(fd, flags=0)
    except OSError as exc:
        code = exc.errno or errno.EPERM
        hint = " (needs root)" if code == errno.EPERM else ""
        raise OSError(code, f"cannot enter network namespace {name}{hint}") from exc


def in_netns(name: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run `fn(*args, **kwargs)` in a thread that has entered namespace `name`; return its value.

    Exceptions raised by `fn` are re-raised in the caller.
    """
    try:
        fd = os.open(namespace_path(name), os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError as exc:
        raise NamespaceMissingError(errno.ENOENT, "no such network namespace", name) from exc
    outcome: dict[str, Any] = {}

    def runner() -> None:
        try:
            _enter(fd, name)
            outcome["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # re-raised in the caller's thread
            outcome["error"] = exc

    try:
        thread = threading.Thread(target=runner, name=f"netns:{name}", daemon=True)
        thread.start()
        thread.join()
    finally:
        os.close(fd)
    if "error" in outcome:
        raise outcome["error"]
    value: T = outcome["value"]
    return value


def socket_in_netns(
    name: str, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM, proto: int = 0
) -> socket.socket:
    """A socket created inside namespace `name` (it stays there for its whole life)."""
    return in_netns(name, socket.socket, family, type, proto)
