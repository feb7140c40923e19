"""Clock-dependent power of a GPU's work, and the voltage floor that shapes it.

Dynamic power goes as f·V² with the voltage linear in the clock above a floor
``v0``: relative to the top clock, ``φ(x) = x·(v0 + (1 − v0)·x)²``. The floor is
a property of the GPU model; it can be read from the fleet's own telemetry once
the same work has run under two or more enforced limits (which is what applying
caps produces), and only then.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wattwise.optimizer.models.common import Bools, column, dense_unique, subsample, tag_codes
from wattwise.optimizer.models.priors import CapPrior
from wattwise.optimizer.telemetry import Floats, Series

VOLTAGE_FLOOR_GRID = np.linspace(0.0, 1.0, 21)
MAX_GRID_ROWS = 200_000
MIN_EVIDENCE_ROWS = 10
MAX_GRID_CELLS_PER_ROW = 8
EVIDENCE_RATIO = 6.63
"""A fitted floor replaces the prior only when it removes at least this many noise variances
of squared residual (a likelihood-ratio test at 1 % for one parameter, χ²₁ = 6.63). Work
capped only a little moves the clock too little to tell floors apart: its best floor is
noise, and taking it swung the H100's floor between 0.6 and 1.0 on the twin (truth 0.9)."""


@dataclass(frozen=True)
class FloorFit:
    voltage_floor: float
    source: str
    """"fitted" when the telemetry identified the floor, else "prior"."""
    residual_w: float
    """RMS residual (W) of the clock-dependent power at the chosen floor; NaN without data."""


def phi(x: Floats, v0: Floats) -> Floats:
    v = v0 + (1.0 - v0) * x
    return np.asarray(x * v * v, dtype=np.float64)


def phi_inverse(y: Floats, v0: Floats) -> Floats:
    """Relative clock whose φ is ``y`` (Newton from ∛y, which lies at or above the root)."""
    x = np.cbrt(np.clip(y, 0.0, 1.0))
    for _ in range(8):
        v = v0 + (1.0 - v0) * x
        slope = v * v + 2.0 * x * (1.0 - v0) * v
        x = x - (x * v * v - y) / np.maximum(slope, 1e-12)
    return np.asarray(np.clip(x, 0.0, 1.0), dtype=np.float64)


def fit_voltage_floor(series: Series, mask: Bools, prior: CapPrior) -> FloorFit:
    """The floor under which each piece of work's clock-dependent power, per unit of busy
    time, is one constant at every limit it ran under (least squares in watts).

    A piece of work is one GPU at one rounded utilization and memory utilization. Fitting in
    watts rather than relative spread keeps work with little clock-dependent power (memory
    copies) from steering the floor with its noise.
    """
    ok = mask.copy()
    for name in ("enforced_limit_w", "util_gpu_pct", "util_mem_pct", "power_w", "sm_clock_mhz"):
        ok &= np.isfinite(column(series, name))
    rows = np.flatnonzero(ok)
    del ok
    no_fit = FloorFit(prior.voltage_floor, "prior", float("nan"))
    if rows.size == 0:
        return no_fit
    gpu_ids = tag_codes(series, ("host", "gpu"), rows)
    inside = _inside_busy_runs(gpu_ids, series.time_ns[rows])
    rows, gpu_ids = rows[inside], gpu_ids[inside]
    del inside
    if rows.size == 0:
        return no_fit
    # Similar work = same GPU at the same rounded utilizations; all grouped on integer codes
    # of the selected rows only (no rounded full-length columns, no copied tag columns).
    work_ids = _work_ids(series, rows, gpu_ids)
    del gpu_ids
    limits_seen = _distinct_per_group(work_ids, _rounded(series, "enforced_limit_w", rows, 10.0))
    multi = limits_seen[work_ids] >= 2
    if multi.sum() < MIN_EVIDENCE_ROWS:
        return no_fit
    # The grid search needs only a sample of the rows that can tell floors apart.
    keep = np.flatnonzero(subsample(multi, MAX_GRID_ROWS))
    sub = rows[keep]
    ids = dense_unique(work_ids[keep])[1]
    clock_power = column(series, "power_w")[sub] - base_w(series, sub, prior)
    busy = column(series, "util_gpu_pct")[sub] / 100.0
    x = column(series, "sm_clock_mhz")[sub] / prior.top_clock_mhz
    sse = np.array([_residual(ids, clock_power, busy * phi(x, v0)) for v0 in VOLTAGE_FLOOR_GRID])
    return _decide(sse, prior, sub.size - int(ids.max()) - 2)


