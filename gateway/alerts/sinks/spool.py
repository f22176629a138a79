"""The alert spool: append-only JSON lines on disk, the one record every consumer reads.

Layout under `<state>/alerts/spool/`: segment files `<first seq, 20 digits>.jsonl`, one
alert emission per line, `{"seq": N, "alert": {...}}` (`Alert.to_dict`). `seq` is the feed
cursor: it starts at 1 and grows by one per record, across segments and restarts.

- **Durable before accepted.** `append` writes a batch, `fsync`s it (and the directory when a
  segment is created or removed) and only then returns the sequence numbers and moves
  `last_seq`. A record whose `append` returned survives SIGKILL and power loss; the feed,
  the sinks and the CLI never see one that was not fsynced.
- **Torn tails are cut.** A process killed mid-write can leave a partial last line. `open`
  truncates the newest segment after its last complete, parseable record (that record was
  never acknowledged), so the next append starts on a line boundary. Readers of a live spool
  ignore a line without its newline.
- **Bounded disk.** Segments rotate at `segment_bytes`; when the spool holds more than
  `max_bytes`, the oldest segments are deleted. Their records are counted in `evicted`
  and reported through `on_evict`, which the pipeline turns into a `PG-HEALTH-SPOOL-EVICTED`
  alert: losing alerts is never silent.
- **One writer.** The writer holds an exclusive `flock` on `.lock` for its lifetime; readers
  (the CLI while the daemon is down) take no lock and read only complete lines.

Readers look a record up by cursor: the segment is found by bisection over the segment
names, then lines are skipped by their `{"seq": N,` prefix without decoding JSON.
`CursorStore` keeps each consumer's position (sinks) in small fsynced files.
"""

from __future__ import annotations

import bisect
import contextlib
import fcntl
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from gateway.alerts.record import Alert
from gateway.state import ensure_dir, write_atomic

log = logging.getLogger(__name__)

SEGMENT_BYTES = 4 * 1024 * 1024
MAX_BYTES = 256 * 1024 * 1024
SUFFIX = ".jsonl"
_NAME = re.compile(r"^(\d{20})\.jsonl$")
_PREFIX = re.compile(rb'^\{"seq":\s*(\d+),')


class SpoolError(RuntimeError):
    """The spool cannot be opened or written (another writer, a full disk, ...)."""


@dataclass(frozen=True)
class Spooled:
    """One record of the spool: its cursor and the alert emission."""

    seq: int
    alert: Alert


@dataclass(frozen=True)
class Eviction:
    """Oldest records removed to keep the spool within its bound."""

    first_seq: int
    last_seq: int
    segment: str

    @property
    def count(self) -> int:
        return self.last_seq - self.first_seq + 1


def spool_dir(state: Path) -> Path:
    return state / "alerts" / "spool"


def encode(seq: int, alert: Alert) -> bytes:
    body = json.dumps(alert.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return b'{"seq":' + str(seq).encode() + b',"alert":' + body.encode() + b"}\n"


def decode(line: bytes) -> Spooled:
    raw = json.loads(line)
    return Spooled(int(raw["seq"]), Alert.from_dict(raw["alert"]))


def _segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SUFFIX}"


def list_segments(directory: Path) -> list[tuple[int, Path]]:
    """(first seq, path) of each segment, oldest first."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = [(int(m.group(1)), directory / n) for n in names if (m := _NAME.match(n))]
    return sorted(found)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SpoolReader:
    """Reads records by cursor; safe beside a live writer (complete lines only)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def segments(self) -> list[tuple[int, Path]]:
        return list_segments(self.directory)

    def read(self, after: int, limit: int, upto: int | None = None) -> list[Spooled]:
        """Up to `limit` records with `after < seq <= upto` (upto None: all complete ones)."""
        out: list[Spooled] = []
        if limit <= 0:
            return out
        segments = self.segments()
        firsts = [first for first, _ in segments]
        start = max(0, bisect.bisect_right(firsts, after + 1) - 1)
        for _, path in segments[start:]:
            for seq, line in _lines(path, after):
                if upto is not None and seq > upto:
                    return out
                try:
                    out.append(decode(line))
                except (ValueError, KeyError, TypeError):
                    log.warning("skipping an unreadable record %d in %s", seq, path.name)
                    continue
                if len(out) >= limit:
                    return out
        return out

    def bounds(self) -> tuple[int, int]:
        """(first seq held, last complete seq); (1, 0) for an empty spool."""
        segments = self.segments()
        if not segments:
            return 1, 0
        last = 0
        for seq, _ in _lines(segments[-1][1], 0):
            last = seq
        if last == 0:
            last = segments[-1][0] - 1
        return segments[0][0], last


def _lines(path: Path, after: int) -> Iterator[tuple[int, bytes]]:
    """(seq, line) of each complete record of a segment with seq > after."""
    try:
        handle = path.open("rb")
    except FileNotFoundError:  # evicted under our feet
        return
    with handle:
        for line in handle:
            if not line.endswith(b"\n"):
                return  # a record still being written, or a torn tail
            match = _PREFIX.match(line)
            if match is None:
                continue
            seq = int(match.group(1))
            if seq > after:
                yield seq, line


