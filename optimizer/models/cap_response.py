"""Response to a power cap: the clock, power and throughput a GPU's work would have under any
limit, from passive telemetry only (no profiling inside the job).

Power of a busy GPU splits into a part that does not depend on the SM clock and
a part that does (``φ`` as in the GPU's DVFS: dynamic power ∝ f·V², V linear in
f, with a voltage floor ``v0``)::

    P(x) = S + L·(T − T_ref) + K_m·m + D·φ(x)        φ(x) = x·(v0 + (1 − v0)·x)²

``S`` (static with a context), ``L`` (leakage), ``K_m`` (memory power at full
memory activity) and ``v0`` belong to the GPU model; ``m`` (memory
utilization) and ``T`` are measured; ``D``, the clock-dependent power of the
work at the top clock, is solved per bucket from the measured power and clock.
A cap ``C`` then gives ``x = φ⁻¹((C − S − … − K_m·m)/D)``.

Throughput: time per unit of work is ``(1 − μ)/x + μ``; ``μ`` (memory-boundness)
is not observable without a throughput signal, so it is estimated from the two
activities the telemetry does show while kernels run — memory activity
``a_m = util_mem / util_gpu`` and SM activity ``a_c = D / (util_gpu·K_c)`` — as
the clock-elasticity of a soft roofline (kernel time ``‖(a_m, a_c/x)‖₂``):
``μ = a_m² / (a_m² + a_c²)``, at most :data:`MAX_BOUNDNESS` — see
docs/models.md for its errors on each workload and why it is capped.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from wattwise.optimizer.telemetry import Floats, Series

from .common import (
    Bools,
    ModelInfo,
    column,
    factorize,
    subsample,
    tag,
    tag_codes,
    window_of,
)
from .priors import CapPrior, prior_for

CLOCK_STEP_MHZ = 15.0
"""NVIDIA GPUs move their SM clock in 15 MHz steps."""
BUSY_MIN = 0.05
"""Buckets with less GPU utilization say nothing about the work."""
VOLTAGE_FLOOR_GRID = np.linspace(0.0, 1.0, 21)
MAX_GRID_ROWS = 200_000
VERSION = 1
MAX_BOUNDNESS = 0.9
"""Above this a misjudged μ is costly: at μ_est → 1 the predicted slowdown vanishes and the
cap goes to the lowest clock, where work that is really μ = 0.95 runs 24 % slower."""
WORK_CHANGE = 0.15
"""A change of memory or SM activity this large between a GPU's consecutive busy buckets
means other work (another job, or a new phase): the estimate uses only what came after."""


@dataclass(frozen=True)
class CapResponseModel:
    """Power-versus-clock parameters of one GPU model."""

    gpu_model: str
    prior: CapPrior
    voltage_floor_source: str
    """"fitted" when several limits were seen for the same work, else "prior"."""
    info: ModelInfo


@dataclass(frozen=True)
class GpuWorkloads:
    """What each GPU's recent work looks like to the power controller (arrays per GPU)."""

    host: np.ndarray
    gpu: np.ndarray
    model: np.ndarray
    samples: Floats
    window_start_ns: np.ndarray
    window_end_ns: np.ndarray
    power_w: Floats
    util_gpu: Floats
    clock_rel: Floats
    capped_share: Floats
    base_w: Floats
    """Clock-independent power of the work: static + leakage + memory."""
    dynamic_w: Floats
    """Clock-dependent power of the work at the top clock (``D``)."""
    boundness: Floats
    """Estimated memory-boundness μ (0 compute-bound … 1 memory-bound)."""
    variation: Floats
    """Coefficient of variation of ``D`` across the window (is it one steady job?)."""
    static_w: Floats
    voltage_floor: Floats
    min_clock_rel: Floats
    top_clock_mhz: Floats

    def __len__(self) -> int:
        return int(self.host.shape[0])


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


def fit_cap_models(series: Series) -> dict[str, CapResponseModel]:
    """One model per GPU model in a ``gpu_series`` frame; ``v0`` fitted where identifiable."""
    codes, names = factorize(tag(series, "model", "unknown"))
    busy = column(series, "util_gpu_pct") / 100.0 >= BUSY_MIN
    # Row masks first, so the per-row codes are freed before the fits allocate.
    masks = {str(name): (codes == code) & busy for code, name in enumerate(names)}
    del codes, busy
    out: dict[str, CapResponseModel] = {}
    for name, mask in masks.items():
        prior = prior_for(name)
        if prior is None:
            continue
        v0, source, spread = _fit_voltage_floor(series, mask, prior)
        start, end = window_of(series, mask)
        info = ModelInfo(
            kind="cap_response",
            scope=str(name),
            version=VERSION,
            window_start_ns=start,
            window_end_ns=end,
            samples=int(mask.sum()),
            errors={"dynamic_power_cv": spread} if np.isfinite(spread) else {},
            notes=f"voltage floor {v0:.2f} ({source})",
        )
        out[str(name)] = CapResponseModel(str(name), replace(prior, voltage_floor=v0), source, info)
    return out


