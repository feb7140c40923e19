"""The power model's baselines, fitted on measured power so its gain is measured, not claimed:
a line in GPU utilization alone, and scikit-learn's ``HistGradientBoostingRegressor``
(defaults) on utilization, memory utilization, SM clock and temperature."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from threadpoolctl import threadpool_limits

from wattwise.optimizer.models.common import column
from wattwise.optimizer.telemetry import Floats, Series

BOOSTING_INPUTS = ("util_gpu_pct", "util_mem_pct", "sm_clock_mhz", "temp_c")
MAX_BASELINE_ROWS = 10_000
"""Rows per GPU model the gradient-boosting baseline is fitted on (trees cost far more than a
line)."""


def boosting_predictions(train: Series, test: Series) -> Floats:
    """The gradient-boosting baseline fitted on ``train``'s measured power, for ``test``."""
    power = column(train, "power_w")
    ok = np.isfinite(power)
    if ok.sum() < 2:
        return np.full(len(test), np.nan)
    regressor = HistGradientBoostingRegressor(random_state=0)
    # One thread: the refit shares the process (and a few cores) with the API, and OpenMP
    # threads spinning against other work made this baseline 4x slower, not faster.
    with threadpool_limits(limits=1, user_api="openmp"):
        regressor.fit(_boosting_inputs(train)[ok], power[ok])
        predicted = regressor.predict(_boosting_inputs(test))
    return np.asarray(predicted, dtype=np.float64)


def _boosting_inputs(series: Series) -> Floats:
    return np.column_stack([column(series, name) for name in BOOSTING_INPUTS])


def fit_util_only(rows: Series) -> Floats:
    power = column(rows, "power_w")
    u = column(rows, "util_gpu_pct") / 100.0
    ok = np.isfinite(power) & np.isfinite(u)
    if not ok.any():
        return np.zeros(2)
    design = np.column_stack([np.ones(int(ok.sum())), u[ok]])
    coef, *_ = np.linalg.lstsq(design, power[ok], rcond=None)
    return np.asarray(coef, dtype=np.float64)


def util_only_predictions(series: Series, coef: Floats) -> Floats:
    u = column(series, "util_gpu_pct") / 100.0
    return np.asarray(coef[0] + coef[1] * u, dtype=np.float64)
