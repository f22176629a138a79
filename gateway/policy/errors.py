"""Located problems in a policy file.

Every problem the loader or the applier finds is a `Problem` that names the file, line and
column (1-based, as editors count) and says what is wrong and, where we can tell, what was
meant. The CLI prints them in the compiler-style `FILE:LINE:COL: error: message` form that
editors and CI annotate.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True, order=True)
class Position:
    """A 1-based line and column in a source file."""

    line: int
    col: int


@dataclass(frozen=True)
class Problem:
    """One thing wrong (or suspicious) in a policy, at a place in its file."""

    file: str
    position: Position
    message: str
    severity: Severity = "error"

    def render(self) -> str:
        return (
            f"{self.file}:{self.position.line}:{self.position.col}: {self.severity}: {self.message}"
        )

    def to_json(self) -> dict[str, str | int]:
        return {
            "file": self.file,
            "line": self.position.line,
            "column": self.position.col,
            "severity": self.severity,
            "message": self.message,
        }


class PolicyError(Exception):
    """A policy that cannot be used; carries every problem found, in file order."""

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file, p.position, p.message))
        super().__init__("\n".join(p.render() for p in self.problems))


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """A ' (did you mean 'x'?)' suffix for the closest candidate, or '' when none is close."""
    matches = difflib.get_close_matches(word, sorted(set(candidates)), n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


def undefined(kind: str, name: str, candidates: Iterable[str]) -> str:
    """ "undefined zone 'hbus' (did you mean 'hubs'?)" — or says that none is defined."""
    names = set(candidates)
    hint = did_you_mean(name, names) if names else f" (no {kind} is defined)"
    return f"undefined {kind} '{name}'{hint}"


def quoted_list(names: Iterable[str], limit: int = 8) -> str:
    """'a', 'b', 'c' (and N more) — for "expected one of" messages."""
    ordered = sorted(set(names))
    shown = ", ".join(f"'{n}'" for n in ordered[:limit])
    rest = len(ordered) - limit
    return shown + (f" and {rest} more" if rest > 0 else "") if ordered else "(none defined)"
