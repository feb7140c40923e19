"""Which of a GPU's busy buckets describe its current work, and its load now."""

from __future__ import annotations

import numpy as np
import pytest

from wattwise.optimizer.models.work_window import load_now, recent_rows, since_last_change
from wattwise.optimizer.telemetry import Series

MINUTE_NS = 60 * 10**9


def test_recent_rows_are_measured_from_each_gpus_own_last_row() -> None:
    time_ns = np.array([0, 5, 10, 0, 2], dtype=np.int64) * MINUTE_NS
    ids = np.array([0, 0, 0, 1, 1])
    keep = recent_rows(time_ns, ids, 5 * MINUTE_NS)
    assert keep.tolist() == [False, True, True, True, True]


def test_load_now_is_the_median_of_the_last_three_buckets_and_ignores_older_ones() -> None:
    time_ns = np.array([1, 2, 3, 4, 1, 2], dtype=np.int64) * MINUTE_NS
    ids = np.array([0, 0, 0, 0, 1, 1])
    util = np.array([0.2, 0.9, 0.5, 0.6, 0.4, 0.6])
    assert load_now(time_ns, ids, util, 2).tolist() == pytest.approx([0.6, 0.5])


def _one_gpu(util_pct: list[float]) -> Series:
    rows = len(util_pct)
    return Series(
        np.arange(rows, dtype=np.int64) * MINUTE_NS,
        {},
        {"util_gpu_pct": np.array(util_pct), "util_mem_pct": np.array(util_pct) * 0.3},
    )


def test_a_step_in_load_starts_the_window_after_the_bucket_that_straddles_it() -> None:
    util_pct = [30.0, 30.0, 30.0, 50.0, 55.0, 55.0, 55.0]
    series = _one_gpu(util_pct)
    rows = np.arange(7)
    ids = np.zeros(7, dtype=np.int64)
    # The same work at every load: SM activity (D per unit of busy time) stays put.
    dyn = np.array(util_pct) / 100.0 * 400.0
    keep = since_last_change(series, rows, ids, dyn, np.full(7, 727.0))
    assert keep.tolist() == [False] * 4 + [True] * 3
