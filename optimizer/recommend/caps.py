"""Power caps per job: the limit with the least energy per unit of work whose slowdown stays
within the bound and is paid for by its saving (:mod:`.gain`), predicted from recent work.

The GPUs of one job (the same Slurm job or pod in ``gpu_job``) get one limit: a synchronous
job runs at its slowest GPU's pace, so its slowdown is the slowest GPU's and the others
wait at their gap power. Every GPU's node keeps drawing its other power (CPUs, fans) for as
long as the work takes; that counts against a cap's saving. The slowdown bound holds on the
cautious prediction (the most clock-sensitive end of each work's memory-boundness range and
the flattest plausible clock curve, :mod:`..models.cap_response`); the saving must pay for
the expected slowdown. A recommendation reports both slowdowns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from wattwise.optimizer.models.cap_predict import at_limits
from wattwise.optimizer.models.cap_response import GpuWorkloads
from wattwise.optimizer.recommend import health
from wattwise.optimizer.recommend.gain import pick_bounded
from wattwise.optimizer.recommend.settings import CapSettings
from wattwise.optimizer.recommend.types import CapRecommendation, Evidence
from wattwise.optimizer.telemetry import Floats, GpuState, HostState, Series

IDLE_SHARE = 0.05
"""A GPU below 5 % utilization holding under 5 % of its memory runs no job now."""


@dataclass(frozen=True)
class Group:
    """The GPUs of one job (positions into the usable GPUs), and what the job would do on
    each candidate limit."""

    members: list[int]
    name: str


def recommend_caps(
    gpus: Sequence[GpuState],
    work: GpuWorkloads,
    settings: CapSettings,
    *,
    jobs: Mapping[tuple[str, int], str] | None = None,
    other_w: Mapping[str, float] | None = None,
    unhealthy: Mapping[tuple[str, int], str] | None = None,
) -> list[CapRecommendation]:
    """One recommendation (or a reasoned refusal) per GPU in ``gpus``.

    ``jobs`` maps (host, GPU) to the job running there; ``other_w`` maps a host to the
    power its node draws besides its GPUs, per GPU (0 where unknown); an unhealthy GPU
    (``unhealthy``, from :mod:`.health`) is refused with the reason.
    """
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
    states = [gpus[i] for i in usable]
    sub = work.take(np.array([rows[i] for i in usable], dtype=np.int64))
    chosen = dict(
        zip(usable, _choose(states, sub, settings, jobs or {}, other_w or {}), strict=True)
    )
    return [
        chosen[i] if i in chosen else _refusal(s, settings, sick.get(i) or _why_not(s, rows[i]))
        for i, s in enumerate(gpus)
    ]


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


def _groups(states: Sequence[GpuState], jobs: Mapping[tuple[str, int], str]) -> list[Group]:
    by_job: dict[str, list[int]] = {}
    for k, s in enumerate(states):
        by_job.setdefault(jobs.get((s.host, s.gpu)) or f"{s.host}/{s.gpu}", []).append(k)
    return [Group(members, name) for name, members in by_job.items()]


def _choose(
    states: list[GpuState],
    w: GpuWorkloads,
    settings: CapSettings,
    jobs: Mapping[tuple[str, int], str],
    other_w: Mapping[str, float],
) -> list[CapRecommendation]:
    if not states:
        return []
    low = np.array([s.min_limit_w for s in states])
    high = np.array([s.max_limit_w for s in states])
    current = np.array([_current_limit(s) for s in states])
    grid = np.arange(np.min(low), np.max(high) + settings.step_w / 2, settings.step_w)
    grid = np.unique(np.concatenate([grid, high, current]))
    inside = (grid[None, :] >= low[:, None] - 1e-9) & (grid[None, :] <= high[:, None] + 1e-9)
    limits = np.clip(np.broadcast_to(grid, inside.shape), low[:, None], high[:, None])
    typical, cautious = _Outlook(w, limits, high), _Outlook(w, limits, high, cautious=True)
    other = np.array([other_w.get(s.host, 0.0) for s in states])
    out: list[CapRecommendation | None] = [None] * len(states)
    for group in _groups(states, jobs):
        m = np.array(group.members)
        pace, energy, at_top = typical.job(m, w, other)
        cautious_pace, _, _ = cautious.job(m, w, other)
        worst = np.where(inside[m].all(axis=0), cautious_pace - 1.0, np.inf)
        best = _best(pace - 1.0, 1.0 - energy / at_top, worst, settings)
        now = int(np.argmin(np.abs(grid - current[m].max())))
        # No lower limit pays for itself: the job is best served at its top limit.
        k = best if best >= 0 else int(np.argmin(np.abs(grid - high[m].min())))
        power = typical.at.power_w
        for g in group.members:
            out[g] = _recommendation(
                states[g], w, g, settings, limit_w=float(limits[g, k]),
                slowdown=float(pace[k] - 1.0),
                slowdown_worst=float(cautious_pace[k] - 1.0),
                saving=float(1.0 - energy[k] / energy[now]),
                saving_w=float(power[g, now] - power[g, k]),
                hour_wh=float(power[g, now] + other[g]),
                job=group.name if len(group.members) > 1 else None,
            )  # fmt: skip
    return [r for r in out if r is not None]


class _Outlook:
    """Every GPU's work at every candidate limit, typical or cautious, and what a job of
    some of those GPUs does there."""

    def __init__(
        self, w: GpuWorkloads, limits: Floats, high: Floats, *, cautious: bool = False
    ) -> None:
        self.at = at_limits(w, limits, cautious=cautious)
        ref = at_limits(w, high, cautious=cautious)
        self.top_w = ref.power_w
        # Per GPU: wall time per unit of work relative to the same work at its top limit.
        self.stretch = ref.throughput[:, None] / np.maximum(self.at.throughput, 1e-9)

    def job(self, m: np.ndarray, w: GpuWorkloads, other: Floats) -> tuple[Floats, Floats, float]:
        """The job's pace (its slowest GPU's), its energy per unit of work at each candidate
        (GPUs that wait draw their gap power, the node its other power), and at the top."""
        stretch = self.stretch[m]
        pace = stretch.max(axis=0)
        waiting = w.gap_w[m, None] * (pace[None, :] - stretch)
        energy = (self.at.power_w[m] * stretch + waiting + other[m, None] * pace).sum(axis=0)
        return pace, energy, float((self.top_w[m] + other[m]).sum())


def _best(slowdown: Floats, saving: Floats, worst: Floats, settings: CapSettings) -> int:
    """The chosen candidate, or -1 when no limit below the top is worth it (the bound is held
    on the ``worst`` slowdown, the cautious one)."""
    bound = settings.slowdown_bound
    if settings.objective == "cost":
        cost = settings.eta * (1.0 - saving) + (1.0 - settings.eta) * (1.0 + slowdown)
        within = worst <= bound + 1e-9
        return int(np.argmin(np.where(within, cost, np.inf))) if within.any() else -1
    k = pick_bounded(slowdown, saving, worst, slowdown_bound=bound, gain_ratio=settings.gain_ratio)
    return int(k)


def _recommendation(
    state: GpuState,
    w: GpuWorkloads,
    k: int,
    settings: CapSettings,
    *,
    limit_w: float,
    slowdown: float,
    slowdown_worst: float,
    saving: float,
    saving_w: float,
    hour_wh: float,
    job: str | None,
) -> CapRecommendation:
    """``hour_wh``: what the GPU and its share of the node draw in an hour of the work now."""
    current = _current_limit(state)
    confidence = _confidence(w, k, settings)
    rec = CapRecommendation(
        host=state.host,
        gpu=state.gpu,
        model=state.model,
        current_limit_w=current,
        recommended_limit_w=limit_w,
        min_limit_w=float(state.min_limit_w),
        max_limit_w=float(state.max_limit_w),
        saving_w=saving_w,
        saving_pct=100.0 * saving,
        slowdown_pct=100.0 * slowdown,
        objective=_objective_name(settings),
        confidence=confidence,
        evidence=Evidence(int(w.window_start_ns[k]), int(w.window_end_ns[k]), int(w.samples[k])),
        boundness=float(w.boundness[k]),
        reason=_reason(w, k, limit_w, current, job),
        saving_wh_per_job_hour=hour_wh * saving,
        slowdown_worst_pct=100.0 * slowdown_worst,
    )
    if confidence < settings.min_confidence:
        return _refusal(state, settings, _low_confidence(w, k, settings, confidence), rec)
    return rec


def _confidence(w: GpuWorkloads, k: int, settings: CapSettings) -> float:
    """Enough buckets, one steady job, and how well μ is known (its range's width)."""
    enough = min(1.0, float(w.samples[k]) / settings.min_samples)
    steady = float(np.clip(1.0 - w.variation[k] / settings.max_variation, 0.0, 1.0))
    width = float(w.boundness[k] - w.boundness_low[k])
    return enough * steady * (1.0 - width)


def _low_confidence(w: GpuWorkloads, k: int, settings: CapSettings, confidence: float) -> str:
    samples = int(w.samples[k])
    if samples < settings.min_samples:
        noun = "sample" if samples == 1 else "samples"
        return f"only {samples} busy {noun} of the {settings.min_samples} needed"
    return (
        f"confidence {confidence:.2f} is under {settings.min_confidence:g}: the work's "
        f"clock-dependent power varies by {w.variation[k]:.0%} over the window (a steady job "
        f"varies by less than {settings.max_variation:.0%})"
    )


def _reason(w: GpuWorkloads, k: int, target: float, current: float, job: str | None) -> str:
    mu, low = float(w.boundness[k]), float(w.boundness_low[k])
    kind = "memory-bound" if mu >= 0.5 else "compute-bound"
    source = "measured by GPM" if bool(w.measured_activity[k]) else "from NVML utilizations"
    whose = f"job {job}'s GPUs" if job else "the limit"
    if target < current:
        change = f"lower {whose} to {target:.0f} W"
    elif target > current:
        change = f"raise {whose} to {target:.0f} W: no lower limit saves more than it slows"
    else:
        change = "keep: no lower limit saves more energy than it costs in time"
    return f"{kind} work (μ {low:.2f}–{mu:.2f}, {source}): {change}"


def _objective_name(settings: CapSettings) -> str:
    if settings.objective == "least_energy":
        return (
            f"least energy with slowdown ≤ {100 * settings.slowdown_bound:g} % and at least "
            f"{settings.gain_ratio:g} % saved per 1 % slower"
        )
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


def other_power_per_gpu(gpus: Sequence[GpuState], hosts: Sequence[HostState]) -> dict[str, float]:
    """Host → what its node draws besides its GPUs, per GPU (hosts without a BMC reading of
    node power are left out: their other power counts as 0)."""
    gpu_w: dict[str, float] = {}
    count: dict[str, int] = {}
    for g in gpus:
        if np.isfinite(g.power_w):
            gpu_w[g.host] = gpu_w.get(g.host, 0.0) + g.power_w
            count[g.host] = count.get(g.host, 0) + 1
    return {
        h.host: max(h.node_power_w - gpu_w[h.host], 0.0) / count[h.host]
        for h in hosts
        if np.isfinite(h.node_power_w) and count.get(h.host)
    }


def jobs_on_gpus(jobs: Series) -> dict[tuple[str, int], str]:
    """(host, GPU) → the job in its newest ``gpu_job`` bucket."""
    out: dict[tuple[str, int], tuple[int, str]] = {}
    host, gpu, job = (jobs.tags.get(t, np.array([], dtype=object)) for t in ("host", "gpu", "job"))
    for h, g, j, t in zip(host, gpu, job, jobs.time_ns.tolist(), strict=True):
        key = (str(h), int(g)) if str(g).isdigit() else None
        if key is not None and (key not in out or t >= out[key][0]):
            out[key] = (t, str(j))
    return {key: job for key, (_, job) in out.items()}
