"""Power budgets: caps that hold every rack, zone and site limit through the next refresh
interval, taken from the work that loses least.

A scope is planned when its predicted peak reaches ``plan_above_share`` of its limit. Its
predicted peak is, at the power supplies, the nodes' other power at its high quantile
(:mod:`..models.node_other`) plus every GPU at the top of its power distribution: a busy
GPU's bursts (the highest instantaneous power its work reached, at today's limit), an
idle GPU as the busy GPUs of its model burst (a job may start there), each no higher than
its limit, which the GPU holds within a second.

A planned scope's caps must hold its limit whatever work starts during the interval, so
they are chosen to fit with every GPU *at* its cap: ``other + slope·Σ caps ≤ (1 −
margin)·limit``. Within that, the least predicted loss of work wins (:mod:`.budget_solve`):
an idle GPU loses nothing now and goes to its minimum first, then work whose time barely
follows the clock (memory-bound, or mostly waiting) gives up its watts, compute-bound
work last. A job is one unit — its GPUs share one limit, since a synchronous job runs
at its slowest GPU's pace — and operator priorities weigh its loss
(:data:`~.settings.PRIORITY_WEIGHTS`). When even minimum limits cannot fit, the plan
says so and names the jobs to pause or move, least important first.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from wattwise.optimizer.models.cap_predict import at_limits
from wattwise.optimizer.models.cap_response import GpuWorkloads
from wattwise.optimizer.models.churn import Churn
from wattwise.optimizer.models.node_other import NodeOther
from wattwise.optimizer.recommend.budget_plan import Fleet, Outcome, plan_of
from wattwise.optimizer.recommend.budget_solve import Problem, solve
from wattwise.optimizer.recommend.budget_types import BudgetPlan, BudgetScope
from wattwise.optimizer.recommend.settings import PRIORITY_WEIGHTS, BudgetSettings
from wattwise.optimizer.telemetry import Floats, GpuState

LEVELS = ("rack", "zone", "site")
RESPONSE_POINTS = 9


@dataclass(frozen=True)
class Setup:
    """A planning problem as the planner poses it, before it is solved: baselines that
    share wattwise's predictions but allocate otherwise start from it."""

    fleet: Fleet
    scopes: Sequence[BudgetScope]
    members: list[np.ndarray]
    """Per scope: positions of its GPUs in ``fleet.states``."""
    other_w: Floats
    """Per scope: its nodes' power besides their GPUs (high quantile), at the supplies."""
    before_w: Floats
    planned: np.ndarray
    pace: Floats
    problem: Problem


def setup_budgets(
    gpus: Sequence[GpuState],
    work: GpuWorkloads,
    scopes: Sequence[BudgetScope],
    nodes: NodeOther,
    settings: BudgetSettings,
    *,
    jobs: Mapping[tuple[str, int], str] | None = None,
    churn: Churn | None = None,
    interval_s: float = 300.0,
) -> Setup:
    """The problem :func:`plan_budgets` solves; ``churn`` (none: work never changes) says how
    much of the next ``interval_s`` each GPU's limit will spend on work not seen yet."""
    fleet = _fleet(gpus, work, jobs or {}, settings)
    limits = _candidates(fleet, settings.step_w)
    rate = _work_rates(fleet, work, limits)
    busy = fleet.util > 0
    unplanned = (churn or Churn(0.0, 0.0)).unplanned_share(busy, interval_s)
    loss, pace = _unit_losses(fleet, rate, unplanned)
    members = _members(fleet, scopes)
    other = np.array([_other_w(fleet, m, nodes) for m in members])
    before = other + nodes.slope * np.array(
        [np.minimum(fleet.peak_w[m], fleet.current_w[m]).sum() for m in members]
    )
    planned = before >= settings.plan_above_share * np.array([s.limit_w for s in scopes])
    problem = _problem(fleet, limits, loss, scopes, members, other, planned, nodes, settings)
    return Setup(fleet, scopes, members, other, before, planned, pace, problem)


