"""The hash-chained audit log: appends verify, and every kind of tampering is found."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.audit import AuditLog


def _log_with(tmp_path: Path, count: int) -> AuditLog:
    log = AuditLog(tmp_path)
    for i in range(count):
        log.append("alice", "policy.applied", {"revision": i + 1})
    return log


def _rewrite(log: AuditLog, lines: list[str]) -> None:
    log.path.write_text("".join(line + "\n" for line in lines))


def test_appended_entries_verify(tmp_path: Path) -> None:
    log = _log_with(tmp_path, 3)
    result = log.verify()
    assert (result.ok, result.entries, result.problems) == (True, 3, ())
    assert [e.seq for e in log.entries()] == [1, 2, 3]
    assert log.entries()[1].prev == log.entries()[0].hash


def test_empty_log_verifies(tmp_path: Path) -> None:
    assert AuditLog(tmp_path).verify().ok


def test_edited_entry_is_found(tmp_path: Path) -> None:
    log = _log_with(tmp_path, 3)
    lines = log.path.read_text().splitlines()
    entry = json.loads(lines[1])
    entry["actor"] = "mallory"
    lines[1] = json.dumps(entry, sort_keys=True)
    _rewrite(log, lines)
    assert log.verify().problems == ("line 2: content does not match its hash (entry edited)",)


def test_removed_entry_is_found(tmp_path: Path) -> None:
    log = _log_with(tmp_path, 3)
    lines = log.path.read_text().splitlines()
    _rewrite(log, [lines[0], lines[2]])
    problems = log.verify().problems
    assert "line 2: sequence 3, expected 2" in problems
    assert "line 2: previous-hash link broken (entry removed or moved)" in problems


def test_reordered_entries_are_found(tmp_path: Path) -> None:
    log = _log_with(tmp_path, 3)
    lines = log.path.read_text().splitlines()
    _rewrite(log, [lines[1], lines[0], lines[2]])
    assert not log.verify().ok


def test_truncated_tail_is_found_through_the_head(tmp_path: Path) -> None:
    log = _log_with(tmp_path, 3)
    lines = log.path.read_text().splitlines()
    _rewrite(log, lines[:2])
    problems = log.verify().problems
    assert len(problems) == 1
    assert "entries removed from the end" in problems[0]


def test_garbage_line_is_reported(tmp_path: Path) -> None:
    log = _log_with(tmp_path, 1)
    log.path.write_text(log.path.read_text() + "not json\n")
    assert log.verify().problems[0].startswith("line 2: not an audit entry")
