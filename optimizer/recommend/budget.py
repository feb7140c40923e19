"""Power budgets: caps that hold every rack, zone and site limit through the next refresh
interval, taken from the work that loses least.

A scope is planned when its predicted peak reaches ``plan_above_share`` of its limit. Its
predicted peak is, at the power supplies, the nodes' other power at its high quantile
(:mod:`..models.node_other`) plus every GPU at the top of its power distribution over
seconds — what the supplies and the breaker answer to, not the kernels' millisecond
bursts: a busy GPU's work at its default limit, its mean (kernels and gaps as its
utilization has them, :mod:`..models.cap_predict`), with a reserve for its spread; an idle GPU
as the busy GPUs of its model (a job may start there); each no higher than its limit,
which the GPU holds within a second.

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

import dataclasses
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
from wattwise.optimizer.telemetry import Floats, GpuState, Ints

LEVELS = ("rack", "zone", "site")
RESPONSE_POINTS = 9
RESERVE_Z = 2.33
"""The reserve covers the 99th percentile of the scope's draw (normal approximation)."""
PEAK_SPREAD = 0.05
"""One standard deviation of a job's power from second to second, relative to its mean:
duty and batch sizes vary from one second to the next."""


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
    slope: float
    """Watts at the supplies per GPU watt."""

    def cap_room_w(self, margin_share: float) -> tuple[Floats, ...]:
        """Per level, per scope: what its GPUs' limits may add up to if every GPU drew its
        limit (inf where the scope is not planned), as :attr:`Problem.room_w` is laid out."""
        rooms = []
        for level in LEVELS:
            mine = [i for i, s in enumerate(self.scopes) if s.kind == level]
            room = np.array(
                [
                    ((1.0 - margin_share) * self.scopes[i].limit_w - self.other_w[i]) / self.slope
                    if self.planned[i]
                    else np.inf
                    for i in mine
                ]
            )
            rooms.append(room)
        return tuple(rooms)


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
    changes = (churn or Churn(0.0, 0.0)).change_probability(busy, interval_s)
    everywhere = np.ones(len(scopes), dtype=np.bool_)
    problem = _problem(fleet, limits, loss, scopes, members, other, everywhere, nodes, settings)
    if settings.hold == "always":
        counted = np.minimum(fleet.peak_w, fleet.current_w)
    else:
        reserve = _reserve_per_gpu(fleet, changes, problem.scope_of_gpu)
        draw = _counted_draw(fleet, limits, changes, reserve)
        problem = dataclasses.replace(problem, draw_w=draw)
        counted = _counted_draw(fleet, fleet.current_w[:, None], changes, reserve)[:, 0]
    before = other + nodes.slope * np.array([counted[m].sum() for m in members])
    planned = before >= settings.plan_above_share * np.array([s.limit_w for s in scopes])
    problem = dataclasses.replace(problem, room_w=_unplanned_free(problem, scopes, planned))
    return Setup(fleet, scopes, members, other, before, planned, pace, problem, nodes.slope)


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
    rows = np.arange(len(fleet.states))
    drawn = problem.counted_w[rows, solution.choice[fleet.unit]]
    after = [
        float(o + nodes.slope * drawn[m].sum())
        for m, o in zip(setup.members, setup.other_w, strict=True)
    ]
    scope_rows = (
        scopes, setup.members, setup.other_w, setup.before_w, after, setup.planned, feasible,
    )  # fmt: skip
    return [
        plan_of(
            fleet,
            outcome,
            scope,
            m,
            other=float(o),
            before=float(b),
            after=a,
            planned=bool(p),
            feasible=f,
            nodes=nodes,
            settings=settings,
        )
        for scope, m, o, b, a, p, f in zip(*scope_rows, strict=True)
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
    mean = np.full(len(states), np.nan)
    if busy.any():
        at_default = at_limits(work.take(rows[busy]), default[busy]).power_w
        mean[busy] = at_default
    models = np.array([s.model for s in states], dtype=object)
    typical = _typical_busy_peak(models, mean, default)
    peak = np.where(busy, mean, typical)
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
        typical_w=typical,
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


def _typical_busy_peak(models: np.ndarray, peak: Floats, default: Floats) -> Floats:
    """Per GPU: the mean peak of the busy GPUs of its model (its default limit if none)."""
    out = default.copy()
    for model in set(models.tolist()):
        same = models == model
        seen = peak[same & np.isfinite(peak)]
        if seen.size:
            out[same] = float(np.mean(seen))
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


def _counted_draw(fleet: Fleet, limits: Floats, changes: Floats, reserve: Floats) -> Floats:
    """(G, K): what each GPU counts against its scopes at each candidate: its work's draw
    now, and where other work may start in the interval (with the probability work has
    changed there) what its model's busy GPUs draw more than that, plus its share of the
    scope's reserve — never more than the candidate limit, which the GPU holds. A change to
    work that draws less is not counted: the scope's peak comes before it."""
    own = np.minimum(limits, np.where(fleet.util > 0, fleet.peak_w, fleet.idle_w)[:, None])
    more = np.maximum(np.minimum(limits, fleet.typical_w[:, None]) - own, 0.0)
    return np.asarray(
        np.minimum(own + changes[:, None] * more + reserve[:, None], limits), dtype=np.float64
    )


def _reserve_per_gpu(fleet: Fleet, changes: Floats, scope_of_gpu: tuple[Ints, ...]) -> Floats:
    """Each GPU's share of the watts its scopes keep above their expected draw:
    :data:`RESERVE_Z` standard deviations of the scope's sum, from work that changes (each
    GPU's independently) and from each job's seconds above its mean (:data:`PEAK_SPREAD`;
    a job's GPUs move together, jobs independently). A scope's reserve is shared in
    proportion to each GPU's variance; a GPU keeps its largest share over its scopes (a
    rack pools fewer GPUs than the site, so its shares are larger)."""
    own = np.where(fleet.util > 0, fleet.peak_w, fleet.idle_w)
    jump = np.maximum(np.minimum(fleet.typical_w, fleet.default_w) - own, 0.0)
    job_w = np.bincount(fleet.unit, weights=own, minlength=len(fleet.unit_names))
    variance = changes * (1.0 - changes) * jump**2 + PEAK_SPREAD**2 * job_w[fleet.unit] * own
    out = np.zeros(len(own))
    for scope in scope_of_gpu:
        inside = scope >= 0
        pooled = np.bincount(scope[inside], weights=variance[inside])
        share = RESERVE_Z * variance[inside] / np.sqrt(np.maximum(pooled[scope[inside]], 1e-12))
        out[inside] = np.maximum(out[inside], share)
    return out


def _unplanned_free(
    problem: Problem, scopes: Sequence[BudgetScope], planned: np.ndarray
) -> tuple[Floats, ...]:
    """The rooms with those of unplanned scopes lifted: their limits bind nobody."""
    rooms = []
    for level, room in zip(LEVELS, problem.room_w, strict=True):
        mine = planned[[i for i, s in enumerate(scopes) if s.kind == level]]
        rooms.append(np.asarray(np.where(mine, room, np.inf), dtype=np.float64))
    return tuple(rooms)


def _feasible_by_scope(
    feasible: tuple[np.ndarray, ...], scopes: Sequence[BudgetScope]
) -> list[bool]:
    out, seen = [], dict.fromkeys(LEVELS, 0)
    for scope in scopes:
        level = LEVELS.index(scope.kind)
        out.append(bool(feasible[level][seen[scope.kind]]))
        seen[scope.kind] += 1
    return out
