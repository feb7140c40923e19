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
the clock-elasticity of a soft roofline (kernel time ``‖(a_m, a_c/x)‖₃``):
``μ = a_m³ / (a_m³ + a_c³)``, at most :data:`MAX_BOUNDNESS` — see
docs/models.md for its errors on each workload and why it is capped.

Each GPU's work is taken since it last changed, at its newest load
(:func:`estimate_workloads`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from wattwise.optimizer.telemetry import Floats, Series

from .cap_power import dense_ids, fit_voltage_floor, phi
from .cap_power import phi_inverse as phi_inverse  # re-exported for existing callers
from .common import Bools, ModelInfo, column, factorize, tag, tag_codes, window_of
from .priors import CapPrior, prior_for

CLOCK_STEP_MHZ = 15.0
"""NVIDIA GPUs move their SM clock in 15 MHz steps."""
BUSY_MIN = 0.05
"""Buckets with less GPU utilization say nothing about the work."""
VERSION = 1
MAX_BOUNDNESS = 0.9
"""Above this a misjudged μ is costly: at μ_est → 1 the predicted slowdown vanishes and the
cap goes to the lowest clock, where work that is really μ = 0.95 runs 24 % slower."""
ROOFLINE_SHARPNESS = 3.0
"""p of the soft roofline: how sharply a kernel's time switches from its SM time to its memory
time. p = 2 blended them too softly: LLM decoding (HBM saturated, SMs 60 % active) came out
at μ 0.74 against the twin's 0.85, and its caps saved 3 points less than the oracle's. No
telemetry measures μ, so p is calibrated on the twin's workloads: 3 is the sharpest (in steps
of 0.5) whose μ stays below the truth for every one of them (an over-estimate under-predicts
the slowdown; an under-estimate only saves less) — docs/models.md has the figures."""
WORK_CHANGE = 0.15
LOAD_CHANGE = 0.2
"""Utilization moving by a fifth between consecutive buckets marks a change of work."""
LOAD_BUCKETS = 3
"""A GPU's current load is read from its last three busy buckets: a server's load moves, and
the next job of the same kind often runs at another duty cycle. (Must stay 3: the median of
:func:`_load_now` is taken as the sum less the highest and the lowest.)"""
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
        floor = fit_voltage_floor(series, mask, prior)
        start, end = window_of(series, mask)
        info = ModelInfo(
            kind="cap_response",
            scope=str(name),
            version=VERSION,
            window_start_ns=start,
            window_end_ns=end,
            samples=int(mask.sum()),
            errors={"dynamic_power_rms_w": floor.residual_w}
            if np.isfinite(floor.residual_w)
            else {},
            notes=f"voltage floor {floor.voltage_floor:.2f} ({floor.source})",
        )
        model_prior = replace(prior, voltage_floor=floor.voltage_floor)
        out[str(name)] = CapResponseModel(str(name), model_prior, floor.source, info)
    return out


def estimate_workloads(
    series: Series,
    models: dict[str, CapResponseModel],
    *,
    recent_s: float = 900.0,
    since_change: bool = True,
) -> GpuWorkloads:
    """Per GPU, the work of its last ``recent_s`` seconds of busy buckets (one array each),
    and with ``since_change`` only the buckets since that work last changed, at the load of
    its last :data:`LOAD_BUCKETS` buckets (the work as it runs now, not as it ran on average).

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
    ids = dense_ids(tag_codes(series, ("host", "gpu"), rows))
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
        ids = dense_ids(ids)
    base = _rows_base_w(series, rows, params)
    return _aggregate(series, rows, ids, dyn, base, params, current_load=since_change)


def _recent(time_ns: np.ndarray, ids: np.ndarray, window_ns: int) -> Bools:
    """Rows within ``window_ns`` of their group's last row (``time_ns`` is consumed)."""
    last = np.full(int(ids.max()) + 1, np.iinfo(np.int64).min)
    np.maximum.at(last, ids, time_ns)
    last -= window_ns
    time_ns -= last[ids]
    return time_ns >= 0


def estimate_boundness(memory_activity: Floats, compute_activity: Floats) -> Floats:
    """Memory-boundness μ from the memory and SM activity of the kernels (each 0..1).

    A kernel's time as a soft maximum of its memory and its SM time, ``‖(a_m, a_c/x)‖_p``
    with p = :data:`ROOFLINE_SHARPNESS`; μ is that time's insensitivity to the clock at the
    top clock, ``a_m^p / (a_m^p + a_c^p)``, capped at :data:`MAX_BOUNDNESS`. Work with no
    activity at all is taken as compute-bound (μ = 0), which predicts the larger slowdown.
    """
    memory = np.clip(memory_activity, 0.0, 1.0) ** ROOFLINE_SHARPNESS
    compute = np.clip(compute_activity, 0.0, 1.0) ** ROOFLINE_SHARPNESS
    with np.errstate(divide="ignore", invalid="ignore"):
        mu = np.where(memory + compute > 0, memory / (memory + compute), 0.0)
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
    idle between jobs), a jump in memory or SM activity, or a step in utilization (a job that
    ended and one that started within the same minute leave a partly idle bucket between
    them). A window that mixes two jobs would otherwise describe neither of them."""
    time = series.time_ns[rows]
    util = column(series, "util_gpu_pct")[rows] / 100.0
    memory, compute = _activities(
        util, column(series, "util_mem_pct")[rows] / 100.0, dyn, p["compute_w"]
    )
    order = np.lexsort((time, ids))
    t, g, u = time[order], ids[order], util[order]
    step = np.diff(t)
    bucket = int(step[step > 0].min()) if (step > 0).any() else 0
    changed = np.zeros(order.size, dtype=np.bool_)
    changed[1:] = (
        (step > 1.5 * bucket)
        | (np.abs(np.diff(u)) > LOAD_CHANGE * np.maximum(u[1:], u[:-1]))
        | (np.abs(np.diff(memory[order])) > WORK_CHANGE)
        | (np.abs(np.diff(compute[order])) > WORK_CHANGE)
    )
    starts = changed.copy()
    starts[0] = True
    starts[1:] |= g[1:] != g[:-1]
    segment = np.cumsum(starts)
    last = np.zeros(int(g.max()) + 1, dtype=np.int64)
    np.maximum.at(last, g, segment)
    # The first bucket after a change straddles it (idle or the other work mixed in); it is
    # left out whenever a bucket follows it.
    straddles = changed & (np.bincount(segment)[segment] > 1)
    keep = np.zeros(order.size, dtype=np.bool_)
    keep[order] = (segment == last[g]) & ~straddles
    return keep


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
    *,
    current_load: bool,
) -> GpuWorkloads:
    groups = int(ids.max()) + 1 if ids.size else 0
    n = np.bincount(ids, minlength=groups).astype(np.float64)
    first = np.full(groups, -1, dtype=np.int64)
    first[ids[::-1]] = rows[::-1]

    def mean(values: Floats) -> Floats:
        return np.bincount(ids, weights=values, minlength=groups) / np.maximum(n, 1.0)

    def col(name: str) -> Floats:
        return np.asarray(np.nan_to_num(column(series, name)[rows], nan=0.0), dtype=np.float64)

    util = col("util_gpu_pct") / 100.0
    util_mean = mean(util)
    # Per unit of busy time the work's power does not depend on its load: that is what is
    # averaged, and what tells one steady job from several.
    per_busy = dyn / np.maximum(util, BUSY_MIN)
    d_busy = mean(per_busy)
    d_var = np.maximum(mean(per_busy * per_busy) - d_busy**2, 0.0)
    memory, compute = _activities(
        util_mean, mean(col("util_mem_pct") / 100.0), mean(dyn), mean(p["compute_w"])
    )
    load = _load_now(series.time_ns[rows], ids, util, groups) if current_load else util_mean
    memory_w = mean(p["memory_w"] * col("util_mem_pct") / 100.0)
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
        util_gpu=load,
        clock_rel=mean(col("sm_clock_mhz") / p["top_clock_mhz"]),
        capped_share=mean(col("capped_share")),
        base_w=mean(base) + memory_w * (load / np.maximum(util_mean, BUSY_MIN) - 1.0),
        dynamic_w=mean(dyn) * load / np.maximum(util_mean, BUSY_MIN),
        boundness=estimate_boundness(memory, compute),
        variation=np.sqrt(d_var) / np.maximum(d_busy, 1.0),
        static_w=mean(p["static_w"]),
        voltage_floor=mean(p["voltage_floor"]),
        min_clock_rel=mean(p["min_clock_mhz"] / p["top_clock_mhz"]),
        top_clock_mhz=mean(p["top_clock_mhz"]),
    )


def _load_now(time_ns: np.ndarray, ids: np.ndarray, util: Floats, groups: int) -> Floats:
    """Median utilization of each group's last :data:`LOAD_BUCKETS` rows: the newest load,
    followed within two buckets of a step and deaf to one odd bucket (the one in progress
    may hold a single reading)."""
    order = np.lexsort((-time_ns, ids))
    g = ids[order]
    starts = np.flatnonzero(np.r_[True, g[1:] != g[:-1]])
    rank = np.arange(g.size) - np.repeat(starts, np.diff(np.r_[starts, g.size]))
    latest = order[rank < LOAD_BUCKETS]
    g, u = ids[latest], util[latest]
    count = np.bincount(g, minlength=groups)
    total = np.bincount(g, weights=u, minlength=groups)
    high = np.full(groups, -np.inf)
    np.maximum.at(high, g, u)
    low = np.full(groups, np.inf)
    np.minimum.at(low, g, u)
    # Of three values the median is what the highest and lowest leave; of fewer, the mean.
    middle = np.where(count == LOAD_BUCKETS, total - high - low, total / np.maximum(count, 1))
    return np.asarray(middle, dtype=np.float64)
