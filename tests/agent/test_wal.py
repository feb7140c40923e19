from __future__ import annotations

import json
import logging
import os
import signal
import struct
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from wattwise.agent.wal import Wal, WalBatch
from wattwise.agent.wal_files import HEADER, MAGIC, segment_path
from wattwise.clock import ManualClock
from wattwise.errors import ConfigError, EncodeError, WalError

REPO = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000_000_000_000


def lines(start: int, count: int) -> list[bytes]:
    return [
        b"m,host=a v=%d.0 %d" % (i, 1_700_000_000_000_000_000 + i)
        for i in range(start, start + count)
    ]


def open_wal(path: Path, **kw: object) -> Wal:
    options: dict[str, object] = {"max_bytes": 64 << 20, "sync": "none", "clock": ManualClock()}
    options.update(kw)
    return Wal(path, **options)  # type: ignore[arg-type]


def drain(wal: Wal, max_lines: int = 1000) -> list[bytes]:
    out: list[bytes] = []
    while (batch := wal.read_batch(max_lines)) is not None:
        out.extend(batch.lines)
        wal.ack(batch)
    return out


def test_read_batch_returns_lines_in_order_and_keeps_them_until_ack(tmp_path: Path) -> None:
    wal = open_wal(tmp_path)
    wal.append(lines(0, 3))
    wal.append(lines(3, 3))
    first = wal.read_batch(4)
    assert first is not None and first.lines == lines(0, 4)
    again = wal.read_batch(4)
    assert again is not None and again.lines == first.lines
    wal.ack(first)
    rest = wal.read_batch(100)
    assert rest is not None and rest.lines == lines(4, 2)
    assert wal.stats().queue_lines == 2
    wal.ack(rest)
    assert wal.read_batch(100) is None
    assert wal.stats().queue_lines == 0 and wal.stats().queue_bytes == 0


def test_unacknowledged_lines_come_back_after_reopen_and_acknowledged_ones_do_not(
    tmp_path: Path,
) -> None:
    wal = open_wal(tmp_path, sync="always")
    wal.append(lines(0, 10))
    batch = wal.read_batch(7)
    assert batch is not None
    wal.ack(batch)
    wal.close()
    reopened = open_wal(tmp_path)
    assert reopened.stats().queue_lines == 3
    assert drain(reopened) == lines(7, 3)


def test_crash_before_ack_resends_the_same_lines_never_new_ones(tmp_path: Path) -> None:
    wal = open_wal(tmp_path)
    wal.append(lines(0, 5))
    sent = wal.read_batch(100)
    assert sent is not None
    wal.close()  # the process died after sending, before acknowledging
    assert drain(open_wal(tmp_path)) == sent.lines


def test_torn_record_at_the_tail_is_truncated_not_misread(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wal = open_wal(tmp_path)
    wal.append(lines(0, 4))
    wal.append(lines(4, 4))
    wal.close()
    path = segment_path(tmp_path, 1)
    whole = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(whole - 5)  # the second record lost its last bytes
    with caplog.at_level(logging.WARNING):
        reopened = open_wal(tmp_path)
    assert "torn" in caplog.text
    reopened.append(lines(8, 1))
    assert drain(reopened) == lines(0, 4) + lines(8, 1)


def test_record_with_a_flipped_bit_at_the_tail_is_truncated(tmp_path: Path) -> None:
    wal = open_wal(tmp_path)
    wal.append(lines(0, 2))
    wal.append(lines(2, 2))
    wal.close()
    path = segment_path(tmp_path, 1)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))
    assert drain(open_wal(tmp_path)) == lines(0, 2)


def test_cursor_beyond_data_lost_in_power_failure_is_clamped(tmp_path: Path) -> None:
    wal = open_wal(tmp_path)
    wal.append(lines(0, 3))
    wal.append(lines(3, 3))
    batch = wal.read_batch(100)
    assert batch is not None
    wal.ack(batch)
    wal.close()
    # The cursor reached the disk, the segment's tail did not.
    path = segment_path(tmp_path, 1)
    path.write_bytes(path.read_bytes()[:-20])
    reopened = open_wal(tmp_path)
    assert reopened.stats().queue_lines == 0
    reopened.append(lines(6, 2))
    assert drain(reopened) == lines(6, 2)


