"""The commit-confirm revert, scheduled outside the process that applied.

On a systemd host (the appliance) the revert is a transient timer unit started with
`systemd-run`: it survives the applying process, its SSH session and its cgroup being
killed. Without systemd (the lab, containers) it is a detached process in its own session
(`setsid`), so a SIGKILL of the applier, of its process group or of its terminal does not
reach it. Either way the revert itself (`revert_if_unconfirmed`) takes the revision lock and
does nothing if the revision was confirmed meanwhile, so a late or duplicate watchdog is
harmless; cancelling one on confirm is only tidiness. plantgated, when it runs, checks
pending deadlines too.

It is scheduled before the new table is loaded, for the number the revision will get: if
the applier dies between the load and the record, the watchdog finds no revision N and an
unconfirmed table in the kernel (drift from the current revision), and loads the last
confirmed revision again (`operations._restore_interrupted`).

Run as `python -m gateway.policy.watchdog --state-dir DIR --revision N [--wait-until TIME]`.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger("plantgate-watchdog")


def _systemd_available() -> bool:
    return Path("/run/systemd/system").is_dir() and shutil.which("systemd-run") is not None


def _command(state: Path, number: int, deadline: datetime.datetime | None) -> list[str]:
    """The watchdog's command line; with `deadline` it sleeps until then first."""
    argv = [
        sys.executable,
        "-m",
        "gateway.policy.watchdog",
        "--state-dir",
        str(state),
        "--revision",
        str(number),
    ]
    return [*argv, "--wait-until", deadline.isoformat()] if deadline else argv


def schedule_revert(state: Path, number: int, deadline: datetime.datetime) -> str:
    """Arrange for revision `number` to be reverted at `deadline`; returns how (for cancel)."""
    seconds = max(0.0, (deadline - datetime.datetime.now(datetime.UTC)).total_seconds())
    if _systemd_available():
        unit = f"plantgate-revert-{number}"
        subprocess.run(
            [
                "systemd-run",
                "--quiet",
                f"--unit={unit}",
                f"--on-active={seconds:.1f}s",
                "--timer-property=AccuracySec=100ms",
                *_command(state, number, None),
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        return f"systemd:{unit}"
    logfile = state / "policy" / f"watchdog-{number}.log"
    with open(logfile, "ab") as out:
        child = subprocess.Popen(
            _command(state, number, deadline),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            close_fds=True,
            cwd="/",
            env=_child_env(),
        )
    return f"pid:{child.pid}"


def _child_env() -> dict[str, str]:
    """Our environment, with this source tree importable (cwd is / for the child)."""
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return env


def cancel_revert(watchdog: str | None) -> None:
    """Stop a scheduled revert if it is still waiting (best effort; see module docstring)."""
    if not watchdog:
        return
    kind, _, ident = watchdog.partition(":")
    if kind == "systemd":
        subprocess.run(
            ["systemctl", "stop", f"{ident}.timer"], check=False, capture_output=True, timeout=30
        )
    elif kind == "pid" and ident.isdigit() and _is_our_watchdog(int(ident)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(ident), signal.SIGTERM)


def _is_our_watchdog(pid: int) -> bool:
    try:
        return b"gateway.policy.watchdog" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _sleep_until(deadline: datetime.datetime) -> None:
    delay = (deadline - datetime.datetime.now(datetime.UTC)).total_seconds()
    if delay > 0:
        time.sleep(delay)


def _deadline(text: str) -> datetime.datetime:
    """An aware ISO 8601 time (argparse type)."""
    value = datetime.datetime.fromisoformat(text)
    if value.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r}: the deadline needs a UTC offset")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="plantgate-watchdog")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--revision", type=int, required=True)
    parser.add_argument(
        "--wait-until", type=_deadline, help="sleep until this time (ISO 8601) first"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if args.wait_until is not None:
        # Given on the command line, not read from the revision: the watchdog is scheduled
        # before the revision is recorded (see operations._load_as_revision).
        _sleep_until(args.wait_until)
    from gateway.policy.operations import revert_if_unconfirmed

    reverted = revert_if_unconfirmed(args.state_dir, args.revision)
    if reverted is None:
        log.info("revision %d was confirmed or already handled", args.revision)
    else:
        log.info(
            "revision %d reverted: revision %d loads revision %s",
            args.revision,
            reverted.number,
            reverted.of,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
