"""Replay a scenario: warm the twin up, then run every policy of every experiment on identical
replicas and judge each on the twin's ground truth."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from wattwise.optimizer.evaluation.budget import run_budget
from wattwise.optimizer.evaluation.caps import (
    DefaultCaps,
    OracleCaps,
    StaticCap,
    WattwiseCaps,
    judge_caps,
)
from wattwise.optimizer.evaluation.cooling import run_cooling
from wattwise.optimizer.evaluation.placement import (
    ARRIVAL_S,
    OraclePlacement,
    Pack,
    RandomPlacement,
    Spread,
    WattwisePlacement,
    placement_replica,
    start_jobs,
)
from wattwise.optimizer.evaluation.replica import (
    PolicyRun,
    Replica,
    run_for,
    run_policy,
    warm_replica,
)
from wattwise.optimizer.evaluation.results import (
    ExperimentResult,
    ScenarioResult,
    Target,
    policy_result,
)
from wattwise.optimizer.evaluation.scenario import PlacementJob, Scenario

Progress = Callable[[str], None]
"""Called with a short label after each step of the evaluation finishes."""
STEPS_OF = {"caps": 4, "placement": 6, "cooling": 9, "budget": 6}
"""Steps each experiment reports through Progress: 4 caps runs; 5 placement runs and its
warm-up; the wattwise cooling ramp and 2 + 6 cooling runs; 6 budget runs."""


def steps(scenario: Scenario) -> int:
    """Steps reported through Progress for ``scenario`` (one more for the warm-up)."""
    return 1 + sum(STEPS_OF[name] for name in scenario.chosen_experiments)


def run_scenario(scenario: Scenario, progress: Progress | None = None) -> ScenarioResult:
    """Every experiment of ``scenario``; the same scenario always gives the same result."""
    tell = progress or (lambda _label: None)
    started = time.perf_counter()
    base = warm_replica(scenario)
    tell("warm-up")
    run: dict[str, Callable[[], ExperimentResult]] = {
        "caps": lambda: _caps(base, scenario, tell),
        "placement": lambda: _placement(scenario, tell),
        "cooling": lambda: run_cooling(base, scenario, tell),
        "budget": lambda: run_budget(base, scenario, tell),
    }
    experiments = tuple(run[name]() for name in scenario.chosen_experiments)
    return ScenarioResult(
        scenario=scenario.name,
        description=scenario.description,
        truth=scenario.truth,
        seed=scenario.seed,
        gpus=base.fleet.layout.gpu_count,
        experiments=experiments,
        elapsed_s=time.perf_counter() - started,
    )


def _caps(base: Replica, scenario: Scenario, tell: Progress) -> ExperimentResult:
    bound = scenario.slowdown_bound
    runs = {}
    for policy in (DefaultCaps(), StaticCap(), WattwiseCaps(bound), OracleCaps(bound)):
        runs[policy.name] = run_policy(base, policy, scenario, record=policy.name == "wattwise")
        tell(f"caps: {policy.name}")
    return judge_caps(runs, bound)


class Chooser(Protocol):
    name: str

    def choose(
        self, replica: Replica, scenario: Scenario, job: PlacementJob
    ) -> tuple[str, tuple[int, ...]] | None: ...


@dataclass
class _Hold:
    """Changes nothing while the placed jobs run."""

    name: str

    def act(self, replica: Replica) -> None:
        """Nothing to decide."""

    def tick(self, replica: Replica) -> None:
        """Nothing to react to."""


def _placement(scenario: Scenario, tell: Progress) -> ExperimentResult:
    base = placement_replica(scenario)
    tell("placement: warm-up")
    choosers: list[Chooser] = [
        Spread(),
        Pack(),
        RandomPlacement(scenario.seed),
        WattwisePlacement(),
        OraclePlacement(),
    ]
    runs: dict[str, tuple[PolicyRun, int, list[str]]] = {}
    for chooser in choosers:
        runs[chooser.name] = place_and_run(base, chooser, scenario)
        tell(f"placement: {chooser.name}")
    idle = run_policy(_after_arrivals(base, scenario), _Hold("no new jobs"), scenario)
    return _judge_placement(runs, idle, scenario)


def _after_arrivals(base: Replica, scenario: Scenario) -> Replica:
    replica = base.clone()
    run_for(replica, ARRIVAL_S * scenario.placement.jobs, scenario.read_every_s)
    return replica


def place_and_run(
    base: Replica, chooser: Chooser, scenario: Scenario
) -> tuple[PolicyRun, int, list[str]]:
    replica = base.clone()
    hosts = []
    for job in scenario.placement_jobs():
        choice = chooser.choose(replica, scenario, job)
        start_jobs(replica, scenario, choice)
        if choice is not None:
            hosts.append(choice[0])
        run_for(replica, ARRIVAL_S, scenario.read_every_s)
    return run_policy(replica, _Hold(chooser.name), scenario), len(hosts), hosts


def _judge_placement(
    runs: dict[str, tuple[PolicyRun, int, list[str]]], idle: PolicyRun, scenario: Scenario
) -> ExperimentResult:
    def total(run: PolicyRun) -> float:
        return run.meter.it_energy_j + run.meter.cooling_energy_j

    ref = runs["spread"][0]
    ref_added = total(ref) - total(idle)
    results = []
    for run, placed, hosts in runs.values():
        added = total(run) - total(idle)
        results.append(
            policy_result(
                run,
                saving_pct=100.0 * (1.0 - total(run) / total(ref)),
                slowdown_pct=100.0 * (ref.meter.work_gpu_s / max(run.meter.work_gpu_s, 1e-9) - 1),
                detail={
                    "jobs_placed": placed,
                    "added_energy_saving_pct": 100.0 * (1.0 - added / ref_added),
                    "added_energy_kwh": added / 3.6e6,
                },
                setting=", ".join(hosts),
            )
        )
    ours = next(r for r in results if r.policy == "wattwise")
    jobs = scenario.placement.jobs
    throttled = ours.thermal_throttled_gpu_s - idle.meter.throttled_gpu_s
    targets = (
        Target(
            "placement: ≥ 10 % less IT + cooling energy than spread",
            ours.saving_pct,
            10.0,
            ours.saving_pct >= 10.0,
            f"{ours.saving_pct:.2f} % of the fleet's energy; "
            f"{ours.detail['added_energy_saving_pct']:.1f} % of the placed jobs' energy",
        ),
        Target(
            "placement: no rack budget exceeded",
            ours.rack_over_samples,
            0.0,
            ours.rack_over_samples == 0 and ours.detail["jobs_placed"] == jobs,
            f"{ours.rack_over_samples} rack samples over budget; worst rack at "
            f"{100 * ours.worst_rack_share:.0f} % of budget; "
            f"{int(ours.detail['jobs_placed'])} of {jobs} jobs placed",
        ),
        Target(
            "placement: no thermal slowdown caused",
            throttled,
            0.0,
            throttled <= 0.0,
            f"{throttled:.0f} GPU-s thermally throttled beyond the background's",
        ),
    )
    return ExperimentResult("placement", "spread", "IT + cooling energy", tuple(results), targets)