def test_full_log_drops_oldest_segments_counts_and_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wal = open_wal(tmp_path, max_bytes=16384, segment_bytes=4096)
    with caplog.at_level(logging.WARNING):
        for i in range(100):
            wal.append(lines(i * 10, 10))
    stats = wal.stats()
    assert stats.dropped_lines_total > 0
    assert "dropped" in caplog.text and str(stats.dropped_lines_total) in caplog.text
    on_disk = sum(p.stat().st_size for p in tmp_path.glob("*.seg"))
    assert on_disk <= 16384
    kept = drain(wal)
    # Oldest first: what is left is exactly the newest lines, none missing, none invented.
    assert kept == lines(1000 - len(kept), len(kept))
    assert len(kept) + stats.dropped_lines_total == 1000


def test_a_batch_continues_across_segment_boundaries(tmp_path: Path) -> None:
    wal = open_wal(tmp_path, max_bytes=1 << 20, segment_bytes=4096)
    for i in range(100):
        wal.append(lines(i * 10, 10))
    assert wal.stats().segments > 5
    batch = wal.read_batch(1000)
    assert batch is not None and batch.lines == lines(0, 1000)
    wal.ack(batch)
    assert wal.stats().segments == 1 and wal.stats().queue_lines == 0


def test_second_wal_on_the_same_directory_is_refused_until_the_first_closes(
    tmp_path: Path,
) -> None:
    first = open_wal(tmp_path)
    with pytest.raises(WalError, match="in use"):
        open_wal(tmp_path)
    first.close()
    open_wal(tmp_path).close()


def test_line_with_a_newline_is_refused(tmp_path: Path) -> None:
    with pytest.raises(EncodeError):
        open_wal(tmp_path).append([b"m v=1 1\nm v=2 2"])


def test_unknown_sync_policy_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        open_wal(tmp_path, sync="sometimes")


def test_one_thread_appends_while_another_reads_and_acks(tmp_path: Path) -> None:
    wal = open_wal(tmp_path, max_bytes=1 << 30, segment_bytes=64 * 1024)
    done = threading.Event()
    received: list[bytes] = []

    def append_all() -> None:
        for i in range(500):
            wal.append(lines(i * 8, 8))
        done.set()

    appender = threading.Thread(target=append_all)
    appender.start()
    while not done.is_set() or wal.stats().queue_lines:
        batch: WalBatch | None = wal.read_batch(50)
        if batch is not None:
            received.extend(batch.lines)
            wal.ack(batch)
    appender.join()
    assert received == lines(0, 4000)
    assert wal.stats().segments == 1  # acknowledged segments were deleted


def test_ten_minute_backlog_of_64_gpus_drains_whole_and_in_order(tmp_path: Path) -> None:
    wal = open_wal(tmp_path, sync="interval")
    tick = [
        b"gpu,host=node-01,gpu=%d power_w=512.5,temp_c=61.0,sm_clock_mhz=1980i 1" % g
        for g in range(64)
    ]
    for _ in range(600):
        wal.append(tick)
    assert drain(wal, 5000) == tick * 600
    assert wal.stats().queue_lines == 0


APPENDER = """
import sys
from pathlib import Path
from wattwise.agent.wal import Wal
from wattwise.clock import SystemClock
wal = Wal(Path(sys.argv[1]), max_bytes=1 << 30, sync="none", clock=SystemClock(),
          segment_bytes=65536)
for i in range(10**9):  # killed long before the end
    wal.append([b"m,host=a v=%d.0 %d" % (i * 4 + k, i * 4 + k) for k in range(4)])
    sys.stdout.write(f"{i}\\n")
    sys.stdout.flush()
"""


def test_lines_appended_before_sigkill_all_survive(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", APPENDER, str(tmp_path / "wal")],
        stdout=subprocess.PIPE,
        cwd=REPO,
    )
    assert proc.stdout is not None
    confirmed = -1
    for raw in proc.stdout:
        confirmed = int(raw)
        if confirmed >= 3000:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    survived = drain(open_wal(tmp_path / "wal"), 5000)
    expected = [b"m,host=a v=%d.0 %d" % (n, n) for n in range(len(survived))]
    # Every append the child confirmed is there, in order, with nothing invented.
    assert len(survived) >= (confirmed + 1) * 4
    assert survived == expected


