"""Each GPU's work as the power controller sees it: what it would draw uncapped while its kernels
run, how much of the time they run, and how memory-bound it is — from passive telemetry only.

Per bucket of a GPU's busy time, with the GPU model's constants (:mod:`.priors`)::

    gap   = S + L·(T − T_ref)                       power between kernels
    burst = highest instantaneous power in the bucket (1 s samples and NVML's instant
            reading), else gap + (mean − gap)/utilization
    burst = gap + K_m·a_m + D·φ(x)                  x: the bucket's SM clock / top clock

``D`` — the clock-dependent power of the work at the top clock — is solved from the burst
and the clock the limit left it: the clock is an outcome of the limit, and φ (the prior's
clock–power curve) turns it back into what the work would draw uncapped. The work's
demand is then ``gap + K_m·a_m + D`` while kernels run, a share ``u`` of the time.

Memory-boundness μ (time per unit of work ``(1 − μ)/x + μ``) is read from the kernels'
activities (:mod:`.boundness`): NVML's GPU Performance Monitoring where the GPU reports it
(DRAM bandwidth and SM pipe activity), else memory utilization over GPU utilization and
``D`` over the SMs' full power. Neither measures μ: the share of time that follows the
clock, ``1 − μ``, may be larger by a factor (:data:`GPM_SPREAD`, :data:`NVML_SPREAD`), and
caps are chosen to hold the bound there (``boundness_low``), where a cap costs most time.

Each GPU's work is taken since it last changed, at its newest load
(:func:`estimate_workloads`, with the window chosen by :mod:`.work_window`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wattwise.optimizer.models.boundness import estimate_boundness
from wattwise.optimizer.models.common import (
    ModelInfo,
    column,
    dense_unique,
    factorize,
    tag,
    tag_codes,
    window_of,
)
from wattwise.optimizer.models.limit_response import ClockCurve
from wattwise.optimizer.models.priors import CapPrior, prior_for
from wattwise.optimizer.models.work_window import load_now, recent_rows, since_last_change
from wattwise.optimizer.telemetry import Floats, Series

CLOCK_STEP_MHZ = 15.0
"""NVIDIA GPUs move their SM clock in 15 MHz steps."""
BUSY_MIN = 0.05
"""Buckets with less GPU utilization say nothing about the work."""
NVML_SPREAD = 2.0
"""How much more clock-sensitive the work may be than its NVML-based estimate says: up to
twice the share of its time that follows the clock, ``1 − μ`` (memory utilization counts
time the memory controller was busy, not how much the work waits on it)."""
GPM_SPREAD = 1.5
"""The same with DRAM bandwidth and SM pipe activity measured by GPM."""
PIPE_COLUMNS = ("tensor_active_pct", "fp64_active_pct", "fp32_active_pct", "fp16_active_pct")
VERSION = 2
CHANGE_SPREAD = 0.25
"""A bucket whose power moved by more than this (standard deviation over mean) held a change
of work — a job starting or ending within it, or a phase change — not steady work's
second-to-second spread, which the real H100 measures at 0.1–7.4 % (docs/grounding.md)."""


@dataclass(frozen=True)
class CapResponseModel:
    """The constants the controller's view of one GPU model rests on."""

    gpu_model: str
    prior: CapPrior
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
    """Mean power over the window."""
    util_gpu: Floats
    """Share of the time kernels run now (0..1)."""
    clock_rel: Floats
    capped_share: Floats
    gap_w: Floats
    """Power between kernels."""
    burst_w: Floats
    """Power while kernels run at the top clock, uncapped (the work's demand)."""
    burst_cautious_w: Floats
    """The same, read back through the cautious (flatter) clock curve."""
    memory_w: Floats
    """The part of ``burst_w`` that does not scale with the SM clock."""
    boundness: Floats
    """Estimated memory-boundness μ (0 compute-bound … 1 memory-bound)."""
    boundness_low: Floats
    """The low end of μ's plausible range: caps are chosen to hold the bound there."""
    measured_activity: np.ndarray
    """True where GPM measured the activities μ is read from."""
    variation: Floats
    """Coefficient of variation of ``D`` across the window (is it one steady job?)."""
    power_spread: Floats
    """Power's standard deviation from one sample to the next (1 s by default) relative to
    its mean: the median over the window's buckets of ``power_sd_w`` over ``power_w``,
    leaving out buckets that held a change of work (:data:`CHANGE_SPREAD`); NaN where the
    store gave no spread."""
    knee_clock_rel: Floats
    knee_voltage: Floats
    cautious_knee_clock_rel: Floats
    cautious_knee_voltage: Floats
    min_clock_rel: Floats
    top_clock_mhz: Floats

    def __len__(self) -> int:
        return int(self.host.shape[0])

    @property
    def curve(self) -> ClockCurve:
        return ClockCurve(self.knee_clock_rel, self.knee_voltage)  # type: ignore[arg-type]

    @property
    def cautious_curve(self) -> ClockCurve:
        return ClockCurve(self.cautious_knee_clock_rel, self.cautious_knee_voltage)  # type: ignore[arg-type]

    @property
    def dynamic_w(self) -> Floats:
        """Clock-dependent power of the work at the top clock (``D``)."""
        return np.asarray(self.burst_w - self.gap_w - self.memory_w, dtype=np.float64)

    def take(self, rows: np.ndarray) -> GpuWorkloads:
        fields = GpuWorkloads.__dataclass_fields__
        return GpuWorkloads(**{f: getattr(self, f)[rows] for f in fields})


