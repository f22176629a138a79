"""HTTPS webhook sink: POST batches of alerts as a JSON array (ECS or OCSF documents).

`POST URL` with `Content-Type: application/json`, the body a JSON array of rendered alerts,
and `Authorization: Bearer <token>` when a token file is configured. A 2xx answer delivers
the batch. Connection errors, timeouts, 408, 429 and 5xx are retried with exponential
backoff (the spool holds the alerts meanwhile, so retrying costs no memory). Any other 4xx
means the receiver will never take this batch: it is counted as lost for this sink
(`PG-HEALTH-SINK-LOST`) and skipped, so one bad batch does not block the feed forever.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Callable

import httpx

from gateway.alerts.render import Format, render_json
from gateway.alerts.sinks.base import Backoff, CursorSink, SinkError
from gateway.alerts.sinks.spool import Spooled

log = logging.getLogger(__name__)
RETRY_STATUS = frozenset({408, 425, 429})


class WebhookSink(CursorSink):
    name = "webhook"

    def __init__(
        self,
        url: str,
        *,
        verify: ssl.SSLContext | bool = True,
        fmt: Format = "ecs",
        token: str | None = None,
        batch: int = 100,
        timeout_s: float = 10.0,
        backoff: Backoff | None = None,
        on_rejected: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(backoff=backoff)
        self.url = url
        self.fmt = fmt
        self.batch_size = batch
        self.backlog_max = max(batch * 4, 100)
        self.on_rejected = on_rejected
        self.rejected = 0
        headers = {"Content-Type": "application/json", "User-Agent": "plantgate-alerts"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._client = httpx.AsyncClient(verify=verify, timeout=timeout_s, headers=headers)

    async def send(self, batch: list[Spooled]) -> None:
        body = json.dumps([render_json(r.alert, self.fmt, r.seq) for r in batch])
        try:
            answer = await self._client.post(self.url, content=body)
        except httpx.HTTPError as exc:
            raise SinkError(f"POST {self.url} failed: {exc!r}") from None
        status = answer.status_code
        if 200 <= status < 300:
            return
        if status in RETRY_STATUS or status >= 500:
            raise SinkError(f"POST {self.url}: HTTP {status}")
        self.rejected += len(batch)
        log.error("webhook refused %d alerts with HTTP %d; skipping them", len(batch), status)
        if self.on_rejected is not None:
            self.on_rejected(len(batch))

    async def aclose(self) -> None:
        await self._client.aclose()
