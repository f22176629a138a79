"""What plantgated's local HTTP APIs share (the gate's admin API, the alert feed): a uvicorn
server that leaves the signals to plantgated, and a listening Unix socket."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import uvicorn

from gateway.state import ensure_dir


class DaemonServer(uvicorn.Server):
    """uvicorn without its own signal handlers: plantgated owns SIGTERM and SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def unix_listener(path: Path) -> socket.socket:
    """A stream socket listening on `path` (mode 0660), replacing a stale one."""
    ensure_dir(path.parent)
    path.unlink(missing_ok=True)  # a stale socket from a previous run
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))
    os.chmod(path, 0o660)
    sock.listen(64)
    return sock
