"""Power demand per GPU model: what the work would draw with no power limit, from what it does.

Per row (means of one time bucket), with ``u`` = GPU utilization, ``m`` = memory
utilization, ``a_k`` = each GPM activity present (SM activity, occupancy, DRAM,
tensor and FP pipes; all 0..1), ``T`` = GPU temperature and ``x`` = SM clock / the
model's top clock::

    demand ≈ β0 + β1·x³ + β2·(T − 40 °C) + β3·u + β4·m + Σ γk·a_k

- ``x³`` is the clock tree's power at idle (voltage follows the clock, so f·V² ≈ f³):
  the H100 draws ~75 W with its clocks down and ~130 W with them up at 0 %
  utilization. The clock enters only where the limit did not act (capped share 0):
  there the driver chose it, not the limit. Where the limit acted the clock is its
  outcome, and demand is what the work draws at the top clock, so ``x = 1``.
- ``T`` enters as leakage, its coefficient bounded to [0, 0.2 % of the model's top
  power per °C] (the H100 leaks ~1 W/°C, 0.15 % of 700 W). A GPU's temperature follows
  its power within seconds: left free, the fit reads temperature as a power meter
  (3.8 W/°C on the H100 data), which says the same work draws more in a warmer aisle.
- The coefficients of ``x³``, ``u`` and the GPM activities are non-negative; ``m`` is
  free (with NVML alone, busy time spent on memory draws less than busy time computing).
- Buckets held at the limit (capped share > 0 and power within 3 % of the enforced
  limit) are censored: demand is at least what was drawn, so they count in the fit
  only while the model predicts less than that (a squared hinge). They never teach
  the model that power falls as the clock rises.

The prediction of *measured* power is ``min(demand, enforced limit)``. Bursty work
whose mean is below the limit but whose bursts are capped within the second is fitted
on its measured mean (not censored): a sensible mean-power prediction; how the cap
shapes such work is the cap-response model's part.

GPM columns are used when present in at least half of a model's rows; rows without
them are predicted by the NVML-only fit stored beside. A utilization-only line and a
gradient-boosting regressor on utilization, memory utilization, SM clock and
temperature (scikit-learn's ``HistGradientBoostingRegressor``, defaults) are
cross-validated beside the model on the same groups, so the gain is measured, not
claimed. Errors are cross-validated with whole groups (GPUs, or blocks of time for
one GPU) held out; with fewer than two groups there is no error, and the notes say so.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from wattwise.optimizer.models.censored import censored_fit
from wattwise.optimizer.models.common import (
    MIN_CV_GROUPS,
    Bools,
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
from wattwise.optimizer.models.power_baselines import (
    MAX_BASELINE_ROWS,
    boosting_predictions,
    fit_util_only,
    util_only_predictions,
)
from wattwise.optimizer.telemetry import Floats, Series

NVML_TERMS = ("1", "x³", "T−40", "u", "m")
GPM_COLUMNS = (
    "sm_active_pct",
    "sm_occupancy_pct",
    "dram_active_pct",
    "tensor_active_pct",
    "fp64_active_pct",
    "fp32_active_pct",
    "fp16_active_pct",
)
"""NVML's GPU Performance Monitoring activities (0..100 %), where the GPU measures them."""
TEMP_REF_C = 40.0
HELD_AT_LIMIT = 0.97
"""A capped bucket drawing at least this share of its enforced limit is censored."""
LEAK_MAX_PER_C = 0.002
"""Upper bound of the leakage coefficient, as a share of the model's top power per °C."""
MIN_GPM_SHARE = 0.5
MAX_FIT_ROWS = 200_000
"""Rows per GPU model used to fit; a linear model of a dozen terms is settled long before."""
TOP_CLOCK_QUANTILE = 99.5
VERSION = 2


@dataclass(frozen=True)
class PowerModel:
    """Uncapped power demand of one GPU model, and the power it is measured at."""

    gpu_model: str
    top_clock_mhz: float
    gpm_inputs: tuple[str, ...]
    """The GPM columns the model uses (none where the GPUs do not report them)."""
    coef: Floats
    """Coefficients of :data:`NVML_TERMS` followed by ``gpm_inputs``."""
    nvml_coef: Floats
    """Coefficients of :data:`NVML_TERMS` alone, for rows without the GPM inputs."""
    util_only_coef: Floats
    idle_power_w: float
    """Median power of idle buckets (utilization below 1 %)."""
    envelope_w: tuple[float, float]
    """The 1st and 99th percentile of observed power."""
    util_only_errors: dict[str, float]
    boosting_errors: dict[str, float]
    """Cross-validated errors of the gradient-boosting baseline."""
    nvml_only_errors: dict[str, float]
    """Cross-validated errors of the NVML-only fit (empty when it is the model)."""
    info: ModelInfo

    def demand_w(self, series: Series) -> Floats:
        """What each row's work would draw with no limit (NaN where an input is missing)."""
        return _demand(series, self.top_clock_mhz, self.gpm_inputs, self.coef, self.nvml_coef)

    def predict(self, series: Series) -> Floats:
        """Measured power: the demand, held at the enforced limit where it exceeds it."""
        return _measured(series, self.demand_w(series))

    def predict_util_only(self, series: Series) -> Floats:
        return util_only_predictions(series, self.util_only_coef)


