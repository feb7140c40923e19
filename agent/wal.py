"""The write-ahead log: every line is on disk before anything is sent.

Layout of the directory::

    00000000000000000001.seg   segment files, oldest first, append-only
    00000000000000000002.seg
    cursor                     how far the sender has been acknowledged

A segment starts with an 8-byte magic and holds framed records. One record is
one :meth:`Wal.append` call::

    payload_len u32 | line_count u32 | crc32(line_count + payload) u32 | payload

The payload is the lines joined by ``\\n``. A record cut short by ``kill -9``
or power loss fails the length or CRC check: :meth:`Wal.open` truncates the
segment there, so a torn record is never read back as data.

Durability (``sync``):

- ``"always"``: fsync after every append; an append that returned survives
  power loss.
- ``"interval"``: fsync at most every ``sync_interval_s`` (on the append that
  follows the interval, and on segment roll and close); power loss loses at
  most the appends of the last interval.
- ``"none"``: the OS writes back when it likes. Every append is a single
  ``write(2)`` into the page cache, so ``kill -9`` of the agent loses
  nothing; power loss may lose the last seconds the kernel had not written.

In every mode a crash of the agent itself loses nothing appended. Because the
cursor is written after the store acknowledged, a crash between delivery and
cursor write resends lines; InfluxDB overwrites a point with the same series
and timestamp, so resending identical lines never invents points.

The size bound is enforced by deleting whole segments, oldest first, even
when they are not yet acknowledged; the lines lost that way are counted in
``dropped_lines_total`` and logged as a warning with their number. (Lines
the sender had read but not yet acknowledged when their segment went count
as dropped, even if that batch is then delivered: the count errs high.)

One process at a time: the log holds an exclusive ``flock`` on ``lock``.

One thread may append while another reads and acknowledges.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from wattwise.agent.wal_files import (
    MAGIC,
    Segment,
    WalPosition,
    encode_record,
    fsync_directory,
    read_cursor,
    read_lines,
    scan_segment,
    segment_path,
    write_cursor,
)
from wattwise.clock import Clock
from wattwise.errors import ConfigError, EncodeError, WalError

__all__ = ["SyncPolicy", "Wal", "WalBatch", "WalPosition", "WalStats"]

log = logging.getLogger(__name__)

SyncPolicy = Literal["always", "interval", "none"]

_MIN_SEGMENT_BYTES = 4096


@dataclass(frozen=True, slots=True)
class WalBatch:
    """Lines read from the log; they stay there until :meth:`Wal.ack`."""

    lines: list[bytes]
    start: WalPosition
    end: WalPosition


@dataclass(frozen=True, slots=True)
class WalStats:
    queue_lines: int
    queue_bytes: int
    dropped_lines_total: int
    segments: int


class Wal:
    """A size-bounded, crash-safe queue of line-protocol lines on disk."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        sync: SyncPolicy,
        clock: Clock,
        segment_bytes: int = 8 * 1024 * 1024,
        sync_interval_s: float = 1.0,
    ) -> None:
        if sync not in ("always", "interval", "none"):
            raise ConfigError("wal.sync", sync, "one of 'always', 'interval', 'none'")
        if max_bytes < 4 * _MIN_SEGMENT_BYTES:
            raise ConfigError("wal.max_bytes", max_bytes, f">= {4 * _MIN_SEGMENT_BYTES}")
        self._dir = directory
        self._max_bytes = max_bytes
        # At least four segments fit in the bound, so dropping one loses a
        # quarter of the queue at most.
        self._segment_bytes = max(_MIN_SEGMENT_BYTES, min(segment_bytes, max_bytes // 4))
        self._sync = sync
        self._sync_interval_s = sync_interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._dropped_lines_total = 0
        self._last_sync = clock.monotonic()
        self._segments: list[Segment] = []
        self._fd = -1
        self._lock_fd = -1
        self._open()

    # -- opening -------------------------------------------------------------

    def _open(self) -> None:
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            self._lock_fd = _lock_directory(self._dir)
            for path in sorted(self._dir.glob("*.seg")):
                segment, lost_bytes = scan_segment(path, int(path.stem))
                if lost_bytes:
                    log.warning("wal: truncated %d torn bytes at the end of %s", lost_bytes, path)
                self._segments.append(segment)
            cursor = read_cursor(self._dir / "cursor")
        except OSError as e:
            raise WalError(f"cannot open the write-ahead log in {self._dir}: {e}") from e
        next_seq = self._segments[-1].seq + 1 if self._segments else 1
        self._start_segment(next_seq)
        self._cursor = self._clamp(cursor)
        self._normalize()

    def _clamp(self, cursor: WalPosition | None) -> WalPosition:
        """Keep a cursor read from disk inside what the segments really hold."""
        if cursor is None or cursor.seq >= self._segments[-1].seq:
            return self._segment_start(self._segments[0])
        for segment in self._segments:
            if segment.seq == cursor.seq and cursor.offset > segment.size_bytes:
                # The data behind the cursor was lost (power loss before the
                # segment reached the disk): continue after what survived.
                return WalPosition(segment.seq, segment.size_bytes, 0, segment.lines)
        return cursor

    def _start_segment(self, seq: int) -> None:
        path = segment_path(self._dir, seq)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.write(fd, MAGIC)
            if self._sync != "none":
                os.fsync(fd)
                fsync_directory(self._dir)
        except OSError as e:
            raise WalError(f"cannot create WAL segment {path}: {e}") from e
        if self._fd >= 0:
            self._close_active()
        self._fd = fd
        self._segments.append(Segment(seq, path, len(MAGIC), 0))

    def _close_active(self) -> None:
        try:
            if self._sync != "none":
                os.fsync(self._fd)
            os.close(self._fd)
        except OSError as e:
            raise WalError(f"cannot close WAL segment: {e}") from e
        self._fd = -1

    @staticmethod
    def _segment_start(segment: Segment) -> WalPosition:
        return WalPosition(segment.seq, len(MAGIC), 0, 0)

    # -- appending -----------------------------------------------------------

    def append(self, lines: Sequence[bytes]) -> None:
        """Write ``lines`` (each without newline) as one record; durable per the sync policy."""
        if not lines:
            return
        if any(b"\n" in line for line in lines):
            raise EncodeError("a line-protocol line must not contain a newline")
        record = encode_record(lines)
        with self._lock:
            if self._segments[-1].size_bytes + len(record) > self._segment_bytes:
                self._start_segment(self._segments[-1].seq + 1)
            try:
                # One write(2) per record: after it returns the record is in
                # the kernel and survives the death of this process.
                os.write(self._fd, record)
                self._sync_if_due()
            except OSError as e:
                raise WalError(f"cannot append to the write-ahead log: {e}") from e
            active = self._segments[-1]
            active.size_bytes += len(record)
            active.lines += len(lines)
            self._enforce_bound()

    def _sync_if_due(self) -> None:
        if self._sync == "always":
            os.fdatasync(self._fd)
        elif self._sync == "interval":
            now = self._clock.monotonic()
            if now - self._last_sync >= self._sync_interval_s:
                os.fdatasync(self._fd)
                self._last_sync = now

    def _enforce_bound(self) -> None:
        total = sum(s.size_bytes for s in self._segments)
        while total > self._max_bytes and len(self._segments) > 1:
            oldest = self._segments.pop(0)
            total -= oldest.size_bytes
            lost = oldest.lines
            if oldest.seq == self._cursor.seq:
                lost -= self._cursor.lines_before
            elif oldest.seq < self._cursor.seq:
                lost = 0
            self._delete(oldest)
            if lost:
                self._dropped_lines_total += lost
                log.warning(
                    "wal: full (%d bytes max): dropped %d unsent lines, oldest first "
                    "(%d dropped in total)",
                    self._max_bytes,
                    lost,
                    self._dropped_lines_total,
                )
        self._normalize()

    # -- reading -------------------------------------------------------------

    def read_batch(self, max_lines: int) -> WalBatch | None:
        """The oldest unacknowledged lines, at most ``max_lines``; None when the queue is empty."""
        with self._lock:
            self._normalize()
            start = self._cursor
            lines: list[bytes] = []
            pos = start
            try:
                for segment in self._segments:
                    if segment.seq < start.seq:
                        continue
                    if segment.seq > pos.seq:
                        pos = self._segment_start(segment)
                    pos = read_lines(segment, pos, max_lines - len(lines), lines)
                    if len(lines) >= max_lines:
                        break
            except OSError as e:
                raise WalError(f"cannot read the write-ahead log: {e}") from e
            if not lines:
                return None
            return WalBatch(lines, start, pos)

    def ack(self, batch: WalBatch) -> None:
        """Mark ``batch`` delivered: durable, and its segments may be deleted."""
        with self._lock:
            if batch.end <= self._cursor:
                return
            if self._segment(batch.end.seq) is None:
                # Dropped for space while in flight; the cursor moved on already.
                return
            self._cursor = batch.end
            try:
                write_cursor(self._dir, self._cursor, fsync=self._sync != "none")
            except OSError as e:
                raise WalError(f"cannot write the WAL cursor: {e}") from e
            self._normalize()

    def _normalize(self) -> None:
        """Move the cursor past exhausted segments and delete those fully acknowledged."""
        first = self._segments[0]
        if self._cursor.seq < first.seq:
            self._cursor = self._segment_start(first)
        while self._cursor.seq != self._segments[-1].seq:
            current = self._segment(self._cursor.seq)
            if current is not None and self._cursor.offset < current.size_bytes:
                break
            nxt = next(s for s in self._segments if s.seq > self._cursor.seq)
            self._cursor = self._segment_start(nxt)
        while self._segments[0].seq < self._cursor.seq:
            self._delete(self._segments.pop(0))

    def _segment(self, seq: int) -> Segment | None:
        for segment in self._segments:
            if segment.seq == seq:
                return segment
        return None

    def _delete(self, segment: Segment) -> None:
        try:
            segment.path.unlink(missing_ok=True)
        except OSError as e:
            raise WalError(f"cannot delete WAL segment {segment.path}: {e}") from e

    # -- state ---------------------------------------------------------------

    def stats(self) -> WalStats:
        with self._lock:
            queued = [s for s in self._segments if s.seq >= self._cursor.seq]
            lines = sum(s.lines for s in queued) - self._cursor.lines_before
            size = sum(s.size_bytes - len(MAGIC) for s in queued)
            size -= self._cursor.offset - len(MAGIC)
            return WalStats(
                queue_lines=lines,
                queue_bytes=max(0, size),
                dropped_lines_total=self._dropped_lines_total,
                segments=len(self._segments),
            )

    def close(self) -> None:
        """Sync and close the active segment."""
        with self._lock:
            if self._fd >= 0:
                self._close_active()
            if self._lock_fd >= 0:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = -1

    def __repr__(self) -> str:
        return f"Wal({str(self._dir)!r}, max_bytes={self._max_bytes}, sync={self._sync!r})"


def _lock_directory(directory: Path) -> int:
    """Hold an exclusive lock on the log: two agents appending to one log would corrupt it."""
    fd = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as e:
        os.close(fd)
        raise WalError(f"{directory} is in use by another wattwise agent") from e
    return fd
