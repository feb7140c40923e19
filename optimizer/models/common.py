"""What every model shares: its identity card, honest cross-validation, and Series helpers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from wattwise.optimizer.telemetry import Floats, Series

Ints = NDArray[np.int64]
Bools = NDArray[np.bool_]

FitFn = Callable[[Bools], Callable[[Bools], Floats]]
"""Given a training mask, fit and return a predictor for rows selected by another mask."""


@dataclass(frozen=True)
class ModelInfo:
    """What a model was trained on and how accurate it is (JSON-friendly)."""

    kind: str
    scope: str
    """What it covers: a GPU model name, a zone, or "fleet"."""
    version: int
    window_start_ns: int
    window_end_ns: int
    samples: int
    errors: dict[str, float] = field(default_factory=dict)
    """Cross-validated errors, e.g. ``{"mae_w": 12.3, "mape_pct": 4.1}``."""
    notes: str = ""


SLICE_ROWS = 1 << 20
"""Rows worked on at a time by steps that would otherwise hold one more row-sized array
(at 10,000 GPUs a day's row-sized integers are 110 MiB each)."""


def window_of(series: Series, mask: Bools | None = None) -> tuple[int, int]:
    """First and last time stamp of the rows used (0, 0 when none)."""
    times = series.time_ns if mask is None else series.time_ns[mask]
    if times.size == 0:
        return 0, 0
    return int(times.min()), int(times.max())


def column(series: Series, name: str) -> Floats:
    """A value column, all NaN when the store did not return it."""
    values = series.values.get(name)
    if values is None:
        return np.full(len(series), np.nan)
    return np.asarray(values, dtype=np.float64)


def tag(series: Series, name: str, default: str = "") -> NDArray[np.object_]:
    """A tag column, ``default`` when the store did not return it."""
    values = series.tags.get(name)
    if values is None:
        return np.full(len(series), default, dtype=object)
    return np.asarray(values, dtype=object)


def factorize(values: NDArray[Any]) -> tuple[Ints, NDArray[Any]]:
    """Dense integer codes of one column and its distinct values (sorted).

    Stores return rows grouped by series, so a tag column is long runs of one
    value: only the first row of each run goes through the (slow, per-object)
    sort, and every row inherits its run's code. Correct for any order; fast for
    the grouped order the stores give.
    """
    if values.size == 0:
        return np.zeros(0, dtype=np.int64), values[:0]
    if values.dtype.kind in "iu":
        dense = _factorize_ints(values.astype(np.int64, copy=False))
        if dense is not None:
            return dense
    starts = np.ones(values.shape[0], dtype=np.bool_)
    starts[1:] = values[1:] != values[:-1]
    head_rows = np.flatnonzero(starts)
    del starts
    heads = values[head_rows]
    if heads.dtype == object:
        heads = heads.astype(str)
    distinct, codes = np.unique(heads, return_inverse=True)
    # Repeating each run's code builds only the output (no per-row run index beside it).
    lengths = np.diff(head_rows, append=values.shape[0])
    return np.repeat(codes.reshape(-1).astype(np.int64), lengths), distinct


def _factorize_ints(values: Ints) -> tuple[Ints, Ints] | None:
    """Integers on a regular grid (time buckets, rounded readings) coded without a sort;
    None when their spread is too wide for a table."""
    low = int(values.min())
    offsets = values - low
    step = max(int(np.gcd.reduce(offsets)), 1)
    offsets //= step
    if int(offsets.max()) > 4 * values.size + 1_000_000:
        return None
    seen, codes = dense_unique(offsets)
    return codes, seen * step + low


def group_codes(*keys: NDArray[Any]) -> Ints:
    """Dense integer ids for the combination of columns (ordered as the sorted keys), without
    building the keys' names: what a fit needs to group rows."""
    if not keys or keys[0].size == 0:
        return np.zeros(0, dtype=np.int64)
    combined = np.zeros(keys[0].shape[0], dtype=np.int64)
    for codes, distinct in (factorize(k) for k in keys):
        combined = combined * max(len(distinct), 1) + codes
    return dense_unique(combined)[1]


def tag_codes(series: Series, names: tuple[str, ...], rows: Ints | None = None) -> Ints:
    """Dense ids of the combination of tags ``names`` for ``rows`` (all rows when None),
    ordered as the sorted keys, like :func:`group_codes` on the tag columns.

    No per-row copy of the tag (object) columns is made: only the first row of each run
    of equal tags is factorized, and each row takes its run's id. On a 14 M-row frame
    that is what keeps a fit's grouping from costing hundreds of MiB.
    """
    if len(series) == 0 or not names:
        return np.zeros(len(series) if rows is None else rows.shape[0], dtype=np.int64)
    columns = [tag(series, name) for name in names]
    starts = np.zeros(len(series), dtype=np.bool_)
    starts[0] = True
    for values in columns:
        starts[1:] |= values[1:] != values[:-1]
    head_rows = np.flatnonzero(starts)
    del starts
    run_ids = group_codes(*(values[head_rows] for values in columns))
    if rows is None:
        return np.repeat(run_ids, np.diff(head_rows, append=len(series)))
    run_of_row = np.searchsorted(head_rows, rows, side="right")
    run_of_row -= 1
    # Each row's id replaces its run index in place: one row-sized array, not two.
    return np.take(run_ids, run_of_row, out=run_of_row, mode="clip")


def distinct_tag(series: Series, name: str) -> NDArray[np.str_]:
    """The sorted distinct values of a tag, as strings, from the first row of each run: the
    order of :func:`tag_codes`' ids for that one tag."""
    values = tag(series, name)
    starts = np.ones(len(series), dtype=np.bool_)
    starts[1:] = values[1:] != values[:-1]
    return np.unique(values[starts].astype(str))


def codes_in(values: np.ndarray, distinct: np.ndarray) -> np.ndarray:
    """Codes of ``values`` into the sorted ``distinct`` (−1 for values not there)."""
    codes, names = factorize(values)
    reference = distinct.astype(str)
    pos = np.clip(np.searchsorted(reference, names.astype(str)), 0, max(len(reference) - 1, 0))
    known = reference[pos] == names.astype(str) if len(reference) else np.zeros(0, bool)
    return np.asarray(np.where(known, pos, -1)[codes], dtype=np.int64)


def group_ids(*keys: NDArray[Any]) -> tuple[Ints, NDArray[np.object_]]:
    """Dense integer ids for the combination of columns, and the distinct keys
    (the columns' values joined by ``\\x1f``), in sorted order of the keys."""
    if not keys or keys[0].size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=object)
    coded = [factorize(k) for k in keys]
    combined = np.zeros(keys[0].shape[0], dtype=np.int64)
    for codes, distinct in coded:
        combined = combined * max(len(distinct), 1) + codes
    seen, ids = dense_unique(combined)
    parts = []
    for _codes, distinct in reversed(coded):
        size = max(len(distinct), 1)
        parts.append(np.asarray(distinct, dtype=object)[seen % size].astype(str))
        seen = seen // size
    joined = parts[-1]
    for part in reversed(parts[:-1]):
        joined = np.char.add(np.char.add(joined, "\x1f"), part)
    return ids, np.asarray(joined, dtype=object)


