"""Scoring the power model on rows it never saw: time splits, groups held out, and the
per-workload errors by job or by utilization band."""

from __future__ import annotations

import numpy as np

from tests.optimizer.h100 import MODEL, h100_phase_series
from wattwise.optimizer.models.backtest import (
    NO_JOB,
    backtest,
    leave_one_group_out,
    predict_held_out,
)
from wattwise.optimizer.models.common import take
from wattwise.optimizer.telemetry import Series

MINUTE_NS = 60 * 10**9
LAUNCH_BOUND = "matmul:1024:duty=1.00"


def _fleet(model: str = "GPU-X", minutes: int = 40, gpus: int = 2) -> Series:
    """GPUs whose power is 80 W + 4 W per % of utilization, utilization cycling 0..90 %."""
    n = minutes * gpus
    minute = np.repeat(np.arange(minutes), gpus)
    util = ((minute * 7 + np.tile(np.arange(gpus), minutes) * 13) % 91).astype(np.float64)
    return Series(
        minute * MINUTE_NS,
        {
            "host": np.full(n, "node-1", dtype=object),
            "gpu": np.tile(np.arange(gpus).astype(str), minutes).astype(object),
            "model": np.full(n, model, dtype=object),
        },
        {
            "power_w": 80.0 + 4.0 * util,
            "util_gpu_pct": util,
            "util_mem_pct": 0.3 * util,
            "sm_clock_mhz": np.full(n, 1980.0),
            "temp_c": np.full(n, 50.0),
            "capped_share": np.zeros(n),
            "enforced_limit_w": np.full(n, 700.0),
        },
    )


def _jobs(gpus: Series, job: str, first_minute: int) -> Series:
    """``job`` on GPU 0 from ``first_minute`` on (a ``job_series`` frame)."""
    rows = (gpus.tags["gpu"] == "0") & (gpus.time_ns >= first_minute * MINUTE_NS)
    n = int(rows.sum())
    return Series(
        gpus.time_ns[rows],
        {
            "host": gpus.tags["host"][rows],
            "gpu": gpus.tags["gpu"][rows],
            "job": np.full(n, job, dtype=object),
        },
        {"power_w": gpus.values["power_w"][rows]},
    )


def _series(*parts: Series) -> Series:
    return Series(
        np.concatenate([p.time_ns for p in parts]),
        {k: np.concatenate([p.tags[k] for p in parts]) for k in parts[0].tags},
        {k: np.concatenate([p.values[k] for p in parts]) for k in parts[0].values},
    )


def test_backtest_scores_only_rows_after_the_split_per_gpu_model() -> None:
    gpus = _fleet()
    (result,) = backtest(gpus, Series(np.zeros(0, dtype=np.int64)), 30 * MINUTE_NS)
    assert (result.kind, result.gpu_model) == ("power", "GPU-X")
    assert (result.train_samples, result.samples) == (60, 20)
    assert result.mape_pct is not None and result.mape_pct < 1.0  # the line is learnable
    assert result.mae_w is not None and result.mae_w < 3.0
    assert {"util_only", "boosting"} == result.baselines.keys()


def test_without_jobs_the_workloads_are_utilization_bands() -> None:
    gpus = _fleet()
    (result,) = backtest(gpus, Series(np.zeros(0, dtype=np.int64)), 30 * MINUTE_NS)
    assert result.workloads_by == "utilization"
    assert sum(w.samples for w in result.workloads) == result.samples
    assert {w.workload for w in result.workloads} <= {"idle (<5 %)", "5-40 %", "40-70 %", ">=70 %"}


def test_with_jobs_the_workloads_are_jobs_and_the_rest_no_job() -> None:
    gpus = _fleet()
    (result,) = backtest(gpus, _jobs(gpus, "slurm-4711", 20), 30 * MINUTE_NS)
    assert result.workloads_by == "job"
    by_name = {w.workload: w for w in result.workloads}
    assert by_name.keys() == {"slurm-4711", NO_JOB}
    assert by_name["slurm-4711"].samples == by_name[NO_JOB].samples == 10
    job = by_name["slurm-4711"]
    assert abs(job.predicted_w - job.measured_w) < 3.0


def test_a_gpu_model_seen_only_after_the_split_is_reported_not_guessed() -> None:
    later = _fleet("GPU-NEW")
    later = take(later, later.time_ns >= 30 * MINUTE_NS)
    results = backtest(
        _series(_fleet(), later), Series(np.zeros(0, dtype=np.int64)), 30 * MINUTE_NS
    )
    new = next(r for r in results if r.gpu_model == "GPU-NEW")
    assert new.train_samples == 0 and new.samples == 0
    assert new.mape_pct is None and new.mae_w is None
    assert "no telemetry of this GPU model before the split" in new.note


def test_predict_held_out_leaves_rows_of_an_unseen_gpu_model_nan() -> None:
    predicted = predict_held_out(_fleet(), _fleet("GPU-NEW", minutes=3))
    for values in predicted.values():
        assert np.isnan(values).all()


def test_a_held_out_phase_is_predicted_by_a_fit_that_never_saw_it() -> None:
    # Fitted with the launch-bound matmul in, the fit bends toward it (466 W for 314 W);
    # held out, nothing pulls it down from a full matmul's share (540 W).
    fine, fine_phases = h100_phase_series(1.0)
    coarse, phases = h100_phase_series(10.0)
    held = phases == LAUNCH_BOUND
    measured = coarse.values["power_w"][held].mean()
    out = leave_one_group_out(fine, fine_phases, coarse, phases)["model"][held].mean()
    seen = predict_held_out(fine, take(coarse, held))["model"].mean()
    assert measured < seen < out - 50.0
    assert set(np.unique(coarse.tags["model"])) == {MODEL}
