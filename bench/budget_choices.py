"""Where wattwise and the oracle take a budget's watts from, per workload, on the twin.

Run as ``.venv/bin/python bench/budget_choices.py scenarios/oversubscribed-racks.toml
[--truth costly] [--json]``. Both policies run the scenario's budget experiment as
``wattwise eval`` runs it; at every refresh each GPU's chosen limit is recorded with the
work it truly loses there (the twin's truth) and the loss wattwise predicts there (its
own workload estimates). Per workload of the scenario: the GPUs, their mean limit, the
true and the predicted loss, averaged over the refreshes. A policy's caps on a workload
whose predicted loss is far above the true one are caps wattwise does not dare make.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from wattwise.collector.sim.dvfs import Floats
from wattwise.optimizer.evaluation.budget_policies import (
    BudgetPolicy,
    OracleBudget,
    WattwiseBudget,
    budget_settings,
    predicted_inputs,
)
from wattwise.optimizer.evaluation.caps import _limits
from wattwise.optimizer.evaluation.replica import Replica, run_policy, warm_replica
from wattwise.optimizer.evaluation.scenario import Scenario, load_scenario
from wattwise.optimizer.models.cap_predict import at_limits
from wattwise.optimizer.recommend.budget_types import BudgetScope

IDLE = "(idle)"


@dataclass
class Tally:
    """Per workload, summed over refreshes: GPUs, limits, true and predicted losses."""

    refreshes: int = 0
    sums: dict[str, dict[str, float]] = field(default_factory=lambda: defaultdict(dict))

    def add(self, workload: str, **values: float) -> None:
        row = self.sums[workload]
        for key, value in values.items():
            row[key] = row.get(key, 0.0) + value

    def rows(self) -> list[dict[str, float | str]]:
        out: list[dict[str, float | str]] = []
        for workload, row in sorted(self.sums.items()):
            gpus = row["gpus"]
            out.append(
                {
                    "workload": workload,
                    "gpus": gpus / max(self.refreshes, 1),
                    "mean_limit_w": row["limit_w"] / gpus,
                    "true_loss_pct": 100.0 * row["true_loss"] / gpus,
                    "predicted_loss_pct": 100.0 * row["predicted_loss"] / gpus,
                }
            )
        return out


def tally_limits(replica: Replica, scenario: Scenario, limits: Floats, tally: Tally) -> None:
    """Record one refresh's limits with their true and predicted loss per workload."""
    fleet = replica.fleet
    default = _limits(replica)[2]
    rate, _ = fleet.truth.at_power_limits(np.stack([limits, default], axis=1))
    rate = np.asarray(rate, dtype=np.float64)
    true_loss = 1.0 - rate[:, 0] / np.maximum(rate[:, 1], 1e-9)
    predicted = np.full(len(limits), np.nan)
    work = predicted_inputs(replica, budget_settings(scenario))[0]
    index = fleet.layout.gpu_index
    rows = np.array([index[(str(h), int(g))] for h, g in zip(work.host, work.gpu, strict=True)])
    if rows.size:
        at = at_limits(work, np.stack([limits[rows], default[rows]], axis=1)).throughput
        predicted[rows] = 1.0 - np.minimum(at[:, 0] / np.maximum(at[:, 1], 1e-9), 1.0)
    names = [w.name for w in scenario.workloads]
    tally.refreshes += 1
    for i, kind in enumerate(fleet.jobs.kind.tolist()):
        busy = kind >= 0
        tally.add(
            names[kind] if busy else IDLE,
            gpus=1.0,
            limit_w=float(limits[i]),
            true_loss=float(true_loss[i]) if busy else 0.0,
            predicted_loss=float(np.nan_to_num(predicted[i])) if busy else 0.0,
        )


@dataclass
class Tallied(BudgetPolicy):
    """Acts as ``inner`` decides, and tallies each refresh's limits."""

    inner: BudgetPolicy | None = None
    tally: Tally = field(default_factory=Tally)

    def limits(self, replica: Replica, scopes: list[BudgetScope]) -> Floats:
        assert self.inner is not None
        out = self.inner.limits(replica, scopes)
        tally_limits(replica, self.scenario, out, self.tally)
        return out


@dataclass(frozen=True)
class Choices:
    """One policy's work lost against no caps, and its tally per workload."""

    policy: str
    work_lost_pct: float
    refreshes: int
    workloads: list[dict[str, float | str]]


def measure(scenario: Scenario) -> list[Choices]:
    """Per policy, wattwise and the oracle: its :class:`Choices`."""
    base = warm_replica(scenario)
    no_caps = BudgetPolicy(scenario)
    reference = run_policy(base, no_caps, scenario, edges_s=no_caps.edges_s)
    out: list[Choices] = []
    for inner in (WattwiseBudget(scenario, "wattwise"), OracleBudget(scenario, "oracle")):
        policy = Tallied(scenario, inner.name, inner=inner)
        run = run_policy(base, policy, scenario, record=True, edges_s=policy.edges_s)
        work = run.meter.work_gpu_s / max(reference.meter.work_gpu_s, 1e-9)
        lost = 100.0 * (1.0 - work)
        out.append(Choices(policy.name, lost, policy.tally.refreshes, policy.tally.rows()))
        print(f"{policy.name}: done", file=sys.stderr, flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", type=Path)
    parser.add_argument("--truth", default=None, help="the twin's truth (default: the file's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    scenario = load_scenario(args.scenario)
    if args.truth:
        scenario = scenario.model_copy(update={"truth": args.truth})
    policies = measure(scenario)
    if args.json:
        runs = [asdict(p) for p in policies]
        print(json.dumps({"scenario": scenario.name, "truth": scenario.truth, "policies": runs}))
        return
    print(f"{scenario.name}, truth {scenario.truth}")
    print("| policy | work lost | workload | GPUs | mean limit | true loss | predicted loss |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for p in policies:
        for row in p.workloads:
            print(
                f"| {p.policy} | {p.work_lost_pct:.2f} % | {row['workload']} | "
                f"{row['gpus']:.1f} | {row['mean_limit_w']:.0f} W | "
                f"{row['true_loss_pct']:.1f} % | {row['predicted_loss_pct']:.1f} % |"
            )


if __name__ == "__main__":
    main()
