"""The on-disk pieces of the write-ahead log: segment files and the cursor file.

See :mod:`wattwise.agent.wal` for the format and the guarantees.
"""

from __future__ import annotations

import errno
import json
import os
import re
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

MAGIC = b"WWWAL1\n\0"
HEADER = struct.Struct("<III")  # payload length, line count, crc32(line count + payload)


@dataclass(frozen=True, order=True, slots=True)
class WalPosition:
    """A place in the log: segment, byte offset of a record, lines of that record consumed.

    ``lines_before`` counts the lines of the segment before this place, so the
    queue length is known without rereading the segment.
    """

    seq: int
    offset: int
    skip: int
    lines_before: int


@dataclass(slots=True)
class Segment:
    """One segment file: its valid size, how many intact lines it holds, and the damaged
    regions (start, end) reads step over."""

    seq: int
    path: Path
    size_bytes: int
    lines: int
    holes: list[tuple[int, int]] = field(default_factory=list)


class CorruptRecord(Exception):
    """A record that was intact when the segment was scanned no longer is (a disk fault)."""

    def __init__(self, segment: Segment, offset: int) -> None:
        self.segment = segment
        self.offset = offset
        super().__init__(f"{segment.path}: record at byte {offset} is corrupt")


_SEGMENT_NAME = re.compile(r"^([0-9]{1,20})\.seg$")


def segment_path(directory: Path, seq: int) -> Path:
    return directory / f"{seq:020d}.seg"


def segment_seq(path: Path) -> int | None:
    """The number of a segment file's name (``00…07.seg`` or ``7.seg``), None for others."""
    match = _SEGMENT_NAME.match(path.name)
    return int(match.group(1)) if match else None


def encode_record(lines: Sequence[bytes]) -> bytes:
    """Frame ``lines`` as one record: header, then the lines joined by newlines."""
    payload = b"\n".join(lines)
    count = struct.pack("<I", len(lines))
    crc = zlib.crc32(payload, zlib.crc32(count))
    return struct.pack("<I", len(payload)) + count + struct.pack("<I", crc) + payload


def read_lines(segment: Segment, pos: WalPosition, want: int, out: list[bytes]) -> WalPosition:
    """Append up to ``want`` lines of ``segment`` from ``pos`` to ``out``; return where it ended.

    Damaged regions found by the scan are stepped over; a record that fails its CRC
    now raises :class:`CorruptRecord` for the log to rescan the segment."""
    offset, skip, before = pos.offset, pos.skip, pos.lines_before
    if want <= 0 or offset >= segment.size_bytes:
        return pos
    wanted = len(out) + want
    with open(segment.path, "rb") as f:
        while len(out) < wanted:
            offset = _past_holes(offset, segment.holes)
            if offset >= segment.size_bytes:
                break
            f.seek(offset)
            header = f.read(HEADER.size)
            if len(header) < HEADER.size:
                raise CorruptRecord(segment, offset)
            length, _count, crc = HEADER.unpack(header)
            payload = f.read(length) if offset + HEADER.size + length <= segment.size_bytes else b""
            if len(payload) != length or zlib.crc32(payload, zlib.crc32(header[4:8])) != crc:
                raise CorruptRecord(segment, offset)
            record_lines = payload.split(b"\n")[skip:]
            taken = record_lines[: wanted - len(out)]
            out.extend(taken)
            before += len(taken)
            if len(taken) < len(record_lines):
                return WalPosition(segment.seq, offset, skip + len(taken), before)
            offset += HEADER.size + length
            skip = 0
    return WalPosition(segment.seq, offset, 0, before)


def _past_holes(offset: int, holes: list[tuple[int, int]]) -> int:
    for start, end in holes:
        if start <= offset < end:
            offset = end
    return offset


def read_cursor(path: Path) -> WalPosition | None:
    """The acknowledged position, or None if there is none (or it is unreadable)."""
    try:
        raw = json.loads(path.read_text())
        return WalPosition(
            int(raw["seq"]), int(raw["offset"]), int(raw["skip"]), int(raw["lines_before"])
        )
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError):
        # A cursor is written by rename, so it is whole or absent; anything else
        # was damaged outside wattwise. Resending from the start is safe.
        return None


def write_cursor(directory: Path, cursor: WalPosition, *, fsync: bool) -> None:
    """Replace the cursor file atomically: temp file, fsync, rename, fsync of the directory."""
    tmp = directory / "cursor.tmp"
    body = json.dumps(
        {
            "seq": cursor.seq,
            "offset": cursor.offset,
            "skip": cursor.skip,
            "lines_before": cursor.lines_before,
        }
    ).encode()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        write_all(fd, body)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, directory / "cursor")
    if fsync:
        fsync_directory(directory)


def write_all(fd: int, data: bytes) -> None:
    """One ``write(2)`` of all of ``data``; a short write (a full disk) raises ENOSPC."""
    written = os.write(fd, data)
    if written != len(data):
        raise OSError(errno.ENOSPC, f"short write: {written} of {len(data)} bytes")


def fsync_directory(directory: Path) -> None:
    """Make a created, renamed or deleted name in ``directory`` survive power loss."""
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
