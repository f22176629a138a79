"""The errors every MES layer raises, each meaning one answer to the caller.

`Invalid` (bad input, nothing changed: HTTP 422), `NotFound` (no such record, or one the
caller is not cleared to see: 404, so existence is not leaked), `Conflict` (the record's
state forbids it: 409), `Forbidden` (the caller's roles forbid it: 403), `SignatureRejected`
(re-entered credentials did not verify: 403). Messages are meant for people and never carry
secrets or stack traces.
"""

from __future__ import annotations


class MesError(Exception):
    """Base: a message for the caller and, for bad input, the located problems."""

    status = 400

    def __init__(self, message: str, problems: list[tuple[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or []


class Invalid(MesError):
    status = 422


class NotFound(MesError):
    status = 404


class Conflict(MesError):
    status = 409


class Forbidden(MesError):
    status = 403


class SignatureRejected(MesError):
    status = 403


class Unauthenticated(MesError):
    status = 401
