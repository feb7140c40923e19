"""What the budget planner knows of each GPU: its limits, its work now, what it would draw
with work paused or with its model's usual work, and the job and priority it belongs to."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from wattwise.optimizer.models.cap_predict import at_limits
from wattwise.optimizer.models.cap_response import GpuWorkloads
from wattwise.optimizer.recommend.settings import PRIORITY_WEIGHTS, BudgetSettings
from wattwise.optimizer.telemetry import Floats, GpuState, Ints


@dataclass(frozen=True)
class Fleet:
    """Per GPU (of those with a known limit range): limits, work and where it stands."""

    states: list[GpuState]
    low_w: Floats
    default_w: Floats
    current_w: Floats
    util: Floats
    """Share of the time the GPU's kernels run now (0 for idle GPUs)."""
    peak_w: Floats
    """Its work's mean draw at its default limit (an idle GPU's: its model's busy GPUs')."""
    idle_w: Floats
    """What it would draw with its job paused."""
    typical_w: Floats
    """What the busy GPUs of its model draw on average (the next job's draw)."""
    spread: Floats
    """Its work's power from second to second: standard deviation over mean, as measured
    (NaN where not measured, and on idle GPUs)."""
    unit: Ints
    unit_names: list[str]
    weight: Floats
    """Per unit: its priority's weight."""
    priority: list[str]


def fleet_of(
    gpus: Sequence[GpuState],
    work: GpuWorkloads,
    jobs: Mapping[tuple[str, int], str],
    settings: BudgetSettings,
) -> Fleet:
    states = [s for s in gpus if np.isfinite(s.min_limit_w) and np.isfinite(s.max_limit_w)]
    index = {(str(h), str(g)): i for i, (h, g) in enumerate(zip(work.host, work.gpu, strict=True))}
    rows = np.array([index.get((s.host, str(s.gpu)), -1) for s in states], dtype=np.int64)
    busy = rows >= 0
    low = np.array([s.min_limit_w for s in states])
    default = np.array([_default(s) for s in states])
    util = np.where(busy, work.util_gpu[rows], 0.0)
    mean = np.full(len(states), np.nan)
    spread = np.full(len(states), np.nan)
    if busy.any():
        at_default = at_limits(work.take(rows[busy]), default[busy]).power_w
        mean[busy] = at_default
        spread[busy] = work.power_spread[rows[busy]]
    models = np.array([s.model for s in states], dtype=object)
    # An idle GPU draws, once work starts, as its model's busy GPUs do (else its default).
    typical = per_model(models, mean, busy, np.mean, default)
    peak = np.where(busy, mean, typical)
    power = np.array([s.power_w for s in states])
    # What a paused job's GPU draws: its model's idle GPUs (median), else a third of its
    # minimum limit.
    idle = ~busy & np.isfinite(power)
    idle_w = per_model(models, power, idle, np.median, low / 3.0)
    names = [jobs.get((s.host, s.gpu)) or f"{s.host}/{s.gpu}" for s in states]
    unit_names, unit = np.unique(np.array(names, dtype=object), return_inverse=True)
    hosts_of = _hosts_of_units(states, np.asarray(unit, dtype=np.int64), len(unit_names))
    priority = [_priority(str(n), hosts_of[u], settings) for u, n in enumerate(unit_names)]
    return Fleet(
        states=states,
        low_w=low,
        default_w=default,
        current_w=np.array([_current(s) for s in states]),
        util=util,
        peak_w=peak,
        idle_w=idle_w,
        typical_w=typical,
        spread=spread,
        unit=np.asarray(unit, dtype=np.int64),
        unit_names=[str(n) for n in unit_names],
        weight=np.array([PRIORITY_WEIGHTS[p] for p in priority]),
        priority=priority,
    )


def _default(s: GpuState) -> float:
    value = s.default_limit_w if np.isfinite(s.default_limit_w) else s.max_limit_w
    return float(min(max(value, s.min_limit_w), s.max_limit_w))


def _current(s: GpuState) -> float:
    for value in (s.enforced_limit_w, s.power_limit_w):
        if np.isfinite(value):
            return float(min(max(value, s.min_limit_w), s.max_limit_w))
    return _default(s)


def per_model(
    models: np.ndarray,
    values: Floats,
    use: np.ndarray,
    how: Callable[..., Floats],
    fallback: Floats,
) -> Floats:
    """Per GPU (the rows of ``values``): ``how`` (``np.mean``, ``np.median`` …, over axis 0)
    of the rows of its model marked ``use``; its row of ``fallback`` where none is."""
    out = np.array(fallback, dtype=np.float64)
    for model in set(models.tolist()):
        same = models == model
        if (same & use).any():
            out[same] = how(values[same & use], axis=0)
    return out


def _hosts_of_units(states: list[GpuState], unit: np.ndarray, units: int) -> list[set[str]]:
    out: list[set[str]] = [set() for _ in range(units)]
    for state, u in zip(states, unit.tolist(), strict=True):
        out[u].add(state.host)
    return out


def _priority(name: str, hosts: set[str], settings: BudgetSettings) -> str:
    """The first matching rule's class: by the job's id, or by a host it runs on."""
    for rule in settings.priorities:
        if any(fnmatch.fnmatchcase(name, p) for p in rule.jobs) or any(
            fnmatch.fnmatchcase(h, p) for h in hosts for p in rule.hosts
        ):
            return rule.priority
    return "normal"