def dense_unique(values: Ints) -> tuple[Ints, Ints]:
    """``np.unique(values, return_inverse=True)`` for non-negative ints; without a sort when
    the values span a range not much larger than their count (the usual case here)."""
    top = int(values.max()) + 1 if values.size else 0
    if top > 4 * values.size + 1_000_000:
        seen, ids = np.unique(values, return_inverse=True)
        return np.asarray(seen, dtype=np.int64), np.asarray(ids.reshape(-1), dtype=np.int64)
    present = np.zeros(top, dtype=np.bool_)
    present[values] = True
    remap = np.cumsum(present, dtype=np.int64) - 1
    return np.flatnonzero(present).astype(np.int64), remap[values]


def fold_of_groups(groups: Ints, folds: int, seed: int = 0) -> Ints:
    """Assign whole groups to folds at random, so no group is in train and test at once."""
    n_groups = int(groups.max()) + 1 if groups.size else 0
    order = np.random.default_rng(seed).permutation(n_groups)
    return (order % folds)[groups]


MIN_CV_GROUPS = 2
"""Cross-validation needs a group to train on besides the one held out."""


def grouped_cv_predictions(fit: FitFn, groups: Ints, folds: int = 5) -> Floats:
    """Out-of-fold predictions for every row: each row predicted by a model that never saw
    its group (a GPU, a job, or a block of time). All NaN with fewer than
    :data:`MIN_CV_GROUPS` groups: a fold would train on nothing, and a model fitted on
    nothing predicts 0 W, which reads as a 100 % error that was never measured."""
    out = np.full(groups.shape[0], np.nan)
    present, dense = dense_unique(groups) if groups.size else (groups, groups)
    if present.size < MIN_CV_GROUPS:
        return out
    # Dense codes: with at least as many groups as folds, every fold holds one and none all.
    fold = fold_of_groups(dense, max(2, min(folds, present.size)))
    for k in np.unique(fold):
        test = fold == k
        predictor = fit(~test)
        out[test] = predictor(test)
    return out


