"""Power budgets: caps that hold every rack, zone and site limit through the next refresh
interval, taken from the work that loses least.

Every limit is node power at the power supplies: a scope counts its nodes' other power
at its high quantile (:mod:`..models.node_other`) plus, through the supplies' slope,
what each GPU counts (:mod:`.budget_draw`): its work's mean draw at its default limit
(an idle GPU's idle draw), what its model's busy GPUs draw more where new work may start
within the interval (:mod:`..models.churn`), and its share of a reserve at the 99th
percentile of the scope's draw — never more than its limit, which the GPU holds within a
second. That sum under today's limits is the scope's predicted peak; a scope is planned
once it reaches ``plan_above_share`` of its limit, and its caps then keep it within
``1 − margin_share`` of the limit. With ``hold = "always"`` every GPU counts at its cap
instead, so a planned scope holds whatever work starts, at the cost of watts no GPU draws.

Within that, the least predicted loss of work wins (:mod:`.budget_solve`): a cap over
work that draws less than it frees nothing, idle GPUs lose only the work that may start
on them, work whose time barely follows the clock (memory-bound, or mostly waiting) gives
up watts before compute-bound work. A job is one unit — its GPUs share one limit, since a
synchronous job runs at its slowest GPU's pace — and operator priorities weigh its loss
(:data:`~.settings.PRIORITY_WEIGHTS`). When even minimum limits cannot fit, the plan
says so and names the jobs to pause or move, least important first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from wattwise.optimizer.models.cap_predict import at_limits
from wattwise.optimizer.models.cap_response import GpuWorkloads
from wattwise.optimizer.models.churn import Churn
from wattwise.optimizer.models.node_other import NodeOther
from wattwise.optimizer.recommend.budget_draw import counted_draw, reserve_per_gpu
from wattwise.optimizer.recommend.budget_fleet import Fleet, fleet_of, per_model
from wattwise.optimizer.recommend.budget_plan import Outcome, plan_of
from wattwise.optimizer.recommend.budget_solve import Problem, solve
from wattwise.optimizer.recommend.budget_types import BudgetPlan, BudgetScope
from wattwise.optimizer.recommend.settings import BudgetSettings
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
    fleet = fleet_of(gpus, work, jobs or {}, settings)
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
        reserve = reserve_per_gpu(fleet, changes, problem.scope_of_gpu)
        draw = counted_draw(fleet, limits, changes, reserve)
        problem = dataclasses.replace(problem, draw_w=draw)
        counted = counted_draw(fleet, fleet.current_w[:, None], changes, reserve)[:, 0]
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
    loss = np.maximum(rate[:, -1:] - rate, 0.0)
    return per_model(models, loss, fleet.util > 0, np.mean, np.zeros_like(rate))


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