def plan_budgets(
    gpus: Sequence[GpuState],
    work: GpuWorkloads,
    scopes: Sequence[BudgetScope],
    nodes: NodeOther,
    settings: BudgetSettings,
    *,
    jobs: Mapping[tuple[str, int], str] | None = None,
    churn: Churn | None = None,
    interval_s: float = 300.0,
) -> list[BudgetPlan]:
    """One plan per scope in ``scopes`` (empty without scopes), for the next ``interval_s``."""
    if not scopes:
        return []
    setup = setup_budgets(
        gpus, work, scopes, nodes, settings, jobs=jobs, churn=churn, interval_s=interval_s
    )
    fleet, problem = setup.fleet, setup.problem
    solution = solve(problem)
    outcome = Outcome(
        limit_w=solution.limit_w,
        pace=setup.pace[fleet.unit, solution.choice[fleet.unit]],
        room_w=problem.room_w,
        scope_of_gpu=problem.scope_of_gpu,
    )
    feasible = _feasible_by_scope(solution.feasible, scopes)
    scope_rows = (scopes, setup.members, setup.other_w, setup.before_w, setup.planned, feasible)
    return [
        plan_of(
            fleet,
            outcome,
            scope,
            m,
            other=float(o),
            before=float(b),
            planned=bool(p),
            feasible=f,
            nodes=nodes,
            settings=settings,
        )
        for scope, m, o, b, p, f in zip(*scope_rows, strict=True)
    ]