class Spool(SpoolReader):
    """The writer: `open`, then `append` batches from one thread at a time."""

    def __init__(
        self,
        directory: Path,
        *,
        segment_bytes: int = SEGMENT_BYTES,
        max_bytes: int = MAX_BYTES,
        on_evict: Callable[[Eviction], None] | None = None,
        fsync: bool = True,
    ) -> None:
        super().__init__(directory)
        if segment_bytes < 1024 or max_bytes < 2 * segment_bytes:
            raise ValueError("spool: segment_bytes >= 1 KiB and max_bytes >= 2 segments")
        self.segment_bytes = segment_bytes
        self.max_bytes = max_bytes
        self.on_evict = on_evict
        self.fsync = fsync
        self.evicted = 0
        self._lock = threading.Lock()
        self._lock_fd: int | None = None
        self._segments: list[tuple[int, Path]] = []
        self._sizes: dict[Path, int] = {}
        self._fd: int | None = None
        self._first_seq = 1
        self._last_seq = 0

    @property
    def first_seq(self) -> int:
        """The oldest sequence number still held (last_seq + 1 when empty)."""
        return self._first_seq

    @property
    def last_seq(self) -> int:
        """The newest durable sequence number (0: nothing was ever spooled)."""
        return self._last_seq

    def segments(self) -> list[tuple[int, Path]]:
        if self._lock_fd is None:
            return super().segments()
        with self._lock:
            return list(self._segments)

    def read(self, after: int, limit: int, upto: int | None = None) -> list[Spooled]:
        return super().read(after, limit, self._last_seq if upto is None else upto)

    def open(self) -> Spool:
        ensure_dir(self.directory)
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolError(f"{self.directory}: another process writes this spool") from None
        self._lock_fd = fd
        self._segments = list_segments(self.directory)
        self._sizes = {p: p.stat().st_size for _, p in self._segments}
        if self._segments:
            self._recover_tail()
            self._first_seq = self._segments[0][0]
        else:
            self._first_seq = self._last_seq + 1
        return self

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def __enter__(self) -> Spool:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def append(self, alerts: Sequence[Alert]) -> list[int]:
        """Write `alerts` durably; return their sequence numbers (in order)."""
        if self._lock_fd is None:
            raise SpoolError("spool not open")
        if not alerts:
            return []
        evictions: list[Eviction] = []
        with self._lock:
            seqs: list[int] = []
            chunk: list[bytes] = []
            size = self._current_size()
            for alert in alerts:
                seq = self._last_seq + len(seqs) + 1
                line = encode(seq, alert)
                if self._fd is None or (size + len(line) > self.segment_bytes and size > 0):
                    self._write(chunk)
                    chunk, size = [], 0
                    self._rotate(seq)
                chunk.append(line)
                size += len(line)
                seqs.append(seq)
            self._write(chunk)
            if self.fsync and self._fd is not None:
                os.fsync(self._fd)
            self._last_seq = seqs[-1]
            evictions = self._evict()
        for eviction in evictions:
            if self.on_evict is not None:
                self.on_evict(eviction)
        return seqs

    def total_bytes(self) -> int:
        with self._lock:
            return sum(self._sizes.values())

    # ------------------------------------------------------------------ internals

    def _current_size(self) -> int:
        if self._fd is None or not self._segments:
            return 0
        return self._sizes[self._segments[-1][1]]

    def _write(self, chunk: list[bytes]) -> None:
        if not chunk or self._fd is None:
            return
        data = b"".join(chunk)
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        path = self._segments[-1][1]
        self._sizes[path] = self._sizes.get(path, 0) + len(data)

    def _rotate(self, first_seq: int) -> None:
        if self._fd is not None:
            if self.fsync:
                os.fsync(self._fd)
            os.close(self._fd)
            self._fd = None
        path = self.directory / _segment_name(first_seq)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o640)
        if not self._segments or self._segments[-1][1] != path:
            self._segments.append((first_seq, path))
        self._sizes.setdefault(path, 0)
        if self.fsync:
            _fsync_dir(self.directory)

    def _recover_tail(self) -> None:
        """Find the last good record of the newest segment; cut anything after it."""
        first, path = self._segments[-1]
        good_end, last = 0, first - 1
        with path.open("rb") as handle:
            offset = 0
            for line in handle:
                offset += len(line)
                if not line.endswith(b"\n"):
                    break
                try:
                    record = json.loads(line)
                    seq = int(record["seq"])
                except (ValueError, KeyError, TypeError):
                    break
                if seq != last + 1:
                    break
                good_end, last = offset, seq
        size = path.stat().st_size
        if size != good_end:
            log.warning(
                "spool %s: cut %d bytes of an unfinished record after seq %d",
                path.name,
                size - good_end,
                last,
            )
            with open(path, "r+b") as handle:
                handle.truncate(good_end)
                os.fsync(handle.fileno())
        self._sizes[path] = good_end
        self._last_seq = last
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)

    def _evict(self) -> list[Eviction]:
        out: list[Eviction] = []
        while len(self._segments) > 1 and sum(self._sizes.values()) > self.max_bytes:
            first, path = self._segments.pop(0)
            next_first = self._segments[0][0]
            self._sizes.pop(path, None)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
            out.append(Eviction(first, next_first - 1, path.name))
            self.evicted += next_first - first
            self._first_seq = next_first
        if out and self.fsync:
            _fsync_dir(self.directory)
        return out


class CursorStore:
    """Each consumer's last delivered sequence number, one fsynced file per name."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def _path(self, name: str) -> Path:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,63}", name):
            raise ValueError(f"bad cursor name {name!r}")
        return self.directory / f"{name}.cursor"

    def get(self, name: str, default: int = 0) -> int:
        try:
            return int(self._path(name).read_text().strip())
        except (FileNotFoundError, ValueError):
            return default

    def set(self, name: str, seq: int) -> None:
        write_atomic(self._path(name), f"{seq}\n")


def cursor_dir(state: Path) -> Path:
    return state / "alerts" / "cursors"