def error_summary(truth: Floats, predicted: Floats, unit: str) -> dict[str, float]:
    """Mean absolute, root-mean-square and relative error over rows where both are known."""
    ok = np.isfinite(truth) & np.isfinite(predicted)
    if not ok.any():
        return {}
    diff = predicted[ok] - truth[ok]
    scale = np.maximum(np.abs(truth[ok]), 1e-9)
    return {
        f"mae_{unit}": float(np.mean(np.abs(diff))),
        f"rmse_{unit}": float(np.sqrt(np.mean(diff * diff))),
        "mape_pct": float(100.0 * np.mean(np.abs(diff) / scale)),
    }


def time_blocks(time_ns: Ints, block_s: float) -> Ints:
    """Index of the contiguous time block each row falls in (for time-blocked CV)."""
    if time_ns.size == 0:
        return np.zeros(0, dtype=np.int64)
    blocks = (time_ns - time_ns.min()) // int(block_s * 1e9)
    return np.asarray(blocks, dtype=np.int64)


def subsample(mask: Bools, limit: int, seed: int = 0) -> Bools:
    """At most ``limit`` of the selected rows, drawn uniformly (fits stay fast on big fleets).

    The draw picks ranks among the selected rows, and each rank's row is found a slice at a
    time: an index of every selected row is 110 MiB on a day of 10,000 GPUs."""
    count = int(np.count_nonzero(mask))
    if count <= limit:
        return mask
    ranks = np.sort(np.random.default_rng(seed).choice(count, size=limit, replace=False))
    out = np.zeros_like(mask)
    seen = 0
    for begin in range(0, mask.size, SLICE_ROWS):
        rows = np.flatnonzero(mask[begin : begin + SLICE_ROWS])
        low, high = np.searchsorted(ranks, [seen, seen + rows.size])
        out[begin + rows[ranks[low:high] - seen]] = True
        seen += rows.size
    return out


def join_column(left: Series, right: Series, name: str, on: tuple[str, ...] = ("host",)) -> Floats:
    """``right``'s column ``name`` for each row of ``left`` with the same ``on`` tags and time
    bucket (NaN where ``right`` has no such row; the last one where it has several)."""
    if len(right) == 0 or len(left) == 0:
        return np.full(len(left), np.nan)
    keys = [np.concatenate([tag(right, t), tag(left, t)]) for t in on]
    ids = group_codes(*keys)
    buckets = _bucket_index(np.concatenate([right.time_ns, left.time_ns]))
    combined = ids * (int(buckets.max()) + 1) + buckets
    codes_right, codes_left = combined[: len(right)], combined[len(right) :]
    if int(combined.max()) < 4 * combined.size + 1_000_000:
        row = np.full(int(combined.max()) + 1, -1, dtype=np.int64)
        row[codes_right] = np.arange(len(right))
        found_row = row[codes_left]
        values = column(right, name)
        return np.where(found_row >= 0, values[np.maximum(found_row, 0)], np.nan)
    order = np.argsort(codes_right, kind="stable")
    sorted_codes = codes_right[order]
    pos = np.clip(np.searchsorted(sorted_codes, codes_left), 0, len(right) - 1)
    found = sorted_codes[pos] == codes_left
    return np.where(found, column(right, name)[order][pos], np.nan)


def offsets_gcd(time_ns: np.ndarray, first: int) -> int:
    """The greatest common divisor of the stamps' offsets from ``first``: their bucket width."""
    out = 0
    for begin in range(0, len(time_ns), SLICE_ROWS):
        out = int(np.gcd(out, np.gcd.reduce(time_ns[begin : begin + SLICE_ROWS] - first)))
    return out


def _bucket_index(time_ns: Ints) -> Ints:
    """Index of each time stamp on the grid its stamps share (bucket starts are multiples of
    the bucket width, so the greatest common divisor of their offsets is that width)."""
    if time_ns.size == 0:
        return np.zeros(0, dtype=np.int64)
    first = int(time_ns.min())
    step = offsets_gcd(time_ns, first)
    offsets = time_ns - first
    return np.asarray(offsets // step if step > 0 else offsets, dtype=np.int64)


def take(series: Series, rows: Bools | Ints) -> Series:
    """The selected rows of every column (a copy; cheap for the subsamples fits use)."""
    return Series(
        series.time_ns[rows],
        {k: v[rows] for k, v in series.tags.items()},
        {k: v[rows] for k, v in series.values.items()},
    )