def _fleet(
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
    burst = np.where(busy, work.burst_w[rows], np.nan)
    models = np.array([s.model for s in states], dtype=object)
    peak = np.where(busy, burst, _typical_busy_peak(models, burst, default))
    power = np.array([s.power_w for s in states])
    idle_w = _typical_idle(models, np.where(busy, np.nan, power), low)
    names = [jobs.get((s.host, s.gpu)) or f"{s.host}/{s.gpu}" for s in states]
    unit_names, unit = np.unique(np.array(names, dtype=object), return_inverse=True)
    priority = [_priority(str(n), states, unit, u, settings) for u, n in enumerate(unit_names)]
    return Fleet(
        states=states,
        low_w=low,
        default_w=default,
        current_w=np.array([_current(s) for s in states]),
        util=util,
        peak_w=peak,
        idle_w=idle_w,
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


def _typical_busy_peak(models: np.ndarray, burst: Floats, default: Floats) -> Floats:
    """Per GPU: the median burst of the busy GPUs of its model (its default limit if none)."""
    out = default.copy()
    for model in set(models.tolist()):
        same = models == model
        seen = burst[same & np.isfinite(burst)]
        if seen.size:
            out[same] = float(np.median(seen))
    return out


def _typical_idle(models: np.ndarray, idle_power: Floats, low: Floats) -> Floats:
    """Per GPU: what the idle GPUs of its model draw (median; a third of its minimum limit
    where none is idle), the draw of a GPU whose job is paused."""
    out = low / 3.0
    for model in set(models.tolist()):
        same = models == model
        seen = idle_power[same & np.isfinite(idle_power)]
        if seen.size:
            out[same] = float(np.median(seen))
    return out


def _priority(
    name: str, states: list[GpuState], unit: np.ndarray, u: int, settings: BudgetSettings
) -> str:
    hosts = {states[i].host for i in np.flatnonzero(unit == u)} if settings.priorities else set()
    for rule in settings.priorities:
        if any(fnmatch.fnmatchcase(name, p) for p in rule.jobs) or any(
            fnmatch.fnmatchcase(h, p) for h in hosts for p in rule.hosts
        ):
            return rule.priority
    return "normal"


def _candidates(fleet: Fleet, step_w: float) -> Floats:
    """(G, K): limits from each GPU's minimum to its default on one grid (the last column is
    every GPU's default limit)."""
    if not len(fleet.states):
        return np.zeros((0, 1))
    grid = np.arange(np.min(fleet.low_w), np.max(fleet.default_w) + step_w, step_w)
    grid = np.minimum(grid, np.max(fleet.default_w))
    return np.asarray(
        np.clip(grid[None, :], fleet.low_w[:, None], fleet.default_w[:, None]), dtype=np.float64
    )


def _work_rates(fleet: Fleet, work: GpuWorkloads, limits: Floats) -> Floats:
    """(G, K): each GPU's work rate at each candidate, relative to its default limit's and
    times the share of time it works (0 for idle GPUs). The response is computed at
    :data:`RESPONSE_POINTS` limits evenly spread from each GPU's minimum to its default, and
    read in between along straight lines: the curves are smooth, the controller costly."""
    index = {(str(h), str(g)): i for i, (h, g) in enumerate(zip(work.host, work.gpu, strict=True))}
    rows = np.array([index.get((s.host, str(s.gpu)), -1) for s in fleet.states], dtype=np.int64)
    busy = np.flatnonzero(rows >= 0)
    rate = np.zeros_like(limits)
    if busy.size:
        low, high = fleet.low_w[busy, None], fleet.default_w[busy, None]
        points = low + (high - low) * np.linspace(0.0, 1.0, RESPONSE_POINTS)[None, :]
        sub = work.take(rows[busy])
        at = at_limits(sub, points).throughput
        relative = np.minimum(at / np.maximum(at[:, -1:], 1e-9), 1.0)
        where = (limits[busy] - low) / np.maximum(high - low, 1e-9) * (RESPONSE_POINTS - 1)
        left = np.clip(np.floor(where).astype(np.int64), 0, RESPONSE_POINTS - 2)
        frac = np.clip(where - left, 0.0, 1.0)
        pick = np.arange(busy.size)[:, None]
        curve = relative[pick, left] * (1.0 - frac) + relative[pick, left + 1] * frac
        rate[busy] = fleet.util[busy, None] * curve
    return rate


def _unit_losses(fleet: Fleet, rate: Floats, unplanned: Floats) -> tuple[Floats, Floats]:
    """(U, K) each: each job's weighted expected loss of work over the interval, and its pace
    (time per unit of work against its default limits'). The job runs at its slowest GPU's
    pace; the share of the interval ``unplanned`` a GPU is expected to spend on work that
    starts later loses what its model's busy GPUs lose on average at that limit."""
    units = len(fleet.unit_names)
    full = np.maximum(rate[:, -1:], 1e-12)
    pace = np.zeros((units, rate.shape[1]))
    np.maximum.at(pace, fleet.unit, np.where(rate[:, -1:] > 0, full / np.maximum(rate, 1e-12), 1.0))
    pace = np.maximum(pace, 1.0)
    kept = np.bincount(fleet.unit, weights=fleet.util * (1.0 - unplanned), minlength=units)
    lost = kept[:, None] * (1.0 - 1.0 / pace)
    later = np.zeros_like(lost)
    np.add.at(later, fleet.unit, unplanned[:, None] * _typical_loss(fleet, rate))
    return np.asarray(fleet.weight[:, None] * (lost + later), dtype=np.float64), pace


def _typical_loss(fleet: Fleet, rate: Floats) -> Floats:
    """(G, K): what the busy GPUs of each GPU's model lose at each candidate, on average."""
    models = np.array([s.model for s in fleet.states], dtype=object)
    busy = fleet.util > 0
    loss = np.maximum(rate[:, -1:] - rate, 0.0)
    out = np.zeros_like(rate)
    for model in set(models.tolist()):
        same = models == model
        if (same & busy).any():
            out[same] = loss[same & busy].mean(axis=0)
    return out


def _members(fleet: Fleet, scopes: Sequence[BudgetScope]) -> list[np.ndarray]:
    """Per scope: positions of its GPUs (grouped once per kind, not searched per scope)."""
    everyone = np.arange(len(fleet.states))
    groups: dict[str, dict[str, np.ndarray]] = {}
    for kind in ("rack", "zone"):
        names = np.array([getattr(s, kind) for s in fleet.states], dtype=object)
        order = np.argsort(names, kind="stable")
        distinct, starts = np.unique(names[order], return_index=True)
        parts = np.split(order, starts[1:]) if order.size else []
        groups[kind] = {str(n): p for n, p in zip(distinct, parts, strict=True)}
    empty = np.zeros(0, dtype=np.int64)
    return [everyone if s.kind == "site" else groups[s.kind].get(s.name, empty) for s in scopes]


def _other_w(fleet: Fleet, members: np.ndarray, nodes: NodeOther) -> float:
    hosts = {fleet.states[i].host for i in members.tolist()}
    return float(sum(nodes.other_w.get(h, 0.0) for h in hosts))


def _problem(
    fleet: Fleet,
    limits: Floats,
    loss: Floats,
    scopes: Sequence[BudgetScope],
    members: list[np.ndarray],
    other: Floats,
    planned: np.ndarray,
    nodes: NodeOther,
    settings: BudgetSettings,
) -> Problem:
    """Levels bottom-up (racks, zones, site); a GPU has one scope per level at most."""
    scope_of_gpu, rooms = [], []
    for level in LEVELS:
        at_level = [i for i, s in enumerate(scopes) if s.kind == level]
        of_gpu = np.full(len(fleet.states), -1, dtype=np.int64)
        room = np.full(len(at_level), np.inf)
        for j, i in enumerate(at_level):
            of_gpu[members[i]] = j
            if planned[i]:
                usable = (1.0 - settings.margin_share) * scopes[i].limit_w - other[i]
                room[j] = usable / nodes.slope
        scope_of_gpu.append(of_gpu)
        rooms.append(room)
    return Problem(limits, fleet.unit, loss, tuple(scope_of_gpu), tuple(rooms))


def _feasible_by_scope(
    feasible: tuple[np.ndarray, ...], scopes: Sequence[BudgetScope]
) -> list[bool]:
    out, seen = [], dict.fromkeys(LEVELS, 0)
    for scope in scopes:
        level = LEVELS.index(scope.kind)
        out.append(bool(feasible[level][seen[scope.kind]]))
        seen[scope.kind] += 1
    return out
