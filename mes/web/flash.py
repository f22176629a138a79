"""One-shot messages across a post/redirect/get: "Step 2 recorded", "Badge issued".

The message rides in a cookie set on the redirect and cleared by the page that shows it.
`__Host-` (Secure, Path=/, no Domain), HttpOnly, SameSite=Strict and one minute of life:
only this origin can set it and no script can read it. A badge token shown once travels
this way too, so that issuing stays a post/redirect/get and a reload of the page does not
issue another badge; it is never written anywhere else.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from fastapi import Request, Response
from fastapi.responses import RedirectResponse

COOKIE = "__Host-plantgate-flash"
MAX_AGE_S = 60
MAX_TEXT = 600
LEVELS = ("ok", "warn", "error")


@dataclass(frozen=True, repr=False)
class Flash:
    text: str
    level: str = "ok"
    token: str | None = None  # a secret shown once (badge token)

    def __repr__(self) -> str:
        return f"Flash({self.level}: {self.text!r})"


def encode(flash: Flash) -> str:
    data = {"t": flash.text[:MAX_TEXT], "l": flash.level, "k": flash.token}
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(value: str | None) -> Flash | None:
    if not value or len(value) > 2000:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        data = json.loads(raw)
    except (binascii.Error, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    text, level, token = data.get("t"), data.get("l"), data.get("k")
    if not isinstance(text, str) or level not in LEVELS:
        return None
    return Flash(text[:MAX_TEXT], str(level), token if isinstance(token, str) else None)


def set_flash(response: Response, flash: Flash) -> None:
    response.headers.append(
        "set-cookie",
        f"{COOKIE}={encode(flash)}; Max-Age={MAX_AGE_S}; Path=/; Secure; HttpOnly; SameSite=Strict",
    )


def clear_flash(response: Response) -> None:
    response.headers.append(
        "set-cookie", f"{COOKIE}=; Max-Age=0; Path=/; Secure; HttpOnly; SameSite=Strict"
    )


def take(request: Request) -> Flash | None:
    return decode(request.cookies.get(COOKIE))


def see_other(location: str, text: str | None = None, level: str = "ok") -> RedirectResponse:
    """The redirect after a successful post (303: the browser follows with GET)."""
    response = RedirectResponse(location, status_code=303)
    if text:
        set_flash(response, Flash(text, level))
    return response
