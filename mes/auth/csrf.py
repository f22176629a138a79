"""Cross-site request forgery: a synchronizer token per session, and an origin check.

- Token: HMAC-SHA256(session id, "csrf"), URL-safe base64. It is derived, so any page of the
  session can render it into a form without the server storing it; the session row keeps its
  SHA-256 and a submitted token is compared with that in constant time.
- Which requests: every state-changing method (POST, PUT, PATCH, DELETE) that is
  authenticated by the session cookie.
  * The origin must be ours: `Sec-Fetch-Site: cross-site` is refused; an `Origin` header must
    equal the request's own origin; without `Origin`, a `Referer` must start with it.
  * A form post (urlencoded or multipart) must carry the token, in the field `csrf_token` or
    the header `X-CSRF-Token`.
  * A JSON request without Origin and Referer comes from a non-browser client (browsers send
    Origin on every POST, and cannot send cross-site JSON without a CORS preflight we never
    grant); if it carries `X-CSRF-Token`, the token must be right.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
FIELD = "csrf_token"
HEADER = "x-csrf-token"


def token_for(session_id: str) -> str:
    mac = hmac.new(session_id.encode(), b"plantgate/mes/csrf/v1", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(submitted: str | None, stored_hash: str | None) -> bool:
    if not submitted or not stored_hash or len(submitted) > 128:
        return False
    return hmac.compare_digest(token_hash(submitted), stored_hash)


def is_form(content_type: str | None) -> bool:
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    return kind in FORM_TYPES


def origin_problem(headers: Mapping[str, str], own_origin: str) -> str | None:
    """Why this request does not come from our own pages (None: it does, or no browser)."""
    if headers.get("sec-fetch-site", "").lower() == "cross-site":
        return "cross-site request"
    origin = headers.get("origin")
    if origin is not None:
        return None if origin == own_origin else "foreign origin"
    referer = headers.get("referer")
    if referer is not None and referer != own_origin and not referer.startswith(own_origin + "/"):
        return "foreign referer"
    return None


def request_problem(
    method: str,
    headers: Mapping[str, str],
    own_origin: str,
    submitted: str | None,
    stored_hash: str | None,
) -> str | None:
    """Why a cookie-authenticated request must be refused (None: let it through).

    `headers` have lower-case names; `submitted` is the form field or header token.
    """
    if method.upper() not in UNSAFE_METHODS:
        return None
    problem = origin_problem(headers, own_origin)
    if problem:
        return problem
    token_expected = is_form(headers.get("content-type")) or submitted is not None
    if token_expected and not token_matches(submitted, stored_hash):
        return "missing or wrong CSRF token"
    return None
