"""Finding the intact records of a segment, whatever happened to the bytes around them.

A segment is ``MAGIC`` then records, each ``length | count | crc | payload`` (see
:mod:`wattwise.agent.wal_files`). Damage (a flipped byte, a record torn by a full
disk or a crash, a damaged magic) must cost only the bytes it touches: the scan
steps over a damaged region by looking for the next offset where a whole record
with a matching CRC starts, and reports the region it skipped. Damage that
reaches the end of the file is a torn tail: nothing intact follows it.

A candidate offset must pass cheap checks before its CRC is computed (its
length fits in the file, its line count fits in its length, its payload holds
exactly ``count - 1`` newlines), so random bytes almost never cost a CRC.
"""

from __future__ import annotations

import os
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from wattwise.agent.wal_files import HEADER, MAGIC, Segment, read_cursor, segment_seq

_MIN_LINE_BYTES = 4
"""The shortest line-protocol line (``m f=1``, without the timestamp) has 5 bytes."""


@dataclass(frozen=True, slots=True)
class Damage:
    """Bytes ``start..end`` of a segment hold no intact record.

    ``lines`` is what the damaged record said it held when its boundary is
    confirmed (its length ends exactly where the next intact record starts), else
    None: a damaged header cannot be trusted to say how many lines it held.
    """

    start: int
    end: int
    lines: int | None

    @property
    def size_bytes(self) -> int:
        return self.end - self.start


@dataclass(slots=True)
class Scan:
    """What one pass over a segment's bytes found."""

    valid_end: int
    """Where the last intact record ends (``len(MAGIC)`` for an empty segment)."""
    lines: int
    """Lines in intact records."""
    holes: list[Damage] = field(default_factory=list)
    """Damaged regions with intact records after them, in order."""
    torn_tail: Damage | None = None
    """Damage that reaches the end of the data: nothing intact follows it."""


def record_at(data: bytes, offset: int, limit: int) -> tuple[int, int] | None:
    """``(end, lines)`` of an intact record starting at ``offset``, or None."""
    if offset + HEADER.size > limit:
        return None
    length, count, crc = HEADER.unpack_from(data, offset)
    end = offset + HEADER.size + length
    if count == 0 or end > limit or count > length // _MIN_LINE_BYTES + 1:
        return None
    if data.count(b"\n", offset + HEADER.size, end) != count - 1:
        return None
    payload = memoryview(data)[offset + HEADER.size : end]
    if zlib.crc32(payload, zlib.crc32(data[offset + 4 : offset + 8])) != crc:
        return None
    return end, count


def next_record(data: bytes, start: int, limit: int) -> int | None:
    """The first offset at or after ``start`` where an intact record begins."""
    for offset in range(start, limit - HEADER.size + 1):
        if record_at(data, offset, limit) is not None:
            return offset
    return None


def scan(data: bytes, start: int = 0, limit: int | None = None) -> Scan:
    """Every intact record of ``data[start:limit]``; ``start`` 0 also checks the magic."""
    limit = len(data) if limit is None else limit
    offset, lines = start, 0
    holes: list[Damage] = []
    if start == 0:
        offset = len(MAGIC)
        if data[: len(MAGIC)] != MAGIC:
            # A damaged magic costs the magic, not the records behind it.
            found = next_record(data, 0, limit)
            if found is None:
                return Scan(0, 0, [], Damage(0, limit, None) if limit else None)
            holes.append(Damage(0, found, None))
            offset = found
    valid_end = offset
    while offset < limit:
        record = record_at(data, offset, limit)
        if record is not None:
            offset, count = record
            lines += count
            valid_end = offset
            continue
        found = next_record(data, offset + 1, limit)
        if found is None:
            return Scan(valid_end, lines, holes, Damage(offset, limit, None))
        holes.append(Damage(offset, found, _claimed_lines(data, offset, found)))
        offset = found
    return Scan(valid_end, lines, holes)


def _claimed_lines(data: bytes, start: int, end: int) -> int | None:
    """The line count of a damaged record whose length ends exactly at ``end``, when its
    header and its payload's newlines agree on it (either may be the damaged part)."""
    if end - start < HEADER.size:
        return None
    length, count, _ = HEADER.unpack_from(data, start)
    if start + HEADER.size + length != end:
        return None
    newlines = data.count(b"\n", start + HEADER.size, end)
    return count if count == newlines + 1 else None


def open_segment(path: Path, seq: int) -> tuple[Segment, Scan]:
    """Scan a segment found at start; a torn tail is cut off (nothing intact follows it)."""
    data = path.read_bytes()
    found = scan(data)
    size = len(data)
    if found.torn_tail is not None:
        size = found.valid_end
        with open(path, "r+b") as f:
            f.truncate(size)
            if size == 0:
                f.write(MAGIC)
                size = len(MAGIC)
            os.fsync(f.fileno())
    holes = [(d.start, d.end) for d in found.holes]
    return Segment(seq, path, size, found.lines, holes), found


def rescan(segment: Segment) -> Scan:
    """Scan a segment again after a read found damage the first scan did not see; damage
    at its end is a hole too (the active segment may still grow past it)."""
    with open(segment.path, "rb") as f:
        data = f.read(segment.size_bytes)
    found = scan(data, limit=min(len(data), segment.size_bytes))
    if len(data) < segment.size_bytes:
        found.holes.append(Damage(len(data), segment.size_bytes, None))
    if found.torn_tail is not None:
        found.holes.append(found.torn_tail)
        found.torn_tail = None
    return found


def undelivered_lines(directory: Path) -> int:
    """Lines the log in ``directory`` holds that the store has not acknowledged, counted
    as the agent would count them at its next start, without changing or locking a file.

    For a log no agent is writing (a stopped unit): a running agent moves on while this
    reads. A cursor behind the oldest segment, or none, means everything is sent again.
    """
    if not directory.is_dir():
        return 0
    lines_by_seq: dict[int, int] = {}
    for path in directory.iterdir():
        seq = segment_seq(path)
        if seq is not None and seq not in lines_by_seq:
            lines_by_seq[seq] = scan(path.read_bytes()).lines
    if not lines_by_seq:
        return 0
    cursor = read_cursor(directory / "cursor")
    if cursor is None or min(lines_by_seq) < cursor.seq or cursor.seq > max(lines_by_seq):
        return sum(lines_by_seq.values())
    queued = sum(lines for seq, lines in lines_by_seq.items() if seq >= cursor.seq)
    # Lines behind a cursor past the segment's end were lost before reaching the disk.
    consumed = min(cursor.lines_before, lines_by_seq.get(cursor.seq, 0))
    return queued - consumed
