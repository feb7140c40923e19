"""The real H100 telemetry as the optimizer sees it: ``gpu_series`` frames of bucket means.

:func:`h100_series` cuts the 10 Hz file on a time grid, as a store's ``GROUP BY time``
does. :func:`h100_phase_series` cuts each phase on its own, so that every bucket holds
one workload and a phase can be held out whole.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wattwise.collector.sim.calibrate import phase_runs, sm_occupancy
from wattwise.optimizer.models.backtest import leave_one_group_out
from wattwise.optimizer.models.common import error_summary, take
from wattwise.optimizer.telemetry import Series

DATA = Path(__file__).resolve().parent.parent / "data" / "h100" / "h100_telemetry_10hz.csv"
MODEL = "NVIDIA H100 80GB HBM3"
REASON_SW_POWER_CAP = 0x4
SETTLE_S = 1.0
"""``power_w`` is a 1 s trailing average: a phase's first second still carries the last."""
_COLUMNS = {
    "power_w": "power_w",
    "util_gpu_pct": "util_gpu",
    "util_mem_pct": "util_mem",
    "sm_clock_mhz": "sm_mhz",
    "mem_clock_mhz": "mem_mhz",
    "power_limit_w": "limit_w",
    "enforced_limit_w": "limit_w",
    "temp_c": "temp_c",
}


def _rows() -> list[dict[str, str]]:
    with DATA.open() as f:
        return list(csv.DictReader(f))


def h100_series(bucket_s: float = 1.0) -> tuple[Series, np.ndarray]:
    """The 10 Hz file averaged into ``bucket_s`` buckets, and each bucket's phase name."""
    rows = _rows()
    t = np.array([float(r["t"]) for r in rows])
    bucket = np.floor(t / bucket_s).astype(np.int64)
    _, index, inverse = np.unique(bucket, return_index=True, return_inverse=True)
    phases = np.array([rows[i]["phase"] for i in index], dtype=object)
    return _series(rows, inverse, np.unique(bucket) * bucket_s), phases


