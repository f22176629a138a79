"""RFC 5425 sink against a local TLS server on loopback: framing, mutual TLS, reconnects."""

from __future__ import annotations

import asyncio
import re
import ssl
from pathlib import Path

import pytest
from syslog_rfc5424_parser import SyslogMessage

from gateway.alerts.pipeline import AlertPipeline
from gateway.alerts.sinks.base import Backoff
from gateway.alerts.sinks.spool import CursorStore, Spool
from gateway.alerts.sinks.syslog_tls import SyslogTlsSink, client_context, frame
from tests.unit.alerts.conftest import OBSERVER, Pki, trigger


def test_frame_is_octet_counted() -> None:
    assert frame("<14>1 - - - - - -") == b"17 <14>1 - - - - - -"
    assert frame("ü") == b"2 \xc3\xbc"  # octets, not characters


def split_frames(data: bytes) -> tuple[list[str], bytes]:
    """RFC 5425 §4.3 framing, read the receiver's way: MSG-LEN SP MSG, repeated."""
    out: list[str] = []
    while True:
        m = re.match(rb"([1-9][0-9]*) ", data)
        if m is None or len(data) < m.end() + int(m[1]):
            return out, data
        end = m.end() + int(m[1])
        out.append(data[m.end() : end].decode())
        data = data[end:]


class Collector:
    """A TLS server that asks for a client certificate and keeps every frame."""

    def __init__(self, pki: Pki, drop_after: int | None = None) -> None:
        self.pki = pki
        self.messages: list[str] = []
        self.connections = 0
        self.drop_after = drop_after  # close the first connection after this many messages
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.pki.ca))
        ctx.load_cert_chain(str(self.pki.paths.server_cert), str(self.pki.paths.server_key))
        ctx.verify_mode = ssl.CERT_REQUIRED
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0, ssl=ctx)
        return int(self.server.sockets[0].getsockname()[1])

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        first = self.connections == 1
        buffer = b""
        try:
            while chunk := await reader.read(65536):
                frames, buffer = split_frames(buffer + chunk)
                self.messages += frames
                if first and self.drop_after and len(self.messages) >= self.drop_after:
                    break
        except (ConnectionError, ssl.SSLError):
            pass
        writer.close()

    def seqs(self) -> list[int]:
        out = []
        for message in self.messages:
            sd = SyslogMessage.parse(message).as_dict()["sd"]["plantgate@32473"]
            out.append(int(sd["seq"]))
        return out


def make_pipeline(tmp_path: Path, sink: SyslogTlsSink) -> AlertPipeline:
    spool = Spool(tmp_path / "spool").open()
    return AlertPipeline(spool, OBSERVER, cursors=CursorStore(tmp_path / "cursors"), sinks=[sink])


async def drive(p: AlertPipeline, n: int, until: object, timeout: float = 10.0) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(p.run(stop))
    for i in range(n):
        p.submit(trigger(f"k{i}"))
        await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not until() and loop.time() < deadline:  # type: ignore[operator]
        await asyncio.sleep(0.02)
    stop.set()
    await task


def sink_for(pki: Pki, port: int, **kw: object) -> SyslogTlsSink:
    ctx = client_context(pki.ca, pki.paths.client_cert, pki.paths.client_key)
    return SyslogTlsSink(
        "127.0.0.1",
        port,
        ctx,
        backoff=Backoff(0.05, 0.1),
        **kw,  # type: ignore[arg-type]
    )


def test_messages_arrive_framed_and_parse(tmp_path: Path, pki: Pki) -> None:
    async def go() -> tuple[Collector, SyslogTlsSink]:
        collector = Collector(pki)
        port = await collector.start()
        sink = sink_for(pki, port, confirm_after_s=0.0)
        p = make_pipeline(tmp_path, sink)
        await drive(p, 20, lambda: len(collector.messages) >= 20)
        assert collector.server is not None
        collector.server.close()
        return collector, sink

    collector, sink = asyncio.run(go())
    assert collector.seqs()[:20] == list(range(1, 21))
    parsed = SyslogMessage.parse(collector.messages[0]).as_dict()
    assert parsed["msgid"] == "PG-SCAN-VERTICAL" and parsed["appname"] == "plantgate"
    assert sink.connects == 1
    assert CursorStore(tmp_path / "cursors").get("syslog") >= 20


def test_reconnects_and_resends_what_was_not_confirmed(tmp_path: Path, pki: Pki) -> None:
    async def go() -> Collector:
        collector = Collector(pki, drop_after=5)
        port = await collector.start()
        sink = sink_for(pki, port, confirm_after_s=0.3)
        sink.batch_size = 5
        p = make_pipeline(tmp_path, sink)
        await drive(p, 30, lambda: set(range(1, 31)) <= set(collector.seqs()))
        assert sink.connects >= 2
        return collector

    collector = asyncio.run(go())
    seqs = collector.seqs()
    assert set(range(1, 31)) <= set(seqs)  # nothing lost; some may come twice
    assert collector.connections >= 2


def test_untrusted_collector_is_refused(tmp_path: Path, pki: Pki) -> None:
    other = tmp_path / "other-ca.crt"
    from gateway.lab.collector import CollectorPaths, write_pki

    write_pki(CollectorPaths(tmp_path / "other"))
    other.write_bytes((tmp_path / "other" / "ca.crt").read_bytes())

    async def go() -> tuple[Collector, AlertPipeline]:
        collector = Collector(pki)
        port = await collector.start()
        sink = SyslogTlsSink("127.0.0.1", port, client_context(other), backoff=Backoff(0.05, 0.1))
        p = make_pipeline(tmp_path, sink)
        await drive(p, 3, lambda: False, timeout=0.5)
        return collector, p

    collector, p = asyncio.run(go())
    assert collector.messages == []
    assert 'plantgate_sink_errors_total{sink="syslog"}' in p.metrics.exposition().decode()
    assert CursorStore(tmp_path / "cursors").get("syslog") == 0


@pytest.mark.parametrize("facility", ["local0", "local7"])
def test_facility_setting(tmp_path: Path, pki: Pki, facility: str) -> None:
    from gateway.alerts.render.syslog import FACILITIES

    async def go() -> Collector:
        collector = Collector(pki)
        port = await collector.start()
        sink = sink_for(pki, port, facility=FACILITIES[facility], confirm_after_s=0.0)
        await drive(make_pipeline(tmp_path, sink), 1, lambda: collector.messages)
        return collector

    collector = asyncio.run(go())
    assert SyslogMessage.parse(collector.messages[0]).as_dict()["facility"] == facility
