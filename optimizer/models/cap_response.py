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
activities the telemetry does show while kernels run (:mod:`.boundness`).

Each GPU's work is taken since it last changed, at its newest load
(:func:`estimate_workloads`, with the window chosen by :mod:`.work_window`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from wattwise.optimizer.models.boundness import estimate_boundness, kernel_activities
from wattwise.optimizer.models.cap_power import fit_voltage_floor, phi
from wattwise.optimizer.models.common import (
    ModelInfo,
    column,
    dense_unique,
    factorize,
    tag,
    tag_codes,
    window_of,
)
from wattwise.optimizer.models.priors import CapPrior, prior_for
from wattwise.optimizer.models.work_window import load_now, recent_rows, since_last_change
from wattwise.optimizer.telemetry import Floats, Series

CLOCK_STEP_MHZ = 15.0
"""NVIDIA GPUs move their SM clock in 15 MHz steps."""
BUSY_MIN = 0.05
"""Buckets with less GPU utilization say nothing about the work."""
VERSION = 1


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
    ids = dense_unique(tag_codes(series, ("host", "gpu"), rows))[1]
    if rows.size:
        recent = recent_rows(series.time_ns[rows], ids, int(recent_s * 1e9))
        rows, ids = rows[recent], ids[recent]
    codes, distinct = factorize(tag(series, "model", "unknown")[rows])
    params = _per_row_priors(codes, distinct, models)
    dyn = _rows_dynamic_w(series, rows, params)
    if since_change and rows.size:
        current = since_last_change(series, rows, ids, dyn, params["compute_w"])
        rows, ids, dyn = rows[current], ids[current], dyn[current]
        params = {k: v[current] for k, v in params.items()}
        ids = dense_unique(ids)[1]
    base = _rows_base_w(series, rows, params)
    return _aggregate(series, rows, ids, dyn, base, params, current_load=since_change)


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
    memory, compute = kernel_activities(
        util_mean, mean(col("util_mem_pct") / 100.0), mean(dyn), mean(p["compute_w"])
    )
    load = load_now(series.time_ns[rows], ids, util, groups) if current_load else util_mean
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
