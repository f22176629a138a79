"""Security headers on every response: a pure ASGI middleware (no body buffering).

- Content-Security-Policy: `default-src 'self'`, no inline or eval'd script, no plugins,
  forms post only to us, `frame-ancestors 'none'`.
- Strict-Transport-Security: two years, subdomains (no preload: appliance names are local).
- X-Frame-Options DENY (older browsers), X-Content-Type-Options nosniff, Referrer-Policy
  same-origin (the CSRF origin check may use a same-origin Referer), Permissions-Policy
  denying powerful features, Cross-Origin-Opener/Resource-Policy same-origin.
- Cache-Control `no-store` on everything except `/static/`: pages and API answers may hold
  records of a signed-in person, and shared station browsers must not keep them.
- Headers the application set itself win, except that a missing one is always added.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    )
)
SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("content-security-policy", CSP),
    ("strict-transport-security", "max-age=63072000; includeSubDomains"),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    (
        "permissions-policy",
        "camera=(), microphone=(), geolocation=(), payment=(), usb=(), interest-cohort=()",
    ),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
)
NO_STORE = ("cache-control", "no-store")
CACHEABLE_PREFIXES = ("/static/",)


def with_security_headers(
    headers: Iterable[tuple[bytes, bytes]], path: str
) -> list[tuple[bytes, bytes]]:
    """`headers` plus every security header they lack (pure)."""
    result = list(headers)
    present = {name.lower() for name, _ in result}
    wanted = list(SECURITY_HEADERS)
    if not path.startswith(CACHEABLE_PREFIXES):
        wanted.append(NO_STORE)
    for name, value in wanted:
        if name.encode() not in present:
            result.append((name.encode(), value.encode()))
    return result


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = str(scope.get("path", ""))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = with_security_headers(message.get("headers", []), path)
            await send(message)

        await self.app(scope, receive, send_with_headers)
