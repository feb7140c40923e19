"""Power caps per GPU: the limit that minimises energy per unit of work within a slowdown bound
(or the cost η·E + (1−η)·P_max·T), predicted from each GPU's recent work."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from wattwise.optimizer.models.cap_predict import at_limits
from wattwise.optimizer.models.cap_response import GpuWorkloads
from wattwise.optimizer.recommend import health
from wattwise.optimizer.recommend.settings import CapSettings
from wattwise.optimizer.recommend.types import CapRecommendation, Evidence
from wattwise.optimizer.telemetry import Floats, GpuState

IDLE_SHARE = 0.05
"""A GPU below 5 % utilization holding under 5 % of its memory runs no job now."""
ENERGY_TIE = 1e-3
"""Limits within 0.1 % of the least energy count as equal; the lowest of them wins,
which leaves the most power headroom at no cost in energy or speed."""


def recommend_caps(
    gpus: Sequence[GpuState],
    work: GpuWorkloads,
    settings: CapSettings,
    unhealthy: Mapping[tuple[str, int], str] | None = None,
) -> list[CapRecommendation]:
    """One recommendation (or a reasoned refusal) per GPU in ``gpus``; an unhealthy GPU
    (``unhealthy``, from :mod:`.health`) is refused with the reason."""
    index = {(str(h), str(g)): i for i, (h, g) in enumerate(zip(work.host, work.gpu, strict=True))}
    rows = [index.get((s.host, str(s.gpu)), -1) for s in gpus]
    sick = {
        i: why for i, s in enumerate(gpus) if (why := health.reason(unhealthy or {}, s.host, s.gpu))
    }
    usable = [
        i
        for i, (s, r) in enumerate(zip(gpus, rows, strict=True))
        if r >= 0 and _limits_ok(s) and not _idle_now(s) and i not in sick
    ]
    chosen = _choose(gpus, work, [rows[i] for i in usable], [gpus[i] for i in usable], settings)
    out = []
    for i, state in enumerate(gpus):
        if i in chosen:
            out.append(chosen[i])
        else:
            out.append(_refusal(state, settings, sick.get(i) or _why_not(state, rows[i])))
    return out


def _limits_ok(s: GpuState) -> bool:
    return bool(np.isfinite(s.min_limit_w) and np.isfinite(s.max_limit_w)) and not s.failed


def _idle_now(s: GpuState) -> bool:
    """No kernels and no memory held in the newest sample: the work the window saw has ended,
    and a cap chosen for it would land on whatever job comes next. Unknown counts as busy."""
    util = s.util_gpu_pct / 100.0
    memory = s.mem_used_bytes / s.mem_total_bytes if s.mem_total_bytes > 0 else np.nan
    return bool(util < IDLE_SHARE and memory < IDLE_SHARE)


def _why_not(state: GpuState, row: int) -> str:
    if state.failed:
        return "GPU failed to report"
    if not (np.isfinite(state.min_limit_w) and np.isfinite(state.max_limit_w)):
        return "GPU reports no allowed power-limit range"
    if row < 0:
        return "no busy telemetry in the window (idle GPU or unknown GPU model)"
    if _idle_now(state):
        return "the GPU is idle now: the work seen in the window has ended"
    return "not evaluated"


def _choose(
    all_gpus: Sequence[GpuState],
    work: GpuWorkloads,
    rows: list[int],
    states: list[GpuState],
    settings: CapSettings,
) -> dict[int, CapRecommendation]:
    if not rows:
        return {}
    sub = _take(work, np.array(rows))
    low = np.array([s.min_limit_w for s in states])
    high = np.array([s.max_limit_w for s in states])
    current = np.array([_current_limit(s) for s in states])
    steps = int(np.ceil(np.max(high - low) / settings.step_w)) + 1
    grid = np.minimum(low[:, None] + settings.step_w * np.arange(steps)[None, :], high[:, None])
    pred = at_limits(sub, grid)
    ref = at_limits(sub, high)
    now = at_limits(sub, current)
    rate = np.maximum(pred.throughput, 1e-9)
    energy = pred.power_w / rate
    slowdown = ref.throughput[:, None] / rate - 1.0
    if settings.objective == "least_energy":
        score = np.where(slowdown <= settings.slowdown_bound + 1e-9, energy, np.inf)
    else:
        score = settings.eta * energy + (1.0 - settings.eta) * high[:, None] / rate
    best = _lowest_within_tie(score, grid)
    pick = np.arange(len(rows))
    limit = grid[pick, best]
    at = at_limits(sub, limit)
    e_now = now.power_w / np.maximum(now.throughput, 1e-9)
    e_new = at.power_w / np.maximum(at.throughput, 1e-9)
    confidence = _confidence(sub, settings)
    by_state = {id(s): k for k, s in enumerate(all_gpus)}
    out = {}
    for k, state in enumerate(states):
        rec = CapRecommendation(
            host=state.host,
            gpu=state.gpu,
            model=state.model,
            current_limit_w=float(current[k]),
            recommended_limit_w=float(limit[k]),
            min_limit_w=float(low[k]),
            max_limit_w=float(high[k]),
            saving_w=float(now.power_w[k] - at.power_w[k]),
            saving_pct=float(100.0 * (1.0 - e_new[k] / max(e_now[k], 1e-9))),
            slowdown_pct=float(100.0 * (ref.throughput[k] / max(at.throughput[k], 1e-9) - 1.0)),
            objective=_objective_name(settings),
            confidence=float(confidence[k]),
            evidence=Evidence(
                int(sub.window_start_ns[k]), int(sub.window_end_ns[k]), int(sub.samples[k])
            ),
            boundness=float(sub.boundness[k]),
            reason=_reason(float(sub.boundness[k]), float(limit[k]), float(current[k])),
        )
        if rec.confidence < settings.min_confidence:
            rec = _refusal(state, settings, _low_confidence(sub, k, settings), rec)
        out[by_state[id(state)]] = rec
    return out


def _lowest_within_tie(score: Floats, grid: Floats) -> np.ndarray:
    least = np.min(score, axis=1, keepdims=True)
    near = score <= least + ENERGY_TIE * np.abs(least)
    masked = np.where(near, grid, np.inf)
    return np.asarray(np.argmin(masked, axis=1))


def _confidence(w: GpuWorkloads, settings: CapSettings) -> Floats:
    enough = np.minimum(1.0, w.samples / settings.min_samples)
    steady = np.clip(1.0 - w.variation / settings.max_variation, 0.0, 1.0)
    return np.asarray(enough * steady, dtype=np.float64)


def _low_confidence(w: GpuWorkloads, k: int, settings: CapSettings) -> str:
    if w.samples[k] < settings.min_samples:
        return f"only {int(w.samples[k])} busy samples (need {settings.min_samples})"
    return (
        f"the work changes too much over the window (variation {w.variation[k]:.2f} "
        f"> {settings.max_variation})"
    )


def _reason(boundness: float, limit_w: float, current_w: float) -> str:
    kind = "memory-bound" if boundness >= 0.5 else "compute-bound"
    change = "lower" if limit_w < current_w else "keep or raise"
    return f"{kind} work (μ≈{boundness:.2f}): {change} the limit to {limit_w:.0f} W"


def _objective_name(settings: CapSettings) -> str:
    if settings.objective == "least_energy":
        return f"least energy with slowdown ≤ {100 * settings.slowdown_bound:g} %"
    return f"cost η·E + (1−η)·P_max·T, η = {settings.eta:g}"


def _current_limit(s: GpuState) -> float:
    for value in (s.enforced_limit_w, s.power_limit_w, s.default_limit_w, s.max_limit_w):
        if np.isfinite(value):
            return float(min(max(value, s.min_limit_w), s.max_limit_w))
    return float(s.max_limit_w)


def _refusal(
    state: GpuState, settings: CapSettings, why: str, rec: CapRecommendation | None = None
) -> CapRecommendation:
    return CapRecommendation(
        host=state.host,
        gpu=state.gpu,
        model=state.model,
        current_limit_w=float(state.enforced_limit_w),
        recommended_limit_w=None,
        min_limit_w=float(state.min_limit_w),
        max_limit_w=float(state.max_limit_w),
        saving_w=0.0,
        saving_pct=0.0,
        slowdown_pct=0.0,
        objective=_objective_name(settings),
        confidence=rec.confidence if rec else 0.0,
        evidence=rec.evidence if rec else Evidence(0, 0, 0),
        boundness=rec.boundness if rec else None,
        reason=f"no recommendation: {why}",
    )


def _take(w: GpuWorkloads, rows: np.ndarray) -> GpuWorkloads:
    fields = GpuWorkloads.__dataclass_fields__
    return GpuWorkloads(**{f: getattr(w, f)[rows] for f in fields})
