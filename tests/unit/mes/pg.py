"""A throwaway PostgreSQL server for tests: its own data directory, a Unix socket only.

Found through `pg_config --bindir` or Debian's /usr/lib/postgresql/<N>/bin; started as the
`postgres` user when the tests run as root (PostgreSQL refuses root). Tests skip, saying
why, when no server binaries are installed or the server cannot start here.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

PORT = 54329


def _bindir() -> Path | None:
    found = shutil.which("pg_config")
    if found:
        out = subprocess.run([found, "--bindir"], capture_output=True, text=True, check=False)
        candidate = Path(out.stdout.strip())
        if (candidate / "initdb").exists():
            return candidate
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), reverse=True)
    return Path(versions[0]).parent if versions else None


def _as_postgres() -> list[str]:
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise RuntimeError("running as root and there is no postgres user") from None
    return ["runuser", "-u", "postgres", "--"]


@contextlib.contextmanager
def postgres_server() -> Iterator[str]:
    """A running server; yields its SQLAlchemy URL. Raises RuntimeError if impossible."""
    bindir = _bindir()
    if bindir is None:
        raise RuntimeError("no PostgreSQL server binaries (apt-get install postgresql)")
    prefix = _as_postgres()
    root = Path(tempfile.mkdtemp(prefix="mes-pg-"))
    if prefix:
        shutil.chown(root, "postgres")
    data, log = root / "data", root / "log"
    pg_ctl = [*prefix, str(bindir / "pg_ctl"), "-D", str(data)]
    try:
        subprocess.run(
            [
                *prefix,
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "postgres",
                "--no-sync",
                "-E",
                "UTF8",
            ],
            capture_output=True,
            check=True,
            timeout=60,
        )
        options = f"-k {root} -c listen_addresses='' -p {PORT} -F"
        subprocess.run(
            [*pg_ctl, "-o", options, "-l", str(log), "-w", "-t", "30", "start"],
            capture_output=True,
            check=True,
            timeout=60,
        )
    except (subprocess.SubprocessError, OSError) as exc:
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"could not start PostgreSQL: {exc}") from None
    try:
        yield f"postgresql+psycopg://postgres@/postgres?host={root}&port={PORT}"
    finally:
        subprocess.run(
            [*pg_ctl, "-m", "immediate", "-w", "stop"], capture_output=True, check=False, timeout=60
        )
        shutil.rmtree(root, ignore_errors=True)


def fresh_database(server_url: str, name: str) -> str:
    """A new, empty database on the server; its URL."""
    from sqlalchemy import create_engine, text

    engine = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    finally:
        engine.dispose()
    return server_url.replace("/postgres?", f"/{name}?")
