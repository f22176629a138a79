"""Process adapter for chronyd and chronyc: start, stop, and ask the relay how it is doing.

chronyd runs in the foreground (`-d`) as a child of plantgated, with the rendered config
(`-f`), as root inside the appliance's namespace (`-u root`), with a seccomp filter that
blocks fork and exec (`-F 2`), and with `-x` (the clock is never touched) unless plantgated
was told to discipline the clock. A restart after a crash or a config change adds `-R`, so
the `makestep` meant for boot is not applied again to a clock that was already in step.

chronyc speaks to chronyd only over the instance's Unix socket (`-h PATH`), in CSV (`-c`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import subprocess
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from gateway.ntp.chronyc import (
    Source,
    SourceStats,
    Tracking,
    parse_sources,
    parse_sourcestats,
    parse_tracking,
)
from gateway.ntp.config import ChronyPaths

log = logging.getLogger("plantgated.ntp")
STOP_GRACE = 3.0
SYSTEM_PATH = "/usr/sbin:/sbin:/usr/bin:/bin"
NOT_RUNNING_HINTS = ("Could not open connection", "Cannot talk to daemon", "No such file")


class ChronyError(RuntimeError):
    """chronyd or chronyc failed."""


class NotRunningError(ChronyError):
    """No chronyd answers on the instance's command socket."""


def find_program(name: str) -> str:
    path = os.environ.get("PATH", "") + os.pathsep + SYSTEM_PATH
    found = shutil.which(name, path=path)
    if found is None:
        raise ChronyError(f"{name} not found (install the Debian package chrony)")
    return found


def chronyd_argv(binary: str, conf: Path, *, discipline_clock: bool, restart: bool) -> list[str]:
    """The command line of the relay's chronyd (pure)."""
    argv = [binary, "-d", "-f", str(conf), "-u", "root", "-F", "2"]
    if not discipline_clock:
        argv.append("-x")
    if restart:
        argv.append("-R")
    return argv


# ---------------------------------------------------------------- chronyc


def chronyc(socket: Path, command: str, *, names: bool = False, timeout: float = 5.0) -> str:
    """One chronyc report in CSV; NotRunningError when nothing answers on `socket`."""
    if not socket.exists():
        raise NotRunningError(f"no chronyd command socket at {socket}")
    argv = [find_program("chronyc"), "-h", str(socket), "-c"]
    if names:
        argv.append("-N")
    try:
        done = subprocess.run(
            [*argv, command], capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise ChronyError(f"chronyc {command} did not answer within {timeout:g} s") from None
    output = (done.stdout + done.stderr).strip()
    if done.returncode != 0 or any(hint in output for hint in NOT_RUNNING_HINTS):
        if any(hint in output for hint in NOT_RUNNING_HINTS):
            raise NotRunningError(f"chronyd does not answer on {socket}")
        raise ChronyError(f"chronyc {command} failed: {output or f'exit {done.returncode}'}")
    return done.stdout


@dataclass(frozen=True)
class RelayReport:
    """What chronyd says about itself: tracking, its sources (with the configured names
    where chrony knows them) and their statistics."""

    tracking: Tracking
    sources: tuple[Source, ...]
    names: tuple[str, ...]  # per source: the name from the config, else the address
    stats: tuple[SourceStats, ...]

    def stats_for(self, address: str) -> SourceStats | None:
        return next((s for s in self.stats if s.address == address), None)


def read_report(socket: Path) -> RelayReport:
    tracking = parse_tracking(chronyc(socket, "tracking"))
    sources = tuple(parse_sources(chronyc(socket, "sources")))
    named = parse_sources(chronyc(socket, "sources", names=True))
    same = len(named) == len(sources)  # a source may come or go between the two reports
    names = tuple(s.address for s in (named if same else sources))
    stats = tuple(parse_sourcestats(chronyc(socket, "sourcestats")))
    return RelayReport(tracking, sources, names, stats)


# ---------------------------------------------------------------- chronyd


def kill_stale(paths: ChronyPaths) -> int | None:
    """Stop a chronyd left by an earlier plantgated (same config file); returns its pid.

    chronyd refuses to start while its pidfile names a live chronyd, and the old one would
    hold the NTP port and the command socket.
    """
    try:
        pid = int(paths.pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except (OSError, ValueError):
        return None
    if str(paths.conf).encode() not in cmdline or not cmdline[0].endswith(b"chronyd"):
        return None
    _terminate(pid)
    return pid


def _terminate(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_GRACE
    while time.monotonic() < deadline:
        if not Path(f"/proc/{pid}").exists():
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


class Chronyd:
    """One chronyd child process, its stderr copied to plantgated's log."""

    def __init__(self, paths: ChronyPaths, *, discipline_clock: bool) -> None:
        self.paths = paths
        self.discipline_clock = discipline_clock
        self.tail: deque[str] = deque(maxlen=12)  # its last lines, for failure reports
        self.started_at = 0.0
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.returncode is None

    @property
    def exit_code(self) -> int | None:
        """The exit status of a chronyd that ended by itself (None while running)."""
        return self._proc.returncode if self._proc is not None else None

    async def start(self, *, restart: bool) -> None:
        await asyncio.to_thread(kill_stale, self.paths)
        self.paths.socket.unlink(missing_ok=True)
        argv = chronyd_argv(
            find_program("chronyd"),
            self.paths.conf,
            discipline_clock=self.discipline_clock,
            restart=restart,
        )
        self.tail.clear()
        self._proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self.started_at = time.monotonic()
        self._reader = asyncio.create_task(self._copy_log(self._proc))
        log.info("started chronyd (pid %d): %s", self._proc.pid, " ".join(argv))

    async def _copy_log(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stderr is not None
        while line := await proc.stderr.readline():
            text = line.decode(errors="replace").rstrip()
            # chronyd stamps each line itself; keep the message only
            message = text.split(" ", 1)[1] if text[:4].isdigit() and " " in text else text
            self.tail.append(message)
            log.info("chronyd: %s", message)
        await proc.wait()

    async def wait_ready(self, timeout: float = 5.0) -> bool:
        """True once chronyd answers on its command socket (its NTP socket is bound then)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.running:
            try:
                await asyncio.to_thread(chronyc, self.paths.socket, "tracking", timeout=1.0)
                return True
            except ChronyError:
                await asyncio.sleep(0.1)
        return False

    async def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(proc.wait(), STOP_GRACE)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader
            self._reader = None
        log.info("stopped chronyd (pid %d)", proc.pid)

    async def reap(self) -> int | None:
        """If chronyd ended by itself: forget it and return its exit status."""
        proc = self._proc
        if proc is None or proc.returncode is None:
            return None
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self._reader
            self._reader = None
        self._proc = None
        return proc.returncode
