"""The budget experiment: which policy holds every limit, and what work each loses doing so.

Work lost is the fleet's work over the measured horizon against no caps, in per cent:
only realized outcomes on the twin's truth count. Targets (docs/evaluation.md): wattwise
has no sample over any limit once its plan applies; it loses at most 1.2 times the
oracle's work and at most half the uniform cap's; a timed event is met from one refresh
after its start, and default limits are back one refresh after its end.
"""

from __future__ import annotations

from collections.abc import Callable

from wattwise.optimizer.evaluation.budget_policies import (
    BudgetPolicy,
    OracleBudget,
    Proportional,
    UniformCap,
    UniformPredicted,
    WattwiseBudget,
)
from wattwise.optimizer.evaluation.replica import PolicyRun, Replica, run_policy
from wattwise.optimizer.evaluation.results import ExperimentResult, Target, policy_result
from wattwise.optimizer.evaluation.scenario import Scenario

LOSS_FLOOR_PCT = 0.05
"""Losses this small are the twin's noise (jobs drawn by wall time finish in other steps)."""


def run_budget(base: Replica, scenario: Scenario, tell: Callable[[str], None]) -> ExperimentResult:
    policies: list[BudgetPolicy] = [
        BudgetPolicy(scenario),
        UniformCap(scenario, "uniform cap"),
        Proportional(scenario, "proportional"),
        UniformPredicted(scenario, "uniform cap (predicted draw)"),
        WattwiseBudget(scenario, "wattwise"),
        OracleBudget(scenario, "oracle"),
    ]
    runs: dict[str, tuple[PolicyRun, BudgetPolicy]] = {}
    for policy in policies:
        record = not isinstance(policy, OracleBudget) and type(policy) is not BudgetPolicy
        run = run_policy(base, policy, scenario, record=record, edges_s=policy.edges_s)
        runs[policy.name] = (run, policy)
        tell(f"budget: {policy.name}")
    return judge_budget(runs, scenario)


def judge_budget(
    runs: dict[str, tuple[PolicyRun, BudgetPolicy]], scenario: Scenario
) -> ExperimentResult:
    ref = runs["no caps"][0]
    results = []
    for run, policy in runs.values():
        watch = policy.watch
        lost = 100.0 * (1.0 - run.meter.work_gpu_s / max(ref.meter.work_gpu_s, 1e-9))
        detail = {
            "work_lost_pct": lost,
            "samples": float(watch.samples),
            "over_samples": float(watch.over_total),
            "rack_over_samples": float(watch.over["rack"]),
            "zone_over_samples": float(watch.over["zone"]),
            "site_over_samples": float(watch.over["site"]),
            "worst_share_of_limit": watch.worst_share,
            "event_samples": float(watch.event_samples),
            "event_over_samples": float(watch.event_over),
            "event_lead_in_samples": float(watch.lead_in_samples),
            "event_lead_in_over_samples": float(watch.lead_in_over),
            "after_event_samples": float(watch.after_event_samples),
            "after_event_capped_samples": float(watch.after_event_capped),
        }
        results.append(
            policy_result(
                run,
                saving_pct=100.0 * (1.0 - run.meter.it_energy_j / ref.meter.it_energy_j),
                slowdown_pct=lost,
                detail=detail,
                setting=f"{watch.over_total} samples over a limit",
            )
        )
    by_name = {r.policy: r for r in results}
    targets = _targets(by_name, scenario)
    return ExperimentResult(
        "budget", "no caps", "IT energy (work lost is the slowdown)", tuple(results), targets
    )


def _targets(by_name: dict, scenario: Scenario) -> tuple[Target, ...]:  # type: ignore[type-arg]
    ours, oracle, uniform = by_name["wattwise"], by_name["oracle"], by_name["uniform cap"]
    over = int(ours.detail["over_samples"])
    lost = ours.detail["work_lost_pct"]
    oracle_lost, uniform_lost = oracle.detail["work_lost_pct"], uniform.detail["work_lost_pct"]
    others = ", ".join(
        f"{name} {int(r.detail['over_samples'])}" for name, r in by_name.items() if r is not ours
    )
    out = [
        Target(
            "budget: no sample over any rack, zone or site limit",
            over,
            0.0,
            over == 0,
            f"wattwise {over} of {int(ours.detail['samples'])} samples; {others}",
        ),
        Target(
            "budget: work lost within 1.2x the oracle's",
            lost,
            1.2 * oracle_lost,
            lost <= 1.2 * max(oracle_lost, 0.0) + LOSS_FLOOR_PCT,
            f"wattwise {lost:.2f} % vs oracle {oracle_lost:.2f} %",
        ),
        Target(
            "budget: work lost at most half the uniform cap's",
            lost,
            0.5 * uniform_lost,
            lost <= 0.5 * max(uniform_lost, 0.0) + LOSS_FLOOR_PCT,
            f"wattwise {lost:.2f} % vs uniform cap {uniform_lost:.2f} %",
        ),
    ]
    if scenario.budget is not None and scenario.budget.events:
        event_over = int(ours.detail["event_over_samples"])
        capped = int(ours.detail["after_event_capped_samples"])
        out.append(
            Target(
                "budget: event met within one refresh of its start, defaults back within "
                "one refresh of its end",
                event_over + capped,
                0.0,
                event_over == 0 and capped == 0 and ours.detail["event_samples"] > 0,
                f"{event_over} of {int(ours.detail['event_samples'])} samples over the event's "
                f"limit from one refresh in; {capped} of "
                f"{int(ours.detail['after_event_samples'])} samples with a GPU still capped "
                "from one refresh after its end; before that refresh "
                f"{int(ours.detail['event_lead_in_over_samples'])} of "
                f"{int(ours.detail['event_lead_in_samples'])} over",
            )
        )
    return tuple(out)
