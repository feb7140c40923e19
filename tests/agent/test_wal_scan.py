"""Counting a stopped agent's undelivered lines without opening its log."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.agent.test_wal import lines, open_wal
from wattwise.agent.wal import Wal
from wattwise.agent.wal_files import segment_path
from wattwise.agent.wal_scan import undelivered_lines


def ack_lines(wal: Wal, count: int) -> None:
    batch = wal.read_batch(count)
    assert batch is not None
    wal.ack(batch)


def half_acked(wal: Wal) -> None:
    wal.append(lines(0, 5))
    wal.append(lines(5, 5))
    ack_lines(wal, 7)  # ends inside the second record


def across_segments(wal: Wal) -> None:
    for start in range(0, 600, 20):
        wal.append(lines(start, 20))
    ack_lines(wal, 130)


def all_acked(wal: Wal) -> None:
    wal.append(lines(0, 4))
    ack_lines(wal, 4)


def never_acked(wal: Wal) -> None:
    wal.append(lines(0, 9))


@pytest.mark.parametrize(
    ("state", "unsent"), [(half_acked, 3), (across_segments, 470), (all_acked, 0), (never_acked, 9)]
)
def test_the_count_is_what_the_agent_finds_at_its_next_start(
    tmp_path: Path, state: Callable[[Wal], None], unsent: int
) -> None:
    wal = open_wal(tmp_path, max_bytes=1 << 20, segment_bytes=4096)
    state(wal)
    wal.close()
    assert undelivered_lines(tmp_path) == unsent
    reopened = open_wal(tmp_path, max_bytes=1 << 20, segment_bytes=4096)
    assert reopened.stats().queue_lines == unsent
    reopened.close()


def test_a_log_reopened_twice_is_counted_across_its_empty_segments(tmp_path: Path) -> None:
    wal = open_wal(tmp_path)
    wal.append(lines(0, 6))
    ack_lines(wal, 2)
    wal.close()
    open_wal(tmp_path).close()  # each start leaves a new, empty segment
    assert undelivered_lines(tmp_path) == 4


def test_a_cursor_past_data_lost_to_a_power_failure_counts_only_what_follows(
    tmp_path: Path,
) -> None:
    wal = open_wal(tmp_path)
    wal.append(lines(0, 3))
    wal.append(lines(3, 3))
    ack_lines(wal, 6)
    wal.close()
    path = segment_path(tmp_path, 1)
    path.write_bytes(path.read_bytes()[:-20])  # the cursor reached the disk, the tail did not
    assert undelivered_lines(tmp_path) == 0


def test_reading_changes_no_file(tmp_path: Path) -> None:
    wal = open_wal(tmp_path)
    wal.append(lines(0, 3))
    wal.close()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    undelivered_lines(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_no_log_holds_nothing(tmp_path: Path) -> None:
    assert undelivered_lines(tmp_path / "absent") == 0
    assert undelivered_lines(tmp_path) == 0