def _fit_voltage_floor(series: Series, mask: Bools, prior: CapPrior) -> tuple[float, str, float]:
    """Pick the v0 under which one GPU's work has the same ``D`` at every limit it ran under.

    Identifiable only when the same GPU ran similar work at two or more enforced limits
    (which is what applying caps produces); otherwise the prior stays.
    """
    ok = mask.copy()
    for name in ("enforced_limit_w", "util_gpu_pct", "util_mem_pct"):
        ok &= np.isfinite(column(series, name))
    rows = np.flatnonzero(ok)
    del ok
    if rows.size == 0:
        return prior.voltage_floor, "prior", float("nan")
    # Similar work = same GPU at the same rounded utilizations; all grouped on integer codes
    # of the selected rows only (no rounded full-length columns, no copied tag columns).
    work_ids = _work_ids(series, rows)
    limits_seen = _distinct_per_group(work_ids, _rounded(series, "enforced_limit_w", rows, 10.0))
    multi = limits_seen[work_ids] >= 2
    if multi.sum() < 10:
        return prior.voltage_floor, "prior", float("nan")
    # The grid search needs only a sample of the rows that can tell floors apart.
    keep = np.flatnonzero(subsample(multi, MAX_GRID_ROWS))
    sub = rows[keep]
    ids = work_ids[keep]
    best, best_spread = prior.voltage_floor, np.inf
    for v0 in VOLTAGE_FLOOR_GRID:
        d = _dynamic_w(series, sub, replace(prior, voltage_floor=float(v0)))
        spread = _mean_group_cv(ids, d)
        if spread < best_spread:
            best, best_spread = float(v0), spread
    return best, "fitted", float(best_spread)


def _rounded(series: Series, name: str, rows: np.ndarray, step: float) -> np.ndarray:
    """A column at ``rows`` rounded to multiples of ``step``, as integers (one copy, in place)."""
    values = column(series, name)[rows]
    values /= step
    np.rint(values, out=values)
    # Levels are small integers (utilization in 5 % steps, limits in 10 W steps).
    return np.asarray(values.astype(np.int32), dtype=np.int32)


def _work_ids(series: Series, rows: np.ndarray) -> np.ndarray:
    """Dense ids of (GPU, rounded utilization, rounded memory utilization) of ``rows``,
    each level folded in and freed before the next is built."""
    combined = tag_codes(series, ("host", "gpu"), rows)
    for name in ("util_gpu_pct", "util_mem_pct"):
        level = _rounded(series, name, rows, 5.0)
        level -= level.min()
        combined *= int(level.max()) + 1
        combined += level
        del level
    return _dense_ids(combined)


