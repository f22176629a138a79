"""TOTP second factor for Manage Page accounts (RFC 6238 through pyotp).

- Enrolment creates a 160-bit base32 secret and returns the `otpauth://` provisioning URI
  once, for the authenticator app's QR code; the database keeps the secret sealed
  (AES-GCM, see `secrets.Sealer`). The enrolment becomes active with the first valid code.
- Verification accepts the current 30 s step and one step either side (clock drift), and
  each step at most once per person: a code that was accepted is refused if it comes again
  (replay), as is any code of a step not later than the last accepted one.
- `verify` is pure given the time: it returns the accepted step, which the caller stores.
"""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from dataclasses import dataclass

import pyotp

ISSUER = "PlantGate MES"
STEP_S = 30
WINDOW = 1  # steps accepted either side of now
DIGITS = 6


@dataclass(frozen=True, repr=False)
class Enrolment:
    secret: str
    uri: str

    def __repr__(self) -> str:
        return "Enrolment(<secret hidden>)"


def enrol(account: str, issuer: str = ISSUER) -> Enrolment:
    secret = pyotp.random_base32(length=32)
    uri = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S).provisioning_uri(
        name=account, issuer_name=issuer
    )
    return Enrolment(secret, uri)


def current_step(now: float) -> int:
    return int(now // STEP_S)


def verify(secret: str, code: str, now: float, last_step: int | None) -> int | None:
    """The step `code` belongs to if it is valid now and newer than `last_step`, else None."""
    code = code.strip().replace(" ", "")
    if len(code) != DIGITS or not code.isascii() or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret, digits=DIGITS, interval=STEP_S)
    found: int | None = None
    now_step = current_step(now)
    for step in range(now_step - WINDOW, now_step + WINDOW + 1):
        if hmac.compare_digest(totp.at(step * STEP_S), code) and found is None:
            found = step
    if found is None or (last_step is not None and found <= last_step):
        return None
    return found


class StepMemory:
    """The last accepted step per account, in memory (bounded), for when the database has
    no column for it: replay is refused for as long as this process runs, which covers the
    ±1-step window a code is valid in."""

    def __init__(self, max_accounts: int = 10_000) -> None:
        self._steps: OrderedDict[str, int] = OrderedDict()
        self._max = max_accounts

    def last(self, account: str) -> int | None:
        return self._steps.get(account)

    def remember(self, account: str, step: int) -> None:
        self._steps[account] = max(step, self._steps.get(account, step))
        self._steps.move_to_end(account)
        while len(self._steps) > self._max:
            self._steps.popitem(last=False)


def now() -> float:
    return time.time()
