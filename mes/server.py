"""Run the MES under uvicorn with TLS: one worker, the Mozilla "intermediate" context,
several listen addresses, graceful shutdown.

What: `parse_bind` (pure), `listen_sockets` (binds each address before anything else, so a
taken port is a clear error), `build_app` (the application with the real `AuthBackend`,
its login routes and the security headers), and `serve` (certificate, context, uvicorn).

Why our own sockets and context: uvicorn builds its SSLContext from file names and Python's
defaults, which fail the profile (CBC suites, X448 and P-521 groups; see `mes.tls`); and it
binds one host, while the appliance listens on its hub and plant addresses only, never on
the support tunnel. uvicorn's `Server.serve(sockets=...)` takes pre-bound sockets, and its
loaded config takes our context. `server_header` is off; errors reach clients as a bare
"Internal Server Error", the traceback goes to the log only.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import uvicorn
from starlette.types import ASGIApp

from mes import tls
from mes.config import MesSettings

log = logging.getLogger(__name__)

DEFAULT_BIND = "0.0.0.0:443"
GRACEFUL_SHUTDOWN_S = 10
# How long a thread may keep the GIL while another wants it (Python's default: 5 ms). The
# MES is one process (its login rate limits live in its memory), and a writer holds SQLite's
# write lock while it runs: each SQLite call releases the GIL, and taking it back waits up
# to this interval while the event loop or a reader runs, so at 5 ms a write of fifteen
# statements spent most of its time holding the lock waiting (measured: `bench.mes`).
SWITCH_INTERVAL_S = 0.001


@dataclass(frozen=True)
class Bind:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_bind(text: str) -> Bind:
    """'198.18.10.1:443', '[::1]:8443' or '0.0.0.0' (port 443) -> Bind; ValueError if bad."""
    host, port = text.strip(), "443"
    if host.startswith("["):
        inside, _, rest = host[1:].partition("]")
        host = inside
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"bad listen address {text!r}: expected [ADDRESS]:PORT")
            port = rest[1:]
    elif host.count(":") == 1:
        host, port = host.split(":")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(f"bad listen address {text!r}: expected an IP address") from None
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"bad port in {text!r}: expected 1-65535")
    return Bind(host, int(port))


def listen_sockets(binds: Sequence[Bind]) -> list[socket.socket]:
    """Bound, listening sockets for `binds` (all or none: OSError names the address)."""
    sockets: list[socket.socket] = []
    try:
        for bind in binds:
            family = socket.AF_INET6 if ":" in bind.host else socket.AF_INET
            try:
                sock = socket.create_server((bind.host, bind.port), family=family, backlog=512)
            except OSError as exc:
                raise OSError(exc.errno, f"cannot listen on {bind}: {exc.strerror}") from None
            sock.set_inheritable(True)
            sockets.append(sock)
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def build_app(settings: MesSettings) -> ASGIApp:
    """The MES application with the real auth backend, its routes, the screens
    (`mes.web`) and security headers.

    The database is brought to the current migration first (`mes.migrations.upgrade`), as
    the appliance's unit does before serving; on a migrated database it changes nothing."""
    from mes.app import create_app
    from mes.auth.backend import SessionAuthBackend
    from mes.auth.headers import SecurityHeadersMiddleware
    from mes.migrations import upgrade
    from mes.web import install as install_screens

    upgrade(settings.database_url)
    backend = SessionAuthBackend.from_settings(settings)
    app = create_app(settings, auth=backend, extensions=[backend.install, install_screens])
    # Outermost, around Starlette's own error middleware: even a 500 gets the headers.
    return SecurityHeadersMiddleware(app)


def certificate_names(binds: Sequence[Bind], extra: Sequence[str]) -> list[str]:
    addresses = [b.host for b in binds if not ipaddress.ip_address(b.host).is_unspecified]
    return tls.default_names([*extra, *addresses])


AppFactory = Callable[[MesSettings], ASGIApp]


def prepare(
    settings: MesSettings,
    binds: Sequence[Bind],
    names: Sequence[str] = (),
    app_factory: AppFactory = build_app,
    access_log: bool = True,
) -> tuple[uvicorn.Server, list[socket.socket]]:
    """Certificate, context, sockets and app: a uvicorn server ready to `run(sockets=...)`.

    Raises OSError (address taken), TlsError or SecretError before anything listens."""
    paths = tls.tls_paths(settings.state_dir)
    reason = tls.ensure_server_cert(paths, certificate_names(binds, names))
    if reason:
        log.info("server certificate issued (%s); CA: %s", reason, paths.ca_cert)
    context = tls.server_context(paths.server_cert, paths.server_key)
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    app = app_factory(settings)
    sockets = listen_sockets(binds)
    config = uvicorn.Config(
        app,
        workers=1,
        server_header=False,
        proxy_headers=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        log_level="info",
        access_log=access_log,
    )
    config.load()
    config.ssl = context  # ours, not the one uvicorn would build
    return uvicorn.Server(config), sockets


def serve(settings: MesSettings, binds: Sequence[Bind], names: Sequence[str] = ()) -> None:
    """Serve until SIGTERM/SIGINT (uvicorn finishes open requests, up to 10 s)."""
    server, sockets = prepare(settings, binds, names)
    log.info("MES listening on %s (TLS)", ", ".join(str(b) for b in binds))
    try:
        server.run(sockets=sockets)
    finally:
        for sock in sockets:
            sock.close()
