"""Canonical JSON, content hashes and what an electronic signature is bound to.

Why canonical JSON: a hash is only a fingerprint of a record if every layer serialises the
record the same way: sorted keys, no spaces, UTF-8, no NaN. `record_digest` mixes the
record's type and id into its content hash, so a signature made over one record does not
verify against another record that happens to have identical content.
"""

from __future__ import annotations

import hashlib
import json
from enum import StrEnum
from typing import Any


class Meaning(StrEnum):
    """What the signer means by signing (21 CFR 11.50: shown with name and time)."""

    AUTHORED = "authored"
    REVIEWED = "reviewed"
    APPROVED = "approved"
    PERFORMED = "performed"
    VERIFIED = "verified"
    DISPOSITIONED = "dispositioned"


class SignatureMethod(StrEnum):
    """How the signer re-identified: badge or employee number plus PIN at a station, or
    password plus TOTP on the Manage Page."""

    PIN = "pin"
    PASSWORD_TOTP = "password+totp"


def canonical_json(value: Any) -> str:
    """The one serialisation hashed everywhere (ValueError on NaN or infinity)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def content_hash(value: Any) -> str:
    return sha256_hex(canonical_json(value))


def record_digest(record_type: str, record_id: int, content: str) -> str:
    """What a signature is bound to: this record (type and id) with this content hash."""
    return content_hash({"type": record_type, "id": record_id, "content": content})
