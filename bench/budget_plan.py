"""Planning power budgets for a large fleet: the time of one plan, and of what it reads.

Run as ``.venv/bin/python bench/budget_plan.py [--gpus 10000] [--repeat 5] [--json]``.
A twin of ``--gpus`` H100s (8 per node, 4 nodes per rack, 10 zones) runs 10 minutes with
its telemetry recorded; every rack then gets a limit of 85 % of its nameplate, every zone
and the site one of 90 % of theirs, so that every scope is planned. Timed, median of
``--repeat``: the inputs (workloads, node other power, churn from the recorded series) and
:func:`plan_budgets` itself. The target (docs/benchmarks.md): planning ≤ 2 s at 10,000 GPUs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.optimizer.twin import gpu_states, record
from wattwise.clock import ManualClock
from wattwise.collector.sim import FleetSpec, SimFleet
from wattwise.optimizer.models.cap_response import estimate_workloads, fit_cap_models
from wattwise.optimizer.models.churn import fit_churn
from wattwise.optimizer.models.node_other import fit_node_other
from wattwise.optimizer.recommend.budget import plan_budgets
from wattwise.optimizer.recommend.budget_types import BudgetScope
from wattwise.optimizer.recommend.settings import BudgetSettings

NODE_NAMEPLATE_W = (8 * 700 + 1100) / 0.94
"""An H100 node at every limit with its CPUs, fans and the rest, at the supplies."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    nodes = args.gpus // 8
    clock = ManualClock()
    spec = FleetSpec.uniform(nodes, 8, racks=max(nodes // 4, 1), zones=10, seed=1)
    fleet = SimFleet(spec, clock)
    recorder = record(fleet, clock, 600)
    series, hosts = recorder.series("gpu"), recorder.series("host")
    gpus = gpu_states(fleet.read())
    settings = BudgetSettings()
    scopes = _scopes(gpus)
    inputs_s, plan_s, plans = [], [], []
    for _ in range(args.repeat):
        start = time.perf_counter()
        work = estimate_workloads(series, fit_cap_models(series))
        other = fit_node_other(series, hosts, quantile=settings.peak_quantile)
        churn = fit_churn(series)
        middle = time.perf_counter()
        plans = plan_budgets(gpus, work, scopes, other, settings, churn=churn)
        inputs_s.append(middle - start)
        plan_s.append(time.perf_counter() - middle)
    result = {
        "gpus": len(gpus),
        "scopes": len(scopes),
        "planned": sum(p.planned for p in plans),
        "capped_gpus": len({(c.host, c.gpu) for p in plans for c in p.caps}),
        "inputs_median_s": statistics.median(inputs_s),
        "plan_median_s": statistics.median(plan_s),
        "plan_target_s": 2.0,
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:>18}: {value:.3f}" if isinstance(value, float) else f"{key:>18}: {value}")


def _scopes(gpus: list) -> list[BudgetScope]:  # type: ignore[type-arg]
    nodes_of: dict[str, set[str]] = {}
    for g in gpus:
        nodes_of.setdefault(f"rack:{g.rack}", set()).add(g.host)
        nodes_of.setdefault(f"zone:{g.zone}", set()).add(g.host)
        nodes_of.setdefault("site", set()).add(g.host)
    share = {"rack": 0.85, "zone": 0.9, "site": 0.9}
    return [
        BudgetScope(scope, share[scope.split(":")[0]] * NODE_NAMEPLATE_W * len(hosts))
        for scope, hosts in nodes_of.items()
    ]


if __name__ == "__main__":
    main()
