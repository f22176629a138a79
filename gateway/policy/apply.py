"""Load a compiled policy into the kernel: one transaction, nothing half-applied.

The script deletes and recreates only `inet plantgate`; other tables are untouched and
conntrack is not flushed, so established connections keep flowing. Elements that live only
at run time (resolved addresses, open gates) are read from the live table and written into
the same transaction with the time they have left. If the kernel refuses the script, the
previous table stays in force and the refusal is mapped back to the policy's YAML line
through the `<rule> @ <file>:<line>` comments.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.policy.compile import Compiled
from gateway.policy.errors import Position, Problem
from gateway.policy.nft import Element, Nft, NftError, set_types, timed_elements
from gateway.policy.ruleset import TABLE_FAMILY, TABLE_NAME

ORIGIN = re.compile(r'comment "(?P<what>.+?) @ (?P<file>[^":]+):(?P<line>\d+)"')


class ApplyError(Exception):
    """The kernel refused the ruleset; nothing changed. Problems point into the YAML."""

    def __init__(self, problems: list[Problem], detail: str) -> None:
        self.problems = problems
        self.detail = detail
        super().__init__("\n".join(p.render() for p in problems))


@dataclass(frozen=True)
class ApplyReport:
    seconds: float
    carried: int
    resolved: int


def element_lines(elements: Mapping[str, list[Element]]) -> list[str]:
    """`add element` commands, one per set, in a stable order."""
    lines = []
    for name in sorted(elements):
        items = ", ".join(e.text() for e in elements[name])
        if items:
            lines.append(f"add element {TABLE_FAMILY} {TABLE_NAME} {name} {{ {items} }}")
    return lines


def build_script(compiled: Compiled, extra: Mapping[str, list[Element]]) -> str:
    """The compiled text plus run-time elements, as one script (one transaction)."""
    lines = element_lines(extra)
    return compiled.text + ("\n".join(lines) + "\n" if lines else "")


def carried_elements(compiled: Compiled, nft: Nft) -> dict[str, list[Element]]:
    """Timed elements of the live table that still fit a set of the new one."""
    live = nft.sets_json(list(compiled.dynamic_sets))
    live_types = set_types(live)
    wanted = {
        name
        for name in compiled.dynamic_sets
        if live_types.get(name) == compiled.table.sets[name].type
    }
    return timed_elements(live, wanted)


def merge(*sources: Mapping[str, list[Element]]) -> dict[str, list[Element]]:
    """Union per set; for the same value the later source wins (a fresh TTL beats a carry)."""
    merged: dict[str, dict[str, Element]] = {}
    for source in sources:
        for name, elements in source.items():
            for element in elements:
                merged.setdefault(name, {})[element.value] = element
    return {name: list(values.values()) for name, values in merged.items()}


def apply_compiled(
    compiled: Compiled,
    nft: Nft,
    policy_file: str,
    resolved: Mapping[str, list[Element]] | None = None,
) -> ApplyReport:
    """Replace the live table with `compiled`; ApplyError (nothing changed) if refused."""
    start = time.perf_counter()
    carried = carried_elements(compiled, nft)
    extra = merge(carried, resolved or {})
    script = build_script(compiled, extra)
    try:
        nft.run_script(script)
    except NftError as exc:
        raise ApplyError(refusal_problems(exc, script, policy_file), exc.stderr) from None
    return ApplyReport(
        seconds=time.perf_counter() - start,
        carried=sum(len(v) for v in carried.values()),
        resolved=sum(len(v) for v in (resolved or {}).values()),
    )


def refusal_problems(exc: NftError, script: str, policy_file: str) -> list[Problem]:
    """Each kernel/parser complaint, attributed to the YAML line that generated the text."""
    lines = script.splitlines()
    problems = []
    for line_no, _, message in exc.located or [(0, 0, exc.stderr.strip())]:
        origin = _origin_of(lines, line_no - 1) if line_no else None
        if origin is None:
            problems.append(
                Problem(
                    policy_file,
                    Position(1, 1),
                    f"nftables refused the ruleset: {message} (in a generated "
                    f"line with no policy origin: {_quote(lines, line_no)})",
                )
            )
        else:
            what, line = origin
            problems.append(
                Problem(policy_file, Position(line, 1), f"nftables refused {what}: {message}")
            )
    return problems


def _origin_of(lines: list[str], index: int) -> tuple[str, int] | None:
    """The origin comment on the line, or of the set/map block the line is in."""
    if not 0 <= index < len(lines):
        return None
    match = ORIGIN.search(lines[index])
    if match:
        return match["what"], int(match["line"])
    for back in range(index - 1, -1, -1):
        text = lines[back].strip()
        match = ORIGIN.search(text)
        if match and text.startswith("comment"):
            return match["what"], int(match["line"])
        if text.startswith(("chain ", "table ")) or text == "}":
            break
    return None


def _quote(lines: list[str], line_no: int) -> str:
    return f"'{lines[line_no - 1].strip()}'" if 0 < line_no <= len(lines) else "unknown line"
