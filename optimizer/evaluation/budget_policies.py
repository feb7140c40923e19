"""Power budgets on the twin: no caps, a uniform cap, proportional caps, wattwise, the oracle.

Every policy plans as the service does: at each refresh and at the edges of timed events
(``budgets.event_lead_s`` before an event starts, from when the event counts in the plan,
and at its end), from the limits in force then (the racks' budgets, the scenario's zone
and site limits, and those events). Its limits reach the GPUs one applier poll later
(:data:`APPLIER_POLL_S`, the latest an applier polling at its default interval picks a
plan up) and stay until the next plan arrives, whatever jobs start or end.

The uniform and proportional baselines share wattwise's predictions — which scopes need
a plan and how much room their GPUs' limits have — and differ only in how they split it;
the oracle plans with the twin's truth: each GPU's true work rate under every limit, the
nodes' true other power and power-supply loss, under wattwise's rules (the same trigger
and the same guarantee that the caps hold the limit whatever starts).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from wattwise.collector.sim import nodes as twin_nodes
from wattwise.collector.sim.dvfs import Floats
from wattwise.collector.sim.workload import DUTY_JITTER
from wattwise.common.plan_contract import APPLIER_INTERVAL_S
from wattwise.optimizer.evaluation.budget_watch import EPS_S, Watch, event_edges, scopes_at
from wattwise.optimizer.evaluation.caps import _apply, _limits
from wattwise.optimizer.evaluation.replica import Replica
from wattwise.optimizer.evaluation.scenario import Scenario
from wattwise.optimizer.models.cap_response import (
    GpuWorkloads,
    estimate_workloads,
    fit_cap_models,
)
from wattwise.optimizer.models.churn import Churn, fit_churn
from wattwise.optimizer.models.node_other import NodeOther, fit_node_other
from wattwise.optimizer.recommend.budget import Setup, plan_budgets, setup_budgets
from wattwise.optimizer.recommend.budget_draw import RESERVE_Z
from wattwise.optimizer.recommend.budget_fleet import per_model
from wattwise.optimizer.recommend.budget_solve import Problem, solve
from wattwise.optimizer.recommend.budget_types import BudgetScope
from wattwise.optimizer.recommend.settings import BudgetSettings
from wattwise.optimizer.telemetry import GpuState

TELEMETRY_WINDOW_S = 900.0
STEP_W = 10.0
APPLIER_POLL_S = APPLIER_INTERVAL_S
"""``wattwise agent apply-power-plan``'s default ``--interval-s``: a plan made just after a
poll reaches the GPUs this much later."""


def budget_settings(scenario: Scenario) -> BudgetSettings:
    budget = scenario.budget
    return BudgetSettings(
        rack_w=scenario.rack_budgets_w,
        zone_w=dict(budget.zone_w) if budget else {},
        site_w=budget.site_w if budget else None,
        step_w=STEP_W,
    )


@dataclass
class BudgetPolicy:
    """Applies the limits :meth:`limits` chooses at each refresh; watches the budgets."""

    scenario: Scenario
    name: str = "no caps"
    watch: Watch = field(init=False)
    _start_s: float | None = field(default=None, init=False)
    _on_the_way: list[tuple[float, Floats]] = field(default_factory=list, init=False)
    """Plans made and not yet applied: when each reaches the GPUs, and its limits."""

    def __post_init__(self) -> None:
        self.watch = Watch(self.scenario)
        self.settings = budget_settings(self.scenario)
        # As the service: a plan covers the refresh interval and the appliers' poll.
        self.interval_s = self.settings.horizon_s(self.scenario.refresh_s)

    @property
    def edges_s(self) -> list[float]:
        """The one-off plans the service makes for the scenario's timed events."""
        return event_edges(self.scenario, self.settings.event_lead_s)

    def act(self, replica: Replica) -> None:
        if self._start_s is None:
            self._start_s = replica.clock.monotonic()
        elapsed = self._elapsed(replica)
        scopes = scopes_at(self.scenario, elapsed, self.settings.event_lead_s)
        _, _, default = _limits(replica)
        chosen = self.limits(replica, scopes) if scopes else default
        self._on_the_way.append((elapsed + APPLIER_POLL_S, chosen))

    def tick(self, replica: Replica) -> None:
        elapsed = self._elapsed(replica)
        self.watch.sample(replica, elapsed)
        # Sampled first: the step just run was under the limits in force until now.
        while self._on_the_way and self._on_the_way[0][0] <= elapsed + EPS_S:
            _apply(replica, self._on_the_way.pop(0)[1])

    def _elapsed(self, replica: Replica) -> float:
        return replica.clock.monotonic() - (self._start_s or 0.0)

    def limits(self, replica: Replica, scopes: list[BudgetScope]) -> Floats:
        """No caps: every GPU at its default limit."""
        return _limits(replica)[2]


