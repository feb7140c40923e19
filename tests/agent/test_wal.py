from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from wattwise.agent.wal import Wal, WalBatch
from wattwise.agent.wal_files import segment_path
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
