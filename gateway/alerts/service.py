"""The alert service as plantgated runs it: spool, pipeline, sinks and feed, from the state.

    service = AlertService(state, observer)          # reads <state>/alerts/config.yaml
    service.pipeline.submit(trigger)                 # the watcher's detectors
    await service.run(stop)                          # until stop: pipeline, sinks, feed

`python -m gateway.alerts.service --state-dir DIR` runs the same thing alone (the lab's
kernel tests and demos use it; `--demo-rate N` emits N synthetic test alerts a second and
prints `committed SEQ` after each durable commit).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import itertools
import logging
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from gateway.alerts.aggregate import AggregationPolicy, Window
from gateway.alerts.config import AlertSettings, ConfigError, config_path, load_settings
from gateway.alerts.feed import serve_feed
from gateway.alerts.pipeline import AlertPipeline
from gateway.alerts.record import Alert, Endpoint, Observer, Rule, Severity, Trigger
from gateway.alerts.render.syslog import FACILITIES
from gateway.alerts.sinks.base import CursorSink
from gateway.alerts.sinks.spool import CursorStore, Spool, cursor_dir, spool_dir
from gateway.alerts.sinks.syslog_tls import SyslogTlsSink, client_context
from gateway.alerts.sinks.webhook import WebhookSink
from gateway.state import state_dir

log = logging.getLogger(__name__)
TEST_RULE = Rule("PG-TEST-ALERT", "Test alert", "1")


def plantgate_version() -> str:
    try:
        return importlib.metadata.version("plantgate")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0"


def default_observer(site: str = "plantgate", mode: str = "protecting") -> Observer:
    if mode not in ("learning", "protecting"):
        raise ValueError(f"mode {mode!r}: learning or protecting")
    return Observer(
        site=site,
        appliance=socket.gethostname(),
        version=plantgate_version(),
        mode="learning" if mode == "learning" else "protecting",
    )


def build_sinks(settings: AlertSettings, pipeline: AlertPipeline | None = None) -> list[CursorSink]:
    sinks: list[CursorSink] = []
    if settings.syslog is not None:
        s = settings.syslog
        sinks.append(
            SyslogTlsSink(
                s.host,
                s.port,
                client_context(s.ca, s.client_cert, s.client_key),
                server_name=s.server_name,
                facility=FACILITIES[s.facility],
                backlog=s.backlog,
                confirm_after_s=s.confirm_after_s,
            )
        )
    if settings.webhook is not None:
        w = settings.webhook
        token = w.token_file.read_text().strip() if w.token_file else None
        verify = client_context(w.ca) if w.ca else True
        hook = WebhookSink(
            w.url, verify=verify, fmt=w.format, token=token, batch=w.batch, timeout_s=w.timeout_s
        )
        if pipeline is not None:
            hook.on_rejected = lambda n: pipeline._sink_lost("webhook", n)
        sinks.append(hook)
    return sinks


class AlertService:
    def __init__(
        self, state: Path, observer: Observer, settings: AlertSettings | None = None
    ) -> None:
        self.state = state
        self.settings = settings or load_settings(config_path(state))
        s = self.settings
        self.spool = Spool(
            spool_dir(state), segment_bytes=s.spool.segment_bytes, max_bytes=s.spool.max_bytes
        )
        window = Window(
            s.aggregation.window_s, s.aggregation.update_every_s, s.aggregation.max_open_s
        )
        self.pipeline = AlertPipeline(
            self.spool,
            observer,
            cursors=CursorStore(cursor_dir(state)),
            policy=AggregationPolicy(default=window, max_entries=s.aggregation.max_entries),
            intake_size=s.intake_queue,
        )
        self.pipeline.sinks = build_sinks(s, self.pipeline)

    async def run(self, stop: asyncio.Event) -> None:
        """Open the spool, run the pipeline (with its sinks) and the feed until `stop`."""
        self.spool.open()
        try:
            feed = asyncio.create_task(
                serve_feed(self.state, self.pipeline, stop, tcp_port=self.settings.feed.tcp_port)
            )
            try:
                await self.pipeline.run(stop)
            finally:
                stop.set()
                await feed
                for sink in self.pipeline.sinks:
                    if isinstance(sink, WebhookSink):
                        await sink.aclose()
        finally:
            self.spool.close()


async def demo_triggers(pipeline: AlertPipeline, rate: float, stop: asyncio.Event) -> None:
    """`rate` synthetic test alerts a second, each a new alert (distinct keys)."""
    for i in itertools.count(1):
        if stop.is_set():
            return
        pipeline.submit(
            Trigger(
                rule=TEST_RULE,
                key=f"demo-{i}",
                severity=Severity.INFO,
                summary=f"test alert {i} from plantgate",
                source=Endpoint("198.18.20.1", zone="plant", role="appliance"),
            )
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0 / rate)


def _print_commit(alerts: Sequence[Alert], seqs: Sequence[int]) -> None:
    print(f"committed {seqs[-1]}", flush=True)


async def _main(args: argparse.Namespace) -> int:
    state = state_dir(args.state_dir)
    try:
        service = AlertService(state, default_observer(args.site, args.mode))
    except (ConfigError, OSError) as exc:
        log.error("%s", exc)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    service.pipeline.on_commit.append(_print_commit)
    tasks = []
    if args.demo_rate:
        tasks.append(asyncio.create_task(demo_triggers(service.pipeline, args.demo_rate, stop)))
    await service.run(stop)
    for task in tasks:
        await task
    return 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway.alerts.service")
    parser.add_argument("--state-dir", type=Path, default=None)
    parser.add_argument("--site", default="plantgate")
    parser.add_argument("--mode", default="protecting", choices=("learning", "protecting"))
    parser.add_argument("--demo-rate", type=float, default=0.0, help="test alerts per second")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(name)s %(levelname)s %(message)s",
        stream=sys.stderr,
    )
    sys.exit(asyncio.run(_main(args)))


if __name__ == "__main__":
    main()