class _Predicted(BudgetPolicy):
    """What wattwise predicts from the telemetry the store would hold."""

    def setup(self, replica: Replica, scopes: list[BudgetScope]) -> Setup:
        work, gpus, nodes, churn = predicted_inputs(replica, self.settings)
        return setup_budgets(
            gpus, work, scopes, nodes, self.settings, churn=churn, interval_s=self.interval_s
        )

    def limits(self, replica: Replica, scopes: list[BudgetScope]) -> Floats:
        setup = self.setup(replica, scopes)
        chosen = self.split(setup)
        out = _limits(replica)[2].copy()
        index = replica.fleet.layout.gpu_index
        for state, limit in zip(setup.fleet.states, chosen, strict=True):
            out[index[(state.host, state.gpu)]] = limit
        return out

    def split(self, setup: Setup) -> Floats:
        raise NotImplementedError


class UniformCap(_Predicted):
    """Every GPU of a planned scope at one limit: the scope's room split evenly, as if every
    GPU drew its limit (how a feed is divided without a model of what runs)."""

    def split(self, setup: Setup) -> Floats:
        f, p = setup.fleet, setup.problem
        limit = f.default_w.copy()
        for scope, room in zip(
            p.scope_of_gpu, setup.cap_room_w(self.settings.margin_share), strict=True
        ):
            count = np.bincount(scope[scope >= 0], minlength=len(room))
            share = room / np.maximum(count, 1)
            inside = scope >= 0
            limit[inside] = np.minimum(limit[inside], share[scope[inside]])
        return np.asarray(np.clip(limit, f.low_w, f.default_w), dtype=np.float64)


class Proportional(_Predicted):
    """Limits in proportion to each GPU's draw now, adding up to the scope's room as if
    every GPU drew its limit."""

    def split(self, setup: Setup) -> Floats:
        f, p = setup.fleet, setup.problem
        draw = np.array([s.power_w for s in f.states])
        draw = np.where(np.isfinite(draw), draw, f.low_w)
        caps = Problem(p.limits_w, p.unit_of_gpu, p.loss, p.scope_of_gpu, p.room_w)
        k = np.full(len(draw), p.limits_w.shape[1] - 1)
        for scope, room in zip(
            p.scope_of_gpu, setup.cap_room_w(self.settings.margin_share), strict=True
        ):
            for s in np.flatnonzero(np.isfinite(room)).tolist():
                m = np.flatnonzero(scope == s)
                k[m] = np.minimum(k[m], _scaled(caps, m, draw[m], float(room[s])))
        return np.asarray(p.limits_w[np.arange(len(k)), k], dtype=np.float64)


class UniformPredicted(_Predicted):
    """Every GPU of a planned scope at one limit, the highest whose predicted draw (as
    wattwise predicts it) fits the room: a uniform cap that knows what wattwise knows."""

    def split(self, setup: Setup) -> Floats:
        p = setup.problem
        k = np.full(len(p.unit_of_gpu), p.limits_w.shape[1] - 1)
        for scope, room in zip(p.scope_of_gpu, p.room_w, strict=True):
            for s in np.flatnonzero(np.isfinite(room)).tolist():
                m = scope == s
                fits = np.flatnonzero(p.counted_w[m].sum(axis=0) <= room[s] + 1e-6)
                k[m] = np.minimum(k[m], fits[-1] if fits.size else 0)
        return np.asarray(p.limits_w[np.arange(len(k)), k], dtype=np.float64)


