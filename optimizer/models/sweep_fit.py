"""Fit the limit response of a GPU model to published sweeps, and predict workloads it never saw.

One set of parameters per file (:class:`ResponseParams`): the share of power that does
not scale with the clock, the clock–power curve's knee, the lowest clock, and a typical
workload's memory-boundness and burst spread. They are fitted by least squares on the
relative throughput and energy of every workload at once (pooled: a held-out workload's
own μ is unknown, as a new job's is). Each workload's own μ is then read with the shared
parameters fixed; their spread is the plausible μ range a cap must hold across.

Leave one workload out (:func:`leave_one_out`) fits on the others and predicts the one
left out from its mean power at the top setting alone — what telemetry of an uncapped
job gives. A workload the limit already held at its top setting (:func:`held_at_top`)
wanted more than it drew: its demand there is a shared parameter, fitted on the other
workloads held so, as the power model fits what held work demands from what it does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import partial

import numpy as np
from scipy.optimize import least_squares

from wattwise.optimizer.models.limit_response import (
    ClockCurve,
    center_for_mean,
    respond,
    spread_quantiles,
)
from wattwise.optimizer.models.sweeps import Sweep
from wattwise.optimizer.telemetry import Floats

QUANTILES = 16
FIT_SLOWDOWN_MAX = 0.5
"""Points slower than this (deep stalls at the lowest limits) are left out of the fit."""
BOUNDNESS_GRID = np.linspace(0.0, 0.95, 20)
ROBUST_QUANTILE = 10.0
"""The μ a cap is chosen for when the work's own is unknown: the 10th percentile of the
fitted workloads' (lower μ, larger predicted slowdown)."""


@dataclass(frozen=True)
class ResponseParams:
    static_share: float
    """Power that does not scale with the clock, as a share of the GPU's top limit."""
    curve: ClockCurve
    min_clock_rel: float
    boundness: float
    spread: float
    """Half-width of the within-second demand spread, relative to its center."""
    held_demand_rel: float = 1.0
    """Demand at the top setting, relative to the limit, of work the limit already held
    there (:func:`held_at_top`): what it drew says only that it wanted at least that."""

    def vector(self) -> Floats:
        c = self.curve
        values = [self.static_share, c.knee_rel, c.knee_voltage, self.min_clock_rel]
        return np.array([*values, self.boundness, self.spread, self.held_demand_rel])

    @classmethod
    def of(cls, v: Sequence[float] | Floats) -> ResponseParams:
        return cls(float(v[0]), ClockCurve(float(v[1]), float(v[2])), *map(float, v[3:7]))


LOWER = ResponseParams(0.0, ClockCurve(0.3, 0.5), 0.15, 0.0, 0.0, 1.0).vector()
UPPER = ResponseParams(0.6, ClockCurve(0.97, 1.0), 0.8, 0.95, 0.95, 2.5).vector()
START = ResponseParams(0.2, ClockCurve(0.7, 0.8), 0.4, 0.3, 0.3, 1.2).vector()
HELD_SHARE = 0.95
"""A workload drawing this share of its top setting's limit is held there: the A40's GPT-3
backward passes draw 96 % of its 300 W at every clock from 1740 down to 1530 MHz, in the
same time, as its forward passes draw 99.6 %; the A100 SXM's backward passes draw 96 % of
its 500 W, in the same time at its top three clocks."""


def held_at_top(sweep: Sweep) -> bool:
    """Whether the limit already held the workload at its top setting."""
    return sweep.mean_power_w >= HELD_SHARE * _top_limit_w(sweep)


def _top_limit_w(sweep: Sweep) -> float:
    return float(sweep.settings[0]) if sweep.kind == "limit" else sweep.gpu.max_limit_w


@dataclass(frozen=True)
class Prediction:
    throughput_rel: Floats
    energy_rel: Floats


def predict(sweep: Sweep, p: ResponseParams) -> Prediction:
    """Relative throughput and energy at each of the sweep's settings, from its top one."""
    grid = predict_grid(sweep, p, np.array([p.boundness]), np.array([p.spread]))
    return Prediction(grid.throughput_rel[0], grid.energy_rel[0])


def predict_grid(sweep: Sweep, p: ResponseParams, boundness: Floats, spread: Floats) -> Prediction:
    """:func:`predict` for C candidate (μ, spread) pairs at once: arrays shaped (C, settings)."""
    gpu = sweep.gpu
    static = p.static_share * gpu.max_limit_w
    top_limit = _top_limit_w(sweep)
    mean = np.full(boundness.shape, sweep.mean_power_w)
    center = center_for_mean(mean, spread, top_limit, QUANTILES)
    if held_at_top(sweep):
        center = np.maximum(center, p.held_demand_rel * top_limit)
    demand = spread_quantiles(center, spread, QUANTILES)[:, None, :]  # C × 1 × Q
    mu = boundness[:, None, None]
    run = partial(respond, static_w=static, curve=p.curve, min_clock_rel=p.min_clock_rel)
    if sweep.kind == "clock":
        cap = (sweep.settings / gpu.max_clock_mhz)[None, :, None]
        r = run(demand, boundness=mu, limit_w=gpu.max_limit_w, clock_cap_rel=cap)
        time, energy = r.time_per_work, r.energy_per_work
    elif sweep.stage_limits_w is None:
        r = run(demand, boundness=mu, limit_w=sweep.settings[None, :, None])
        time, energy = r.time_per_work, r.energy_per_work
    else:
        # A synchronous pipeline runs at its slowest stage's pace; the others wait at S.
        # Stages were given limits in proportion to their load: their demand is taken so.
        stages = sweep.stage_limits_w
        weight = (stages[0] / stages[0].mean())[None, None, :, None]
        r = run(
            demand[:, :, None, :] * weight,
            boundness=mu[..., None],
            limit_w=stages[None, :, :, None],
        )
        time = r.time_per_work.max(axis=-1)
        waiting = static * (time[..., None] - r.time_per_work)
        energy = (r.energy_per_work + waiting).sum(axis=-1)
    return Prediction(
        throughput_rel=np.asarray(time[:, :1] / time, dtype=np.float64),
        energy_rel=np.asarray(energy / energy[:, :1], dtype=np.float64),
    )


