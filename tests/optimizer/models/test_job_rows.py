"""The join of job rows to GPU rows, and the held rows grouped by job."""

from __future__ import annotations

import numpy as np
import pytest

from wattwise.optimizer.models import job_rows
from wattwise.optimizer.models.job_rows import held_rows_by_label, job_row_of_gpu_rows
from wattwise.optimizer.telemetry import Series

MINUTE = 60 * 10**9


def _frame(rows: list[tuple[str, str, int]]) -> Series:
    return Series(
        np.array([t * MINUTE for _, _, t in rows], dtype=np.int64),
        {
            "host": np.array([h for h, _, _ in rows], dtype=object),
            "gpu": np.array([g for _, g, _ in rows], dtype=object),
        },
    )


GPUS = [("a", "0", 0), ("a", "0", 1), ("a", "1", 0), ("b", "0", 0), ("b", "0", 1)]


@pytest.mark.parametrize("slice_rows", [1 << 20, 2])
def test_job_rows_join_on_host_gpu_and_bucket_and_ignore_hosts_the_gpus_never_reported(
    slice_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(job_rows, "SLICE_ROWS", slice_rows)
    jobs = _frame([("zz", "0", 0), ("b", "0", 1), ("a", "1", 0), ("a", "0", 1)])
    assert list(job_row_of_gpu_rows(jobs, _frame(GPUS))) == [-1, 3, 2, -1, 1]


def test_job_rows_join_the_same_way_when_every_job_row_is_on_a_known_gpu() -> None:
    """The table filled without an index of the known job rows."""
    jobs = _frame([("b", "0", 1), ("a", "1", 0), ("a", "0", 1)])
    assert list(job_row_of_gpu_rows(jobs, _frame(GPUS))) == [-1, 2, 1, -1, 0]


def test_job_rows_join_the_same_way_when_the_buckets_are_too_sparse_for_a_table() -> None:
    """Two buckets ten million minutes apart: the table would be mostly empty, so the join
    searches the sorted keys instead."""
    far = 10_000_000
    gpus = _frame([("a", "0", 0), ("a", "0", far), ("b", "0", far)])
    jobs = _frame([("b", "0", far), ("zz", "0", 0), ("a", "0", 0)])
    assert list(job_row_of_gpu_rows(jobs, gpus)) == [2, -1, 0]


@pytest.mark.parametrize("slice_rows", [1 << 20, 2])
def test_held_rows_come_by_label_then_row_with_their_labels(
    slice_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same in one slice and in slices of two rows, where the rows are moved down in
    the join's own memory across slices."""
    monkeypatch.setattr(job_rows, "SLICE_ROWS", slice_rows)
    job_row = np.array([-1, 3, 2, -1, 1, 3, 0], dtype=np.int64)
    label_of_job = np.array([1, 0, 2, 0], dtype=np.int32)
    held, label = held_rows_by_label(job_row.copy(), label_of_job)
    # what an argsort of the held rows' labels (stable) gives
    rows = np.flatnonzero(job_row >= 0)
    labels = label_of_job[job_row[rows]]
    order = np.argsort(labels, kind="stable")
    assert held.tolist() == rows[order].tolist() == [1, 4, 5, 6, 2]
    assert label.tolist() == labels[order].tolist() == [0, 0, 0, 1, 2]
