"""`mes.login_failed` and `mes.lockout` events to plantgated's event socket (DESIGN §7).

Sending is a non-blocking datagram (`gateway.events.send_event`) and never raises: a missing
daemon or a full socket costs the login nothing. Fields name the station, client address,
the kind of identifier used, the employee number when one is known, and the reason; never a
PIN, password, TOTP code or badge token.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from gateway.events import Event, send_event

SOURCE = "mes"
LOGIN_FAILED = "mes.login_failed"
LOCKOUT = "mes.lockout"

Sender = Callable[[Event], object]


class Notifier:
    """Publishes auth events; `sender` is replaceable in tests."""

    def __init__(self, state: Path | None, sender: Sender | None = None) -> None:
        self._state = state
        self._sender = sender
        self.sent = 0
        self.dropped = 0

    def _send(self, kind: str, fields: dict[str, Any]) -> None:
        event = Event(kind, SOURCE, {k: v for k, v in fields.items() if v is not None})
        try:
            if self._sender is not None:
                self._sender(event)
                ok = True
            else:
                ok = self._state is not None and send_event(self._state, event)
        except Exception:  # an event must never fail a login
            ok = False
        if ok:
            self.sent += 1
        else:
            self.dropped += 1

    def login_failed(
        self,
        *,
        reason: str,
        via: str,
        station: str | None,
        address: str | None,
        employee_number: str | None = None,
        failures: int | None = None,
        context: str = "login",
    ) -> None:
        self._send(
            LOGIN_FAILED,
            {
                "reason": reason,
                "via": via,
                "station": station,
                "source_ip": address,
                "employee_number": employee_number,
                "failures": failures,
                "context": context,
            },
        )

    def lockout(
        self,
        *,
        employee_number: str,
        station: str | None,
        address: str | None,
        failures: int,
    ) -> None:
        self._send(
            LOCKOUT,
            {
                "employee_number": employee_number,
                "station": station,
                "source_ip": address,
                "failures": failures,
            },
        )