def _distinct_per_group(ids: np.ndarray, values: np.ndarray) -> np.ndarray:
    """How many distinct ``values`` (small integers) each group id has."""
    values -= values.min()
    width = int(values.max()) + 1
    pairs = ids * width
    pairs += values
    if int(pairs.max()) < 4 * pairs.size + 1_000_000:
        present = np.zeros(int(pairs.max()) + 1, dtype=np.bool_)
        present[pairs] = True
        seen = np.flatnonzero(present)
    else:
        seen = np.unique(pairs)
    return np.bincount(seen // width, minlength=int(ids.max()) + 1)


def _mean_group_cv(ids: np.ndarray, values: Floats) -> float:
    ok = np.isfinite(values)
    ids, values = ids[ok], values[ok]
    n = np.bincount(ids).astype(np.float64)
    mean = np.bincount(ids, weights=values) / np.maximum(n, 1)
    var = np.bincount(ids, weights=values * values) / np.maximum(n, 1) - mean**2
    cv = np.sqrt(np.maximum(var, 0.0)) / np.maximum(np.abs(mean), 1.0)
    return float(np.average(cv[n > 0], weights=n[n > 0]))


def _dynamic_w(series: Series, rows: np.ndarray, prior: CapPrior) -> Floats:
    """``D`` of each row: clock-dependent power scaled to the top clock."""
    power = column(series, "power_w")[rows]
    x = column(series, "sm_clock_mhz")[rows] / prior.top_clock_mhz
    base = _base_w(series, rows, prior)
    d = (power - base) / np.maximum(phi(x, np.full_like(x, prior.voltage_floor)), 1e-3)
    return np.asarray(d, dtype=np.float64)


def _base_w(series: Series, rows: np.ndarray, prior: CapPrior) -> Floats:
    temp = column(series, "temp_c")[rows]
    temp = np.where(np.isfinite(temp), temp, prior.leak_ref_temp_c)
    leak = prior.leak_w_per_c * (temp - prior.leak_ref_temp_c)
    mem = column(series, "util_mem_pct")[rows] / 100.0
    return np.asarray(prior.static_w + leak + prior.memory_w * mem, dtype=np.float64)


def estimate_workloads(
    series: Series,
    models: dict[str, CapResponseModel],
    *,
    recent_s: float = 900.0,
    since_change: bool = True,
) -> GpuWorkloads:
    """Per GPU, the work of its last ``recent_s`` seconds of busy buckets (one array each),
    and with ``since_change`` only the buckets since that work last changed.

    GPUs of a model without a :class:`CapResponseModel` are left out.
    """
    codes, distinct = factorize(tag(series, "model", "unknown"))
    # A lookup table, not np.isin: isin's temporaries are several times the row count.
    ok = np.array([str(n) in models for n in distinct], dtype=np.bool_)[codes]
    del codes  # row-sized; the few recent rows are coded again below
    ok &= column(series, "util_gpu_pct") / 100.0 >= BUSY_MIN
    ok &= np.isfinite(column(series, "power_w"))
    ok &= np.isfinite(column(series, "sm_clock_mhz"))
    rows = np.flatnonzero(ok)
    del ok
    ids = _dense_ids(tag_codes(series, ("host", "gpu"), rows))
    if rows.size:
        recent = _recent(series.time_ns[rows], ids, int(recent_s * 1e9))
        rows, ids = rows[recent], ids[recent]
    codes, distinct = factorize(tag(series, "model", "unknown")[rows])
    params = _per_row_priors(codes, distinct, models)
    dyn = _rows_dynamic_w(series, rows, params)
    if since_change and rows.size:
        current = _since_last_change(series, rows, ids, dyn, params)
        rows, ids, dyn = rows[current], ids[current], dyn[current]
        params = {k: v[current] for k, v in params.items()}
        ids = _dense_ids(ids)
    base = _rows_base_w(series, rows, params)
    return _aggregate(series, rows, ids, dyn, base, params)


def _recent(time_ns: np.ndarray, ids: np.ndarray, window_ns: int) -> Bools:
    """Rows within ``window_ns`` of their group's last row (``time_ns`` is consumed)."""
    last = np.full(int(ids.max()) + 1, np.iinfo(np.int64).min)
    np.maximum.at(last, ids, time_ns)
    last -= window_ns
    time_ns -= last[ids]
    return time_ns >= 0


def estimate_boundness(memory_activity: Floats, compute_activity: Floats) -> Floats:
    """Memory-boundness μ from the memory and SM activity of the kernels (each 0..1).

    A kernel's time as a soft maximum of its memory and its SM time, ``‖(a_m, a_c/x)‖₂``;
    μ is that time's insensitivity to the clock at the top clock, capped at
    :data:`MAX_BOUNDNESS`. Work with no activity at all is taken as compute-bound (μ = 0),
    which predicts the larger slowdown.
    """
    m2 = np.clip(memory_activity, 0.0, 1.0) ** 2
    c2 = np.clip(compute_activity, 0.0, 1.0) ** 2
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = np.where(m2 + c2 > 0, m2 / (m2 + c2), 0.0)
    return np.asarray(np.minimum(np.nan_to_num(mu, nan=0.0), MAX_BOUNDNESS), dtype=np.float64)


def _activities(
    util_gpu: Floats, util_mem: Floats, dynamic_w: Floats, compute_w: Floats
) -> tuple[Floats, Floats]:
    """Memory and SM activity of the kernels while they run (utilizations 0..1, ``D`` in W)."""
    running = np.maximum(util_gpu, 1e-3)
    memory = np.clip(np.nan_to_num(util_mem, nan=0.0) / running, 0.0, 1.0)
    compute = np.clip(dynamic_w / (running * np.maximum(compute_w, 1.0)), 0.0, 1.0)
    return memory, compute


def _since_last_change(
    series: Series, rows: np.ndarray, ids: np.ndarray, dyn: Floats, p: dict[str, Floats]
) -> Bools:
    """Rows of each GPU since its work last changed: a gap in its busy buckets (the GPU went
    idle between jobs) or a jump in memory or SM activity. A window that mixes two jobs
    would otherwise describe neither of them."""
    time = series.time_ns[rows]
    memory, compute = _activities(
        column(series, "util_gpu_pct")[rows] / 100.0,
        column(series, "util_mem_pct")[rows] / 100.0,
        dyn,
        p["compute_w"],
    )
    order = np.lexsort((time, ids))
    t, g = time[order], ids[order]
    step = np.diff(t)
    bucket = int(step[step > 0].min()) if (step > 0).any() else 0
    starts = np.ones(order.size, dtype=np.bool_)
    starts[1:] = (
        (g[1:] != g[:-1])
        | (step > 1.5 * bucket)
        | (np.abs(np.diff(memory[order])) > WORK_CHANGE)
        | (np.abs(np.diff(compute[order])) > WORK_CHANGE)
    )
    segment = np.cumsum(starts)
    last = np.zeros(int(g.max()) + 1, dtype=np.int64)
    np.maximum.at(last, g, segment)
    keep = np.zeros(order.size, dtype=np.bool_)
    keep[order] = segment == last[g]
    return keep


def _dense_ids(ids: np.ndarray) -> np.ndarray:
    present = np.zeros(int(ids.max()) + 1 if ids.size else 0, dtype=np.bool_)
    present[ids] = True
    return np.asarray((np.cumsum(present) - 1)[ids], dtype=np.int64)


def _per_row_priors(
    codes: np.ndarray, names: np.ndarray, models: dict[str, CapResponseModel]
) -> dict[str, Floats]:
    """Each row's GPU-model constants (rows given as codes into ``names``)."""
    fields = CapPrior.__dataclass_fields__
    table = {f: np.zeros(len(names)) for f in fields}
    for k, name in enumerate(names):
        model = models.get(str(name))
        for f in fields:
            table[f][k] = getattr(model.prior, f) if model is not None else 0.0
    return {f: table[f][codes] for f in fields}


def _rows_base_w(series: Series, rows: np.ndarray, p: dict[str, Floats]) -> Floats:
    temp = column(series, "temp_c")[rows]
    temp = np.where(np.isfinite(temp), temp, p["leak_ref_temp_c"])
    mem = np.nan_to_num(column(series, "util_mem_pct")[rows] / 100.0, nan=0.0)
    leak = p["leak_w_per_c"] * (temp - p["leak_ref_temp_c"])
    return np.asarray(p["static_w"] + leak + p["memory_w"] * mem, dtype=np.float64)


def _rows_dynamic_w(series: Series, rows: np.ndarray, p: dict[str, Floats]) -> Floats:
    x = column(series, "sm_clock_mhz")[rows] / p["top_clock_mhz"]
    power = column(series, "power_w")[rows]
    d = (power - _rows_base_w(series, rows, p)) / np.maximum(phi(x, p["voltage_floor"]), 1e-3)
    return np.asarray(np.maximum(d, 0.0), dtype=np.float64)


def _aggregate(
    series: Series,
    rows: np.ndarray,
    ids: np.ndarray,
    dyn: Floats,
    base: Floats,
    p: dict[str, Floats],
) -> GpuWorkloads:
    groups = int(ids.max()) + 1 if ids.size else 0
    n = np.bincount(ids, minlength=groups).astype(np.float64)
    first = np.full(groups, -1, dtype=np.int64)
    first[ids[::-1]] = rows[::-1]

    def mean(values: Floats) -> Floats:
        return np.bincount(ids, weights=values, minlength=groups) / np.maximum(n, 1.0)

    def col(name: str) -> Floats:
        return np.asarray(np.nan_to_num(column(series, name)[rows], nan=0.0), dtype=np.float64)

    d_mean = mean(dyn)
    d_var = np.maximum(mean(dyn * dyn) - d_mean**2, 0.0)
    memory, compute = _activities(
        mean(col("util_gpu_pct") / 100.0),
        mean(col("util_mem_pct") / 100.0),
        d_mean,
        mean(p["compute_w"]),
    )
    start = np.full(groups, np.iinfo(np.int64).max)
    end = np.full(groups, np.iinfo(np.int64).min)
    np.minimum.at(start, ids, series.time_ns[rows])
    np.maximum.at(end, ids, series.time_ns[rows])
    return GpuWorkloads(
        host=tag(series, "host")[first],
        gpu=tag(series, "gpu")[first],
        model=tag(series, "model")[first],
        samples=n,
        window_start_ns=start,
        window_end_ns=end,
        power_w=mean(col("power_w")),
        util_gpu=mean(col("util_gpu_pct") / 100.0),
        clock_rel=mean(col("sm_clock_mhz") / p["top_clock_mhz"]),
        capped_share=mean(col("capped_share")),
        base_w=mean(base),
        dynamic_w=d_mean,
        boundness=estimate_boundness(memory, compute),
        variation=np.sqrt(d_var) / np.maximum(d_mean, 1.0),
        static_w=mean(p["static_w"]),
        voltage_floor=mean(p["voltage_floor"]),
        min_clock_rel=mean(p["min_clock_mhz"] / p["top_clock_mhz"]),
        top_clock_mhz=mean(p["top_clock_mhz"]),
    )