def fit_cap_models(series: Series) -> dict[str, CapResponseModel]:
    """One model per GPU model in a ``gpu_series`` frame that wattwise has constants for."""
    codes, names = factorize(tag(series, "model", "unknown"))
    busy = column(series, "util_gpu_pct") / 100.0 >= BUSY_MIN
    out: dict[str, CapResponseModel] = {}
    for code, name in enumerate(names):
        prior = prior_for(str(name))
        if prior is None:
            continue
        mask = (codes == code) & busy
        start, end = window_of(series, mask)
        info = ModelInfo(
            kind="cap_response",
            scope=str(name),
            version=VERSION,
            window_start_ns=start,
            window_end_ns=end,
            samples=int(mask.sum()),
            notes=f"clock curve: knee at {prior.knee_clock_rel:.2f} of the top clock, voltage "
            f"{prior.knee_voltage:.2f} (cautious {prior.cautious_knee_clock_rel:.2f}, "
            f"{prior.cautious_knee_voltage:.2f}); docs/models.md says where each comes from",
        )
        out[str(name)] = CapResponseModel(str(name), prior, info)
    return out


def estimate_workloads(
    series: Series,
    models: dict[str, CapResponseModel],
    *,
    recent_s: float = 900.0,
    since_change: bool = True,
) -> GpuWorkloads:
    """Per GPU, the work of its last ``recent_s`` seconds of busy buckets, and with
    ``since_change`` only the buckets since that work last changed, at its newest load.

    GPUs of a model without a :class:`CapResponseModel` are left out.
    """
    codes, distinct = factorize(tag(series, "model", "unknown"))
    # A lookup table, not np.isin: isin's temporaries are several times the row count.
    ok = np.array([str(n) in models for n in distinct], dtype=np.bool_)[codes]
    del codes
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
    parts = _rows_parts(series, rows, params)
    if since_change and rows.size:
        # The change detector reads D per bucket (its share of the time), as the activities do.
        per_bucket = parts["dynamic"] * parts["util"]
        current = since_last_change(series, rows, ids, per_bucket, params["compute_w"])
        rows, ids = rows[current], ids[current]
        params = {k: v[current] for k, v in params.items()}
        parts = {k: v[current] for k, v in parts.items()}
        ids = dense_unique(ids)[1]
    return _aggregate(series, rows, ids, parts, params, current_load=since_change)


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


def _rows_parts(series: Series, rows: np.ndarray, p: dict[str, Floats]) -> dict[str, Floats]:
    """Per row: gap power, memory power while running, burst demand parts and activities."""
    util = np.maximum(column(series, "util_gpu_pct")[rows] / 100.0, BUSY_MIN)
    temp = column(series, "temp_c")[rows]
    temp = np.where(np.isfinite(temp), temp, p["leak_ref_temp_c"])
    gap = p["static_w"] + p["leak_w_per_c"] * (temp - p["leak_ref_temp_c"])
    memory_activity = np.clip(
        np.nan_to_num(column(series, "util_mem_pct")[rows] / 100.0, nan=0.0) / util, 0.0, 1.0
    )
    memory = p["memory_w"] * memory_activity
    mean = column(series, "power_w")[rows]
    from_mean = gap + (mean - gap) / util
    peak = column(series, "power_peak_w")[rows]
    burst = np.where(np.isfinite(peak), np.maximum(peak, from_mean), from_mean)
    x = np.clip(column(series, "sm_clock_mhz")[rows] / p["top_clock_mhz"], 0.05, 1.0)
    curve = ClockCurve(p["knee_clock_rel"], p["knee_voltage"])  # type: ignore[arg-type]
    cautious = ClockCurve(p["cautious_knee_clock_rel"], p["cautious_knee_voltage"])  # type: ignore[arg-type]
    clock_power = np.maximum(burst - gap - memory, 0.0)
    dynamic = clock_power / np.maximum(curve.phi(x), 1e-3)
    dynamic_cautious = clock_power / np.maximum(cautious.phi(x), 1e-3)
    dram, sm = _gpm_activities(series, rows, util)
    return {
        "util": util,
        "gap": gap,
        "memory": memory,
        "dynamic": np.asarray(dynamic, dtype=np.float64),
        "dynamic_cautious": np.asarray(dynamic_cautious, dtype=np.float64),
        "memory_activity": np.where(np.isfinite(dram), dram, memory_activity),
        "compute_activity": np.where(
            np.isfinite(sm), sm, np.clip(dynamic / np.maximum(p["compute_w"], 1.0), 0.0, 1.0)
        ),
        "measured": np.isfinite(dram) & np.isfinite(sm),
    }


