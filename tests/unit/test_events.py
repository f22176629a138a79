"""Events: validation of datagrams, and the daemon's socket intake onto the bus."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

import pytest

from gateway.events import Bus, Event, EventIntake, parse_event, send_event


def test_event_round_trips_through_json() -> None:
    event = Event("policy.applied", "plantgate", {"revision": 3})
    parsed = parse_event(event.to_json().encode())
    assert (parsed.kind, parsed.source, parsed.fields, parsed.ts) == (
        "policy.applied",
        "plantgate",
        {"revision": 3},
        event.ts,
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"{", "not JSON"),
        (b"[]", "an event is a JSON object"),
        (b'{"kind": "Policy Applied", "source": "x"}', "bad kind"),
        (b'{"kind": "policy.applied"}', "missing source"),
        (b'{"kind": "policy.applied", "source": "x", "fields": []}', "fields must be an object"),
        (b'{"kind": "policy.applied", "source": "x", "ts": "yesterday"}', "bad ts"),
        (b'{"kind": "policy.applied", "source": "x", "ts": "2026-01-01T00:00:00"}', "UTC offset"),
    ],
)
def test_bad_datagrams_are_refused_with_a_reason(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_event(data)


def test_send_without_a_daemon_does_not_fail(tmp_path: Path) -> None:
    assert send_event(tmp_path, Event("policy.applied", "plantgate")) is False


def test_intake_puts_valid_events_on_the_bus_and_counts_bad_ones(tmp_path: Path) -> None:
    async def scenario() -> tuple[list[Event], int]:
        bus = Bus()
        seen: list[Event] = []
        bus.subscribe(seen.append)
        intake = EventIntake(tmp_path, bus)
        intake.open()
        try:
            assert send_event(tmp_path, Event("mes.login_failed", "mes", {"station": "s1"}))
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.sendto(json.dumps({"kind": "nope"}).encode(), str(intake.path))
            for _ in range(50):
                if seen and intake.rejected:
                    break
                await asyncio.sleep(0.01)
        finally:
            intake.close()
        return seen, intake.rejected

    seen, rejected = asyncio.run(scenario())
    assert [(e.kind, e.fields) for e in seen] == [("mes.login_failed", {"station": "s1"})]
    assert rejected == 1
    assert not (tmp_path / "run" / "events.sock").exists()