def _residual(ids: np.ndarray, y: Floats, f: Floats) -> float:
    """Squared residual of ``y ≈ d_g·f`` with one least-squares ``d_g`` per group."""
    yf = np.bincount(ids, weights=y * f)
    ff = np.bincount(ids, weights=f * f)
    explained = np.divide(yf * yf, ff, out=np.zeros_like(yf), where=ff > 0)
    return float(np.sum(y * y) - np.sum(explained))


def _decide(sse: Floats, prior: CapPrior, dof: int) -> FloorFit:
    """The best floor when the data prefer it clearly over the prior's, else the prior."""
    best = int(np.argmin(sse))
    at_prior = int(np.argmin(np.abs(VOLTAGE_FLOOR_GRID - prior.voltage_floor)))
    if dof < 1:
        return FloorFit(prior.voltage_floor, "prior", float("nan"))
    noise = max(float(sse[best]) / dof, 0.0)
    gain = float(sse[at_prior] - sse[best])
    if best == at_prior or gain < EVIDENCE_RATIO * noise or gain <= 0.0:
        return FloorFit(prior.voltage_floor, "prior", float(np.sqrt(max(sse[at_prior], 0) / dof)))
    return FloorFit(float(VOLTAGE_FLOOR_GRID[best]), "fitted", float(np.sqrt(noise)))


def base_w(series: Series, rows: np.ndarray, prior: CapPrior) -> Floats:
    """Clock-independent power of ``rows``: static, leakage and memory."""
    temp = column(series, "temp_c")[rows]
    temp = np.where(np.isfinite(temp), temp, prior.leak_ref_temp_c)
    leak = prior.leak_w_per_c * (temp - prior.leak_ref_temp_c)
    mem = np.nan_to_num(column(series, "util_mem_pct")[rows] / 100.0, nan=0.0)
    return np.asarray(prior.static_w + leak + prior.memory_w * mem, dtype=np.float64)


def _inside_busy_runs(gpu_ids: np.ndarray, time_ns: np.ndarray) -> Bools:
    """Rows whose GPU was also busy in the bucket before and the bucket after (``time_ns``,
    a copy of the rows' time stamps, is consumed).

    A job's first and last buckets mix idle readings in: their mean clock lies between the
    idle and the busy clock while their power is mostly the job's, which no voltage floor
    explains. Checked on a bucket × GPU grid of bits (the size of the data when it is dense);
    data too sparse or irregular for such a grid is left as it is.
    """
    cell = time_ns
    cell -= cell.min()
    step = int(np.gcd.reduce(cell))
    buckets = int(cell.max()) // step + 3 if step > 0 else 0
    gpus = int(gpu_ids.max()) + 1
    if step <= 0 or gpus * buckets > MAX_GRID_CELLS_PER_ROW * cell.size + 1_000_000:
        return np.ones(cell.size, dtype=np.bool_)
    # Bucket-major cells, built in place: the bucket before a cell is ``gpus`` cells back.
    cell //= step
    cell += 1  # room for the bucket before the first
    cell *= gpus
    cell += gpu_ids
    busy = np.zeros(gpus * buckets, dtype=np.bool_)
    busy[cell] = True
    cell -= gpus
    inside = busy[cell]
    cell += 2 * gpus
    inside &= busy[cell]
    return np.asarray(inside, dtype=np.bool_)


def _rounded(series: Series, name: str, rows: np.ndarray, step: float) -> np.ndarray:
    """A column at ``rows`` rounded to multiples of ``step``, as integers (one copy, in place)."""
    values = column(series, name)[rows]
    values /= step
    np.rint(values, out=values)
    # Levels are small integers (utilization in 5 % steps, limits in 10 W steps).
    return np.asarray(values.astype(np.int32), dtype=np.int32)


def _work_ids(series: Series, rows: np.ndarray, gpu_ids: np.ndarray) -> np.ndarray:
    """Dense ids of (GPU, rounded utilization, rounded memory utilization) of ``rows``,
    each level folded in and freed before the next is built (``gpu_ids`` is consumed)."""
    combined = gpu_ids
    for name in ("util_gpu_pct", "util_mem_pct"):
        level = _rounded(series, name, rows, 5.0)
        level -= level.min()
        combined *= int(level.max()) + 1
        combined += level
        del level
    return dense_unique(combined)[1]


def _distinct_per_group(ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """How many distinct ``values`` (small integers) each group id has."""
    values -= values.min()
    width = int(values.max()) + 1
    pairs = ids * width
    pairs += values
    seen = dense_unique(pairs)[0]
    return np.bincount(seen // width, minlength=int(ids.max()) + 1)
