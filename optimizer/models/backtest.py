"""The power model scored on telemetry it never saw: fitted before a split and scored after it
(a backtest), or fitted without one group and scored on that group (a phase, a job).

Beside the model, the same rows score its two baselines fitted the same way: a line in
utilization alone, and gradient boosting on utilization, memory utilization, SM clock and
temperature. Per workload, errors are given per job where ``gpu_job`` attributes the
scored rows to jobs (rows no job held are one group, ``(no job)``); without any
attribution, per band of GPU utilization (:data:`UTIL_BANDS`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from wattwise.optimizer.models.common import (
    Bools,
    column,
    error_summary,
    factorize,
    subsample,
    tag,
    take,
)
from wattwise.optimizer.models.job_rows import job_row_of_gpu_rows
from wattwise.optimizer.models.power import fit_power_models
from wattwise.optimizer.models.power_baselines import MAX_BASELINE_ROWS, boosting_predictions
from wattwise.optimizer.telemetry import Floats, Series

PREDICTORS = ("model", "util_only", "boosting")
UTIL_BANDS = ((0.0, 5.0, "idle (<5 %)"), (5.0, 40.0, "5-40 %"), (40.0, 70.0, "40-70 %"),
              (70.0, np.inf, ">=70 %"))  # fmt: skip
"""GPU utilization bands (lower bound included) for the per-workload errors without jobs."""
NO_JOB = "(no job)"


@dataclass(frozen=True)
class WorkloadError:
    """The model's error on the rows of one workload (a job, or a band of utilization)."""

    workload: str
    samples: int
    measured_w: float
    predicted_w: float
    mape_pct: float
    mae_w: float


@dataclass(frozen=True)
class BacktestResult:
    """One GPU model's power model fitted before the split and scored after it."""

    kind: str
    gpu_model: str
    samples: int
    """Rows scored after the split."""
    train_samples: int
    mape_pct: float | None
    mae_w: float | None
    baselines: dict[str, dict[str, float]] = field(default_factory=dict)
    """``util_only`` and ``boosting``: their ``mape_pct`` and ``mae_w`` on the same rows."""
    workloads_by: str = "job"
    workloads: tuple[WorkloadError, ...] = ()
    note: str = ""


def predict_held_out(train: Series, test: Series) -> dict[str, Floats]:
    """Each of :data:`PREDICTORS` fitted per GPU model on ``train``, predicting ``test``'s
    rows (NaN for rows of a GPU model ``train`` does not have)."""
    out = {name: np.full(len(test), np.nan) for name in PREDICTORS}
    if not len(train) or not len(test):
        return out
    models = fit_power_models(train, cross_validate=False)
    test_model, train_model = tag(test, "model", "unknown"), tag(train, "model", "unknown")
    for name, model in models.items():
        rows = test_model == name
        if not rows.any():
            continue
        part = take(test, rows)
        out["model"][rows] = model.predict(part)
        out["util_only"][rows] = model.predict_util_only(part)
        fit_rows = take(train, subsample(train_model == name, MAX_BASELINE_ROWS))
        out["boosting"][rows] = boosting_predictions(fit_rows, part)
    return out


def leave_one_group_out(
    fit_rows: Series, fit_groups: np.ndarray, scored: Series, scored_groups: np.ndarray
) -> dict[str, Floats]:
    """For each group of ``scored``: every predictor fitted on ``fit_rows`` outside that group
    and predicting the group's rows of ``scored`` (which may be bucketed differently)."""
    out = {name: np.full(len(scored), np.nan) for name in PREDICTORS}
    for group in np.unique(scored_groups):
        held = scored_groups == group
        predicted = predict_held_out(take(fit_rows, fit_groups != group), take(scored, held))
        for name in PREDICTORS:
            out[name][held] = predicted[name]
    return out


def backtest(gpus: Series, jobs: Series, split_ns: int) -> list[BacktestResult]:
    """Power models fitted on ``gpus`` rows before ``split_ns`` and scored on those from it
    on, per GPU model."""
    before = gpus.time_ns < split_ns
    train, test = take(gpus, before), take(gpus, ~before)
    predicted = predict_held_out(train, test)
    power = column(test, "power_w")
    labels, by = _workloads(jobs, test)
    train_model = tag(train, "model", "unknown")
    test_codes, names = factorize(tag(test, "model", "unknown"))
    results = []
    for code, name in enumerate(names):
        rows = (test_codes == code) & np.isfinite(power)
        trained = int((train_model == name).sum())
        results.append(_result(str(name), rows, trained, power, predicted, labels, by))
    return results


def _result(
    name: str,
    rows: Bools,
    trained: int,
    power: Floats,
    predicted: dict[str, Floats],
    labels: np.ndarray,
    by: str,
) -> BacktestResult:
    scored = rows & np.isfinite(predicted["model"])
    errors = error_summary(power[scored], predicted["model"][scored], "w")
    note = "" if trained else "no telemetry of this GPU model before the split"
    if trained and not scored.any():
        note = "no row after the split has the inputs the model needs"
    baselines = {
        key: _headline(error_summary(power[scored], predicted[key][scored], "w"))
        for key in PREDICTORS[1:]
    }
    return BacktestResult(
        kind="power",
        gpu_model=name,
        samples=int(scored.sum()),
        train_samples=trained,
        mape_pct=errors.get("mape_pct"),
        mae_w=errors.get("mae_w"),
        baselines={k: v for k, v in baselines.items() if v},
        workloads_by=by,
        workloads=_per_workload(power, predicted["model"], labels, scored),
        note=note,
    )


def _headline(errors: dict[str, float]) -> dict[str, float]:
    return {k: errors[k] for k in ("mape_pct", "mae_w") if k in errors}


def _workloads(jobs: Series, test: Series) -> tuple[np.ndarray, str]:
    """Each scored row's workload label, and what the labels are ("job" or "utilization")."""
    job_row = job_row_of_gpu_rows(jobs, test)
    if (job_row >= 0).any():
        job_ids = tag(jobs, "job").astype(str)
        labels = np.where(job_row >= 0, job_ids[np.maximum(job_row, 0)], NO_JOB)
        return labels.astype(object), "job"
    util = column(test, "util_gpu_pct")
    labels = np.full(len(test), "unknown utilization", dtype=object)
    for low, high, label in UTIL_BANDS:
        labels[(util >= low) & (util < high)] = label
    return labels, "utilization"


def _per_workload(
    power: Floats, predicted: Floats, labels: np.ndarray, scored: Bools
) -> tuple[WorkloadError, ...]:
    codes, names = factorize(labels[scored])
    truth, guess = power[scored], predicted[scored]
    out = []
    for code, name in enumerate(names):
        rows = codes == code
        errors = error_summary(truth[rows], guess[rows], "w")
        out.append(
            WorkloadError(
                workload=str(name),
                samples=int(rows.sum()),
                measured_w=float(truth[rows].mean()),
                predicted_w=float(guess[rows].mean()),
                mape_pct=errors["mape_pct"],
                mae_w=errors["mae_w"],
            )
        )
    return tuple(sorted(out, key=lambda w: (-w.samples, w.workload)))
