"""Events: the small typed records components publish for the watcher (DESIGN §7).

A component never formats an alert; it publishes an `Event` on the daemon's bus and the
watcher decides what it means. This module holds the record and an in-process bus; the
Unix datagram socket (`EventIntake`) takes the same records, as JSON, from other processes.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
import os
import re
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)
Subscriber = Callable[["Event"], Awaitable[None] | None]


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class Event:
    """`kind` like 'policy.applied', UTC time, the publishing component, and its fields."""

    kind: str
    source: str
    fields: dict[str, Any] = field(default_factory=dict)
    ts: datetime.datetime = field(default_factory=utc_now)

    def to_json(self) -> str:
        return json.dumps(
            {
                "kind": self.kind,
                "ts": self.ts.isoformat(),
                "source": self.source,
                "fields": self.fields,
            },
            sort_keys=True,
        )


class Bus:
    """Fan-out of events to subscribers; a failing subscriber never stops the others."""

    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []

    def subscribe(self, subscriber: Subscriber) -> None:
        self._subscribers.append(subscriber)

    async def publish(self, event: Event) -> None:
        for subscriber in list(self._subscribers):
            try:
                result = subscriber(event)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:  # a broken consumer must not take the publisher down
                log.exception("event subscriber failed on %s", event.kind)


KIND_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
MAX_DATAGRAM = 64 * 1024


def events_socket(state: Path) -> Path:
    """The daemon's local intake for events from other processes (CLI, MES)."""
    return state / "run" / "events.sock"


def parse_event(data: bytes) -> Event:
    """A JSON datagram -> Event; ValueError saying what is wrong with it."""
    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ValueError("an event is a JSON object")
    kind, source, fields = raw.get("kind"), raw.get("source"), raw.get("fields", {})
    if not isinstance(kind, str) or not KIND_PATTERN.match(kind):
        raise ValueError(f"bad kind {kind!r}: expected dotted lowercase like 'policy.applied'")
    if not isinstance(source, str) or not source:
        raise ValueError("missing source")
    if not isinstance(fields, dict):
        raise ValueError("fields must be an object")
    ts = raw.get("ts")
    try:
        stamp = datetime.datetime.fromisoformat(ts) if isinstance(ts, str) else utc_now()
    except ValueError:
        raise ValueError(f"bad ts {ts!r}") from None
    if stamp.tzinfo is None:
        raise ValueError("ts must carry a UTC offset")
    return Event(kind, source, fields, stamp.astimezone(datetime.UTC))


def send_event(state: Path, event: Event) -> bool:
    """Hand an event to the daemon if it is listening; never raises, never blocks.

    A missing daemon must not fail the operation that produced the event.
    """
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.setblocking(False)
            sock.sendto(event.to_json().encode(), str(events_socket(state)))
        return True
    except OSError:
        return False


class EventIntake:
    """The daemon's Unix datagram socket: valid events go on the bus, bad ones are counted."""

    def __init__(self, state: Path, bus: Bus) -> None:
        self.path = events_socket(state)
        self.bus = bus
        self.rejected = 0
        self._sock: socket.socket | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # held so they are not collected early

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.unlink(missing_ok=True)  # a stale socket from a previous run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(self.path))
        os.chmod(self.path, 0o660)
        sock.setblocking(False)
        self._sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)

    def close(self) -> None:
        if self._sock is not None:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
            self.path.unlink(missing_ok=True)

    def _readable(self) -> None:
        assert self._sock is not None
        while True:
            try:
                data = self._sock.recv(MAX_DATAGRAM)
            except BlockingIOError:
                return
            try:
                event = parse_event(data)
            except ValueError as exc:
                self.rejected += 1
                log.warning("rejected event datagram: %s", exc)
                continue
            task = asyncio.get_running_loop().create_task(self.bus.publish(event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
