"""Answers that come a column at a time become the rows the other stores give."""

from __future__ import annotations

import numpy as np
import pytest

from wattwise.optimizer.store.columns import ColumnAssembler
from wattwise.optimizer.store.frames import Column, SeriesSpec

SPEC = SeriesSpec(
    "gpu",
    ("host", "gpu"),
    (Column("power_w", "power_w", "mean"), Column("temp_c", "temp_c", "mean"),
     Column("sm_active_pct", "sm_active_pct", "mean")),
)  # fmt: skip


def _ns(*seconds: int) -> np.ndarray:
    return np.array(seconds, dtype=np.int64) * 1_000_000_000


def test_rows_are_ordered_by_tags_then_time_with_nan_where_a_column_had_nothing() -> None:
    assembler = ColumnAssembler(SPEC)
    assembler.add(1, ("n2", "0"), _ns(60, 120), np.array([40.0, 41.0]))
    assembler.add(0, ("n1", "0"), _ns(120), np.array([300.0]))  # a later span, first
    assembler.add(0, ("n1", "0"), _ns(0, 60), np.array([100.0, 200.0]))
    assembler.add(0, ("n2", "0"), _ns(60), np.array([500.0]))
    series = assembler.series()
    assert list(series.tags["host"]) == ["n1", "n1", "n1", "n2", "n2"]
    assert series.time_ns.tolist() == _ns(0, 60, 120, 60, 120).tolist()
    assert series.values["power_w"][:4].tolist() == [100.0, 200.0, 300.0, 500.0]
    assert np.isnan(series.values["power_w"][4])  # n2 at 120 s had a temperature only
    assert np.isnan(series.values["temp_c"][:3]).all()
    assert series.values["temp_c"][3:].tolist() == [40.0, 41.0]


def test_a_column_no_answer_had_is_nan_and_shared_read_only() -> None:
    assembler = ColumnAssembler(SPEC)
    assembler.add(0, ("n1", "0"), _ns(0, 60), np.array([1.0, 2.0]))
    series = assembler.series()
    empty = series.values["sm_active_pct"]
    assert np.isnan(empty).all() and len(empty) == 2
    with pytest.raises(ValueError, match="read-only"):
        empty[0] = 1.0  # nothing downstream may write into what nobody measured


def test_no_answers_give_empty_columns() -> None:
    series = ColumnAssembler(SPEC).series()
    assert len(series) == 0
    assert list(series.values) == ["power_w", "temp_c", "sm_active_pct"]
    assert list(series.tags) == ["host", "gpu"]
