"""The on-disk pieces of the write-ahead log: segment files and the cursor file.

See :mod:`wattwise.agent.wal` for the format and the guarantees.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
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
    """One segment file: its valid size and how many lines it holds."""

    seq: int
    path: Path
    size_bytes: int
    lines: int


def segment_path(directory: Path, seq: int) -> Path:
    return directory / f"{seq:020d}.seg"


def encode_record(lines: Sequence[bytes]) -> bytes:
    """Frame ``lines`` as one record: header, then the lines joined by newlines."""
    payload = b"\n".join(lines)
    count = struct.pack("<I", len(lines))
    crc = zlib.crc32(payload, zlib.crc32(count))
    return struct.pack("<I", len(payload)) + count + struct.pack("<I", crc) + payload


def scan_segment(path: Path, seq: int) -> tuple[Segment, int]:
    """Validate every record of ``path``; truncate it after the last whole one.

    Returns the segment and the number of bytes cut off (a record torn by a
    crash or power loss, or garbage after it).
    """
    data = path.read_bytes()
    valid = len(MAGIC) if data.startswith(MAGIC) else 0
    lines = 0
    while valid and valid + HEADER.size <= len(data):
        length, count, crc = HEADER.unpack_from(data, valid)
        end = valid + HEADER.size + length
        if end > len(data):
            break
        payload = data[valid + HEADER.size : end]
        if zlib.crc32(payload, zlib.crc32(data[valid + 4 : valid + 8])) != crc:
            break
        lines += count
        valid = end
    if valid < len(data):
        with open(path, "r+b") as f:
            f.truncate(valid)
            if valid == 0:
                f.write(MAGIC)
                valid = len(MAGIC)
            os.fsync(f.fileno())
    return Segment(seq, path, valid, lines), len(data) - valid


def read_lines(segment: Segment, pos: WalPosition, want: int, out: list[bytes]) -> WalPosition:
    """Append up to ``want`` lines of ``segment`` from ``pos`` to ``out``; return where it ended."""
    offset, skip, before = pos.offset, pos.skip, pos.lines_before
    if want <= 0 or offset >= segment.size_bytes:
        return pos
    wanted = len(out) + want
    with open(segment.path, "rb") as f:
        f.seek(offset)
        while offset < segment.size_bytes and len(out) < wanted:
            header = f.read(HEADER.size)
            length, _count, crc = HEADER.unpack(header)
            payload = f.read(length)
            if zlib.crc32(payload, zlib.crc32(header[4:8])) != crc:
                # Records were checked when the log was opened: this is a disk fault.
                raise OSError(f"{segment.path}: record at byte {offset} is corrupt")
            record_lines = payload.split(b"\n")[skip:]
            taken = record_lines[: wanted - len(out)]
            out.extend(taken)
            before += len(taken)
            if len(taken) < len(record_lines):
                return WalPosition(segment.seq, offset, skip + len(taken), before)
            offset += HEADER.size + length
            skip = 0
    return WalPosition(segment.seq, offset, 0, before)


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
        os.write(fd, body)
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, directory / "cursor")
    if fsync:
        fsync_directory(directory)


def fsync_directory(directory: Path) -> None:
    """Make a created, renamed or deleted name in ``directory`` survive power loss."""
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