def _relative_spread(series: Series, rows: np.ndarray) -> Floats:
    """Per row: the bucket's standard deviation of power over its mean power (NaN where
    the bucket held a change of work)."""
    spread = column(series, "power_sd_w")[rows] / np.maximum(column(series, "power_w")[rows], 1.0)
    return np.where(spread <= CHANGE_SPREAD, spread, np.nan)


def _finite_median(values: Floats, ids: np.ndarray, groups: int) -> Floats:
    """Per group: the median of its finite values (NaN where it has none)."""
    finite = np.isfinite(values)
    v, g = values[finite], ids[finite]
    order = np.lexsort((v, g))
    v, g = v[order], g[order]
    count = np.bincount(g, minlength=groups)
    start = np.cumsum(count) - count
    has = count > 0
    low = (start + (count - 1) // 2)[has]
    high = (start + count // 2)[has]
    out = np.full(groups, np.nan)
    out[has] = (v[low] + v[high]) / 2.0
    return out


def _gpm_activities(series: Series, rows: np.ndarray, util: Floats) -> tuple[Floats, Floats]:
    """DRAM and SM-pipe activity while kernels run, where GPM measured them (else NaN)."""
    dram = column(series, "dram_active_pct")[rows] / 100.0 / util
    pipes = np.full(rows.size, np.nan)
    for name in PIPE_COLUMNS:
        pipes = np.fmax(pipes, column(series, name)[rows] / 100.0)
    sm = np.where(np.isfinite(pipes), pipes, column(series, "sm_active_pct")[rows] / 100.0)
    return np.clip(dram, 0.0, 1.0), np.clip(sm / util, 0.0, 1.0)


def _aggregate(
    series: Series,
    rows: np.ndarray,
    ids: np.ndarray,
    parts: dict[str, Floats],
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

    util = parts["util"]
    load = load_now(series.time_ns[rows], ids, util, groups) if current_load else mean(util)
    dynamic = mean(parts["dynamic"])
    d_var = np.maximum(mean(parts["dynamic"] ** 2) - dynamic**2, 0.0)
    measured = mean(parts["measured"].astype(np.float64)) >= 0.5
    memory_activity, compute_activity = (
        mean(parts["memory_activity"]),
        mean(parts["compute_activity"]),
    )
    boundness = estimate_boundness(memory_activity, compute_activity)
    spread = np.where(measured, GPM_SPREAD, NVML_SPREAD)
    gap, memory = mean(parts["gap"]), mean(parts["memory"])
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
        gap_w=gap,
        burst_w=gap + memory + dynamic,
        burst_cautious_w=gap + memory + mean(parts["dynamic_cautious"]),
        memory_w=memory,
        boundness=boundness,
        boundness_low=np.maximum(1.0 - (1.0 - boundness) * spread, 0.0),
        measured_activity=measured,
        variation=np.sqrt(d_var) / np.maximum(dynamic, 1.0),
        power_spread=_finite_median(_relative_spread(series, rows), ids, groups),
        knee_clock_rel=mean(p["knee_clock_rel"]),
        knee_voltage=mean(p["knee_voltage"]),
        cautious_knee_clock_rel=mean(p["cautious_knee_clock_rel"]),
        cautious_knee_voltage=mean(p["cautious_knee_voltage"]),
        min_clock_rel=mean(p["min_clock_mhz"] / p["top_clock_mhz"]),
        top_clock_mhz=mean(p["top_clock_mhz"]),
    )
