"""The spool: durable appends, cursors, rotation, bounded disk, restarts, SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from gateway.alerts.sinks.spool import (
    CursorStore,
    Eviction,
    Spool,
    SpoolError,
    SpoolReader,
    list_segments,
)
from tests.unit.alerts.conftest import sample_alert

ROOT = Path(__file__).resolve().parents[3]


def alerts(n: int, summary: str = "s") -> list:  # type: ignore[type-arg]
    return [sample_alert(summary=f"{summary} {i}", count=i + 1) for i in range(n)]


def test_append_assigns_consecutive_cursors_and_reads_back(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        assert (spool.first_seq, spool.last_seq) == (1, 0)
        assert spool.append(alerts(3)) == [1, 2, 3]
        assert spool.append(alerts(2)) == [4, 5]
        assert [r.seq for r in spool.read(0, 100)] == [1, 2, 3, 4, 5]
        assert [r.seq for r in spool.read(3, 100)] == [4, 5]
        assert [r.seq for r in spool.read(1, 2)] == [2, 3]
        assert spool.read(5, 10) == []
        assert spool.read(2, 1)[0].alert == alerts(3)[2]


def test_only_one_writer(tmp_path: Path) -> None:
    with Spool(tmp_path), pytest.raises(SpoolError):
        Spool(tmp_path).open()


def test_rotation_and_eviction_are_bounded_and_reported(tmp_path: Path) -> None:
    evicted: list[Eviction] = []
    spool = Spool(tmp_path, segment_bytes=4096, max_bytes=3 * 4096, on_evict=evicted.append)
    with spool:
        for _ in range(40):
            spool.append(alerts(2))
        assert spool.total_bytes() <= 3 * 4096 + 4096
        assert len(list_segments(tmp_path)) <= 4
        assert evicted and spool.evicted == sum(e.count for e in evicted)
        assert spool.first_seq == evicted[-1].last_seq + 1
        records = spool.read(0, 1000)
        assert records[0].seq == spool.first_seq  # reading from 0 starts at the oldest held
        assert [r.seq for r in records] == list(range(spool.first_seq, 81))


def test_restart_resumes_the_sequence(tmp_path: Path) -> None:
    with Spool(tmp_path, segment_bytes=4096, max_bytes=64 * 1024) as spool:
        spool.append(alerts(30))
    with Spool(tmp_path, segment_bytes=4096, max_bytes=64 * 1024) as spool:
        assert spool.last_seq == 30
        assert spool.append(alerts(1)) == [31]
        assert [r.seq for r in spool.read(28, 10)] == [29, 30, 31]


def test_a_torn_tail_is_cut_on_open(tmp_path: Path) -> None:
    with Spool(tmp_path) as spool:
        spool.append(alerts(3))
    [(_, segment)] = list_segments(tmp_path)
    with segment.open("ab") as handle:
        handle.write(b'{"seq":4,"alert":{"schema":1,"id":"trunc')
    assert [r.seq for r in SpoolReader(tmp_path).read(0, 10)] == [1, 2, 3]  # reader skips it
    with Spool(tmp_path) as spool:
        assert spool.last_seq == 3
        assert spool.append(alerts(1)) == [4]
        assert [r.seq for r in spool.read(0, 10)] == [1, 2, 3, 4]
    assert all(line.endswith("}") for line in segment.read_text().splitlines())


def test_reader_bounds_and_cursor_store(tmp_path: Path) -> None:
    assert SpoolReader(tmp_path / "none").bounds() == (1, 0)
    with Spool(tmp_path) as spool:
        spool.append(alerts(4))
    assert SpoolReader(tmp_path).bounds() == (1, 4)
    cursors = CursorStore(tmp_path / "cursors")
    assert cursors.get("syslog") == 0
    cursors.set("syslog", 17)
    assert cursors.get("syslog") == 17
    with pytest.raises(ValueError):
        cursors.set("../evil", 1)


WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from gateway.alerts.sinks.spool import Spool
    from tests.unit.alerts.conftest import sample_alert

    spool = Spool(Path(sys.argv[1]), segment_bytes=256 * 1024, max_bytes=64 * 1024 * 1024).open()
    big = "x" * 60000  # lines larger than a page, so a kill can land inside a write
    while True:
        seqs = spool.append([sample_alert(summary=big + str(i)) for i in range(8)])
        print(seqs[-1], flush=True)
    """
)


@pytest.mark.parametrize("round_", range(3))
def test_sigkill_mid_write_loses_no_acknowledged_alert(tmp_path: Path, round_: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, env=env, text=True
    )
    acked = 0
    assert child.stdout is not None
    deadline = time.monotonic() + 20
    while acked < 40 + 17 * round_ and time.monotonic() < deadline:
        acked = int(child.stdout.readline())
    time.sleep(0.003 * round_)  # land the kill at different points of a write
    child.send_signal(signal.SIGKILL)
    child.wait()
    # Everything the child printed (after its append returned) is there, in order, readable.
    records = SpoolReader(tmp_path).read(0, 100_000)
    seqs = [r.seq for r in records]
    assert seqs == list(range(1, len(seqs) + 1))
    assert len(seqs) >= acked
    with Spool(tmp_path) as spool:  # a restart cuts any torn tail and continues
        assert spool.last_seq == len(seqs)
        assert spool.append(alerts(1)) == [len(seqs) + 1]
    for _, path in list_segments(tmp_path):
        for line in path.read_bytes().splitlines():
            json.loads(line)