def fit_power_models(
    series: Series, *, folds: int = 5, block_s: float = 600.0, cross_validate: bool = True
) -> dict[str, PowerModel]:
    """One :class:`PowerModel` per GPU model found in ``series`` (a ``gpu_series`` frame).

    CV groups are GPUs when there are at least ``folds`` of a model, else blocks of
    ``block_s`` seconds of time. ``cross_validate=False`` skips the errors (a caller that
    scores the models on held-out data itself).
    """
    codes, names = factorize(tag(series, "model", "unknown"))
    # Row masks first, so the per-row codes are freed before the fits allocate.
    masks = {str(name): codes == code for code, name in enumerate(names)}
    del codes
    return {
        name: _fit_one(series, mask, name, folds, block_s, cross_validate)
        for name, mask in masks.items()
    }


def _fit_one(
    series: Series, mask: Bools, name: str, folds: int, block_s: float, cross_validate: bool
) -> PowerModel:
    top = _top_clock(series, mask)
    usable = mask & np.isfinite(column(series, "power_w"))
    for needed in ("util_gpu_pct", "util_mem_pct", "sm_clock_mhz"):
        usable &= np.isfinite(column(series, needed))
    # Build designs only for the rows the fit uses: a fleet-day is millions of rows.
    rows = take(series, subsample(usable, MAX_FIT_ROWS))
    power = column(rows, "power_w")
    gpm = _gpm_inputs(rows)
    leak_max = LEAK_MAX_PER_C * _top_power(rows)
    coef, nvml_coef = _fit_coefs(rows, top, gpm, leak_max)
    util_coef = fit_util_only(rows)
    errors: dict[str, dict[str, float]] = {"model": {}, "util": {}, "boosting": {}, "nvml": {}}
    groups = _cv_groups(rows, folds, block_s)
    n_groups = int(np.unique(groups).size)
    if cross_validate and n_groups >= MIN_CV_GROUPS:
        errors = _cv_errors(rows, groups, folds, top, gpm, leak_max)
    start, end = window_of(series, usable)
    idle = column(rows, "util_gpu_pct") < 1.0
    info = ModelInfo(
        kind="power",
        scope=name,
        version=VERSION,
        window_start_ns=start,
        window_end_ns=end,
        samples=int(usable.sum()),
        errors=errors["model"],
        notes=_notes(rows, top, gpm, folds, n_groups, cross_validate),
    )
    return PowerModel(
        gpu_model=name,
        top_clock_mhz=top,
        gpm_inputs=gpm,
        coef=coef,
        nvml_coef=nvml_coef,
        util_only_coef=util_coef,
        idle_power_w=float(np.median(power[idle])) if idle.any() else float("nan"),
        envelope_w=(float(np.percentile(power, 1)), float(np.percentile(power, 99)))
        if power.size
        else (float("nan"), float("nan")),
        util_only_errors=errors["util"],
        boosting_errors=errors["boosting"],
        nvml_only_errors=errors["nvml"] if gpm else {},
        info=info,
    )


def _notes(
    rows: Series, top: float, gpm: tuple[str, ...], folds: int, groups: int, cross_validate: bool
) -> str:
    inputs = "NVML" + (f" + GPM ({', '.join(gpm)})" if gpm else "")
    held = int(_held_at_limit(rows).sum())
    head = f"demand from {inputs}; {held} buckets held at the limit fitted as censored"
    if not cross_validate:
        return f"{head}; not cross-validated"
    if groups < MIN_CV_GROUPS:
        return f"{head}; too little data for cross-validation: {groups} block(s)"
    return (
        f"{head}; grouped {min(folds, groups)}-fold CV over {groups} groups on up to "
        f"{MAX_FIT_ROWS} rows; baselines in util_only_errors and boosting_errors"
    )


def _cv_errors(
    rows: Series, groups: Ints, folds: int, top: float, gpm: tuple[str, ...], leak_max: float
) -> dict[str, dict[str, float]]:
    def cv(
        predict: Callable[[Series, Series], Floats], among: Bools | None = None
    ) -> dict[str, float]:
        frame = rows if among is None else take(rows, among)

        def fit(train: Bools) -> Callable[[Bools], Floats]:
            trained = take(frame, train)
            return lambda test: predict(trained, take(frame, test))

        folded = groups if among is None else groups[among]
        predicted = grouped_cv_predictions(fit, folded, folds)
        return error_summary(column(frame, "power_w"), predicted, "w")

    def model(train: Series, test: Series) -> Floats:
        coef, nvml_coef = _fit_coefs(train, top, gpm, leak_max)
        return _measured(test, _demand(test, top, gpm, coef, nvml_coef))

    def nvml(train: Series, test: Series) -> Floats:
        coef, _ = _fit_coefs(train, top, (), leak_max)
        return _measured(test, _demand(test, top, (), coef, coef))

    def util(train: Series, test: Series) -> Floats:
        return util_only_predictions(test, fit_util_only(train))

    # The baseline is fitted and scored on a subsample: trees cost far more than a line.
    boosted = subsample(np.ones(len(rows), dtype=np.bool_), MAX_BASELINE_ROWS)
    return {
        "model": cv(model),
        "util": cv(util),
        "boosting": cv(boosting_predictions, boosted),
        "nvml": cv(nvml) if gpm else {},
    }


