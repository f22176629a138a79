"""Where PlantGate keeps its state (DESIGN §7): one directory, overridable per lab or test."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

DEFAULT_STATE_DIR = Path("/var/lib/plantgate")
ENV_STATE_DIR = "PLANTGATE_STATE_DIR"


def state_dir(override: Path | str | None = None) -> Path:
    """The state directory: explicit override, else $PLANTGATE_STATE_DIR, else the default."""
    if override:
        return Path(override)
    env = os.environ.get(ENV_STATE_DIR)
    return Path(env) if env else DEFAULT_STATE_DIR


def ensure_dir(path: Path, mode: int = 0o750) -> Path:
    """Create a private directory (and parents) if missing; return it."""
    path.mkdir(mode=mode, parents=True, exist_ok=True)
    return path


def write_atomic(path: Path, data: str | bytes, mode: int = 0o640) -> None:
    """Write via a temporary file and rename, so readers never see half a file."""
    ensure_dir(path.parent)
    tmp = path.with_name(f".{path.name}.tmp")
    payload = data.encode() if isinstance(data, str) else data
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, payload)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def ready_path(state: Path) -> Path:
    """Where plantgated writes its pid once the policy is loaded and names resolved once.

    Supervisors wait for it (the lab does; on the appliance it maps to sd_notify READY=1).
    """
    return state / "run" / "plantgated.ready"


@contextlib.contextmanager
def exclusive(lock: Path) -> Iterator[None]:
    """Hold an exclusive flock on `lock` (created, with its directory) while inside: how the
    CLI and plantgated take turns on a store."""
    ensure_dir(lock.parent)
    with open(lock, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
