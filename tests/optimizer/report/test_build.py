"""What the report gathers and sums, checked against the simulator's ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from tests.optimizer.report.conftest import Twin
from wattwise.optimizer.report.build import (
    HOURS_PER_MONTH,
    cumulative_kwh,
    gather,
    sum_per_bucket,
    summarize,
)
from wattwise.optimizer.service.engine import Engine
from wattwise.optimizer.telemetry import Series


def test_gpu_energy_over_the_window_matches_the_simulators_exact_energy(
    engine: Engine, twin: Twin
) -> None:
    summary = summarize(gather(engine, 3600.0))
    assert summary.gpu_energy_kwh == pytest.approx(twin.gpu_energy_j / 3.6e6, rel=0.02)
    assert (summary.gpu_count, summary.host_count) == (24, 6)
    # nodes draw more than their GPUs (CPUs, fans, memory), never less
    assert summary.node_energy_kwh > summary.gpu_energy_kwh


def test_savings_are_the_recommendations_own_and_a_month_is_730_hours(engine: Engine) -> None:
    data = gather(engine, 3600.0)
    summary = summarize(data)
    changes = [c for c in data.caps if c.recommended_limit_w not in (None, c.current_limit_w)]
    caps_w = sum(c.saving_w for c in changes)
    cooling_w = sum(c.saving_w for c in data.cooling)
    assert summary.saving_kw == pytest.approx((caps_w + cooling_w) / 1000.0)
    assert summary.saving_kwh_per_month == pytest.approx(summary.saving_kw * HOURS_PER_MONTH)
    assert summary.recommended_caps == len(changes)


def test_window_reads_only_the_last_since_seconds(engine: Engine, twin: Twin) -> None:
    data = gather(engine, 300.0)
    assert data.end_ns == twin.end_ns
    assert data.gpus.time_ns.min() >= twin.end_ns - 360 * 10**9
    assert len(np.unique(data.gpus.time_ns)) <= 6


def test_bucket_sum_skips_missing_values_and_marks_empty_buckets_missing() -> None:
    series = Series(
        np.array([0, 0, 60, 60], dtype=np.int64) * 10**9,
        {},
        {"power_w": np.array([100.0, np.nan, np.nan, np.nan])},
    )
    times = np.array([0, 60], dtype=np.int64) * 10**9
    total = sum_per_bucket(series, "power_w", times)
    assert total[0] == 100.0 and np.isnan(total[1])


def test_cumulative_energy_holds_each_buckets_power_for_the_bucket() -> None:
    kwh = cumulative_kwh(np.array([3600.0, np.nan, 7200.0]), every_s=1000)
    assert kwh == pytest.approx([1.0, 1.0, 3.0])