def _scaled(p: Problem, m: np.ndarray, draw: Floats, room: float) -> np.ndarray:
    """Candidate of each GPU of ``m`` at ``c·draw`` for the largest ``c`` that fits."""
    limits, counted = p.limits_w[m], p.counted_w[m]
    rows = np.arange(len(m))

    def at(c: float) -> np.ndarray:
        below = np.sum(limits <= c * draw[:, None] + 1e-9, axis=1)
        return np.asarray(np.maximum(below - 1, 0), dtype=np.int64)

    lo, hi = 0.0, float(np.max(limits[:, -1] / np.maximum(draw, 1.0)))
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if counted[rows, at(mid)].sum() <= room + 1e-6 else (lo, mid)
    return at(lo)


class WattwiseBudget(_Predicted):
    """wattwise's plan (:func:`plan_budgets`): the lowest planned limit of each GPU."""

    def limits(self, replica: Replica, scopes: list[BudgetScope]) -> Floats:
        work, gpus, nodes, churn = predicted_inputs(replica, self.settings)
        out = _limits(replica)[2].copy()
        index = replica.fleet.layout.gpu_index
        plans = plan_budgets(
            gpus, work, scopes, nodes, self.settings, churn=churn, interval_s=self.interval_s
        )
        for plan in plans:
            for cap in plan.caps:
                i = index[(cap.host, cap.gpu)]
                out[i] = min(out[i], cap.planned_limit_w)
        return out


def predicted_inputs(
    replica: Replica, settings: BudgetSettings
) -> tuple[GpuWorkloads, list[GpuState], NodeOther, Churn]:
    """What wattwise plans from: its workload estimates, the newest GPU states, the nodes'
    other power and the churn, from the telemetry the replica recorded."""
    telemetry = replica.telemetry
    assert telemetry is not None, "wattwise needs the replica's telemetry"
    end_ns = replica.clock.time_ns()
    start_ns = end_ns - int(TELEMETRY_WINDOW_S * 1e9)
    series = telemetry.series("gpu", start_ns, end_ns + 1)
    hosts = telemetry.series("host", start_ns, end_ns + 1)
    work = estimate_workloads(series, fit_cap_models(series))
    nodes = fit_node_other(series, hosts, quantile=settings.peak_quantile)
    return work, telemetry.latest_gpus(), nodes, fit_churn(series)


class OracleBudget(BudgetPolicy):
    """The least true loss of work under wattwise's rules, planned on the twin's truth: each
    GPU's true work rate and power under every limit, which jobs truly end or start within
    the interval (the next job, not drawn yet, counted as its model's busy GPUs draw, with
    their spread in the reserve), the twin's true jitter, and the nodes' true other power
    and supply loss."""

    def limits(self, replica: Replica, scopes: list[BudgetScope]) -> Floats:
        fleet = replica.fleet
        low, _, default = _limits(replica)
        steps = int(np.ceil(np.max(default - low) / STEP_W)) + 1
        grid = np.minimum(low[:, None] + STEP_W * np.arange(steps)[None, :], default[:, None])
        rate, power = fleet.truth.at_power_limits(grid)
        rate = np.asarray(rate, dtype=np.float64)
        loss = _expected_true_loss(replica, np.maximum(rate[:, -1:] - rate, 0.0), self.interval_s)
        power = np.asarray(power, dtype=np.float64)
        draw, spread = _true_draw(replica, power, self.interval_s)
        slope = 1.0 / twin_nodes.PSU_EFFICIENCY
        now = np.argmin(np.abs(grid - fleet.limit_w[:, None]), axis=1)
        counted_now = draw[np.arange(len(grid)), now]
        levels, rooms = _true_rooms(replica, scopes, counted_now, spread, slope, self.settings)
        problem = Problem(grid, np.arange(len(grid)), loss, levels, rooms, draw_w=draw)
        return solve(problem).limit_w