def records_of(path: Path) -> list[tuple[int, int]]:
    """(start, end) of every record in a segment file, read from its headers."""
    data = path.read_bytes()
    out, offset = [], len(MAGIC)
    while offset < len(data):
        (length,) = struct.unpack_from("<I", data, offset)
        out.append((offset, offset + HEADER.size + length))
        offset += HEADER.size + length
    return out


def lines_in(path: Path) -> list[bytes]:
    data = path.read_bytes()
    return [
        line
        for start, end in records_of(path)
        for line in data[start + HEADER.size : end].split(b"\n")
    ]


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x20
    path.write_bytes(bytes(data))


def eleven_records(tmp_path: Path) -> list[list[bytes]]:
    wal = open_wal(tmp_path)
    records = [lines(i * 100, 100 + i) for i in range(11)]
    for record in records:
        wal.append(record)
    wal.close()
    return records


def test_flipped_byte_mid_segment_costs_only_its_record_counted_and_the_rest_delivered(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    records = eleven_records(tmp_path)
    path = segment_path(tmp_path, 1)
    start, end = records_of(path)[4]
    flip(path, start + HEADER.size + 30)  # a byte of record 5's payload
    with caplog.at_level(logging.WARNING):
        reopened = open_wal(tmp_path)
    assert drain(reopened) == [line for i, r in enumerate(records) if i != 4 for line in r]
    stats = reopened.stats()
    assert stats.dropped_lines_total == len(records[4])
    assert stats.skipped_bytes_total == end - start
    assert f"skipped {end - start} damaged bytes at byte {start}" in caplog.text


def test_damaged_record_length_resynchronises_on_the_next_intact_record(tmp_path: Path) -> None:
    records = eleven_records(tmp_path)
    path = segment_path(tmp_path, 1)
    start, end = records_of(path)[4]
    flip(path, start + 2)  # the length field: the record's own size is unknown now
    reopened = open_wal(tmp_path)
    assert drain(reopened) == [line for i, r in enumerate(records) if i != 4 for line in r]
    assert reopened.stats().skipped_bytes_total == end - start


def test_flipped_magic_byte_costs_the_magic_not_the_segment(tmp_path: Path) -> None:
    records = eleven_records(tmp_path)
    flip(segment_path(tmp_path, 1), 1)
    reopened = open_wal(tmp_path)
    assert drain(reopened) == [line for r in records for line in r]
    assert reopened.stats().skipped_bytes_total == len(MAGIC)


def test_record_damaged_on_disk_while_open_is_stepped_over_not_retried_forever(
    tmp_path: Path,
) -> None:
    wal = open_wal(tmp_path)
    records = [lines(i * 100, 100 + i) for i in range(11)]
    for record in records:
        wal.append(record)
    path = segment_path(tmp_path, 1)
    start, _ = records_of(path)[4]
    flip(path, start + HEADER.size + 30)  # after the scan at open: a disk fault
    assert drain(wal) == [line for i, r in enumerate(records) if i != 4 for line in r]
    assert wal.stats().dropped_lines_total == len(records[4])
    assert wal.stats().queue_lines == 0


def test_stray_files_in_the_wal_directory_are_reported_and_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wal = open_wal(tmp_path)
    wal.append(lines(0, 5))
    wal.close()
    (tmp_path / "garbage.seg").write_bytes(b"not a segment")
    (tmp_path / "notes.txt").write_text("operator notes")
    with caplog.at_level(logging.WARNING):
        reopened = open_wal(tmp_path)
    assert "garbage.seg is not a segment" in caplog.text and "notes.txt" in caplog.text
    reopened.append(lines(5, 5))
    assert drain(reopened) == lines(0, 10)
    assert (tmp_path / "garbage.seg").read_bytes() == b"not a segment"


def test_unpadded_segment_name_is_ordered_by_number_and_never_appended_onto(
    tmp_path: Path,
) -> None:
    wal = open_wal(tmp_path, segment_bytes=4096)
    for i in range(60):
        wal.append(lines(i * 10, 10))
    wal.close()
    assert segment_path(tmp_path, 5).exists()
    segment_path(tmp_path, 2).rename(tmp_path / "2.seg")
    reopened = open_wal(tmp_path, segment_bytes=4096)
    reopened.append(lines(600, 16))
    assert drain(reopened) == lines(0, 616)
    reopened.close()
    assert drain(open_wal(tmp_path)) == []  # nothing was resent or left torn


UNPRIVILEGED_DRAIN = """
import json, logging, sys
from pathlib import Path
from wattwise.agent.wal import Wal
from wattwise.clock import SystemClock
logging.basicConfig(level=logging.WARNING)
wal = Wal(Path(sys.argv[1]), max_bytes=1 << 26, sync="none", clock=SystemClock())
wal.append([b"m,host=a v=1.0 999"])
out = []
while (batch := wal.read_batch(1000)) is not None:
    out.extend(line.decode() for line in batch.lines)
    wal.ack(batch)
print(json.dumps(out))
"""


def without_file_capabilities(argv: list[str]) -> list[str]:
    """``argv`` run as the agent's unit runs it: with no capability to read files it may
    not read (root without CAP_DAC_OVERRIDE obeys a file's mode like any user)."""
    if os.geteuid() != 0:
        return argv
    return ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *argv]


