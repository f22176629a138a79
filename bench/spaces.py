"""Thin adapter: throwaway network namespaces, and running code or commands inside them.

Every ruleset the benchmarks load goes through `run_in` or `run_timed`, which work in a thread
that has entered the target namespace (the process's main thread never leaves its own). Both
check, inside that thread and before doing anything, that the thread really is in the named
namespace: a benchmark must never load a ruleset into the machine's own namespace.

Child processes inherit the namespace of the thread that starts them, so `run_timed` measures
a command exactly as a user would run it there (process start and exit included) without the
extra work of `ip netns exec`.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import string
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, ParamSpec, TypeVar

from gateway.lab import netns

P = ParamSpec("P")
T = TypeVar("T")
ALPHABET = string.ascii_lowercase + string.digits


class OutsideNamespaceError(RuntimeError):
    """A worker thread is not in the namespace it was sent to; nothing was run."""


@dataclass(frozen=True)
class Finished:
    """A command that ran to its end (or was killed at its deadline)."""

    argv: tuple[str, ...]
    seconds: float  # process start to exit, as seen by the parent
    returncode: int
    maxrss_kib: int  # the child's own peak resident set size
    stdout: str
    stderr: str
    timed_out: bool

    def check(self) -> Finished:
        if self.timed_out:
            raise RuntimeError(f"{self.argv[0]} timed out after {self.seconds:.1f} s")
        if self.returncode != 0:
            detail = (self.stderr or self.stdout).strip()[-2000:]
            raise RuntimeError(f"{' '.join(self.argv[:4])} ... exited {self.returncode}: {detail}")
        return self


def run_prefix() -> str:
    """A fresh prefix per run (`bn` + 4 random characters), so runs never collide."""
    return "bn" + "".join(secrets.choice(ALPHABET) for _ in range(4))


def child_env(repo: Path) -> dict[str, str]:
    """Environment for child Python processes: the repository first on PYTHONPATH, so
    `gateway` and `bench` import whether or not the package is installed."""
    extra = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(repo), extra) if p)}


def assert_inside(name: str) -> None:
    """Raise unless the calling thread is in namespace `name`."""
    here = os.stat("/proc/thread-self/ns/net")
    there = netns.namespace_path(name).stat()
    if (here.st_dev, here.st_ino) != (there.st_dev, there.st_ino):
        raise OutsideNamespaceError(f"thread is not in network namespace {name}; refusing")


def run_in(name: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`fn(*args, **kwargs)` in a thread inside namespace `name` (checked first)."""

    def guarded() -> T:
        assert_inside(name)
        return fn(*args, **kwargs)

    return netns.in_netns(name, guarded)


@contextlib.contextmanager
def throwaway_namespace(name: str) -> Iterator[str]:
    """A new, empty namespace (loopback up) that is removed afterwards, even on errors."""
    netns.create_namespace(name)
    try:
        with netns.NamespaceNet(name) as net:
            net.set_up("lo")
        yield name
    finally:
        kill_inside(name)
        netns.delete_namespace(name)


def kill_inside(name: str) -> None:
    """SIGKILL every process still living in namespace `name` (only ones we started)."""
    if not netns.namespace_exists(name):
        return
    for pid in netns.pids_in_namespace(name):
        if pid != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def spawn_in(
    name: str,
    argv: Sequence[str],
    *,
    stdout: IO[bytes] | int = subprocess.DEVNULL,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> subprocess.Popen[bytes]:
    """Start a long-running command in namespace `name`; the caller stops it."""
    return run_in(
        name,
        subprocess.Popen,
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=subprocess.STDOUT,
        env=dict(env) if env is not None else None,
        cwd=cwd,
    )


def run_timed(
    name: str,
    argv: Sequence[str],
    *,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
) -> Finished:
    """Run a command to its end in namespace `name`: wall time, exit code, peak RSS, output."""
    return run_in(name, _run_here, tuple(argv), timeout, env, cwd)


def _run_here(
    argv: tuple[str, ...], timeout: float, env: Mapping[str, str] | None, cwd: str | None
) -> Finished:
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
        killer = threading.Timer(timeout, _kill_quietly, (proc,))
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
        finally:
            killer.cancel()
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        return Finished(
            argv=argv,
            seconds=seconds,
            returncode=proc.returncode,
            maxrss_kib=usage.ru_maxrss,
            stdout=_read(out),
            stderr=_read(err),
            timed_out=seconds >= timeout and proc.returncode < 0,
        )


def _kill_quietly(proc: subprocess.Popen[bytes]) -> None:
    # os.kill, not proc.kill(): Popen would poll (reap) the child behind wait4's back
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGKILL)


def _read(handle: IO[bytes]) -> str:
    handle.seek(0)
    return handle.read().decode(errors="replace")


def stop(proc: subprocess.Popen[bytes], grace: float = 2.0) -> None:
    """Terminate a process started with `spawn_in`, then kill it if it lingers."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(grace)