def _expected_true_loss(replica: Replica, loss: Floats, interval_s: float) -> Floats:
    """Each GPU's true loss over the interval: its job's for as long as the job truly runs,
    then (and on idle GPUs once their gap truly ends) what its model's busy GPUs lose."""
    fleet = replica.fleet
    busy = fleet.jobs.has_job
    later = np.clip(1.0 - fleet.jobs.remaining_s / interval_s, 0.0, 1.0)
    typical = _by_model(replica, loss, busy, np.mean)
    return np.asarray(
        np.where(busy[:, None], (1.0 - later[:, None]) * loss, 0.0) + later[:, None] * typical,
        dtype=np.float64,
    )


def _true_draw(replica: Replica, power: Floats, interval_s: float) -> tuple[Floats, Floats]:
    """(G, K): each GPU's true draw at each candidate — its job's, or where work truly
    changes within the interval, what its model's busy GPUs draw there on average — and
    (G,) the variance of that draw: the next job's spread over the model's busy GPUs (at
    the default limit), and each second's jitter of the twin's duty."""
    jobs = replica.fleet.jobs
    changes = jobs.remaining_s < interval_s
    mean = _by_model(replica, power, jobs.has_job, np.mean)
    spread = _by_model(replica, power[:, -1:], jobs.has_job, np.var)[:, 0]
    draw = np.where(changes[:, None], mean, power)
    jitter = (DUTY_JITTER * draw[:, -1]) ** 2
    return np.asarray(draw, dtype=np.float64), np.where(changes, spread, 0.0) + jitter


def _by_model(
    replica: Replica, values: Floats, busy: np.ndarray, how: Callable[..., Floats]
) -> Floats:
    """Per GPU, ``how`` over the busy GPUs of its model (rows of ``values``); 0 without any."""
    models = np.array([m.key for m in replica.fleet.models], dtype=object)
    return per_model(models, values, busy, how, np.zeros_like(values))


def _true_rooms(
    replica: Replica,
    scopes: list[BudgetScope],
    counted_now: Floats,
    variance: Floats,
    slope: float,
    settings: BudgetSettings,
) -> tuple[tuple[np.ndarray, ...], tuple[Floats, ...]]:
    """Per level, each GPU's scope and each scope's room for its GPUs' draws: its limit
    less its nodes' true other power and the reserve wattwise's rules keep (the 99th
    percentile of the draw's spread), where its true peak reaches the planning share."""
    fleet, lay = replica.fleet, replica.fleet.layout
    gpu_w = np.bincount(lay.node_of_gpu, weights=fleet.op.power_w, minlength=lay.node_count)
    gpus = np.bincount(lay.node_of_gpu, minlength=lay.node_count)
    busy_now = np.bincount(lay.node_of_gpu, weights=fleet.op.busy, minlength=lay.node_count)
    # Other power with every GPU of the node busy: data-loader CPUs follow busy GPUs.
    cpu_more = twin_nodes.CPU_W_PER_PCT * twin_nodes.CPU_UTIL_PCT_PER_BUSY_GPU * (gpus - busy_now)
    other_node = fleet.nodes.node_power_w - slope * gpu_w + slope * cpu_more
    group = {
        "rack": (lay.rack_of_node[lay.node_of_gpu], list(lay.racks)),
        "zone": (lay.zone_of_node[lay.node_of_gpu], list(lay.zones)),
        "site": (np.zeros(lay.gpu_count, dtype=np.int64), [""]),
    }
    levels, rooms = [], []
    for kind in ("rack", "zone", "site"):
        mine = [s for s in scopes if s.kind == kind]
        codes, names = group[kind]
        of_gpu = np.full(lay.gpu_count, -1, dtype=np.int64)
        room = np.full(len(mine), np.inf)
        for j, scope in enumerate(mine):
            m = codes == names.index(scope.name)
            of_gpu[m] = j
            other = float(other_node[np.unique(lay.node_of_gpu[m])].sum())
            reserve = RESERVE_Z * float(np.sqrt(variance[m].sum()))
            before = other + slope * (float(counted_now[m].sum()) + reserve)
            if before >= settings.plan_above_share * scope.limit_w:
                usable = (1.0 - settings.margin_share) * scope.limit_w - other
                room[j] = usable / slope - reserve
        levels.append(of_gpu)
        rooms.append(room)
    return tuple(levels), tuple(rooms)
