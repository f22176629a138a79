"""Manage Page passwords: policy for a new password, and peppered argon2id hashing.

Policy (NIST SP 800-63B style, no composition rules): 12 to 128 characters; not a string of
one character; not on a short deny-list of passwords that lead breach corpora; not containing
the account's employee number or name. Length is capped so a request cannot make argon2 hash
megabytes. Hashing is `hashing.PepperedHasher` with the password key derived from the pepper.
"""

from __future__ import annotations

import unicodedata

from mes.auth.hashing import DEFAULT_PARAMS, Argon2Params, PepperedHasher

MIN_LENGTH = 12
MAX_LENGTH = 128
DENY_LIST = frozenset(
    {
        "123456789012", "1234567890123", "password1234", "password12345", "passwordpassword",
        "qwertyuiopas", "qwerty123456", "iloveyou1234", "administrator", "letmein12345",
        "welcome12345", "changeme1234", "plantgate123", "plantgate1234", "abc123abc123",
        "1q2w3e4r5t6y", "qwertyuiop12", "aaaaaaaaaaaa", "abcdefghijkl", "manufacturing",
    }
)  # fmt: skip


class PasswordRejected(ValueError):
    def __init__(self, reasons: list[str]) -> None:
        super().__init__("password refused: " + "; ".join(reasons))
        self.reasons = reasons


def normalise(password: str) -> str:
    """NFKC, so the same password typed on different keyboards hashes the same."""
    return unicodedata.normalize("NFKC", password)


def password_problems(
    password: str, employee_number: str | None = None, name: str | None = None
) -> list[str]:
    text = normalise(password)
    if len(text) < MIN_LENGTH:
        return [f"at least {MIN_LENGTH} characters"]
    if len(text) > MAX_LENGTH:
        return [f"at most {MAX_LENGTH} characters"]
    problems: list[str] = []
    lowered = text.casefold()
    if len(set(text)) == 1:
        problems.append("one character repeated")
    if lowered in DENY_LIST:
        problems.append("one of the most common passwords")
    for label, value in (("employee number", employee_number), ("name", name)):
        if value and len(value.strip()) >= 3 and value.strip().casefold() in lowered:
            problems.append(f"contains your {label}")
    return problems


def check_password(
    password: str, employee_number: str | None = None, name: str | None = None
) -> str:
    problems = password_problems(password, employee_number, name)
    if problems:
        raise PasswordRejected(problems)
    return normalise(password)


class PasswordHasher:
    """Peppered argon2id for passwords; input longer than MAX_LENGTH never matches."""

    def __init__(self, key: bytes, params: Argon2Params = DEFAULT_PARAMS) -> None:
        self._inner = PepperedHasher(key, params)

    def hash(self, password: str) -> str:
        return self._inner.hash(normalise(password))

    def verify(self, stored: str | None, password: str) -> bool:
        text = normalise(password)
        if len(text) > MAX_LENGTH:
            text = ""  # still spend the time, never match
            self._inner.verify(None, text)
            return False
        return self._inner.verify(stored, text)
