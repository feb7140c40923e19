"""Power versus load, per GPU model: a physically shaped linear regression.

Board power is static power plus dynamic power that grows with the SM clock
where kernels run, plus memory power; when the power cap holds the clock down
the board sits at its limit. The regression therefore uses, per row (means of
one time bucket), with ``u`` = GPU utilization, ``m`` = memory utilization
(0..1), ``x`` = SM clock / the model's top clock and ``c`` = capped share::

    P ≈ β0 + β1·u + β2·m + β3·u·x + β4·u·x³ + β5·c + β6·c·limit_w

A baseline with utilization alone (``P ≈ β0 + β1·u``) is fitted beside it, so
the gain from the other signals is measured, not claimed. Errors are
cross-validated with whole groups (GPUs, or blocks of time for one GPU) held
out, so they are the errors on telemetry the fit never saw.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from wattwise.optimizer.models.common import (
    Bools,
    FitFn,
    Ints,
    ModelInfo,
    column,
    error_summary,
    factorize,
    group_codes,
    grouped_cv_predictions,
    subsample,
    tag,
    take,
    time_blocks,
    window_of,
)
from wattwise.optimizer.telemetry import Floats, Series

FULL_FEATURES = ("1", "u", "m", "u·x", "u·x³", "c", "c·limit_w")
UTIL_FEATURES = ("1", "u")
MAX_FIT_ROWS = 200_000
"""Rows per GPU model used to fit; a linear model with 7 terms is settled long before."""
TOP_CLOCK_QUANTILE = 99.5
VERSION = 1


@dataclass(frozen=True)
class PowerModel:
    """Power of one GPU model as a function of utilization, clock and the cap."""

    gpu_model: str
    top_clock_mhz: float
    coef: Floats
    """Coefficients of :data:`FULL_FEATURES`."""
    util_only_coef: Floats
    idle_power_w: float
    """Median power of idle buckets (utilization below 1 %)."""
    envelope_w: tuple[float, float]
    """The 1st and 99th percentile of observed power."""
    util_only_errors: dict[str, float]
    info: ModelInfo

    def predict(self, series: Series) -> Floats:
        """Predicted power for each row of ``series`` (NaN where an input is missing)."""
        return _design(series, self.top_clock_mhz, FULL_FEATURES) @ self.coef

    def predict_util_only(self, series: Series) -> Floats:
        return _design(series, self.top_clock_mhz, UTIL_FEATURES) @ self.util_only_coef


def fit_power_models(
    series: Series, *, folds: int = 5, block_s: float = 600.0
) -> dict[str, PowerModel]:
    """One :class:`PowerModel` per GPU model found in ``series`` (a ``gpu_series`` frame).

    CV groups are GPUs when there are at least ``folds`` of a model, else blocks of
    ``block_s`` seconds of time.
    """
    codes, names = factorize(tag(series, "model", "unknown"))
    # Row masks first, so the per-row codes are freed before the fits allocate.
    masks = {str(name): codes == code for code, name in enumerate(names)}
    del codes
    return {name: _fit_one(series, mask, name, folds, block_s) for name, mask in masks.items()}


def _fit_one(series: Series, mask: Bools, name: str, folds: int, block_s: float) -> PowerModel:
    clock = column(series, "sm_clock_mhz")
    finite_clock = clock[mask & np.isfinite(clock)]
    # finite_clock is already a copy: let the percentile partition it instead of a second one.
    top = (
        float(np.percentile(finite_clock, TOP_CLOCK_QUANTILE, overwrite_input=True))
        if finite_clock.size
        else 1.0
    )
    del finite_clock
    usable = mask & np.isfinite(column(series, "power_w")) & np.isfinite(clock)
    for name_of_input in ("util_gpu_pct", "util_mem_pct"):
        usable &= np.isfinite(column(series, name_of_input))
    # Build the design only for the rows the fit uses: a fleet-day is millions of rows.
    fit_rows = take(series, subsample(usable, MAX_FIT_ROWS))
    power = column(fit_rows, "power_w")
    full = _design(fit_rows, top, FULL_FEATURES)
    util = _design(fit_rows, top, UTIL_FEATURES)
    everything = np.ones(len(fit_rows), dtype=np.bool_)
    groups = _cv_groups(fit_rows, everything, folds, block_s)
    full_cv = grouped_cv_predictions(_fitter(full, power, everything), groups, folds)
    util_cv = grouped_cv_predictions(_fitter(util, power, everything), groups, folds)
    start, end = window_of(series, usable)
    idle = column(fit_rows, "util_gpu_pct") < 1.0
    info = ModelInfo(
        kind="power",
        scope=name,
        version=VERSION,
        window_start_ns=start,
        window_end_ns=end,
        samples=int(usable.sum()),
        errors=error_summary(power, full_cv, "w"),
        notes=f"grouped {folds}-fold CV on up to {MAX_FIT_ROWS} rows; "
        "utilization-only baseline in util_only_errors",
    )
    return PowerModel(
        gpu_model=name,
        top_clock_mhz=top,
        coef=_least_squares(full, power),
        util_only_coef=_least_squares(util, power),
        idle_power_w=float(np.median(power[idle])) if idle.any() else float("nan"),
        envelope_w=(float(np.percentile(power, 1)), float(np.percentile(power, 99)))
        if power.size
        else (float("nan"), float("nan")),
        util_only_errors=error_summary(power, util_cv, "w"),
        info=info,
    )


def _cv_groups(series: Series, usable: Bools, folds: int, block_s: float) -> Ints:
    gpu_ids = group_codes(tag(series, "host"), tag(series, "gpu"))
    if np.unique(gpu_ids[usable]).size >= folds:
        return gpu_ids
    return time_blocks(series.time_ns, block_s)


def _fitter(design: Floats, power: Floats, usable: Bools) -> FitFn:
    rows = np.flatnonzero(usable)
    x_use, y_use = design[rows], power[rows]

    def fit(train: Bools) -> Callable[[Bools], Floats]:
        coef = _least_squares(x_use[train], y_use[train])

        def predict(test: Bools) -> Floats:
            return np.asarray(x_use[test] @ coef, dtype=np.float64)

        return predict

    return fit


def _least_squares(design: Floats, target: Floats) -> Floats:
    if target.size == 0:
        return np.zeros(design.shape[1])
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    return np.asarray(coef, dtype=np.float64)


def _design(series: Series, top_clock_mhz: float, features: tuple[str, ...]) -> Floats:
    u = column(series, "util_gpu_pct") / 100.0
    m = column(series, "util_mem_pct") / 100.0
    x = column(series, "sm_clock_mhz") / top_clock_mhz
    c = np.nan_to_num(column(series, "capped_share"), nan=0.0)
    limit = column(series, "enforced_limit_w")
    limit = np.where(np.isfinite(limit), limit, column(series, "power_limit_w"))
    terms = {
        "1": np.ones(len(series)),
        "u": u,
        "m": m,
        "u·x": u * x,
        "u·x³": u * x**3,
        "c": c,
        "c·limit_w": c * np.nan_to_num(limit, nan=0.0),
    }
    return np.column_stack([terms[f] for f in features])
