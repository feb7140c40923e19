"""Budget plans on a one-node twin: training, inference and memory-bound work on 8 GPUs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tests.optimizer.twin import gpu_states, record
from wattwise.clock import ManualClock
from wattwise.collector.sim import FleetSpec, SimFleet
from wattwise.collector.sim.workload import DEFAULT_WORKLOADS
from wattwise.optimizer.models.cap_response import estimate_workloads, fit_cap_models
from wattwise.optimizer.models.node_other import NodeOther, fit_node_other
from wattwise.optimizer.recommend.budget import plan_budgets, setup_budgets
from wattwise.optimizer.recommend.budget_solve import Problem, solve
from wattwise.optimizer.recommend.budget_types import BudgetPlan, BudgetScope
from wattwise.optimizer.recommend.settings import BudgetSettings, PriorityRule
from wattwise.optimizer.telemetry import GpuState

HOST = "sim-r01-n01"
KINDS = (0, 0, 0, 1, 1, 2, 2, 2)
"""Training (compute-bound), inference (mixed), memory-bound on GPUs 0–7."""
TRAINING, MEMORY_BOUND = [0, 1, 2], [5, 6, 7]


class Twin:
    def __init__(self) -> None:
        self.clock = ManualClock()
        spec = FleetSpec.uniform(1, 8, seed=3, busy_share=0.0, workloads=())
        self.fleet = SimFleet(spec, self.clock)
        for gpu, kind in enumerate(KINDS):
            self.fleet.start_job(HOST, gpu, DEFAULT_WORKLOADS[kind])
        recorder = record(self.fleet, self.clock, 600)
        series = recorder.series("gpu")
        self.work = estimate_workloads(series, fit_cap_models(series))
        self.nodes = fit_node_other(series, recorder.series("host"))
        self.gpus: list[GpuState] = gpu_states(self.fleet.read())
        self.rack = f"rack:{self.gpus[0].rack}"
        self.jobs: dict[tuple[str, int], str] = {}

    def plan(self, limit_w: float, **settings: object) -> BudgetPlan:
        scope = BudgetScope(self.rack, limit_w)
        config = BudgetSettings.model_validate(settings)
        return plan_budgets(self.gpus, self.work, [scope], self.nodes, config, jobs=self.jobs)[0]


@pytest.fixture(scope="module")
def twin() -> Twin:
    return Twin()


def _limits(plan: BudgetPlan) -> dict[int, float]:
    out = {g: 700.0 for g in range(8)}
    out.update({c.gpu: c.planned_limit_w for c in plan.caps})
    return out


def _node_power_w(twin: Twin) -> float:
    return float(twin.fleet.nodes.node_power_w.sum())


def test_a_scope_well_under_its_limit_keeps_default_limits(twin: Twin) -> None:
    plan = twin.plan(2 * _node_power_w(twin))
    assert not plan.planned and plan.caps == () and plan.work_lost_pct == 0.0
    assert "default limits hold it" in plan.reason


@pytest.mark.parametrize("hold", ["predicted", "always"])
def test_planned_caps_hold_the_limit_on_the_twin(twin: Twin, hold: str) -> None:
    limit = 0.8 * _node_power_w(twin)
    plan = twin.plan(limit, hold=hold)
    assert plan.planned and plan.feasible and plan.caps
    assert plan.predicted_peak_after_w <= 0.98 * limit + 1e-6
    assert plan.predicted_peak_after_w < plan.predicted_peak_before_w
    if hold == "always":
        assert plan.guaranteed_max_w <= 0.98 * limit + 1e-6
    caps = _limits(plan)
    # Cap the real twin and let it run: its node, read at the power supplies, stays under.
    copy = Twin()
    for gpu, watts in caps.items():
        copy.fleet.set_power_limit(HOST, gpu, watts)
    worst = 0.0
    for _ in range(40):
        copy.clock.advance(5.0)
        copy.fleet.sync()
        worst = max(worst, _node_power_w(copy))
    assert worst <= limit


def test_memory_bound_work_gives_up_its_watts_before_compute_bound_work(twin: Twin) -> None:
    """Counting every GPU at its cap, the memory-bound GPUs' limits go lowest: their work
    barely follows the clock."""
    plan = twin.plan(0.85 * _node_power_w(twin), hold="always")
    caps = _limits(plan)
    assert max(caps[g] for g in MEMORY_BOUND) < min(caps[g] for g in TRAINING)
    by_gpu = {c.gpu: c for c in plan.caps}
    assert max(by_gpu[g].predicted_loss_pct for g in MEMORY_BOUND if g in by_gpu) < 2.0


def test_the_plan_is_near_the_exact_optimum_of_its_own_problem(twin: Twin) -> None:
    """Against a knapsack over the 8 jobs at 1 W resolution: the least predicted loss that
    fits the rack's room (the solver's prices and trades find near, not at, it)."""
    scope = BudgetScope(twin.rack, 0.85 * _node_power_w(twin))
    setup = setup_budgets(twin.gpus, twin.work, [scope], twin.nodes, BudgetSettings())
    p = setup.problem
    found = solve(p)
    lost = float(p.loss[np.arange(len(found.choice)), found.choice].sum())
    assert found.limit_w.sum() > 0 and _drawn(p, found.choice) <= p.room_w[0][0] + 1e-6
    assert lost <= 1.1 * _least_loss(p)
    assert any(_limits(twin.plan(scope.limit_w))[g] < 700.0 for g in TRAINING)


def _drawn(p: Problem, choice: np.ndarray) -> float:
    return float(p.counted_w[np.arange(len(choice)), choice[p.unit_of_gpu]].sum())


def _least_loss(p: Problem) -> float:
    """Exact least loss with every job (one GPU each here) in the one scope's room."""
    room = int(p.room_w[0][0])
    best = {0: 0.0}
    for g in range(len(p.unit_of_gpu)):
        nxt: dict[int, float] = {}
        for used, loss in best.items():
            for k in range(p.loss.shape[1]):
                w = used + int(np.ceil(p.counted_w[g, k]))
                value = loss + float(p.loss[p.unit_of_gpu[g], k])
                if w <= room and value < nxt.get(w, np.inf):
                    nxt[w] = value
        best, floor = {}, np.inf
        for w in sorted(nxt):
            if nxt[w] < floor:
                best[w], floor = nxt[w], nxt[w]
    return min(best.values())


