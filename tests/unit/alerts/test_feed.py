"""The feed API through httpx's ASGI transport: pages by cursor, formats, SSE, metrics."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
import pytest
from cefp import parse as parse_cef
from syslog_rfc5424_parser import SyslogMessage

from gateway.alerts.feed import create_app
from gateway.alerts.pipeline import AlertPipeline
from gateway.alerts.sinks.spool import CursorStore, Spool
from tests.unit.alerts.conftest import OBSERVER, trigger


@pytest.fixture
def pipeline(tmp_path: Path) -> AlertPipeline:
    p = AlertPipeline(Spool(tmp_path / "spool").open(), OBSERVER, cursors=CursorStore(tmp_path))
    asyncio.run(p.process([trigger(f"k{i}") for i in range(5)]))
    return p


def get(p: AlertPipeline, url: str, **kw: object) -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=create_app(p))
        async with httpx.AsyncClient(transport=transport, base_url="http://feed") as client:
            return await client.get(url, **kw)  # type: ignore[arg-type]

    return asyncio.run(go())


def test_pages_by_cursor(pipeline: AlertPipeline) -> None:
    first = get(pipeline, "/alerts?limit=2")
    assert first.status_code == 200
    assert [d["event"]["sequence"] for d in first.json()] == [1, 2]
    assert first.headers["PlantGate-Cursor"] == "2"
    after = first.headers["PlantGate-Cursor"]
    rest = get(pipeline, f"/alerts?after={after}&limit=100")
    assert [d["event"]["sequence"] for d in rest.json()] == [3, 4, 5]
    assert rest.headers["PlantGate-Cursor"] == "5"
    empty = get(pipeline, "/alerts?after=5")
    assert empty.json() == [] and empty.headers["PlantGate-Cursor"] == "5"
    assert empty.headers["PlantGate-Missed"] == "0"


def test_every_format(pipeline: AlertPipeline) -> None:
    ocsf = get(pipeline, "/alerts?format=ocsf").json()
    assert ocsf[0]["class_uid"] == 2004 and ocsf[0]["metadata"]["sequence"] == 1
    cef = get(pipeline, "/alerts?format=cef")
    assert cef.headers["content-type"].startswith("text/plain")
    lines = cef.text.splitlines()
    assert len(lines) == 5 and parse_cef(lines[0])["extension"]["flexNumber1"] == "1"
    syslog = get(pipeline, "/alerts?format=syslog").text.splitlines()
    assert SyslogMessage.parse(syslog[4]).as_dict()["sd"]["meta"] == {"sequenceId": "5"}


def test_bad_requests_get_a_sentence(pipeline: AlertPipeline) -> None:
    for url in ("/alerts?format=xml", "/alerts?after=-1", "/alerts?limit=0", "/alerts?after=x"):
        answer = get(pipeline, url)
        assert answer.status_code == 422
        assert "error" in answer.json()


def test_missed_records_are_reported(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s", segment_bytes=4096, max_bytes=8192).open()
    p = AlertPipeline(spool, OBSERVER, cursors=CursorStore(tmp_path))
    asyncio.run(p.process([trigger(f"k{i}") for i in range(30)]))
    answer = get(p, "/alerts?after=0&limit=1")
    first = int(answer.headers["PlantGate-First"])
    assert first > 1 and answer.headers["PlantGate-Missed"] == str(first - 1)


def sse_events(text: str) -> list[dict[str, str]]:
    events, current = [], {}
    for line in text.splitlines():
        if not line:
            if current:
                events.append(current)
            current = {}
        elif not line.startswith(":"):
            name, _, value = line.partition(":")
            current[name] = value.strip()
    return events


def test_stream_resumes_from_last_event_id(pipeline: AlertPipeline) -> None:
    answer = get(pipeline, "/alerts/stream?after=0&limit=3")
    assert answer.headers["content-type"].startswith("text/event-stream")
    events = sse_events(answer.text)
    assert [e["id"] for e in events] == ["1", "2", "3"]
    assert all(e["event"] == "alert" for e in events)
    assert json.loads(events[0]["data"])["event"]["kind"] == "alert"
    resumed = get(pipeline, "/alerts/stream?limit=2&format=cef", headers={"Last-Event-ID": "3"})
    assert [e["id"] for e in sse_events(resumed.text)] == ["4", "5"]


def test_stream_waits_for_new_alerts(pipeline: AlertPipeline) -> None:
    async def go() -> list[dict[str, str]]:
        transport = httpx.ASGITransport(app=create_app(pipeline))
        async with httpx.AsyncClient(transport=transport, base_url="http://feed") as client:
            request = asyncio.create_task(client.get("/alerts/stream?limit=1"))  # from now on
            await asyncio.sleep(0.2)
            await pipeline.process([trigger("late")])
            answer = await asyncio.wait_for(request, 5)
        return sse_events(answer.text)

    [event] = asyncio.run(go())
    assert event["id"] == "6"


def test_metrics_and_index(pipeline: AlertPipeline) -> None:
    text = get(pipeline, "/metrics").text
    assert "# TYPE plantgate_alerts_total counter" in text
    assert "plantgate_spool_last_seq 5.0" in text
    index = get(pipeline, "/").json()
    assert index["last"] == 5 and index["observer"]["site"] == "lab-plant"