def test_unreadable_segment_is_skipped_with_an_error_while_the_rest_flows(tmp_path: Path) -> None:
    wal = open_wal(tmp_path, segment_bytes=4096)
    for i in range(30):
        wal.append(lines(i * 10, 10))
    wal.close()
    blocked = segment_path(tmp_path, 2)
    blocked_lines = lines_in(blocked)
    blocked.chmod(0)
    done = subprocess.run(
        without_file_capabilities([sys.executable, "-c", UNPRIVILEGED_DRAIN, str(tmp_path)]),
        capture_output=True,
        text=True,
        check=True,
    )
    delivered = [line.encode() for line in json.loads(done.stdout)]
    assert "cannot read segment" in done.stderr and "skipping it" in done.stderr
    assert blocked_lines and delivered == [
        *(line for line in lines(0, 300) if line not in blocked_lines),
        b"m,host=a v=1.0 999",
    ]


def test_full_disk_drops_the_newest_counted_and_never_leaves_a_torn_record(
    small_tmpfs: Path, caplog: pytest.LogCaptureFixture
) -> None:
    wal = open_wal(small_tmpfs / "wal", sync="always", segment_bytes=256 * 1024)
    appended: list[bytes] = []
    refused = 0
    with caplog.at_level(logging.ERROR):
        for i in range(600):  # ~3.5 MiB of records into 2 MiB
            batch = lines(i * 100, 100)
            if wal.append(batch):
                appended.extend(batch)
            else:
                refused += len(batch)
    assert refused > 0 and appended
    assert wal.stats().dropped_lines_total == refused
    assert caplog.text.count("cannot append") == 1  # said once, not once per append
    # Sending frees the space: delivery drains every intact line, and appends work again.
    assert drain(wal, 5000) == appended
    assert wal.append(lines(10**6, 10))
    wal.close()
    reopened = open_wal(small_tmpfs / "wal")
    assert reopened.stats().skipped_bytes_total == 0  # nothing torn was left behind
    assert drain(reopened) == lines(10**6, 10)


def test_segment_skipped_as_unreadable_is_sent_once_readable_again(tmp_path: Path) -> None:
    wal = open_wal(tmp_path, segment_bytes=4096)
    for i in range(30):
        wal.append(lines(i * 10, 10))
    wal.close()
    blocked = segment_path(tmp_path, 2)
    blocked_lines = lines_in(blocked)
    blocked.chmod(0)
    subprocess.run(
        without_file_capabilities([sys.executable, "-c", UNPRIVILEGED_DRAIN, str(tmp_path)]),
        capture_output=True,
        check=True,
    )  # drains everything else: the cursor passes segment 2
    blocked.chmod(0o600)
    again = drain(open_wal(tmp_path))
    # It comes first; after it only lines already delivered are resent (stored once).
    assert blocked_lines and again[: len(blocked_lines)] == blocked_lines
    assert set(again[len(blocked_lines) :]) <= {*lines(0, 300), b"m,host=a v=1.0 999"}
