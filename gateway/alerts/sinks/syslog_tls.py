"""RFC 5425 sink: RFC 5424 messages over TLS to the SOC's collector, octet-counted.

Each message goes as `MSG-LEN SP SYSLOG-MSG` (RFC 5425 §4.3: MSG-LEN is the decimal octet
count of the message, no leading zeros), so messages may hold any byte and the collector
never guesses where one ends. TLS 1.2 or later; the collector's certificate must chain to the
configured CA and name the host (or `server_name`); a client certificate is presented when
configured (the collector may ask for mutual TLS).

Syslog over TLS has no acknowledgements. A message written to a socket that then breaks may
never have arrived, so the cursor moves only past messages written at least
`confirm_after_s` seconds ago on a connection still alive (`confirmed`). When the
connection breaks, everything not yet confirmed is sent again after reconnecting (with
exponential backoff): at least once, never silently lost. The collector closing the
connection is noticed by a reader task (it never sends data), not only by the next write.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import deque
from pathlib import Path

from gateway.alerts.render.syslog import DEFAULT_FACILITY
from gateway.alerts.render.syslog import render as render_syslog
from gateway.alerts.sinks.base import Backoff, CursorSink, SinkError
from gateway.alerts.sinks.spool import Spooled

CONNECT_TIMEOUT = 10.0
WRITE_TIMEOUT = 10.0


def frame(message: str) -> bytes:
    """One RFC 5425 frame: octet count, a space, the message."""
    data = message.encode()
    return str(len(data)).encode() + b" " + data


def client_context(
    ca: Path, client_cert: Path | None = None, client_key: Path | None = None
) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if client_cert is not None:
        context.load_cert_chain(str(client_cert), str(client_key) if client_key else None)
    return context


class SyslogTlsSink(CursorSink):
    name = "syslog"

    def __init__(
        self,
        host: str,
        port: int,
        context: ssl.SSLContext,
        *,
        server_name: str | None = None,
        facility: int = DEFAULT_FACILITY,
        backlog: int = 1000,
        confirm_after_s: float = 2.0,
        backoff: Backoff | None = None,
    ) -> None:
        super().__init__(backoff=backoff)
        self.host, self.port = host, port
        self.context = context
        self.server_name = server_name or host
        self.facility = facility
        self.backlog_max = backlog
        self.confirm_after_s = confirm_after_s
        self.connects = 0
        self._writer: asyncio.StreamWriter | None = None
        self._watch: asyncio.Task[None] | None = None
        self._broken: str | None = None
        self._unconfirmed: deque[tuple[int, float]] = deque()  # (seq, monotonic write time)

    async def _connect(self) -> asyncio.StreamWriter:
        if self._writer is not None:
            return self._writer
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.host, self.port, ssl=self.context, server_hostname=self.server_name
                ),
                CONNECT_TIMEOUT,
            )
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            raise SinkError(f"cannot connect to {self.host}:{self.port}: {exc}") from None
        self.connects += 1
        self._broken = None
        self._writer = writer
        self._watch = asyncio.create_task(self._watch_close(reader))
        return writer

    async def _watch_close(self, reader: asyncio.StreamReader) -> None:
        try:
            while await reader.read(4096):
                pass  # a collector has nothing to say; ignore anything it does say
            self._broken = "the collector closed the connection"
        except (OSError, ssl.SSLError) as exc:
            self._broken = f"connection lost: {exc}"

    async def send(self, batch: list[Spooled]) -> None:
        if self._broken is not None:
            raise SinkError(self._broken)
        writer = await self._connect()
        payload = b"".join(
            frame(render_syslog(r.alert, r.seq, facility=self.facility)) for r in batch
        )
        try:
            writer.write(payload)
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            raise SinkError(f"write to {self.host}:{self.port} failed: {exc}") from None
        if self._broken is not None:
            raise SinkError(self._broken)
        now = time.monotonic()
        self._unconfirmed.append((batch[-1].seq, now))

    def confirmed(self, sent: int) -> int:
        if self._broken is not None:
            raise SinkError(self._broken)
        horizon = time.monotonic() - self.confirm_after_s
        best = self.confirmed_seq
        while self._unconfirmed and self._unconfirmed[0][1] <= horizon:
            best = self._unconfirmed.popleft()[0]
        return best

    async def idle(self) -> None:
        if self._broken is not None:
            raise SinkError(self._broken)

    async def close(self) -> None:
        self._unconfirmed.clear()
        self._broken = None
        writer, self._writer = self._writer, None
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._watch
            self._watch = None
        if writer is not None:
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 2.0)