def _cv_groups(series: Series, folds: int, block_s: float) -> Ints:
    gpu_ids = group_codes(tag(series, "host"), tag(series, "gpu"))
    if np.unique(gpu_ids).size >= folds:
        return gpu_ids
    return time_blocks(series.time_ns, block_s)


def _top_clock(series: Series, mask: Bools) -> float:
    clock = column(series, "sm_clock_mhz")
    finite = clock[mask & np.isfinite(clock)]
    if not finite.size:
        return 1.0
    # finite is already a copy: let the percentile partition it instead of a second one.
    return float(np.percentile(finite, TOP_CLOCK_QUANTILE, overwrite_input=True))


def _top_power(rows: Series) -> float:
    limit = _limit(rows)
    if np.isfinite(limit).any():
        return float(np.nanmax(limit))
    power = column(rows, "power_w")
    return float(np.percentile(power, 99)) if power.size else 0.0


def _gpm_inputs(rows: Series) -> tuple[str, ...]:
    if not len(rows):
        return ()
    shares = {name: np.isfinite(column(rows, name)).mean() for name in GPM_COLUMNS}
    return tuple(name for name in GPM_COLUMNS if shares[name] >= MIN_GPM_SHARE)


def _fit_coefs(
    rows: Series, top: float, gpm: tuple[str, ...], leak_max: float
) -> tuple[Floats, Floats]:
    """Coefficients of the full design (rows with every GPM input) and of NVML alone."""
    power = column(rows, "power_w")
    censored = _held_at_limit(rows)
    nvml = _design(rows, top, ())
    nvml_coef = censored_fit(nvml, power, censored, _bounds((), leak_max))
    if not gpm:
        return nvml_coef, nvml_coef
    full = _design(rows, top, gpm)
    has = np.isfinite(full).all(axis=1)
    if has.sum() < 2 * full.shape[1]:
        return np.concatenate([nvml_coef, np.zeros(len(gpm))]), nvml_coef
    coef = censored_fit(full[has], power[has], censored[has], _bounds(gpm, leak_max))
    return coef, nvml_coef


def _bounds(gpm: tuple[str, ...], leak_max: float) -> tuple[Floats, Floats]:
    lower = np.array([0.0, 0.0, 0.0, 0.0, -np.inf] + [0.0] * len(gpm))
    upper = np.array([np.inf, np.inf, max(leak_max, 1e-9), np.inf, np.inf] + [np.inf] * len(gpm))
    return lower, upper


def _demand(
    series: Series, top: float, gpm: tuple[str, ...], coef: Floats, nvml_coef: Floats
) -> Floats:
    nvml = _design(series, top, ()) @ nvml_coef
    if not gpm:
        return np.asarray(nvml, dtype=np.float64)
    full = _design(series, top, gpm) @ coef
    return np.asarray(np.where(np.isfinite(full), full, nvml), dtype=np.float64)


def _measured(series: Series, demand: Floats) -> Floats:
    limit = _limit(series)
    return np.asarray(np.where(np.isfinite(limit), np.minimum(demand, limit), demand))


def _limit(series: Series) -> Floats:
    limit = column(series, "enforced_limit_w")
    return np.where(np.isfinite(limit), limit, column(series, "power_limit_w"))


def _capped(series: Series) -> Bools:
    return np.asarray(np.nan_to_num(column(series, "capped_share"), nan=0.0) > 0.0)


def _held_at_limit(series: Series) -> Bools:
    limit = _limit(series)
    near = column(series, "power_w") >= HELD_AT_LIMIT * np.where(np.isfinite(limit), limit, np.inf)
    return _capped(series) & near


def _design(series: Series, top_clock_mhz: float, gpm: tuple[str, ...]) -> Floats:
    """The terms of :data:`NVML_TERMS` and then ``gpm``, one row per bucket."""
    x = np.where(_capped(series), 1.0, column(series, "sm_clock_mhz") / top_clock_mhz)
    # No temperature reading: no leakage term, rather than no prediction.
    warmer = np.nan_to_num(column(series, "temp_c") - TEMP_REF_C, nan=0.0)
    terms = [
        np.ones(len(series)),
        x**3,
        warmer,
        column(series, "util_gpu_pct") / 100.0,
        column(series, "util_mem_pct") / 100.0,
    ]
    terms += [column(series, name) / 100.0 for name in gpm]
    return np.column_stack(terms)
