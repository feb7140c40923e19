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
segment there, so a torn record is never read back as data. Damage in the
middle of a segment (a flipped byte, a damaged magic) costs only the records
it touches: the scan resynchronises on the next intact record
(:mod:`wattwise.agent.wal_scan`), the skipped bytes are counted in
``skipped_bytes_total`` and logged, and their lines, where the damaged header
can still be trusted, in ``dropped_lines_total``.

The directory is read by segment number, whatever the width of the name
(``7.seg`` sorts before ``00…012.seg``). A file that is not a segment is left
alone and reported; a segment that cannot be read is skipped with an error
while the others flow, and stays on disk: once readable, the next start sends
it (a segment older than the cursor is sent again from its start); a new
segment never reuses an existing file.

A full disk never leaves half a record behind: a write that cannot be completed
is cut back to the last whole record and its lines are dropped, the newest
first, counted in ``dropped_lines_total`` and logged (once a minute while it
lasts). Sampling and sending go on; the space delivered segments free is used
again. A cursor that cannot be written is kept in memory (a restart then resends
those lines, which InfluxDB stores once).

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
Its own files: segments, ``cursor``, ``cursor.tmp`` and ``lock``.

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

from wattwise.agent.throttle import LogThrottle
from wattwise.agent.wal_files import (
    MAGIC,
    CorruptRecord,
    Segment,
    WalPosition,
    encode_record,
    fsync_directory,
    read_cursor,
    read_lines,
    segment_path,
    segment_seq,
    write_all,
    write_cursor,
)
from wattwise.agent.wal_scan import Damage, Scan, open_segment, rescan
from wattwise.clock import Clock
from wattwise.errors import ConfigError, EncodeError, WalError

__all__ = ["SyncPolicy", "Wal", "WalBatch", "WalPosition", "WalStats"]

log = logging.getLogger(__name__)

SyncPolicy = Literal["always", "interval", "none"]

