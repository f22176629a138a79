"""Bearer tokens for the local admin API: who is calling.

`<state>/api/tokens.json` (mode 0600, in a 0700 directory) maps the SHA-256 of each token to
the person it was made for and when. The token itself is printed once, by `plantgate gate
token create NAME`, and never stored: a copy of the file does not let anyone in.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
from pathlib import Path
from typing import Any

from gateway.events import utc_now
from gateway.state import ensure_dir, write_atomic
from gateway.vpn.targets import GateError

PERSON = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")


def tokens_path(state: Path) -> Path:
    return state / "api" / "tokens.json"


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_person(name: str) -> str:
    """A person's identity string (login-name-like); GateError (invalid) otherwise."""
    if not PERSON.match(name):
        raise GateError(
            f"'{name}' is not a person's name: use letters, digits and . _ @ - (up to 64)",
            "invalid",
        )
    return name


def _read(state: Path) -> dict[str, Any]:
    try:
        data = json.loads(tokens_path(state).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except ValueError as exc:
        raise GateError(f"{tokens_path(state)} is damaged: {exc}") from None
    return data if isinstance(data, dict) else {}


def create_token(state: Path, person: str) -> str:
    """A new token for `person` (returned once; only its hash is kept)."""
    check_person(person)
    token = "pg_" + secrets.token_urlsafe(32)
    ensure_dir(tokens_path(state).parent, mode=0o700)
    tokens = _read(state)
    tokens[digest(token)] = {"person": person, "created": utc_now().isoformat()}
    write_atomic(tokens_path(state), json.dumps(tokens, indent=2, sort_keys=True) + "\n", 0o600)
    return token


def person_for(state: Path, token: str) -> str | None:
    """The person a token belongs to, or None."""
    wanted = digest(token)
    for key, entry in _read(state).items():
        if hmac.compare_digest(key, wanted) and isinstance(entry, dict):
            person = entry.get("person")
            return person if isinstance(person, str) else None
    return None