def fit(
    sweeps: Sequence[Sweep],
    start: ResponseParams | None = None,
    *,
    static_share: float | None = None,
) -> ResponseParams:
    """Pooled least squares on relative throughput and energy of every sweep; with
    ``static_share``, the share of power that does not scale with the clock held there (total
    power never shows its split: a caller with its own split fits the curve under it)."""

    # Without work held at its top setting the held demand has nothing to fit: it is left
    # out of the search (pinned, it would still move the solver's path).
    free = len(START) if any(held_at_top(s) for s in sweeps) else len(START) - 1
    pinned = np.ones(len(START) - free)  # held_demand_rel = 1: demand is what was drawn

    def residuals(v: Floats) -> Floats:
        p = ResponseParams.of(np.concatenate([v, pinned]))
        parts = []
        for s in sweeps:
            pred = predict(s, p)
            used = s.throughput_rel >= 1.0 / (1.0 + FIT_SLOWDOWN_MAX)
            parts += [(pred.throughput_rel - s.throughput_rel)[used]]
            parts += [(pred.energy_rel - s.energy_rel)[used]]
        return np.concatenate(parts)

    low, high = LOWER[:free].copy(), UPPER[:free].copy()
    if static_share is not None:
        low[0], high[0] = static_share - 1e-6, static_share + 1e-6
    x0 = np.clip((start.vector() if start else START)[:free], low + 1e-7, high - 1e-7)
    result = least_squares(residuals, x0, bounds=(low, high), max_nfev=200, x_scale="jac")
    return ResponseParams.of(np.concatenate([result.x, pinned]))


SPREAD_GRID = np.linspace(0.0, 0.9, 10)


def own_fit(sweep: Sweep, p: ResponseParams) -> tuple[float, float]:
    """The (μ, spread) on a grid under which the shared ``p`` fits this sweep best."""
    mus, spreads = (g.ravel() for g in np.meshgrid(BOUNDNESS_GRID, SPREAD_GRID))
    pred = predict_grid(sweep, p, mus, spreads)
    used = sweep.throughput_rel >= 1.0 / (1.0 + FIT_SLOWDOWN_MAX)
    sse = ((pred.throughput_rel - sweep.throughput_rel)[:, used] ** 2).sum(axis=1)
    sse += ((pred.energy_rel - sweep.energy_rel)[:, used] ** 2).sum(axis=1)
    best = int(np.argmin(sse))
    return float(mus[best]), float(spreads[best])


@dataclass(frozen=True)
class Fitted:
    """Shared parameters, and each fitted workload's own μ and spread by family."""

    params: ResponseParams
    families: tuple[str, ...]
    boundness_each: Floats
    spread_each: Floats

    def for_family(self, family: str) -> tuple[ResponseParams, ResponseParams]:
        """(typical, cautious) parameters for new work of ``family``: the median μ and spread
        of its fitted siblings (every workload's when it has none), and for the cautious
        one the 10th percentile of μ and the 90th of spread — the slowdown a cap must hold under."""
        same = np.array([f == family for f in self.families])
        pick = same if same.any() else np.ones_like(same)
        typical = replace(
            self.params,
            boundness=float(np.median(self.boundness_each[pick])),
            spread=float(np.median(self.spread_each[pick])),
        )
        low = float(np.percentile(self.boundness_each[pick], ROBUST_QUANTILE))
        wide = float(np.percentile(self.spread_each[pick], 100.0 - ROBUST_QUANTILE))
        cautious = replace(
            typical, boundness=min(low, typical.boundness), spread=max(wide, typical.spread)
        )
        return typical, cautious


def fit_with_range(sweeps: Sequence[Sweep], start: ResponseParams | None = None) -> Fitted:
    params = fit(sweeps, start)
    own = np.array([own_fit(s, params) for s in sweeps]).reshape(-1, 2)
    return Fitted(params, tuple(s.family for s in sweeps), own[:, 0], own[:, 1])


@dataclass(frozen=True)
class Check:
    """One workload predicted from the others: what was measured, what was predicted, and
    where the cautious prediction would have put the cap."""

    sweep: Sweep
    typical: Prediction
    cautious: Prediction


def leave_one_out(
    sweeps: Sequence[Sweep], progress: Callable[[int, int], None] | None = None
) -> list[Check]:
    """Each workload predicted by a fit on all the others, from its top-setting draw alone."""
    everything = fit(sweeps)
    checks = []
    for i, held_out in enumerate(sweeps):
        rest = [s for j, s in enumerate(sweeps) if j != i]
        typical, cautious = fit_with_range(rest, everything).for_family(held_out.family)
        checks.append(Check(held_out, predict(held_out, typical), predict(held_out, cautious)))
        if progress is not None:
            progress(i + 1, len(sweeps))
    return checks
