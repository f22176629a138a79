"""Drift: does the live `inet plantgate` table still hold what the current revision loaded?

Right after every load, apply records the table as the kernel lists it (`kernel.nft` of the
revision). Drift is any difference between that record and the live listing once both are
normalised (`normalize`): what changes by design is ignored, everything else counts.

Ignored: rule handles, packet/byte counters, element countdowns (`expires`), and the elements
of run-time sets (resolved FQDN addresses, gate grants, per-source rate meters) as long as
they carry a timeout, as everything PlantGate writes there does. A run-time set's element
*without* a timeout is kept: it would never expire, so it is exactly what a hand-made
backdoor into a gate looks like. Set elements are compared as sets (the kernel may list them
in any order); chain rules as sequences (their order decides what matches).

`normalize`, `compare` and `drift_event` are pure; `check_drift` and `drift_watch` are the
adapters (state directory, libnftables, the daemon's event bus).
"""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import functools
import hashlib
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from gateway.events import Bus, Event
from gateway.policy.errors import PolicyError
from gateway.policy.load import LoadedPolicy
from gateway.policy.revisions import RevisionStore

log = logging.getLogger(__name__)
SHOW = 20  # differences listed per container in text
TABLE = "table inet plantgate"

_HANDLE = re.compile(r"\s*# handle \d+\s*$")
_COUNTER = re.compile(r"\bcounter packets \d+ bytes \d+")
_EXPIRES = re.compile(r"\s+expires\s+[0-9a-z]+")
_BLOCK = re.compile(r"^(set|map|chain|limit|counter|quota|flowtable|ct \w+) (\S+) \{$")


class TableReader(Protocol):
    """What drift needs from libnftables (`gateway.policy.nft.Nft` is one)."""

    def table_listing(self) -> str | None: ...


# -- normalisation -------------------------------------------------------------------------


def normalize(listing: str, dynamic_sets: Iterable[str]) -> list[str]:
    """The table as canonical lines: `CONTAINER` once per block, then `CONTAINER: ITEM`.

    Containers are `table inet plantgate`, `set NAME`, `map NAME`, `chain NAME`, `limit NAME`.
    Whitespace is
    collapsed, set elements are one per line and sorted; see the module docstring for what is
    dropped. Sets flagged `dynamic` (meters the packet path fills) count as run-time sets too,
    and all their elements are dropped: they all expire by the set's own timeout.
    """
    dynamic = set(dynamic_sets)
    return [f"{c}: {i}" if i else c for c, i in _items(listing, dynamic)]


def _items(listing: str, dynamic: set[str]) -> Iterator[tuple[str, str]]:
    table = container = TABLE
    flags = default_timeout = ""
    pending: list[str] | None = None  # lines of an `elements = { ... }` block
    depth = 0
    for raw in listing.splitlines():
        line = _HANDLE.sub("", raw).strip()
        if not line:
            continue
        if pending is not None or line.startswith("elements = {"):
            if pending is None:
                pending = []
            pending.append(line)
            depth += _depth(line)
            if depth == 0:
                text = " ".join(pending)
                name = container.split(" ", 1)[1]
                meter = "dynamic" in flags.split(" ", 1)[-1].split(",")
                runtime = meter or name in dynamic
                expiring = meter or bool(default_timeout)
                yield from ((container, e) for e in _elements(text, runtime, expiring))
                pending = None
            continue
        block = _BLOCK.match(line)
        if block:
            container, flags, default_timeout = f"{block[1]} {block[2]}", "", ""
            yield container, ""
        elif line == "}":
            container, flags, default_timeout = table, "", ""
        elif line.startswith("table "):
            table = container = _canonical(line.removesuffix("{"))
            yield table, ""
        else:
            if line.startswith("flags "):
                flags = line
            elif line.startswith("timeout "):
                default_timeout = line
            yield container, _canonical(line)


def _canonical(line: str) -> str:
    line = _COUNTER.sub("counter", line)
    return " ".join(_EXPIRES.sub("", line).split())


def _depth(line: str) -> int:
    """Braces opened minus closed on a line, outside quotes (a line never splits a quote)."""
    depth, quoted = 0, False
    for char in line:
        if char == '"':
            quoted = not quoted
        elif not quoted:
            depth += {"{": 1, "}": -1}.get(char, 0)
    return depth


