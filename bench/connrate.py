"""New-connection rate: a tiny TCP listener and a connect loop, run as separate processes.

    python -m bench.connrate serve --bind ADDR --port PORT [--lifetime S] [--cpu N]
    python -m bench.connrate connect --host ADDR --port PORT [--seconds S] [--cpu N]

`connect` opens and closes connections one after another for S seconds and prints one JSON
line: {"connects": n, "failures": f, "seconds": s}. Each connection is closed with an RST
(SO_LINGER 0), so neither side piles up TIME_WAIT sockets or runs out of ports; every SYN is a
new conntrack entry, which is the packet that walks the ruleset. The two sides run in separate
processes so they do not share one interpreter lock.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import struct
import sys
import time
from collections.abc import Sequence

RST_ON_CLOSE = struct.pack("ii", 1, 0)


def serve(bind: str, port: int, lifetime: float) -> None:
    """Accept and drop connections until `lifetime` seconds have passed."""
    deadline = time.monotonic() + lifetime
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((bind, port))
        listener.listen(4096)
        listener.settimeout(1.0)
        print("ready", flush=True)
        while time.monotonic() < deadline:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with contextlib.suppress(OSError):
                conn.close()


def connect_loop(host: str, port: int, seconds: float, timeout: float = 1.0) -> dict[str, float]:
    """Open and reset connections for `seconds`; count the ones that completed."""
    connects = failures = 0
    start = time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RST_ON_CLOSE)
        sock.settimeout(timeout)
        try:
            sock.connect((host, port))
            connects += 1
        except OSError:
            failures += 1
        finally:
            sock.close()
    return {"connects": connects, "failures": failures, "seconds": time.perf_counter() - start}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.connrate")
    sub = parser.add_subparsers(dest="mode", required=True)
    srv = sub.add_parser("serve")
    srv.add_argument("--bind", required=True)
    srv.add_argument("--port", type=int, required=True)
    srv.add_argument("--lifetime", type=float, default=600.0)
    cli = sub.add_parser("connect")
    cli.add_argument("--host", required=True)
    cli.add_argument("--port", type=int, required=True)
    cli.add_argument("--seconds", type=float, default=2.0)
    for sub_parser in (srv, cli):
        sub_parser.add_argument("--cpu", type=int, help="pin this process to one CPU")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    if args.mode == "serve":
        serve(args.bind, args.port, args.lifetime)
    else:
        print(json.dumps(connect_loop(args.host, args.port, args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
