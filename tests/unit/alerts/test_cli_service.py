"""`plantgate alerts tail` (spool and feed socket), the service wiring, and its config file."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gateway.alerts.config import ConfigError, config_path, load_settings
from gateway.alerts.feed import feed_socket
from gateway.alerts.service import AlertService, build_sinks, default_observer
from gateway.alerts.sinks.spool import Spool, spool_dir
from gateway.alerts.sinks.syslog_tls import SyslogTlsSink
from gateway.alerts.sinks.webhook import WebhookSink
from gateway.cli import app
from tests.unit.alerts.conftest import OBSERVER, sample_alert, trigger

runner = CliRunner()


def test_tail_reads_the_spool_when_the_daemon_is_down(tmp_path: Path) -> None:
    with Spool(spool_dir(tmp_path)) as spool:
        spool.append([sample_alert(summary=f"a{i}") for i in range(5)])
    result = runner.invoke(app, ["alerts", "tail", "--state-dir", str(tmp_path), "-n", "2"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert [json.loads(x)["event"]["sequence"] for x in lines] == [4, 5]
    cef = runner.invoke(
        app, ["alerts", "tail", "--state-dir", str(tmp_path), "--format", "cef", "--after", "3"]
    )
    assert [x.split("|")[4] for x in cef.output.splitlines()] == ["PG-SCAN-VERTICAL"] * 2


def test_tail_errors(tmp_path: Path) -> None:
    bad = runner.invoke(app, ["alerts", "tail", "--state-dir", str(tmp_path), "--format", "xml"])
    assert bad.exit_code == 2 and "unknown format" in bad.output
    none = runner.invoke(app, ["alerts", "tail", "--state-dir", str(tmp_path / "nothing")])
    assert none.exit_code == 1 and "no spool" in none.output


@pytest.fixture
def running_service(tmp_path: Path) -> Iterator[AlertService]:
    service = AlertService(tmp_path, OBSERVER)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(target=loop.run_until_complete, args=(service.run(stop),))
    thread.start()
    deadline = time.monotonic() + 10
    while not feed_socket(tmp_path).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield service
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(15)
        loop.close()


def test_tail_through_the_feed_socket(tmp_path: Path, running_service: AlertService) -> None:
    pipeline = running_service.pipeline
    loop = pipeline._loop
    assert loop is not None
    for i in range(3):
        loop.call_soon_threadsafe(pipeline.submit, trigger(f"k{i}"))
    deadline = time.monotonic() + 10
    while running_service.spool.last_seq < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    result = runner.invoke(
        app, ["alerts", "tail", "--state-dir", str(tmp_path), "--format", "syslog", "--after", "0"]
    )
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) == 3
    assert all(line.startswith("<") for line in result.output.splitlines())


def test_clean_stop_closes_open_alerts(tmp_path: Path) -> None:
    service = AlertService(tmp_path, OBSERVER)

    async def go() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(service.run(stop))
        await asyncio.sleep(0.1)
        service.pipeline.submit(trigger("x"))
        await asyncio.sleep(0.3)
        stop.set()
        await task

    asyncio.run(go())
    with Spool(spool_dir(tmp_path)) as spool:
        assert [r.alert.status for r in spool.read(0, 10)] == ["new", "close"]
    assert not feed_socket(tmp_path).exists()


def test_config_file(tmp_path: Path) -> None:
    assert load_settings(config_path(tmp_path)).syslog is None
    path = config_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(
        "syslog: {host: 198.18.20.10, ca: /tmp/ca.crt, facility: local4}\n"
        "webhook: {url: 'https://siem.test/hook', format: ocsf}\n"
        "aggregation: {window_s: 30}\n"
    )
    settings = load_settings(path)
    assert settings.syslog is not None and settings.syslog.port == 6514
    assert settings.aggregation.window_s == 30
    for bad, message in (
        ("syslog: {host: x, ca: /c, facility: local9}", "facility"),
        ("webhook: {url: 'http://plain'}", "https"),
        ("spool: {segment_bytes: 1, typo: 2}", "typo"),
        ("[1, 2", "not YAML"),
    ):
        path.write_text(bad)
        with pytest.raises(ConfigError, match=message):
            load_settings(path)


def test_build_sinks(tmp_path: Path, pki: object) -> None:
    from tests.unit.alerts.conftest import Pki

    assert isinstance(pki, Pki)
    token = tmp_path / "token"
    token.write_text("t0k\n")
    path = config_path(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(
        f"syslog: {{host: 127.0.0.1, ca: {pki.ca}, client_cert: {pki.paths.client_cert}, "
        f"client_key: {pki.paths.client_key}}}\n"
        f"webhook: {{url: 'https://localhost:1/x', ca: {pki.ca}, token_file: {token}}}\n"
    )
    sinks = build_sinks(load_settings(path))
    assert [type(s) for s in sinks] == [SyslogTlsSink, WebhookSink]
    assert default_observer("site-a").site == "site-a"
    with pytest.raises(ValueError):
        default_observer(mode="sleeping")
