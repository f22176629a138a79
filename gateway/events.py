"""Events: the small typed records components publish for the watcher (DESIGN §7).

A component never formats an alert; it publishes an `Event` on the daemon's bus and the
watcher decides what it means. This module holds the record and an in-process bus; the
Unix-socket intake for other processes comes with the watcher.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
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
