"""Reading posted forms: bounded texts, numbers, flags and choices, each problem kept next
to its field, and what was typed kept for the page that shows the form again.

Bounds everywhere for the same reason as the API's models: a text longer than its column
or a number the database cannot hold must be a message beside the field, never a 500.
Secrets (PIN, password, code) are read with `secret`, which never keeps the typed value.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from starlette.datastructures import FormData

from mes.domain.errors import MesError

MAX_INT = 2**31 - 1
MAX_NUMBER = 1e15


def parse_number(raw: str) -> float | None:
    """'12.5', '12,5', '-3', '1e3' -> a finite float; None if not a number."""
    text = raw.strip().replace(" ", "")
    if "," in text and "." not in text:
        text = text.replace(",", ".")
    try:
        value = float(text)
    except ValueError:
        return None
    if not math.isfinite(value) or abs(value) > MAX_NUMBER:
        return None
    return value


class Fields:
    """A posted form, read field by field; `problems` maps field names to messages."""

    def __init__(self, form: FormData | Mapping[str, str]) -> None:
        self._form = form
        self.values: dict[str, str] = {}
        self.problems: dict[str, str] = {}

    def raw(self, name: str) -> str | None:
        value = self._form.get(name)
        return value if isinstance(value, str) else None

    def problem(self, name: str, message: str) -> None:
        self.problems.setdefault(name, message)

    @property
    def ok(self) -> bool:
        return not self.problems

    def text(self, name: str, *, limit: int, required: bool = False, keep: bool = True) -> str:
        """The trimmed text ('' when absent)."""
        raw = self.raw(name) or ""
        if keep:
            self.values[name] = raw[: limit + 1]
        value = raw.strip()
        if "\x00" in value:
            self.problem(name, "must not contain NUL characters")
            return ""
        if len(value) > limit:
            self.problem(name, f"at most {limit} characters")
            return value[:limit]
        if required and not value:
            self.problem(name, "required")
        return value

    def secret(self, name: str, *, limit: int = 256) -> str:
        """A PIN, password or code: read, never kept for the page."""
        raw = self.raw(name) or ""
        if len(raw) > limit:
            self.problem(name, f"at most {limit} characters")
            return ""
        return raw

    def optional(self, name: str, *, limit: int) -> str | None:
        value = self.text(name, limit=limit)
        return value or None

    def integer(
        self, name: str, *, low: int = 1, high: int = MAX_INT, required: bool = False
    ) -> int | None:
        text = self.text(name, limit=20, required=required)
        if not text:
            return None
        if not text.lstrip("-").isdigit():
            self.problem(name, "expected a whole number")
            return None
        value = int(text)
        if not low <= value <= high:
            self.problem(name, f"expected {low} to {high}")
            return None
        return value

    def number(self, name: str, *, required: bool = False) -> float | None:
        text = self.text(name, limit=40, required=required)
        if not text:
            return None
        value = parse_number(text)
        if value is None:
            self.problem(name, "expected a number, like 12.5")
        return value

    def flag(self, name: str) -> bool:
        value = self.raw(name)
        checked = value is not None and value.lower() in ("on", "yes", "true", "1")
        self.values[name] = "yes" if checked else ""
        return checked

    def choice(self, name: str, options: Iterable[str], *, required: bool = True) -> str | None:
        allowed = list(options)
        value = self.text(name, limit=64)
        if not value:
            if required:
                self.problem(name, "choose one")
            return None
        if value not in allowed:
            self.problem(name, "not one of the choices")
            return None
        return value

    def choices(self, name: str, options: Iterable[str]) -> list[str]:
        allowed = set(options)
        if isinstance(self._form, FormData):
            picked = [v for v in self._form.getlist(name) if isinstance(v, str)]
        else:
            single = self._form.get(name)
            picked = [single] if isinstance(single, str) else []
        self.values[name] = ",".join(picked)
        unknown = [v for v in picked if v not in allowed]
        if unknown:
            self.problem(name, f"unknown choice {unknown[0][:40]!r}")
        return [v for v in picked if v in allowed]

    def absorb(self, error: MesError, fields: Mapping[str, str] | None = None) -> str:
        """Put a service's located problems next to their fields; the general message.

        `fields` maps the end of a problem's location (e.g. `number`, `params.pattern`) to
        the form's field name; unmapped problems stay in the general message."""
        for where, message in error.problems:
            for suffix, field in (fields or {}).items():
                if where == suffix or where.endswith("." + suffix):
                    self.problem(field, message)
                    break
        return error.message