_MIN_SEGMENT_BYTES = 4096
_OWN_FILES = frozenset({"cursor", "cursor.tmp", "lock"})
_READ_ATTEMPTS = 3
"""Reads of one segment that may fail in a row before it is skipped as unreadable."""


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
    skipped_bytes_total: int = 0
    """Damaged bytes stepped over (their lines are in ``dropped_lines_total`` where known)."""


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
        self._skipped_bytes_total = 0
        self._last_sync = clock.monotonic()
        self._segments: list[Segment] = []
        self._highest_seq = 0
        self._read_failures: dict[int, int] = {}
        self._throttle = LogThrottle(clock)
        self._fd = -1
        self._lock_fd = -1
        self._open()

    # -- opening -------------------------------------------------------------

    def _open(self) -> None:
        try:
            self._dir.mkdir(parents=True, exist_ok=True)
            self._lock_fd = _lock_directory(self._dir)
            found = self._found_segments()
            cursor = read_cursor(self._dir / "cursor")
        except OSError as e:
            raise WalError(f"cannot open the write-ahead log in {self._dir}: {e}") from e
        self._start_segment(self._highest_seq + 1)
        self._cursor = self._clamp(cursor)
        self._normalize()
        for segment, scanned in found:
            for hole in scanned.holes:
                self._report_damage(segment, hole, torn=False)
            if scanned.torn_tail is not None:
                self._report_damage(segment, scanned.torn_tail, torn=True)

    def _found_segments(self) -> list[tuple[Segment, Scan]]:
        """The segments in the directory, by number, each scanned; the rest reported."""
        numbered: dict[int, Path] = {}
        for path in sorted(self._dir.iterdir()):
            seq = segment_seq(path)
            if seq is None or seq in numbered:
                if path.name not in _OWN_FILES:
                    log.warning("wal: %s is not a segment of this log; leaving it alone", path)
                continue
            numbered[seq] = path
            self._highest_seq = max(self._highest_seq, seq)
        found = []
        for seq in sorted(numbered):
            path = numbered[seq]
            try:
                segment, scanned = open_segment(path, seq)
            except OSError as e:
                log.error("wal: cannot read segment %s, skipping it: %s", path, e)
                continue
            self._segments.append(segment)
            found.append((segment, scanned))
        return found

    def _report_damage(self, segment: Segment, damage: Damage, *, torn: bool) -> None:
        """Count and log damage this process steps over (not what was behind the cursor)."""
        cursor = self._cursor
        behind = segment.seq < cursor.seq or (
            segment.seq == cursor.seq and len(MAGIC) < cursor.offset and damage.end <= cursor.offset
        )
        if behind:
            return
        self._skipped_bytes_total += damage.size_bytes
        self._dropped_lines_total += damage.lines or 0
        lines = "an unknown number of" if damage.lines is None else str(damage.lines)
        log.warning(
            "wal: %s %d %s bytes at byte %d of %s (%s lines); the intact records %s",
            "cut off" if torn else "skipped",
            damage.size_bytes,
            "torn" if torn else "damaged",
            damage.start,
            segment.path,
            lines,
            "before them are kept" if torn else "around them are delivered",
        )

    def _clamp(self, cursor: WalPosition | None) -> WalPosition:
        """Keep a cursor read from disk inside what the segments really hold."""
        if cursor is None or cursor.seq >= self._segments[-1].seq:
            return self._segment_start(self._segments[0])
        if self._segments[0].seq < cursor.seq:
            # A segment the cursor has passed is deleted as soon as it is: one still here
            # was skipped (unreadable then) or its deletion was cut short. Sent again from
            # its start; InfluxDB stores a resent line once.
            log.warning(
                "wal: %s is older than the cursor; sending from it again", self._segments[0].path
            )
            return self._segment_start(self._segments[0])
        for segment in self._segments:
            if segment.seq == cursor.seq and cursor.offset > segment.size_bytes:
                # The data behind the cursor was lost (power loss before the
                # segment reached the disk): continue after what survived.
                return WalPosition(segment.seq, segment.size_bytes, 0, segment.lines)
        return cursor

    def _start_segment(self, seq: int) -> None:
        """Open a new segment file; never one that exists (a stray file keeps its bytes)."""
        while True:
            path = segment_path(self._dir, seq)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            except FileExistsError:
                seq += 1
                continue
            except OSError as e:
                raise WalError(f"cannot create WAL segment {path}: {e}") from e
            break
        try:
            write_all(fd, MAGIC)
            if self._sync != "none":
                os.fsync(fd)
                fsync_directory(self._dir)
        except OSError as e:
            # A segment without its whole magic would read as damage: it never stays.
            os.close(fd)
            path.unlink(missing_ok=True)
            raise WalError(f"cannot create WAL segment {path}: {e}") from e
        if self._fd >= 0:
            self._close_active()
        self._fd = fd
        self._highest_seq = max(self._highest_seq, seq)
        self._segments.append(Segment(seq, path, len(MAGIC), 0))

    def _close_active(self) -> None:
        fd, self._fd = self._fd, -1
        try:
            if self._sync != "none":
                os.fsync(fd)
        except OSError as e:
            log.error("wal: cannot sync the segment it closes: %s", e)
        finally:
            os.close(fd)

    @staticmethod
    def _segment_start(segment: Segment) -> WalPosition:
        return WalPosition(segment.seq, len(MAGIC), 0, 0)

    # -- appending -----------------------------------------------------------

    def append(self, lines: Sequence[bytes]) -> bool:
        """Write ``lines`` (each without newline) as one record; durable per the sync policy.

        False when the record could not be written whole (a full disk): the log is
        left as it was, and the lines are counted as dropped and logged."""
        if not lines:
            return True
        if any(b"\n" in line for line in lines):
            raise EncodeError("a line-protocol line must not contain a newline")
        record = encode_record(lines)
        with self._lock:
            try:
                if self._segments[-1].size_bytes + len(record) > self._segment_bytes:
                    self._start_segment(self._highest_seq + 1)
                self._write_record(record)
            except (OSError, WalError) as e:
                self._drop_newest(len(lines), e)
                return False
            if self._throttle.reset("append"):
                log.warning("wal: appending again")
            active = self._segments[-1]
            active.size_bytes += len(record)
            active.lines += len(lines)
            self._enforce_bound()
            return True

    def _write_record(self, record: bytes) -> None:
        """One write(2) per record: after it returns the record is in the kernel and
        survives the death of this process. A write that could not be completed is
        cut back to the last whole record, so no torn record stays behind."""
        whole = self._segments[-1].size_bytes
        try:
            write_all(self._fd, record)
            self._sync_if_due()
        except OSError:
            os.ftruncate(self._fd, whole)
            raise

    def _drop_newest(self, count: int, error: Exception) -> None:
        self._dropped_lines_total += count
        suppressed = self._throttle.due("append")
        if suppressed is not None:
            log.error(
                "wal: cannot append (%s): dropped the newest %d lines and %d more appends "
                "since the last report (%d lines dropped in total); sampling and sending go on",
                error,
                count,
                suppressed,
                self._dropped_lines_total,
            )

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
            while True:
                self._normalize()
                try:
                    return self._read(max_lines)
                except CorruptRecord as e:
                    self._resync(e.segment)
                except OSError as e:
                    self._read_failed(e)

    def _read(self, max_lines: int) -> WalBatch | None:
        start = pos = self._cursor
        lines: list[bytes] = []
        for segment in self._segments:
            if segment.seq < start.seq:
                continue
            if segment.seq > pos.seq:
                pos = self._segment_start(segment)
            read_before = len(lines)
            try:
                pos = read_lines(segment, pos, max_lines - len(lines), lines)
            except (OSError, CorruptRecord):
                del lines[read_before:]
                if lines:
                    break  # earlier segments' lines go now; this one comes first next time
                raise
            self._read_failures.pop(segment.seq, None)
            if len(lines) >= max_lines:
                break
        return WalBatch(lines, start, pos) if lines else None

    def _resync(self, segment: Segment) -> None:
        """A record changed on disk after it was scanned: step over the damage."""
        scanned = rescan(segment)
        lost = segment.lines - scanned.lines
        known = [(start, end) for start, end in segment.holes]
        segment.holes = [(d.start, d.end) for d in scanned.holes]
        segment.lines = scanned.lines
        self._dropped_lines_total += max(0, lost)
        new = [d for d in scanned.holes if (d.start, d.end) not in known]
        for damage in new:
            self._skipped_bytes_total += damage.size_bytes
            log.error(
                "wal: segment %s was damaged on disk at byte %d: skipped %d bytes, %d lines",
                segment.path,
                damage.start,
                damage.size_bytes,
                max(0, lost),
            )
        if not new:
            raise WalError(f"{segment.path}: a record reads as damaged but a rescan finds none")

    def _read_failed(self, error: OSError) -> None:
        """A segment that keeps failing to read is skipped, so the rest can flow."""
        seq = self._cursor.seq
        failures = self._read_failures.get(seq, 0) + 1
        self._read_failures[seq] = failures
        if failures < _READ_ATTEMPTS or seq == self._segments[-1].seq:
            raise WalError(f"cannot read the write-ahead log: {error}") from error
        segment = self._segments.pop(0)
        lost = segment.lines - self._cursor.lines_before
        self._dropped_lines_total += lost
        del self._read_failures[seq]
        log.error(
            "wal: skipping segment %s after %d failed reads (%d lines lost): %s",
            segment.path,
            failures,
            lost,
            error,
        )

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
                # Kept in memory: delivery goes on, and a restart resends these lines.
                if self._throttle.due("cursor") is not None:
                    log.error("wal: cannot write the cursor (%s); a restart resends lines", e)
            else:
                self._throttle.reset("cursor")
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
            # Left behind, it is read again at the next start and its lines resent.
            log.error("wal: cannot delete segment %s: %s", segment.path, e)

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
                skipped_bytes_total=self._skipped_bytes_total,
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
