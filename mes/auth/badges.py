"""Badge tokens: what is printed on a badge, and the only thing the database keeps of it.

A printed barcode can be copied, so a badge is an identifier, never a credential by itself:
login always needs the PIN too. The database keeps HMAC-SHA256(badge key, token), the badge
key derived from the pepper; a database copy cannot be turned back into printable badges.

Token: 20 characters of Crockford base32 (100 bits) in groups of four, e.g.
`PGB-7K3M-Q9X2-...`. Scanners add line ends or the reader may type in lower case, so input is
normalised (upper case; spaces, dashes and the `PGB` prefix removed; O→0, I/L→1 as Crockford
reads them) before hashing. Issue returns the token once; revoke marks the row; reissue
revokes every active badge of the person and issues a new one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32
TOKEN_CHARS = 20
PREFIX = "PGB"
_READS_AS = str.maketrans({"O": "0", "I": "1", "L": "1"})
_ALLOWED = frozenset(ALPHABET)


@dataclass(frozen=True, repr=False)
class IssuedBadge:
    """A new badge: the printable token (shown once) and the HMAC the database keeps."""

    token: str
    token_hmac: str

    def __repr__(self) -> str:
        return "IssuedBadge(<token hidden>)"


def new_token() -> str:
    raw = "".join(secrets.choice(ALPHABET) for _ in range(TOKEN_CHARS))
    groups = [raw[i : i + 4] for i in range(0, TOKEN_CHARS, 4)]
    return "-".join([PREFIX, *groups])


def normalise(scanned: str) -> str | None:
    """The canonical 20 characters of a scanned token, or None if it cannot be one."""
    text = "".join(scanned.split()).upper().replace("-", "")
    if len(text) == len(PREFIX) + TOKEN_CHARS and text.startswith(PREFIX):
        text = text[len(PREFIX) :]
    text = text.translate(_READS_AS)
    if len(text) != TOKEN_CHARS or not set(text) <= _ALLOWED:
        return None
    return text


def token_hmac(badge_key: bytes, scanned: str) -> str | None:
    """The stored form of a scanned token (hex), or None for input that is no token."""
    canonical = normalise(scanned)
    if canonical is None:
        return None
    return hmac.new(badge_key, canonical.encode(), hashlib.sha256).hexdigest()


def issue(badge_key: bytes) -> IssuedBadge:
    token = new_token()
    digest = token_hmac(badge_key, token)
    assert digest is not None  # a fresh token always normalises
    return IssuedBadge(token, digest)