def _split_top(text: str) -> list[str]:
    """Split at commas outside quotes and braces."""
    parts, depth, quoted, start = [], 0, False, 0
    for index, char in enumerate(text):
        if char == '"':
            quoted = not quoted
        elif not quoted and char in "{}":
            depth += 1 if char == "{" else -1
        elif not quoted and depth == 0 and char == ",":
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    return [p for p in (_canonical(p) for p in parts) if p]


def _elements(text: str, runtime: bool, expiring: bool) -> list[str]:
    """Canonical elements of an `elements = { ... }` block, without run-time ones.

    In a run-time set an element is dropped when it will expire: it has its own timeout, or
    the set gives every element one (`expiring`; the listing then shows no timeout).
    """
    inner = text[text.index("{") + 1 : text.rindex("}")]
    elements = _split_top(inner)
    if runtime:
        elements = [e for e in elements if not expiring and " timeout " not in f" {e} "]
    return sorted(f"element {e}" for e in elements)


# -- comparison ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Difference:
    """One normalised line of the table, in a container (`chain input`, `set zone_hubs_v4`)."""

    container: str
    item: str  # "" for the container itself

    def text(self) -> str:
        return f"{self.container}: {self.item}" if self.item else f"{self.container} (itself)"


@dataclass(frozen=True)
class Drift:
    """How the live table differs from the revision's record; `clean` when it does not."""

    revision: int | None
    missing: bool  # the table is gone
    added: tuple[Difference, ...] = ()  # in the live table, not in the record
    removed: tuple[Difference, ...] = ()  # in the record, not in the live table

    @property
    def clean(self) -> bool:
        return not (self.missing or self.added or self.removed)

    def fingerprint(self) -> str:
        """Equal for equal drift: the watcher reports a drift once, not every interval."""
        lines = ["missing" if self.missing else ""]
        lines += sorted(f"+{d.text()}" for d in self.added)
        lines += sorted(f"-{d.text()}" for d in self.removed)
        return hashlib.sha256("\n".join(lines).encode()).hexdigest()

    def summary(self) -> str:
        of = f"revision {self.revision}" if self.revision is not None else "the last apply"
        if self.missing:
            return f"drift: table inet plantgate is missing ({of} loaded it)"
        if self.clean:
            return f"no drift: the live table matches {of}"
        return (
            f"drift: the live table differs from {of}: {len(self.added):,} line(s) added, "
            f"{len(self.removed):,} removed"
        )

    def render(self, limit: int = SHOW) -> str:
        lines = [self.summary()]
        for container, changes in self.by_container():
            lines.append(f"  {container}")
            for sign, diff in changes[:limit]:
                lines.append(
                    f"    {sign} {diff.item or '(the ' + container.split()[0] + ' itself)'}"
                )
            if len(changes) > limit:
                lines.append(f"    ... and {len(changes) - limit:,} more")
        return "\n".join(lines) + "\n"

    def by_container(self) -> list[tuple[str, list[tuple[str, Difference]]]]:
        """Differences grouped by container, removals before additions, in first-seen order."""
        groups: dict[str, list[tuple[str, Difference]]] = {}
        for sign, diffs in (("−", self.removed), ("+", self.added)):
            for diff in diffs:
                groups.setdefault(diff.container, []).append((sign, diff))
        return list(groups.items())

    def to_json(self) -> dict[str, Any]:
        return {
            "revision": self.revision,
            "clean": self.clean,
            "table_missing": self.missing,
            "added": [{"container": d.container, "line": d.item} for d in self.added],
            "removed": [{"container": d.container, "line": d.item} for d in self.removed],
            "summary": self.summary(),
        }


def compare(
    expected: str, live: str | None, dynamic_sets: Iterable[str], revision: int | None = None
) -> Drift:
    """Drift of the `live` listing (None: the table is gone) from the `expected` one."""
    if live is None:
        return Drift(revision, missing=True)
    dynamic = set(dynamic_sets)
    want, have = _grouped(expected, dynamic), _grouped(live, dynamic)
    added: list[Difference] = []
    removed: list[Difference] = []
    for container in [*want, *(c for c in have if c not in want)]:
        before, after = want.get(container, []), have.get(container, [])
        gone, new = _diff(container, before, after)
        removed += (Difference(container, i) for i in gone)
        added += (Difference(container, i) for i in new)
    return Drift(revision, missing=False, added=tuple(added), removed=tuple(removed))