def test_a_protected_job_keeps_its_limit_while_others_can_give(twin: Twin) -> None:
    twin.jobs = {(HOST, g): ("train-7" if g in TRAINING else f"serve-{g}") for g in range(8)}
    try:
        rule = PriorityRule(priority="protected", jobs=("train-*",))
        plan = twin.plan(0.85 * _node_power_w(twin), priorities=[rule.model_dump()])
        caps = _limits(plan)
        assert all(caps[g] == 700.0 for g in TRAINING)
        unprotected = twin.plan(0.85 * _node_power_w(twin))
        assert any(_limits(unprotected)[g] < 700.0 for g in TRAINING)
    finally:
        twin.jobs = {}


def test_the_gpus_of_one_job_share_one_limit(twin: Twin) -> None:
    twin.jobs = {(HOST, g): "job-1" for g in (0, 5)}
    try:
        caps = _limits(twin.plan(0.8 * _node_power_w(twin)))
        assert caps[0] == caps[5]
    finally:
        twin.jobs = {}


def test_a_limit_even_minimum_limits_cannot_hold_is_infeasible_and_names_what_to_pause(
    twin: Twin,
) -> None:
    plan = twin.plan(2500.0)
    assert plan.planned and not plan.feasible
    assert all(c.planned_limit_w == 200.0 for c in plan.caps) and len(plan.caps) == 8
    assert plan.pause and all(name.startswith(HOST) for name in plan.pause)
    assert "pause or move" in plan.reason


def test_a_cap_is_applied_once_the_gpu_enforces_it(twin: Twin) -> None:
    plan = twin.plan(0.8 * _node_power_w(twin))
    assert plan.applied_share == 0.0 and not any(c.applied for c in plan.caps)
    first = plan.caps[0]
    enforced = [
        s if s.gpu != first.gpu else _with_limit(s, first.planned_limit_w) for s in twin.gpus
    ]
    scopes = [BudgetScope(twin.rack, plan.limit_w)]
    again = plan_budgets(enforced, twin.work, scopes, twin.nodes, BudgetSettings())[0]
    applied = {c.gpu: c.applied for c in again.caps}
    assert applied.get(first.gpu) is True


def test_node_power_is_planned_with_the_fitted_supply_loss(twin: Twin) -> None:
    """The twin's supplies lose 6 %: the fitted GPU-watt cost must see more than 1 W per W."""
    assert twin.nodes.fitted or twin.nodes.slope > 1.0
    assert 1.0 < twin.nodes.slope < 1.3


def _with_limit(state: GpuState, watts: float) -> GpuState:
    return dataclasses.replace(state, enforced_limit_w=watts, power_limit_w=watts)


def test_no_scopes_no_plans(twin: Twin) -> None:
    nodes = NodeOther({}, 1.0, fitted=False)
    assert plan_budgets(twin.gpus, twin.work, [], nodes, BudgetSettings()) == []
    assert np.isfinite(_node_power_w(twin))
