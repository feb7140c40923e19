"""Grouping helpers: the fast factorized group ids agree with joining the keys as strings."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wattwise.optimizer.models import common
from wattwise.optimizer.models.common import (
    Bools,
    error_summary,
    factorize,
    group_codes,
    group_ids,
    grouped_cv_predictions,
    join_column,
    subsample,
    tag_codes,
)
from wattwise.optimizer.telemetry import Series


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a", "b", "n10", "n2"]), st.integers(0, 3)), min_size=1))
def test_group_ids_match_the_string_joined_reference(rows: list[tuple[str, int]]) -> None:
    hosts = np.array([h for h, _ in rows], dtype=object)
    gpus = np.array([str(g) for _, g in rows], dtype=object)
    ids, distinct = group_ids(hosts, gpus)
    joined = np.array([f"{h}\x1f{g}" for h, g in zip(hosts, gpus, strict=True)])
    ref_distinct, ref_ids = np.unique(joined, return_inverse=True)
    assert list(distinct) == list(ref_distinct)
    assert list(ids) == list(ref_ids)


def test_factorize_handles_runs_and_unsorted_values() -> None:
    codes, distinct = factorize(np.array(["b", "b", "a", "b", "a"], dtype=object))
    assert list(distinct) == ["a", "b"] and list(codes) == [1, 1, 0, 1, 0]


def test_join_column_matches_host_and_bucket_and_leaves_nan_elsewhere() -> None:
    minute = 60 * 10**9
    left = Series(np.array([0, minute, 0]), {"host": np.array(["a", "a", "b"], dtype=object)})
    right = Series(
        np.array([minute, 0]),
        {"host": np.array(["a", "a"], dtype=object)},
        {"inlet_temp_c": np.array([21.0, 20.0])},
    )
    joined = join_column(left, right, "inlet_temp_c")
    assert joined[0] == 20.0 and joined[1] == 21.0 and np.isnan(joined[2])


@settings(max_examples=50, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(["a", "b", "n10"]), st.integers(0, 2)), min_size=1),
    st.data(),
)
def test_tag_codes_match_group_codes_on_copied_tag_columns(
    rows: list[tuple[str, int]], data: st.DataObject
) -> None:
    hosts = np.array([h for h, _ in rows], dtype=object)
    gpus = np.array([str(g) for _, g in rows], dtype=object)
    series = Series(np.zeros(len(rows), dtype=np.int64), {"host": hosts, "gpu": gpus})
    picked = np.array(
        sorted(set(data.draw(st.lists(st.integers(0, len(rows) - 1), min_size=1)))),
        dtype=np.int64,
    )
    expected = group_codes(hosts, gpus)
    assert list(tag_codes(series, ("host", "gpu"))) == list(expected)
    ranks = np.unique(expected, return_inverse=True)[1]
    assert list(tag_codes(series, ("host", "gpu"), picked)) == list(ranks[picked])


def test_tag_codes_code_run_heads_only_and_copy_no_tag_column() -> None:
    rows = 1_000_000
    series = Series(
        np.zeros(rows, dtype=np.int64),
        {
            "host": np.repeat(np.array(["a", "b"], dtype=object), rows // 2),
            "gpu": np.full(rows, "0", dtype=object),
        },
    )
    tracemalloc.start()
    try:
        codes = tag_codes(series, ("host", "gpu"))
        peak_b = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert list(np.unique(codes)) == [0, 1] and codes[rows // 2 - 1] == 0
    # the codes (8 B/row) and a run-start mask (1 B/row); coding every row as a head
    # copies both tag columns and factorizes them (several times more)
    assert peak_b < 12 * rows


def _mean_fitter(values: np.ndarray) -> Callable[[Bools], Callable[[Bools], np.ndarray]]:
    def fit(train: Bools) -> Callable[[Bools], np.ndarray]:
        mean = float(values[train].mean()) if train.any() else 0.0
        return lambda test: np.full(int(test.sum()), mean)

    return fit


def test_one_time_block_gives_no_cv_error_instead_of_mape_100() -> None:
    # Regression: with one block every fold trained on nothing, predicted 0 W, and the
    # error read "MAPE 100 %" -- a number nobody measured.
    power = np.array([300.0, 310.0, 320.0])
    predicted = grouped_cv_predictions(_mean_fitter(power), np.zeros(3, dtype=np.int64))
    assert np.isnan(predicted).all()
    assert error_summary(power, predicted, "w") == {}


def test_two_sparse_groups_each_predicted_by_the_other() -> None:
    # Block numbers with gaps (time blocks without rows) must still split into two folds.
    power = np.array([300.0, 300.0, 500.0])
    groups = np.array([3, 3, 40], dtype=np.int64)
    for folds in (2, 5):
        predicted = grouped_cv_predictions(_mean_fitter(power), groups, folds)
        assert list(predicted) == [500.0, 500.0, 300.0]


def test_subsample_draws_the_rows_an_index_of_every_selected_row_would(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ranks found a slice at a time pick the same rows as the draw over the whole index
    did, so fits on big fleets saw no change."""
    mask = np.random.default_rng(1).random(50_000) < 0.3
    monkeypatch.setattr(common, "SLICE_ROWS", 4_096)
    picked = subsample(mask, 2_000, seed=7)
    index = np.flatnonzero(mask)
    expected = np.zeros_like(mask)
    expected[np.random.default_rng(7).choice(index, size=2_000, replace=False)] = True
    assert picked.sum() == 2_000
    assert np.array_equal(picked, expected)
    assert subsample(mask, int(mask.sum()), seed=7) is mask