def _grouped(listing: str, dynamic: set[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for container, item in _items(listing, dynamic):
        groups.setdefault(container, []).append(item)
    return groups


def _diff(container: str, before: list[str], after: list[str]) -> tuple[list[str], list[str]]:
    """Lines gone and lines new; in chains by sequence (order matters), elsewhere as sets."""
    if not container.startswith("chain "):
        kept, now = set(before), set(after)
        return [i for i in before if i not in now], [i for i in after if i not in kept]
    gone: list[str] = []
    new: list[str] = []
    matcher = difflib.SequenceMatcher(None, before, after, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            gone += before[i1:i2]
            new += after[j1:j2]
    return gone, new


# -- adapters ------------------------------------------------------------------------------


def dynamic_sets(loaded: LoadedPolicy) -> frozenset[str]:
    """Names of a policy's run-time sets, as the compiler makes them: FQDN endpoint sets,
    gate sets (`Compiled.dynamic_sets`) and per-source rate meters."""
    from gateway.policy.compile import compile_policy

    compiled = compile_policy(loaded)
    meters = {name for name, s in compiled.table.sets.items() if "dynamic" in s.flags}
    return frozenset(compiled.dynamic_sets) | meters


@functools.lru_cache(maxsize=4)
def dynamic_sets_of(policy_text: str, file: str) -> frozenset[str]:
    """Run-time sets of a stored policy; cached, as a large site takes ~0.5 s to load and
    compile and the watcher asks every interval."""
    from gateway.policy.load import load_text

    return dynamic_sets(load_text(policy_text, file))


def check_drift(state: Path, nft: TableReader, policy: LoadedPolicy | None = None) -> Drift | None:
    """Drift of the live table from the current revision; None when there is nothing to
    compare with (no revision, or one recorded without the kernel's listing).

    `policy` is the current revision's policy if the caller has loaded it already.
    """
    store = RevisionStore(state)
    revision = store.current()
    if revision is None:
        return None
    expected = store.kernel_view(revision.number)
    if expected is None:
        return None
    if policy is not None:
        dynamic = dynamic_sets(policy)
    else:
        dynamic = dynamic_sets_of(store.policy_text(revision.number), revision.file)
    return compare(expected, nft.table_listing(), dynamic, revision=revision.number)


def drift_event(previous: str | None, drift: Drift | None) -> tuple[str | None, Event | None]:
    """The watcher's step: (state to remember, event to publish or None).

    The state is the fingerprint of the drift last reported ('' = clean, None = not known
    yet). An event goes out only when the drift appears, changes or clears.
    """
    if drift is None:
        return previous, None
    if drift.clean:
        if previous:
            fields = {"revision": drift.revision, "summary": drift.summary()}
            return "", Event("policy.drift_cleared", "plantgated", fields)
        return "", None
    fingerprint = drift.fingerprint()
    if fingerprint == previous:
        return previous, None
    return fingerprint, Event("policy.drift", "plantgated", event_fields(drift))


def event_fields(drift: Drift, limit: int = SHOW) -> dict[str, Any]:
    differences = [f"− {d.text()}" for d in drift.removed] + [f"+ {d.text()}" for d in drift.added]
    return {
        "revision": drift.revision,
        "table_missing": drift.missing,
        "added": len(drift.added),
        "removed": len(drift.removed),
        "differences": differences[:limit],
        "summary": drift.summary(),
    }


def _locked_check(state: Path, nft: TableReader) -> Drift | None:
    """Under the revision lock, so an apply in progress is never mistaken for drift."""
    with RevisionStore(state).locked():
        return check_drift(state, nft)


async def drift_watch(
    state: Path, nft: TableReader, bus: Bus, stop: asyncio.Event, interval: float = 30.0
) -> None:
    """Check for drift every `interval` seconds until `stop`; publish `policy.drift` when
    drift appears or changes and `policy.drift_cleared` when it goes away.

    Give it its own `Nft()`: a libnftables context must not be used by two threads at once,
    and the check runs in a worker thread.
    """
    from gateway.policy.nft import NftError

    previous: str | None = None
    while not stop.is_set():
        try:
            drift = await asyncio.to_thread(_locked_check, state, nft)
        except (OSError, NftError, PolicyError) as exc:
            log.warning("drift check failed: %s", exc)
        else:
            previous, event = drift_event(previous, drift)
            if event is not None:
                log.warning("%s", event.fields["summary"])
                await bus.publish(event)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