def h100_phase_series(bucket_s: float, settle_s: float = SETTLE_S) -> tuple[Series, np.ndarray]:
    """Each phase's rows after its first ``settle_s`` seconds, cut into ``bucket_s`` buckets
    from there; a remainder shorter than half a bucket joins the bucket before it. Returns
    the frame and each bucket's phase name."""
    bucket_of_row: list[int] = []
    kept: list[dict[str, str]] = []
    starts_s: list[float] = []
    phases: list[str] = []
    for run in phase_runs(_rows()):
        t = np.array([float(r["t"]) for r in run])
        begin = t[0] + settle_s
        span = t[-1] - begin
        buckets = max(int(span // bucket_s) + (span % bucket_s >= bucket_s / 2), 1)
        for row, when in zip(run, t, strict=True):
            if when < begin:
                continue
            k = min(int((when - begin) // bucket_s), buckets - 1)
            kept.append(row)
            bucket_of_row.append(len(starts_s) + k)
        starts_s += [begin + k * bucket_s for k in range(buckets)]
        phases += [run[-1]["phase"]] * buckets
    codes = np.array(bucket_of_row)
    present, inverse = np.unique(codes, return_inverse=True)
    return _series(kept, inverse, np.array(starts_s)[present]), np.array(phases, object)[present]


def _series(rows: list[dict[str, str]], inverse: np.ndarray, start_s: np.ndarray) -> Series:
    counts = np.bincount(inverse).astype(np.float64)

    def mean(values: np.ndarray) -> np.ndarray:
        return np.asarray(np.bincount(inverse, weights=values) / counts, dtype=np.float64)

    reasons = np.array([int(r["clock_event_reasons"]) for r in rows])
    n = start_s.size
    return Series(
        time_ns=np.round(start_s * 1e9).astype(np.int64),
        tags={
            "host": np.full(n, "h100-node", dtype=object),
            "gpu": np.full(n, "0", dtype=object),
            "model": np.full(n, MODEL, dtype=object),
        },
        values={
            **{
                name: mean(np.array([float(r[source]) for r in rows]))
                for name, source in _COLUMNS.items()
            },
            "capped_share": mean(((reasons & REASON_SW_POWER_CAP) > 0).astype(np.float64)),
        },
    )


def with_sm_activity_stand_in(series: Series, phases: np.ndarray) -> Series:
    """``series`` with ``sm_active_pct`` derived, not measured: a STAND-IN for GPM's SM
    activity, which this file does not have. As the twin's calibration derives it
    (``collector/sim/calibrate.py``): utilization × the share of the 132 SMs a matmul's
    128×128 output tiles occupy; 0 for the copy and when idle (its kernel does no arithmetic;
    GPM's ``sm_active`` would count the copy kernel's resident warps, its tensor and FP pipe
    activities would be near 0)."""
    occupancy = np.array([_occupancy(str(p)) for p in phases])
    active = series.values["util_gpu_pct"] * occupancy
    return Series(series.time_ns, series.tags, {**series.values, "sm_active_pct": active})


def _occupancy(phase: str) -> float:
    kind, _, rest = phase.partition(":")
    return sm_occupancy(int(rest.split(":")[0])) if kind == "matmul" else 0.0


FIT_EVERY_S = 1.0
SCORE_EVERY_S = 10.0
BUSY_UTIL_PCT = 5.0


@dataclass(frozen=True)
class PhaseCheck:
    """The power model and its baselines scored leave-one-phase-out on the H100 file."""

    phases: tuple[str, ...]
    """In the file's order."""
    busy: tuple[bool, ...]
    """Whether the phase ran work (mean utilization at least :data:`BUSY_UTIL_PCT`)."""
    measured_w: tuple[float, ...]
    """Each phase's mean of its buckets' measured power."""
    predicted_w: dict[str, tuple[float, ...]]
    """Per predictor, each phase's mean of its buckets' predicted power."""
    errors: dict[str, dict[str, float]]
    """Per predictor, MAPE and MAE over every scored bucket."""
    buckets: int

    def phase_error(self, predictor: str) -> np.ndarray:
        """Each phase's mean predicted power relative to its measured mean, less 1."""
        predicted, measured = np.array(self.predicted_w[predictor]), np.array(self.measured_w)
        return np.asarray(predicted / measured - 1.0, dtype=np.float64)


def h100_power_check(
    *,
    sm_stand_in: bool,
    fit_every_s: float = FIT_EVERY_S,
    score_every_s: float = SCORE_EVERY_S,
    without: tuple[str, ...] = (),
) -> PhaseCheck:
    """Fit on ``fit_every_s`` buckets of every phase but one, score that phase's
    ``score_every_s`` buckets, for each phase in turn; with ``sm_stand_in`` the derived SM
    activity (:func:`with_sm_activity_stand_in`) is one of the inputs. Phases named in
    ``without`` are left out of the file altogether."""
    fit_rows, fit_phases = _without(h100_phase_series(fit_every_s), without)
    scored, phases = _without(h100_phase_series(score_every_s), without)
    if sm_stand_in:
        fit_rows = with_sm_activity_stand_in(fit_rows, fit_phases)
        scored = with_sm_activity_stand_in(scored, phases)
    predicted = leave_one_group_out(fit_rows, fit_phases, scored, phases)
    power = scored.values["power_w"]
    order = tuple(dict.fromkeys(str(p) for p in phases))
    util = scored.values["util_gpu_pct"]

    def per_phase(values: np.ndarray) -> tuple[float, ...]:
        return tuple(float(values[phases == p].mean()) for p in order)

    return PhaseCheck(
        phases=order,
        busy=tuple(u >= BUSY_UTIL_PCT for u in per_phase(util)),
        measured_w=per_phase(power),
        predicted_w={name: per_phase(values) for name, values in predicted.items()},
        errors={
            name: {k: v for k, v in error_summary(power, values, "w").items() if k != "rmse_w"}
            for name, values in predicted.items()
        },
        buckets=len(scored),
    )


def _without(
    frame: tuple[Series, np.ndarray], phases: tuple[str, ...]
) -> tuple[Series, np.ndarray]:
    series, names = frame
    keep = ~np.isin(names, phases)
    return take(series, keep), names[keep]
